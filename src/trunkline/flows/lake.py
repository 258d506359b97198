"""The flow lake: where a flow store lives (a directory or an ``s3://`` prefix), as a
pyarrow filesystem, and the few things the store does on it (write, list, read, delete).

Why pyarrow's filesystems: Parquet, datasets and S3 come from one well-kept library, and
DuckDB scans an Arrow dataset directly (its httpfs extension would need a download, and
trunkline runs offline). Endpoints and credentials follow the mover's conventions
(``config.py``: ``s3://`` uses AWS_ENDPOINT_URL, the env keys, profiles; ``NAME:bucket``
a named endpoint), resolved through botocore's chain and handed to pyarrow.

Writers never coordinate: each file is written once under a name of its own (host, pid,
a random id), so collectors on many hosts can share a prefix. A PUT is atomic on S3 (the
file is written to memory, then sent in one go); a local file is written to a temp name
and renamed. Listings are hostile input: a key that is not one of ours, that escapes the
prefix, or that is not a readable Parquet file is skipped and counted, never read.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..config import (
    addressing_style,
    ca_bundle,
    endpoint_region,
    env_keys,
    no_credentials,
    resolve_endpoint,
)
from ..url import GLOB_CHARS, LocationError, parse_location

RAW = "raw"                    # the day partitions of flows: day=YYYY-MM-DD/
QUARANTINE = "quarantine"      # quarantine/ (not partitioned: its records' times are bad)
ROLLUP_PREFIX = "rollup="      # rollup=<level>/day=YYYY-MM-DD/
MIN_PARQUET_BYTES = 12         # "PAR1" + footer length + "PAR1": anything smaller is not one
_LEVEL = re.compile(r"[A-Za-z0-9_]{1,16}")
_DAY = re.compile(r"day=(\d{4}-\d{2}-\d{2})")
_NAME_SAFE = re.compile(r"[^A-Za-z0-9.-]+")
FOOTER_THREADS = 16            # concurrent footer reads (one ranged GET each on S3)
WRITE_THREADS = 8              # concurrent PUTs of one write's partitions on S3


# --- locations ---------------------------------------------------------------------

class Lake:
    """A store's filesystem and base path; ``location`` is what users typed (for messages).

    The S3 filesystem is made on first use, not at construction: ``flows collect
    --workers`` forks its workers after making the store, and the AWS SDK under pyarrow
    must not be initialised before a fork. Expiring credentials (roles, SSO) are renewed
    through botocore, and the filesystem remade when they change.
    """

    def __init__(self, location: str | os.PathLike[str]):
        self._fs: pafs.FileSystem | None = None
        self._keys: tuple | None = None
        self._creds = None
        if isinstance(location, os.PathLike):  # a Path is local, whatever its name
            self.local, self.base, self.location = True, os.path.abspath(location), \
                os.fspath(location)
            return
        loc = parse_location(str(location))
        if loc.is_local:
            self.local, self.base, self.location = True, os.path.abspath(loc.path), loc.path
            return
        key = loc.key.strip("/")
        if GLOB_CHARS.search(key) or any(p in ("", ".", "..") for p in key.split("/") if key):
            raise LocationError(f"a flow store is a plain prefix, not {str(location)!r}")
        self.local = False
        self.cfg = resolve_endpoint(loc.endpoint or "s3")
        self.base = f"{loc.bucket}/{key}" if key else loc.bucket
        self.location = str(location)

    def __repr__(self) -> str:  # never shows credentials
        return f"Lake({self.location!r})"

    @property
    def fs(self) -> pafs.FileSystem:
        if self.local:
            if self._fs is None:
                self._fs = pafs.LocalFileSystem()
            return self._fs
        keys = self._current_keys()
        if self._fs is None or keys != self._keys:
            self._fs, self._keys = _s3_filesystem(self.cfg, keys, self._region), keys
        return self._fs

    def _current_keys(self) -> tuple[str, str, str | None]:
        if self._creds is None:
            keys = env_keys(self.cfg)
            if keys is not None:
                self._creds, self._region = keys, endpoint_region(self.cfg, lambda: None)
                return keys
            import botocore.session

            session = botocore.session.Session(profile=self.cfg.profile)
            self._region = endpoint_region(self.cfg,
                                           lambda: session.get_config_variable("region"))
            self._creds = session.get_credentials()
            if self._creds is None:
                raise no_credentials(self.cfg)
        if isinstance(self._creds, tuple):
            return self._creds
        f = self._creds.get_frozen_credentials()  # botocore refreshes expiring ones here
        return f.access_key, f.secret_key, f.token

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` ('/'-separated, relative to the base)."""
        return f"{self.base}/{rel}" if rel else self.base


