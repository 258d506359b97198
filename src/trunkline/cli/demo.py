"""``trunkline demo``: the main job of the README without make, for ``pip install`` users.

The demo's flags are defined once, in :mod:`trunkline.demo` (``python -m trunkline.demo``
takes the same ones); this command hands its arguments over unchanged.
"""

from __future__ import annotations

import sys

import click

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True,
                 "help_option_names": []}


def register(group: click.Group) -> None:
    @group.command("demo", context_settings=_PASS_THROUGH, add_help_option=False)
    @click.pass_context
    def demo(ctx: click.Context) -> None:
        """Embedded S3 server, a dataset moved up and down, its flows, the report
        (--size 1GiB --out demo-out; -h for every flag)."""
        from .. import demo as demo_job

        sys.exit(demo_job.main(list(ctx.args), prog="trunkline demo"))
