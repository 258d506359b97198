"""IP -> city, country and coordinates from a MaxMind-format City database.

Reads both layouts in use: ip-location-db (flat ``city``, ``country_code``, ``latitude``,
``longitude``) and MaxMind GeoLite2-City (nested ``city.names.en``, ``location``...).
Addresses are looked up once each, in sorted order, and every following address inside
the network the database returned reuses that answer, so a /24 costs one lookup.
"""

from __future__ import annotations

import csv
import os
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import maxminddb
import numpy as np

from .addr import V4


@dataclass
class GeoResult:
    city: list[str]
    country: list[str]
    subdivision: list[str]  # ISO 3166-2 code after the country's dash ("CA" for US-CA), "" if none
    lat: np.ndarray  # float64, NaN when unknown
    lon: np.ndarray
    lookups: int  # database lookups actually made


@cache
def us_states() -> list[dict[str, str]]:
    """US states and territories: FIPS code, USPS code, name (shipped ``us-states.csv``)."""
    text = resources.files(__package__).joinpath("us-states.csv").read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@cache
def _us_state_code() -> dict[str, str]:
    return {r["name"].casefold(): r["code"] for r in us_states()}


def _fields(rec: object) -> tuple[str, str, float, float, str]:
    if not isinstance(rec, dict):
        return "", "", np.nan, np.nan, ""
    if "location" in rec or isinstance(rec.get("city"), dict):
        city = ((rec.get("city") or {}).get("names") or {}).get("en", "")
        country = (rec.get("country") or {}).get("iso_code", "")
        loc = rec.get("location") or {}
        subs = rec.get("subdivisions") or [{}]
        sub = subs[0].get("iso_code", "") if isinstance(subs[0], dict) else ""
        return city, country, loc.get("latitude", np.nan), loc.get("longitude", np.nan), sub or ""
    country = rec.get("country_code") or ""
    # ip-location-db's flat layout names the state; US names map to their USPS code
    state = _us_state_code().get((rec.get("state1") or "").casefold(), "") if country == "US" else ""
    return (
        rec.get("city") or "",
        country,
        rec.get("latitude", np.nan),
        rec.get("longitude", np.nan),
        state,
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
        found: list[tuple[str, str, float, float, str]] = [("", "", np.nan, np.nan, "")]
        which = np.zeros(n, np.int64)  # index into ``found``; 0 = nothing
        idx4 = np.flatnonzero(kind == V4)
        order = idx4[np.argsort(v4[idx4], kind="stable")]
        keys = v4[order].astype(np.int64).tolist()
        get = self._db.get_with_prefix_len
        shift = 96 if self.ip_version == 6 else 0
        j, m = 0, len(order)
        while j < m:
            rec, plen = get(texts[order[j]])
            found.append(_fields(rec))
            plen = max(plen - shift, 0) if plen >= shift else 32
            last = keys[j] | ((1 << (32 - plen)) - 1)
            k = max(bisect_right(keys, last, j), j + 1)
            which[order[j:k]] = len(found) - 1
            j = k
        if self.ip_version == 6:
            for i in np.flatnonzero(kind == 6):
                try:
                    found.append(_fields(self._db.get(texts[i])))
                except ValueError:
                    continue
                which[i] = len(found) - 1
        city = [f[0] for f in found]
        country = [f[1] for f in found]
        lat = np.array([f[2] for f in found], np.float64)
        lon = np.array([f[3] for f in found], np.float64)
        sub = [f[4] for f in found]
        w = which.tolist()
        return GeoResult([city[i] for i in w], [country[i] for i in w], [sub[i] for i in w],
                         lat[which], lon[which], len(found) - 1)
