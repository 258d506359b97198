"""``trunkline`` entry point: assembles the command groups of each pillar."""

from __future__ import annotations

import click

from .. import __version__
from . import demo, flows, mover, objects, physics, sync_verify
from . import probe as probe_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trunkline")
def cli() -> None:
    """trunkline: move datasets at line rate, and see the elephant flows they make."""


mover.register(cli)
demo.register(cli)
objects.register(cli)
physics.register(cli)
probe_cli.register(cli)
sync_verify.register(cli)
flows.register(cli)


def main() -> None:
    cli(prog_name="trunkline")


if __name__ == "__main__":
    main()
