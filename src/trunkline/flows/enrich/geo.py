"""IP -> city, country and coordinates from a MaxMind-format City database.

Reads both layouts in use: ip-location-db (flat ``city``, ``country_code``, ``latitude``,
``longitude``) and MaxMind GeoLite2-City (nested ``city.names.en``, ``location``...).
Addresses are looked up once each, in sorted order, and every following address inside
the network the database returned reuses that answer, so a /24 costs one lookup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import maxminddb
import numpy as np

from .addr import V4


@dataclass
class GeoResult:
    city: list[str]
    country: list[str]
    lat: np.ndarray  # float64, NaN when unknown
    lon: np.ndarray
    lookups: int  # database lookups actually made


def _fields(rec: object) -> tuple[str, str, float, float]:
    if not isinstance(rec, dict):
        return "", "", np.nan, np.nan
    if "location" in rec or isinstance(rec.get("city"), dict):
        city = ((rec.get("city") or {}).get("names") or {}).get("en", "")
        country = (rec.get("country") or {}).get("iso_code", "")
        loc = rec.get("location") or {}
        return city, country, loc.get("latitude", np.nan), loc.get("longitude", np.nan)
    return (
        rec.get("city") or "",
        rec.get("country_code") or "",
        rec.get("latitude", np.nan),
        rec.get("longitude", np.nan),
    )


class GeoDb:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"geo database not found: {self.path}")
        self._db = maxminddb.open_database(str(self.path))
        self.ip_version = self._db.metadata().ip_version

    def lookup(self, kind: np.ndarray, v4: np.ndarray, texts: list[str]) -> GeoResult:
        """Geo fields per address; IPv4 goes through the prefix-reuse path."""
        n = len(kind)
        city, country = [""] * n, [""] * n
        lat, lon = np.full(n, np.nan), np.full(n, np.nan)
        lookups = 0
        idx4 = np.flatnonzero(kind == V4)
        order = idx4[np.argsort(v4[idx4], kind="stable")]
        keys = v4[order].astype(np.int64)
        j = 0
        while j < len(order):
            i = order[j]
            rec, plen = self._db.get_with_prefix_len(texts[i])
            lookups += 1
            f = _fields(rec)
            if self.ip_version == 6 and plen >= 96:
                plen -= 96  # IPv4 inside an IPv6 tree
            last = keys[j] | ((1 << (32 - plen)) - 1) if plen <= 32 else keys[j]
            k = int(np.searchsorted(keys, last, side="right"))
            for ii in order[j:k]:
                city[ii], country[ii] = f[0], f[1]
            lat[order[j:k]], lon[order[j:k]] = f[2], f[3]
            j = max(k, j + 1)
        if self.ip_version == 6:
            for i in np.flatnonzero(kind == 6):
                try:
                    f = _fields(self._db.get(texts[i]))
                except ValueError:
                    continue
                lookups += 1
                city[i], country[i], lat[i], lon[i] = f
        return GeoResult(city, country, lat, lon, lookups)
