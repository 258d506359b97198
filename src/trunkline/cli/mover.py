"""cp, sync, verify, probe: the mover's commands."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    pass
