"""The peer taxonomy: ordered rules (ASN, organisation regex, prefixes), first match wins.

Rules come from TOML. A user file is read before the shipped defaults so its rules win;
``replace_defaults = true`` drops the defaults. Classification runs over arrays of unique
addresses, one vectorised pass per rule.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ...errors import UsageError
from .addr import V4, V6

CATEGORIES = ("neocloud", "hyperscaler", "cdn", "isp_regional", "isp_tier1", "hosting", "other", "unknown")
CLOUDS = frozenset({"neocloud", "hyperscaler", "hosting"})
CATEGORY_LABELS = {
    "neocloud": "Neocloud",
    "hyperscaler": "Hyperscaler",
    "cdn": "CDN",
    "isp_regional": "ISP Regional",
    "isp_tier1": "ISP Tier1",
    "hosting": "Hosting",
    "other": "Other",
    "unknown": "Unknown",
}
# names older taxonomy files use: one ISP class (read as last mile) and "cloud" (hosting)
ALIASES = {"isp": "isp_regional", "cloud": "hosting"}


class TaxonomyError(UsageError):
    """A classification rules file (``--taxonomy``) that cannot be read or is wrong."""


@dataclass
class Rule:
    name: str
    category: str
    asns: frozenset[int] = frozenset()
    org: re.Pattern[str] | None = None
    prefixes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    source: str = ""
    origin: str = "defaults"

    def describe(self) -> str:
        return f"{self.name} -> {self.category} ({self.origin}; source: {self.source or 'n/a'})"


@dataclass
class Local:
    name: str = "local"
    category: str = "hosting"
    asns: frozenset[int] = frozenset()
    prefixes: tuple = ()


@dataclass
class Taxonomy:
    rules: list[Rule]
    local: Local = field(default_factory=Local)
    files: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, user_file: str | os.PathLike[str] | None = None) -> Taxonomy:
        """Shipped defaults, overridden by ``user_file`` when given."""
        default_text = resources.files(__package__).joinpath("defaults.toml").read_text()
        default = _parse(default_text, "defaults")
        if user_file is None:
            return cls(default[0], default[1] or Local(), ["defaults.toml"])
        path = Path(user_file)
        try:
            text = path.read_text()
        except OSError as e:
            raise TaxonomyError(f"cannot read taxonomy file {path}: {e.strerror}") from None
        user_rules, user_local, data = _parse(text, str(path), raw=True)
        rules = user_rules + ([] if data.get("replace_defaults") else default[0])
        files = [str(path)] + ([] if data.get("replace_defaults") else ["defaults.toml"])
        return cls(rules, user_local or default[1] or Local(), files)

    @property
    def curated_asns(self) -> int:
        return sum(len(r.asns) for r in self.rules)

    def is_local(self, kind: np.ndarray, v4: np.ndarray, v6: np.ndarray, asn: np.ndarray) -> np.ndarray:
        m = _in_prefixes(self.local.prefixes, kind, v4, v6)
        if self.local.asns:
            m |= np.isin(asn, np.fromiter(self.local.asns, np.uint32))
        return m

    def classify(
        self, kind: np.ndarray, v4: np.ndarray, v6: np.ndarray, asn: np.ndarray, org: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """-> (category per address, index of the matching rule or -1)."""
        n = len(kind)
        rule_idx = np.full(n, -1, np.int64)
        open_ = np.ones(n, bool)
        orgs = np.array(org, dtype=object)
        uorg, oinv = (np.unique(orgs, return_inverse=True) if n else (np.array([], object), np.zeros(0, int)))
        for ri, r in enumerate(self.rules):
            if not open_.any():
                break
            m = np.zeros(n, bool)
            if r.asns:
                m |= np.isin(asn, np.fromiter(r.asns, np.uint32)) & (asn != 0)
            if r.org is not None:
                hit = np.array([bool(s) and r.org.search(s) is not None for s in uorg], bool)
                m |= hit[oinv] if len(hit) else m
            if r.prefixes:
                m |= _in_prefixes(r.prefixes, kind, v4, v6)
            m &= open_
            rule_idx[m] = ri
            open_ &= ~m
        cats = np.array([r.category for r in self.rules] + [""], dtype=object)
        cat = cats[rule_idx]  # -1 picks the trailing ""
        cat = np.where(rule_idx >= 0, cat, np.where(asn != 0, "other", "unknown"))
        return cat, rule_idx


def _in_prefixes(prefixes, kind, v4, v6) -> np.ndarray:
    m = np.zeros(len(kind), bool)
    for p in prefixes:
        if p.version == 4:
            lo = int(p.network_address)
            hi = lo + p.num_addresses - 1
            m |= (kind == V4) & (v4 >= lo) & (v4 <= hi)
        else:
            plen = min(p.prefixlen, 64)
            lo = int(p.network_address) >> 64
            hi = lo | ((1 << (64 - plen)) - 1)
            m |= (kind == V6) & (v6 >= np.uint64(lo)) & (v6 <= np.uint64(hi))
    return m


def _parse(text: str, origin: str, raw: bool = False):
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TaxonomyError(f"taxonomy {origin}: {e}") from None
    rules = []
    for i, r in enumerate(data.get("rules", [])):
        where = f"taxonomy {origin}: rule {i + 1} ({r.get('name', '?')})"
        cat = ALIASES.get(r.get("category"), r.get("category"))
        if cat not in CATEGORIES or cat == "unknown":
            raise TaxonomyError(f"{where}: category must be one of {', '.join(CATEGORIES[:-1])}")
        if not any(k in r for k in ("asns", "org", "prefixes")):
            raise TaxonomyError(f"{where}: needs asns, org or prefixes")
        try:
            org = re.compile(r["org"], re.IGNORECASE) if r.get("org") else None
            prefixes = tuple(ipaddress.ip_network(p, strict=False) for p in r.get("prefixes", []))
            asns = frozenset(int(a) for a in r.get("asns", []))
        except (re.error, ValueError) as e:
            raise TaxonomyError(f"{where}: {e}") from None
        rules.append(Rule(r.get("name", f"rule {i + 1}"), cat, asns, org, prefixes, r.get("source", ""), origin))
    local = None
    if "local" in data:
        lt = data["local"]
        cat = ALIASES.get(lt.get("category", "hosting"), lt.get("category", "hosting"))
        if cat not in CATEGORIES:
            raise TaxonomyError(f"taxonomy {origin}: [local] category {cat!r} unknown")
        try:
            prefixes = tuple(ipaddress.ip_network(p, strict=False) for p in lt.get("prefixes", []))
        except ValueError as e:
            raise TaxonomyError(f"taxonomy {origin}: [local]: {e}") from None
        local = Local(lt.get("name", "local"), cat, frozenset(int(a) for a in lt.get("asns", [])), prefixes)
    return (rules, local, data) if raw else (rules, local)
