"""``trunkline flows ...``: the flow lens commands.

Collection/ingest/sql/status commands live in ``flows_ingest``; enrichment, classify,
simulate and report commands in ``flows_report``. Both attach to this group.
"""

from __future__ import annotations

import click


@click.group()
def flows() -> None:
    """Collect, store, enrich and report network flows."""


from . import flows_ingest, flows_report  # noqa: E402,F401  (they register commands)
