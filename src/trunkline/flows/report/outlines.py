"""Country and US-state outlines for the maps, decoded from the shipped TopoJSON.

The outlines (``outlines/``, Natural Earth via world-atlas, US Census via us-atlas, see
its README) become GeoJSON features whose ``id`` is what the flow data carries: the ISO
3166-1 alpha-2 country code, the USPS state code. TopoJSON is decoded here (a few lines:
delta-decoded, quantised arcs stitched into rings) rather than pulling a library in.
"""

from __future__ import annotations

import csv
import json
from functools import cache
from importlib import resources

from ..enrich.geo import us_states


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("outlines", name).read_text()


def _arcs(topo: dict, decimals: int) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    out = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((round(x * sx + tx, decimals), round(y * sy + ty, decimals)))
        out.append(pts)
    return out


def _ring(arcs: list, idx: list[int]) -> list[tuple[float, float]]:
    ring: list[tuple[float, float]] = []
    for i in idx:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        ring.extend(pts if not ring else pts[1:])
    # a ring across the antimeridian (eastern Russia, Fiji) continues east of 180 degrees
    # instead of drawing a line across the whole map
    if any(abs(a[0] - b[0]) > 180 for a, b in zip(ring, ring[1:], strict=False)):
        ring = [(x + 360 if x < 0 else x, y) for x, y in ring]
    return ring


def _features(topo: dict, obj: str, ids: dict[str, str], decimals: int) -> list[dict]:
    arcs = _arcs(topo, decimals)
    feats = []
    for g in topo["objects"][obj]["geometries"]:
        fid = ids.get(str(g.get("id")), "")
        if fid == "AQ":  # Antarctica: no peers, and it would wrap the whole map
            continue
        if g["type"] == "Polygon":
            geom = {"type": "Polygon", "coordinates": [_ring(arcs, r) for r in g["arcs"]]}
        elif g["type"] == "MultiPolygon":
            geom = {"type": "MultiPolygon",
                    "coordinates": [[_ring(arcs, r) for r in p] for p in g["arcs"]]}
        else:
            continue
        feats.append({"type": "Feature", "id": fid or g.get("properties", {}).get("name", ""),
                      "properties": {"name": g.get("properties", {}).get("name", ""), "code": fid},
                      "geometry": geom})
    return feats


@cache
def countries() -> dict:
    """GeoJSON FeatureCollection of countries, ``id`` = ISO alpha-2 (name if none)."""
    rows = csv.DictReader(line for line in _read("countries.csv").splitlines() if not line.startswith("#"))
    ids = {r["numeric"]: r["alpha2"] for r in rows}
    return {"type": "FeatureCollection",
            "features": _features(json.loads(_read("countries-110m.json")), "countries", ids, 2)}


@cache
def states() -> dict:
    """GeoJSON FeatureCollection of US states, ``id`` = USPS code."""
    ids = {r["fips"]: r["code"] for r in us_states()}
    return {"type": "FeatureCollection",
            "features": _features(json.loads(_read("states-10m.json")), "states", ids, 3)}