def _s3_filesystem(cfg, keys: tuple[str, str, str | None], region: str) -> pafs.S3FileSystem:
    kw: dict = {"access_key": keys[0], "secret_key": keys[1], "session_token": keys[2],
                "region": region, "allow_bucket_creation": False,
                "force_virtual_addressing": addressing_style(cfg) == "virtual"}
    if cfg.url:
        u = urlsplit(cfg.url)
        kw["scheme"] = u.scheme or "https"
        kw["endpoint_override"] = u.netloc + u.path.rstrip("/")
    ca = ca_bundle(cfg)
    if ca:
        kw["tls_ca_file_path"] = ca
    return pafs.S3FileSystem(**kw)


# --- writing -------------------------------------------------------------------------

def file_name() -> str:
    """A name no other writer can choose: UTC time, host, pid, a random id."""
    host = _NAME_SAFE.sub("-", socket.gethostname())[:48].strip("-.") or "host"
    t = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"flows-{t}-{host}-{os.getpid()}-{uuid.uuid4().hex[:16]}.parquet"


# Address text columns get no min/max statistics: no query prunes files by an address
# range, and they cost a little of every write (on a quiet machine 0.03 of 0.28 µs a
# record for the replay's records, nothing measurable for random addresses:
# bench/RESULTS.md). Times and counters keep theirs.
NO_STATISTICS = frozenset({"src_addr", "dst_addr", "peer"})


def _write_options(table: pa.Table) -> dict:
    """The one set of Parquet options for every file of the store."""
    return {"compression": "zstd",
            "write_statistics": [n for n in table.column_names if n not in NO_STATISTICS]}


