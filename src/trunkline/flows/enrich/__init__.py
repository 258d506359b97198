"""Enrichment: address -> ASN, organisation, category (taxonomy), city, metro.

``Enricher.endpoints(addresses)`` answers for the unique addresses given, as an Arrow
table; the report joins it back onto the flows in DuckDB, so each address is looked up
once however many flows carry it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import UsageError
from .addr import parse
from .asn import AsnRanges, MmdbAsn
from .geo import GeoDb
from .metro import NO_METRO, MetroIndex, load_metros
from .taxonomy import CATEGORIES, CLOUDS, Taxonomy, TaxonomyError

__all__ = [
    "CATEGORIES", "CLOUDS", "NO_METRO", "Enricher", "Taxonomy", "TaxonomyError", "find_data_dir",
]

ENDPOINT_SCHEMA = pa.schema([
    ("addr", pa.string()), ("asn", pa.uint32()), ("org", pa.string()),
    ("category", pa.string()), ("rule", pa.string()), ("is_local", pa.bool_()),
    ("metro", pa.string()), ("city", pa.string()), ("country", pa.string()),
    ("subdivision", pa.string()),
    ("lat", pa.float64()), ("lon", pa.float64()),
])


def find_data_dir() -> Path | None:
    """Enrichment data: $TRUNKLINE_ENRICH_DATA, else ./shared/data/enrich or ../shared/..."""
    env = os.environ.get("TRUNKLINE_ENRICH_DATA")
    cands = [Path(env)] if env else []
    cands += [Path.cwd() / "shared/data/enrich", Path.cwd().parent / "shared/data/enrich",
              Path(__file__).resolve().parents[5] / "shared/data/enrich"]
    return next((c for c in cands if (c / "ip-asn").is_dir() or (c / "geo").is_dir()), None)


@dataclass
class EnrichStats:
    addresses: int = 0
    geo_lookups: int = 0
    seconds: float = 0.0


class Enricher:
    def __init__(self, asn: AsnRanges | MmdbAsn | None, geo: GeoDb | None,
                 taxonomy: Taxonomy | None = None, metros: MetroIndex | None = None):
        self.asn, self.geo = asn, geo
        self.taxonomy = taxonomy or Taxonomy.load()
        self.metros = metros or MetroIndex()
        self.stats = EnrichStats()

    @classmethod
    def from_dir(cls, data_dir: str | os.PathLike[str] | None = None, *,
                 taxonomy_file: str | os.PathLike[str] | None = None,
                 metros_file: str | os.PathLike[str] | None = None,
                 asn_mmdb: str | os.PathLike[str] | None = None) -> Enricher:
        d = Path(data_dir) if data_dir else find_data_dir()
        if d is None:
            raise FileNotFoundError(
                "enrichment data not found: pass --enrich-data DIR or set TRUNKLINE_ENRICH_DATA "
                "(docs/flows-report.md says how to fetch it)")
        if asn_mmdb:
            asn = MmdbAsn(asn_mmdb)
        else:
            csvs = [p for v in (4, 6) for p in sorted((d / "ip-asn").glob(f"asn-ipv{v}.csv*"))[:1]]
            asn = AsnRanges(csvs) if csvs else None
        mmdbs = sorted((d / "geo").glob("*.mmdb"))
        geo = GeoDb(mmdbs[0]) if mmdbs else None
        return cls(asn, geo, Taxonomy.load(taxonomy_file),
                   MetroIndex(load_metros(metros_file)))

    def sources(self) -> dict[str, str]:
        return {
            "asn": ", ".join(p.name for p in getattr(self.asn, "paths", []))
            or str(getattr(self.asn, "path", "none")),
            "geo": str(self.geo.path.name) if self.geo else "none",
            "taxonomy": ", ".join(self.taxonomy.files),
            "metros": f"{len({m.name for m in self.metros.metros})} metros",
        }

    def endpoints(self, addrs: pa.Array | pa.ChunkedArray | list[str]) -> pa.Table:
        """One row per unique non-null address: ASN, org, category, rule, metro..."""
        t0 = time.perf_counter()
        arr = pa.array(addrs, pa.string()) if isinstance(addrs, list) else addrs
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = pc.unique(arr.filter(pc.is_valid(arr))) if len(arr) else arr
        texts = arr.to_pylist()
        kind, v4, v6 = parse(arr)
        n = len(texts)
        if isinstance(self.asn, AsnRanges):
            r = self.asn.lookup(kind, v4, v6)
        elif isinstance(self.asn, MmdbAsn):
            r = self.asn.lookup_text(texts)
        else:
            r = None
        asn = r.asn if r else np.zeros(n, np.uint32)
        org = r.org if r else [""] * n
        cat, ridx = self.taxonomy.classify(kind, v4, v6, asn, org)
        local = self.taxonomy.is_local(kind, v4, v6, asn)
        names = np.array([ru.name for ru in self.taxonomy.rules] + ["no rule"], dtype=object)
        rule = names[ridx]
        cat = np.where(local, self.taxonomy.local.category, cat)
        rule = np.where(local, f"local: {self.taxonomy.local.name}", rule)
        if self.geo is not None:
            g = self.geo.lookup(kind, v4, texts)
            city, country, sub, lat, lon, nlook = g.city, g.country, g.subdivision, g.lat, g.lon, g.lookups
        else:
            city, country, sub = [""] * n, [""] * n, [""] * n
            lat, lon, nlook = np.full(n, np.nan), np.full(n, np.nan), 0
        metro = self.metros.assign(lat, lon, city)
        self.stats.addresses += n
        self.stats.geo_lookups += nlook
        self.stats.seconds += time.perf_counter() - t0
        return pa.Table.from_arrays([
            arr, pa.array(asn, pa.uint32()), pa.array(org, pa.string()),
            pa.array(cat.tolist(), pa.string()), pa.array(rule.tolist(), pa.string()),
            pa.array(local), pa.array(metro, pa.string()), pa.array(city, pa.string()),
            pa.array(country, pa.string()), pa.array(sub, pa.string()), pa.array(lat, pa.float64(), from_pandas=True),
            pa.array(lon, pa.float64(), from_pandas=True),
        ], schema=ENDPOINT_SCHEMA)

    def explain(self, query: str) -> dict:
        """Why an address or ASN lands in its category (for ``flows classify``)."""
        q = query.strip()
        as_text = q.upper().removeprefix("AS")
        if as_text.isdigit():
            asn = int(as_text)
            org = self.asn.org_of(asn) if isinstance(self.asn, AsnRanges) else ""
            z = np.zeros(1, np.uint32)
            cat, ridx = self.taxonomy.classify(np.zeros(1, np.uint8), z, z.astype(np.uint64),
                                               np.array([asn], np.uint32), [org])
            out = {"query": q, "asn": asn, "org": org}
        else:
            row = self.endpoints([q]).to_pylist()
            if not row:
                raise UsageError(f"not an IP address or ASN: {q}")
            r = row[0]
            kind, _, _ = parse([q])
            if kind[0] == 0:
                raise UsageError(f"not an IP address or ASN: {q}")
            out = {"query": q, **{k: r[k] for k in ("asn", "org", "city", "country", "lat", "lon", "metro")}}
            out["is_local"] = r["is_local"]
            if r["is_local"]:
                out.update(category=r["category"], rule=r["rule"], rule_source="[local] table")
                return out
            z = np.zeros(1, np.uint32)
            k, v4, v6 = parse([q])
            cat, ridx = self.taxonomy.classify(k, v4, v6, np.array([r["asn"]], np.uint32), [r["org"]])
        i = int(ridx[0])
        out["category"] = str(cat[0])
        if i >= 0:
            ru = self.taxonomy.rules[i]
            out.update(rule=ru.name, rule_source=ru.source, rule_origin=ru.origin)
        else:
            out.update(rule="no rule matched",
                       rule_source="ASN known, no rule -> other" if out.get("asn") else "no ASN -> unknown")
        return out
