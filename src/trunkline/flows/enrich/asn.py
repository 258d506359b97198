"""IP -> AS number and organisation.

Two sources: the ip-location-db range tables (CSV: range start, range end, ASN,
organisation; gzip allowed) searched with ``numpy.searchsorted`` over range starts, and
MaxMind-format ASN databases read with ``maxminddb``. Both answer for arrays of parsed
addresses (see ``addr.parse``), so callers look up each unique address once.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .addr import V4, V6, parse_v4


@dataclass
class AsnResult:
    asn: np.ndarray  # uint32, 0 = not found
    org: list[str]  # "" when not found


class _Ranges:
    """Sorted, non-overlapping [start, end] ranges with an ASN and an org index each."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray, asns: np.ndarray, orgs: np.ndarray):
        order = np.argsort(starts, kind="stable")
        self.starts, self.ends = starts[order], ends[order]
        self.asns, self.orgs = asns[order], orgs[order]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (asn, org index or -1) for each key."""
        if len(self.starts) == 0:
            return np.zeros(len(keys), np.uint32), np.full(len(keys), -1, np.int64)
        i = np.searchsorted(self.starts, keys, side="right") - 1
        ok = i >= 0
        ic = np.where(ok, i, 0)
        ok &= keys <= self.ends[ic]
        return np.where(ok, self.asns[ic], 0).astype(np.uint32), np.where(ok, self.orgs[ic], -1)


def _read_csv(path: Path) -> pa.Table:
    opts = pacsv.ReadOptions(column_names=["start", "end", "asn", "org"])
    conv = pacsv.ConvertOptions(
        column_types={"start": pa.string(), "end": pa.string(), "asn": pa.uint32(), "org": pa.string()}
    )
    return pacsv.read_csv(path, read_options=opts, convert_options=conv)


class AsnRanges:
    """IP -> (ASN, organisation) from ip-location-db style range CSVs (IPv4 and/or IPv6)."""

    def __init__(self, paths: list[str | os.PathLike[str]]):
        self.paths = [Path(p) for p in paths]
        org_names: dict[str, int] = {}
        v4parts, v6parts = [], []
        for p in self.paths:
            if not p.exists():
                raise FileNotFoundError(f"ASN table not found: {p}")
            t = _read_csv(p)
            t = t.filter(pc.is_valid(t.column("asn")))
            enc = pc.dictionary_encode(pc.fill_null(t.column("org"), "")).combine_chunks()
            local = np.array(
                [org_names.setdefault(s, len(org_names)) for s in enc.dictionary.to_pylist()],
                np.int64,
            )
            org_idx = local[enc.indices.to_numpy()] if len(local) else np.zeros(0, np.int64)
            asns = t.column("asn").to_numpy()
            starts = t.column("start").combine_chunks()
            is6 = pc.match_substring(starts, ":").to_numpy(zero_copy_only=False)
            if (~is6).any():
                sel = pa.array(np.flatnonzero(~is6))
                v4parts.append((
                    parse_v4(starts.take(sel)), parse_v4(t.column("end").combine_chunks().take(sel)),
                    asns[~is6], org_idx[~is6],
                ))
            if is6.any():
                idx = np.flatnonzero(is6)
                s6 = starts.take(pa.array(idx)).to_pylist()
                e6 = t.column("end").combine_chunks().take(pa.array(idx)).to_pylist()
                v6parts.append((
                    np.array([int(ipaddress.IPv6Address(s)) >> 64 for s in s6], np.uint64),
                    np.array([int(ipaddress.IPv6Address(e)) >> 64 for e in e6], np.uint64),
                    asns[is6], org_idx[is6],
                ))
        self.org_names = np.array(list(org_names), dtype=object)
        self.v4 = _Ranges(*_concat(v4parts, np.uint32))
        self.v6 = _Ranges(*_concat(v6parts, np.uint64))

    def __len__(self) -> int:
        return len(self.v4.starts) + len(self.v6.starts)

    def lookup(self, kind: np.ndarray, v4: np.ndarray, v6: np.ndarray) -> AsnResult:
        asn = np.zeros(len(kind), np.uint32)
        org = np.full(len(kind), -1, np.int64)
        for k, table, keys in ((V4, self.v4, v4), (V6, self.v6, v6)):
            m = kind == k
            if m.any():
                asn[m], org[m] = table.lookup(keys[m])
        names = np.where(org >= 0, self.org_names[np.where(org >= 0, org, 0)] if len(self.org_names) else "", "")
        return AsnResult(asn, names.tolist())

    def ranges_of(self, asn: int) -> list[tuple[int, int]]:
        """IPv4 ranges announced by ``asn`` (the simulator draws real addresses from them)."""
        m = self.v4.asns == asn
        return list(zip(self.v4.starts[m].tolist(), self.v4.ends[m].tolist(), strict=True))

    def org_of(self, asn: int) -> str:
        for t in (self.v4, self.v6):
            m = np.flatnonzero(t.asns == asn)
            if len(m):
                return str(self.org_names[t.orgs[m[0]]])
        return ""


def _concat(parts: list, dtype) -> tuple[np.ndarray, ...]:
    if not parts:
        return (np.zeros(0, dtype), np.zeros(0, dtype), np.zeros(0, np.uint32), np.zeros(0, np.int64))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))


class MmdbAsn:
    """IP -> (ASN, organisation) from a MaxMind-format ASN database (GeoLite2-ASN,
    ip-location-db asn mmdb). One lookup per address given; callers pass unique ones."""

    def __init__(self, path: str | os.PathLike[str]):
        import maxminddb

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"ASN database not found: {self.path}")
        self._db = maxminddb.open_database(str(self.path))

    def lookup_text(self, texts: list[str]) -> AsnResult:
        asn = np.zeros(len(texts), np.uint32)
        org = [""] * len(texts)
        for i, t in enumerate(texts):
            try:
                rec = self._db.get(t)
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                asn[i] = int(rec.get("autonomous_system_number") or 0)
                org[i] = str(rec.get("autonomous_system_organization") or "")
        return AsnResult(asn, org)
