"""``trunkline flows ...``: the flow lens commands.

Collection/ingest/sql/status commands live in ``flows_ingest``; enrichment, classify,
simulate and report commands in ``flows_report``; retention (gc) in ``flows_gc``. Each exposes ``register(group)``, like
every CLI module, so the imports point one way (this module -> them, never back).
"""

from __future__ import annotations

import click

from . import flows_gc, flows_ingest, flows_report


@click.group()
def flows() -> None:
    """Collect, store, enrich and report network flows."""


flows_ingest.register(flows)
flows_report.register(flows)
flows_gc.register(flows)


def register(cli: click.Group) -> None:
    cli.add_command(flows)
