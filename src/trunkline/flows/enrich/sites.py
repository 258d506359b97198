"""Exporter -> site: the provider's own geography (which PoP saw the flow).

A TOML table ``[sites]`` maps exporter names or addresses to a site name, e.g.
``"192.0.2.1" = "ams1"``. Unmapped exporters keep their own name as the site.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def load_sites(path: str | os.PathLike[str] | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read sites file {path}: {e}") from None
    sites = data.get("sites", data)
    return {str(k): str(v) for k, v in sites.items()}
