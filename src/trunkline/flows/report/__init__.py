"""The network-stats report: numbers (build), charts (matplotlib PNG), page (HTML).

``write_report`` is the one entry point: it writes report.html (self-contained, works
offline), report.json (every number shown), charts/*.png and sketches.parquet (the
monthly HyperLogLog registers, mergeable into any longer range).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from ..elephants import Thresholds
from ..enrich import Enricher
from ..stats import Quarter
from ..store import FlowStore
from . import charts, html
from .build import build

__all__ = ["build", "write_report"]


def write_report(store: FlowStore, quarter: Quarter, enricher: Enricher, out: str | os.PathLike[str], *,
                 thresholds: Thresholds | None = None, sites: dict[str, str] | None = None,
                 regions: dict[str, str] | None = None, home_country: str | None = None,
                 top_n: int = 20, **source) -> dict:
    """Build and write the report for ``quarter``; returns the report dict. ``source``:
    ``build``'s source, ray and enrich_args (where the figures are read from)."""
    out = Path(out)
    (out / "charts").mkdir(parents=True, exist_ok=True)
    report, sketch = build(store, quarter, enricher, thresholds=thresholds, sites=sites, regions=regions,
                           home_country=home_country, top_n=top_n, **source)
    pngs = charts.all_charts(report)
    for name, png in pngs.items():
        (out / "charts" / f"{name}.png").write_bytes(png)
    report["files"] = {"html": "report.html", "json": "report.json", "sketches": "sketches.parquet",
                       "charts": {k: f"charts/{k}.png" for k in pngs}}
    pq.write_table(sketch, out / "sketches.parquet", compression="zstd")
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False))
    (out / "report.html").write_text(html.render(report, pngs))
    return report
