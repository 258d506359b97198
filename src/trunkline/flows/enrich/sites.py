"""Exporter -> site -> region: the provider's own geography (which PoP saw the flow).

A TOML table ``[sites]`` maps exporter names or addresses to a site name, e.g.
``"192.0.2.1" = "ams1"``; ``[regions]`` maps sites to regions (``ams1 = "EU-Central"``).
Unmapped exporters keep their own name as the site, unmapped sites as the region.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ...errors import UsageError


def _read(path: str | os.PathLike[str]) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read sites file {path}: {e}") from None


def load_sites(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """exporter -> site, from ``[sites]`` (or the top level of a file without tables)."""
    if path is None:
        return {}
    data = _read(path)
    sites = data.get("sites", data)
    return {str(k): str(v) for k, v in sites.items() if not isinstance(v, dict)}


def load_regions(path: str | os.PathLike[str] | None) -> dict[str, str]:
    """site -> region, from ``[regions]``."""
    if path is None:
        return {}
    regions = _read(path).get("regions", {})
    if not isinstance(regions, dict):
        raise UsageError(f"sites file {path}: [regions] must be a table of site = \"region\"")
    return {str(k): str(v) for k, v in regions.items()}
