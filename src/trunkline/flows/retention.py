"""Retention per level: ``flows gc --keep raw=14d,5m=180d,1h=forever``.

Raw flows are large and short-lived, rollups small and long-lived (as in Akvorado's
tables with their own TTL), so each level of the store keeps its own window. A level is a
directory name (``day=...`` at the top is ``raw``; ``rollup=<level>/day=...`` is
``<level>``), so a new rollup level needs no code here. Whole day partitions go: day D
is deleted once all of it is older than the window, i.e. ``D + 1 day <= now - window``.
A monthly level (its name ends in ``_1mo``, e.g. ``peers_1mo``) keeps a month in the
partition of its first day, so that partition goes once the whole month is older; a
quarterly one (``_1q``, ``elephants_1q``) likewise its quarter.
The quarantine (records whose times are not sane, so no day to go by) is aged by when
each file was written (its mtime, S3's LastModified).

Relative to *now* (UTC), not to the newest day in the store: the newest day is written
by exporters, and one record with a forged future time (its export header forged with
it, so it passes the time window) would make every real day look old and wipe the lake.
The clock of the host running gc is the one trusted input; ``now`` can be given for a
replay of old data, and ``--dry-run`` shows what would go.

The plan is pure (entries and a clock in, what to delete out); ``gc`` does the I/O.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..units import parse_duration
from . import lake as lk

FOREVER = None
_FOREVER_WORDS = ("forever", "inf", "never")
MONTHLY_SUFFIX = "_1mo"  # levels whose partitions hold a month (flows.rollup.MONTHLY)
QUARTERLY_SUFFIX = "_1q"  # ... a quarter (flows.elephant_table.LEVEL)
_KEY = re.compile(r"[A-Za-z0-9_]{1,16}")


def parse_keep(spec: str) -> dict[str, timedelta | None]:
    """``raw=14d,5m=180d,1h=forever,quarantine=30d`` -> {level: window (None: forever)}."""
    out: dict[str, timedelta | None] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        level, sep, value = item.partition("=")
        level, value = level.strip(), value.strip()
        if not sep or not _KEY.fullmatch(level) or not value:
            raise ValueError(f"--keep {item!r}: expected LEVEL=DURATION (raw=14d, 5m=180d, "
                             f"1h=forever, quarantine=30d)")
        if level in out:
            raise ValueError(f"--keep names {level!r} twice")
        if value.lower() in _FOREVER_WORDS:
            out[level] = FOREVER
            continue
        seconds = parse_duration(value)
        if seconds < 0:
            raise ValueError(f"--keep {item!r}: a window cannot be negative")
        out[level] = timedelta(seconds=seconds)
    if not out:
        raise ValueError("--keep: name at least one level (raw=14d, ...)")
    return out


@dataclass
class LevelPlan:
    """What gc does to one level."""

    level: str
    window: timedelta | None          # None: forever (or no rule: kept)
    rule: bool                        # the level was named in --keep
    delete: list[lk.Entry] = field(default_factory=list)
    keep_files: int = 0
    partitions_deleted: list[str] = field(default_factory=list)   # rel dirs
    oldest_kept: str | None = None

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.delete)

    def as_dict(self) -> dict:
        return {"level": self.level,
                "keep": ("forever" if self.window is None else
                         f"{self.window.total_seconds() / 86400:g}d") if self.rule else None,
                "files_deleted": len(self.delete), "bytes_deleted": self.bytes,
                "partitions_deleted": len(self.partitions_deleted),
                "files_kept": self.keep_files, "oldest_kept": self.oldest_kept}


def plan(listing: lk.Listing, keep: dict[str, timedelta | None], now: datetime
         ) -> dict[str, LevelPlan]:
    """Per level found in the store (and per level named): what to delete. Pure."""
    if now.tzinfo is None:
        raise ValueError("gc's clock must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    levels = listing.levels() | set(keep)
    out: dict[str, LevelPlan] = {}
    for level in sorted(levels):
        window = keep.get(level)
        lp = out[level] = LevelPlan(level, window, level in keep)
        entries = listing.data(level)
        if level == lk.QUARANTINE:
            for e in entries:
                if window is not None and e.mtime is not None and e.mtime <= now - window:
                    lp.delete.append(e)
                else:
                    lp.keep_files += 1
            continue
        by_day: dict = defaultdict(list)
        for e in entries:
            by_day[e.day].append(e)
        kept_days = []
        months = 1 if level.endswith(MONTHLY_SUFFIX) else 3 if level.endswith(QUARTERLY_SUFFIX) else 0
        for day, files in sorted(by_day.items()):
            end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
            if months:  # the partition holds the month (quarter) that starts on its day
                m = day.month - 1 + months
                end = datetime(day.year + m // 12, m % 12 + 1, 1, tzinfo=UTC)
            if window is not None and end <= now - window:
                lp.delete.extend(files)
                lp.partitions_deleted.append(files[0].partition)
            else:
                lp.keep_files += len(files)
                kept_days.append(day)
        lp.oldest_kept = kept_days[0].isoformat() if kept_days else None
    return out


@dataclass
class GcResult:
    now: datetime
    dry_run: bool
    levels: dict[str, LevelPlan]
    skipped: dict[str, int]           # keys that are not ours: never deleted, counted

    def as_dict(self) -> dict:
        return {"now": self.now.isoformat(), "dry_run": self.dry_run,
                "levels": [lp.as_dict() for lp in self.levels.values()],
                "files_deleted": sum(len(lp.delete) for lp in self.levels.values()),
                "bytes_deleted": sum(lp.bytes for lp in self.levels.values()),
                "skipped_keys": self.skipped}


def gc(store, keep: dict[str, timedelta | None], *, now: datetime | None = None,
       dry_run: bool = False) -> GcResult:
    """Apply the retention ``keep`` to a ``FlowStore`` (or just plan it, ``dry_run``).

    Only our own data files are deleted; a key that is not ours is left where it is and
    counted, and a partition directory is removed only once nothing is left in it.
    """
    now = now or datetime.now(UTC)
    listing = store.listing()
    levels = plan(listing, keep, now)
    if not dry_run:
        for lp in levels.values():
            lk.delete_files(store.lake, [e.path for e in lp.delete])
            for rel in lp.partitions_deleted:
                lk.remove_dir_if_empty(store.lake, rel)
    return GcResult(now, dry_run, levels, dict(listing.skipped))
