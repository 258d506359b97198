"""``trunkline`` entry point: assembles the command groups of each pillar.

The command modules are imported when their command runs (or when help lists them), not
at start: ``trunkline cp`` of one object should not pay for the flow lens, the planner
or the object verbs (issue 18: a short copy within 0.12 s of process start). ``COMMANDS``
names which module registers which command; tests/unit/test_cli_lazy.py holds it against
what the modules really register.
"""

from __future__ import annotations

import importlib
import os
import sys

from .startup import begin, leave

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "trunkline":
    begin()   # the entry point: the collector off while the modules load (cli/startup.py)

import click  # noqa: E402

from .. import __version__
from ..errors import UsageError

COMMANDS: dict[str, str] = {
    "cp": "mover", "demo": "demo",
    "cat": "objects", "du": "objects", "ls": "objects", "mb": "objects", "rm": "objects",
    "plan": "physics", "probe": "probe",
    "gc": "sync_verify", "sync": "sync_verify", "verify": "sync_verify",
    "flows": "flows",
}
"""Command name -> the module of ``trunkline.cli`` whose ``register(group)`` adds it."""


class LazyGroup(click.Group):
    """A group whose commands are registered by their module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            scratch = click.Group()
            importlib.import_module(f"{__package__}.{COMMANDS[name]}").register(scratch)
            for n, cmd in scratch.commands.items():
                self.commands.setdefault(n, cmd)
        return self.commands.get(name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trunkline")
def cli() -> None:
    """trunkline: move datasets at line rate, and see the elephant flows they make."""


def main() -> None:
    try:
        try:
            cli(prog_name="trunkline")
        except UsageError as e:   # a bad setting met while a command's modules load
            from .exits import fail

            fail(False, 2, e)
    except SystemExit as e:   # how every command ends (click's standalone mode)
        leave(e.code)


if __name__ == "__main__":
    main()