def write_parquet(lake: Lake, rel_dir: str, table: pa.Table) -> str:
    """Write ``table`` as one new immutable file under ``rel_dir``; -> its path."""
    name = file_name()
    if lake.local:
        d = os.path.join(lake.base, *rel_dir.split("/")) if rel_dir else lake.base
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".{name}.tmp")
        try:
            pq.write_table(table, tmp, **_write_options(table))
            os.replace(tmp, os.path.join(d, name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return os.path.join(d, name)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **_write_options(table))
    data = buf.getvalue()
    path = lake.path(f"{rel_dir}/{name}" if rel_dir else name)
    with lake.fs.open_output_stream(path) as out:  # one PUT (or one multipart upload)
        out.write(data)
    return path


def write_many(lake: Lake, items: Iterable[tuple[str, pa.Table]],
               threads: int = WRITE_THREADS) -> list[str]:
    """``write_parquet`` of each (rel_dir, table); on S3 up to ``threads`` at once (a PUT
    is latency-bound: ~30 ms each on loopback under load), taking items from the iterator
    only as threads free up, so at most ``threads`` tables are in flight.

    All or none: when one write fails (a full disk), the files this call already wrote
    are deleted before the error is raised, so a batch is never half in the lake (its
    records are then counted lost once, not stored in part and counted lost whole)."""
    out: list[str] = []
    try:
        if lake.local or threads <= 1:
            for d, t in items:
                out.append(write_parquet(lake, d, t))
            return out
        pending: set = set()
        with ThreadPoolExecutor(threads) as pool:
            try:
                for d, t in items:
                    if len(pending) >= threads:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        _collect(done, out)
                    pending.add(pool.submit(write_parquet, lake, d, t))
            finally:   # every write in flight ends (and is kept track of) before cleaning up
                _collect(pending, out)
        return out
    except BaseException:
        try:
            delete_files(lake, out)
        except Exception:  # noqa: BLE001 - the write's error is the one to see
            pass
        raise


def _collect(futures, out: list[str]) -> None:
    """The paths of the writes in ``futures`` that succeeded, into ``out``; then the first
    failure, if any, raised."""
    failed = None
    for f in futures:
        try:
            out.append(f.result())
        except BaseException as e:  # noqa: BLE001 - raised below, after the rest are kept
            failed = failed or e
    if failed is not None:
        raise failed


# --- listing -------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One key under the base: ``level``/``day`` when it is a data file of ours, else the
    ``reason`` it is skipped ("" for our own non-data files: temp files, status)."""

    path: str
    rel: str
    size: int
    mtime: datetime | None
    level: str = ""
    day: date | None = None
    reason: str = ""

    @property
    def partition(self) -> str:
        """The directory holding it, relative to the base."""
        return self.rel.rpartition("/")[0]


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)

    def data(self, level: str = RAW) -> list[Entry]:
        return [e for e in self.entries if e.level == level]

    @property
    def skipped(self) -> Counter:
        return Counter(e.reason for e in self.entries if e.reason)

    def levels(self) -> set[str]:
        return {e.level for e in self.entries if e.level}


def classify(rel: str) -> tuple[str, date | None] | str | None:
    """What a key (relative to the base) is: (level, day) for a data file, None for our
    own non-data files, else the reason to skip it. Pure: the listing is hostile input."""
    if not rel or "\x00" in rel or "\\" in rel:
        return "unsafe"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "unsafe"
    name = parts[-1]
    if len(parts) == 1 and name.startswith("_collector_status") and name.endswith(".json"):
        return None
    if name.startswith(".") and name.endswith(".tmp"):
        return None  # a local writer's file in flight
    if not name.endswith(".parquet") or name.startswith("."):
        return "foreign"
    if len(parts) == 2 and parts[0] == QUARANTINE:
        return QUARANTINE, None
    if len(parts) == 2:
        return _level_day(RAW, parts[0])
    if len(parts) == 3 and parts[0].startswith(ROLLUP_PREFIX) and \
            _LEVEL.fullmatch(parts[0][len(ROLLUP_PREFIX):]) and \
            parts[0][len(ROLLUP_PREFIX):] not in (RAW, QUARANTINE):
        return _level_day(parts[0][len(ROLLUP_PREFIX):], parts[1])
    return "foreign"


def _level_day(level: str, part: str) -> tuple[str, date] | str:
    m = _DAY.fullmatch(part)
    if not m:
        return "foreign"
    try:
        return level, date.fromisoformat(m.group(1))
    except ValueError:
        return "bad_day"


def list_lake(lake: Lake) -> Listing:
    """Every key under the base, classified (one recursive listing)."""
    out = Listing()
    for p, size, mtime in (_walk_local(lake.base) if lake.local else _walk_remote(lake)):
        rel = p[len(lake.base) + 1:] if p.startswith(lake.base + "/") else ""
        kind = classify(rel)
        if isinstance(kind, tuple) and size < MIN_PARQUET_BYTES:
            kind = "too_small"
        if isinstance(kind, tuple):
            out.entries.append(Entry(p, rel, size, mtime, kind[0], kind[1]))
        else:
            out.entries.append(Entry(p, rel, size, mtime, reason=kind or ""))
    return out


def _walk_local(base: str):
    """(path, size, mtime) of every file under ``base``; a file that vanishes while we
    look (a writer's temp file renamed) is simply not there."""
    for d, _dirs, names in os.walk(base):
        for n in names:
            p = os.path.join(d, n)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield p, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)


def _walk_remote(lake: Lake):
    sel = pafs.FileSelector(lake.base, recursive=True, allow_not_found=True)
    for info in lake.fs.get_file_info(sel):
        if info.type == pafs.FileType.File:
            mtime = info.mtime
            if mtime is not None and mtime.tzinfo is None:
                mtime = mtime.replace(tzinfo=UTC)
            yield info.path, info.size or 0, mtime


# --- reading -------------------------------------------------------------------------

def open_fragments(lake: Lake, entries: Sequence[Entry], schema: pa.Schema | None = None
                   ) -> tuple[list[ds.ParquetFileFragment], Counter]:
    """Read each file's footer (concurrently): -> (readable fragments, skipped by reason).

    A file that is not Parquet ("unreadable") or whose columns have other types than
    ``schema``'s ("schema") would fail the whole scan later; here it fails only itself.
    """
    fmt = ds.ParquetFileFormat()
    fs = lake.fs

    def one(e: Entry):
        try:
            # the listing's size spares a HEAD per file on S3
            frag = fmt.make_fragment(e.path, filesystem=fs, file_size=e.size or None)
            frag.ensure_complete_metadata()
            if schema is not None:
                phys = frag.physical_schema
                for f in phys:
                    i = schema.get_field_index(f.name)
                    if i >= 0 and not schema.field(i).type.equals(f.type):
                        return "schema"
            return frag
        except (OSError, pa.ArrowInvalid):
            return "unreadable"

    skipped: Counter = Counter()
    frags: list[ds.ParquetFileFragment] = []
    if not entries:
        return frags, skipped
    with ThreadPoolExecutor(min(FOOTER_THREADS, len(entries))) as pool:
        for r in pool.map(one, entries):
            if isinstance(r, str):
                skipped[r] += 1
            else:
                frags.append(r)
    return frags, skipped


def register_view(con: duckdb.DuckDBPyConnection, name: str, lake: Lake,
                  frags: Sequence[ds.ParquetFileFragment], schema: pa.Schema | None = None,
                  ) -> None:
    """A DuckDB view ``name`` over the files: ``read_parquet`` of the list on a local
    store (DuckDB's own reader, fastest), an Arrow dataset on a remote one (DuckDB pushes
    projections and filters into it). Empty: a view of ``schema`` with no rows."""
    if not frags:
        empty = (schema or pa.schema([])).empty_table()
        con.register(f"_{name}_empty", empty)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}_empty")
        return
    if lake.local:
        files = ", ".join("'" + f.path.replace("'", "''") + "'" for f in frags)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM "
                    f"read_parquet([{files}], union_by_name = true)")
        return
    if schema is None:
        schema = pa.unify_schemas([f.physical_schema for f in frags])
    dataset = ds.FileSystemDataset(list(frags), schema, ds.ParquetFileFormat(), lake.fs)
    con.register(f"_{name}_dataset", dataset)
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}_dataset")


def read_table(lake: Lake, frags: Sequence[ds.ParquetFileFragment]) -> pa.Table:
    """All rows of the files, columns united by name."""
    if not frags:
        return pa.table({})
    return pa.concat_tables([f.to_table() for f in frags], promote_options="default")


# --- deleting ------------------------------------------------------------------------

def delete_files(lake: Lake, paths: Iterable[str], threads: int = 8) -> int:
    """Delete files (concurrently on S3); -> how many. A file gone already counts as
    deleted (another gc got there first)."""
    fs = lake.fs

    def one(p: str) -> int:
        try:
            fs.delete_file(p)
        except FileNotFoundError:
            pass
        return 1

    paths = list(paths)
    if not paths:
        return 0
    with ThreadPoolExecutor(min(threads, len(paths))) as pool:
        return sum(pool.map(one, paths))


def remove_dir_if_empty(lake: Lake, rel_dir: str) -> bool:
    """Remove a partition's directory (a local dir, or S3 directory markers) once nothing
    is left in it; a directory still holding anything is kept."""
    path = lake.path(rel_dir)
    left = lake.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    if any(i.type == pafs.FileType.File for i in left):
        return False
    try:
        lake.fs.delete_dir(path)
    except FileNotFoundError:
        pass
    return True
