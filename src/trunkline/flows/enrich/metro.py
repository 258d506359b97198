"""Coordinates -> metro, from the shipped metro list (``metros.csv``) or a user file.

A metro is one or more centres with a radius; a point belongs to the nearest centre
within its radius. GeoIP answers without a city sit on a country (or state) centroid
and are reported as "no metro", never snapped to whichever metro happens to be near.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

NO_METRO = "no metro"
EARTH_KM = 6371.0088
# Country centroids GeoIP uses for city-less answers (the US one is the famous Kansas farm)
CENTROIDS = ((37.751, -97.822),)


@dataclass(frozen=True)
class Metro:
    name: str
    country: str
    lat: float
    lon: float
    radius_km: float
    ai_us: bool


def load_metros(path: str | os.PathLike[str] | None = None) -> list[Metro]:
    """Metro centres: CSV with name,country,lat,lon,radius_km,ai_us."""
    if path is None:
        text = resources.files(__package__).joinpath("metros.csv").read_text()
    else:
        text = Path(path).read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return [
        Metro(
            r["name"], r["country"], float(r["lat"]), float(r["lon"]),
            float(r["radius_km"]), r.get("ai_us", "0").strip() in ("1", "true", "yes"),
        )
        for r in rows
    ]


class MetroIndex:
    def __init__(self, metros: list[Metro] | None = None):
        self.metros = metros if metros is not None else load_metros()
        self._lat = np.radians([m.lat for m in self.metros])
        self._lon = np.radians([m.lon for m in self.metros])
        self._rad = np.array([m.radius_km for m in self.metros])

    def centre(self, name: str) -> tuple[float, float]:
        """Mean coordinates of a metro's centres (for the map)."""
        ms = [m for m in self.metros if m.name == name]
        return (float(np.mean([m.lat for m in ms])), float(np.mean([m.lon for m in ms])))

    def assign(self, lat: np.ndarray, lon: np.ndarray, city: list[str] | None = None) -> list[str]:
        """Metro name per point; NaN, city-less or centroid points get ``NO_METRO``."""
        n = len(lat)
        out = np.full(n, NO_METRO, dtype=object)
        ok = ~(np.isnan(lat) | np.isnan(lon))
        if city is not None:
            ok &= np.array([bool(c) for c in city], bool)
        for clat, clon in CENTROIDS:
            ok &= ~((np.abs(lat - clat) < 0.01) & (np.abs(lon - clon) < 0.01))
        if not ok.any() or not self.metros:
            return out.tolist()
        # unique coordinates only: many addresses share a city
        pts = np.stack([lat[ok], lon[ok]], axis=1)
        uniq, inv = np.unique(pts, axis=0, return_inverse=True)
        la, lo = np.radians(uniq[:, 0])[:, None], np.radians(uniq[:, 1])[:, None]
        a = (np.sin((la - self._lat) / 2) ** 2
             + np.cos(la) * np.cos(self._lat) * np.sin((lo - self._lon) / 2) ** 2)
        d = 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
        d = np.where(d <= self._rad, d, np.inf)
        best = np.argmin(d, axis=1)
        hit = np.isfinite(d[np.arange(len(uniq)), best])
        names = np.array([m.name for m in self.metros], dtype=object)
        res = np.where(hit, names[best], NO_METRO)
        out[np.flatnonzero(ok)] = res[inv.reshape(-1)]
        return out.tolist()
