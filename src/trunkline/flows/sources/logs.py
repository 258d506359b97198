"""Flow logs: CSV or Parquet files with a column mapping, and nfdump's CSV output.

A mapping names, for each schema column, the log's column (``{"src_addr": "srcaddr"}``).
Times may be epoch seconds, epoch milliseconds (numbers) or text timestamps.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ...errors import DataError
from ..schema import FLOW_SCHEMA, conform

NFDUMP_MAPPING = {
    "time_start": "ts", "time_end": "te", "src_addr": "sa", "dst_addr": "da",
    "src_port": "sp", "dst_port": "dp", "proto": "pr", "packets": "ipkt", "bytes": "ibyt",
    "in_if": "in", "out_if": "out", "src_as": "sas", "dst_as": "das", "exporter": "ra",
}
NFDUMP_PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58, "GRE": 47, "ESP": 50,
                "SCTP": 132, "IPv6": 41, "IPIP": 4}


def _times(col: pa.ChunkedArray) -> pa.Array:
    """Epoch seconds / milliseconds, or 'YYYY-MM-DD[ T]HH:MM:SS[.fff]' text, to ms UTC."""
    t = pa.timestamp("ms", tz="UTC")
    if pa.types.is_timestamp(col.type):
        return col.cast(t)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return _epoch_ms(col.cast(pa.float64())).cast(t)
    s = pc.utf8_trim_whitespace(col.cast(pa.string()))
    # a column of epoch numbers that the CSV reader took as text (one row was not a
    # number): the numbers are still read as numbers
    numeric = pc.fill_null(pc.match_substring_regex(s, r"^[0-9]+(\.[0-9]+)?$"), False)
    if pc.any(numeric).as_py():
        nums = _epoch_ms(pc.cast(pc.if_else(numeric, s, None), pa.float64()))
        return pc.if_else(numeric, nums, _text_ms(s)).cast(t)
    return _text_ms(s).cast(t)


def _epoch_ms(v) -> pa.Array:
    """Epoch seconds, or milliseconds when the largest value is past 1e11, as int64 ms."""
    top = pc.max(v).as_py() or 0
    ms = v if top > 1e11 else pc.multiply(v, 1000.0)  # epoch ms rather than seconds
    return pc.cast(pc.round(ms), pa.int64())


def _text_ms(s) -> pa.Array:
    """'YYYY-MM-DD[ T]HH:MM:SS[.fff]' text as int64 ms (UTC); null where it is not."""
    base = pc.replace_substring(pc.utf8_slice_codeunits(s, 0, 19), "T", " ")
    secs = pc.strptime(base, "%Y-%m-%d %H:%M:%S", "ms", error_is_null=True)
    frac = pc.utf8_slice_codeunits(s, 20, 23)
    frac = pc.if_else(pc.equal(pc.utf8_length(frac), 0), "0",
                      pc.utf8_rpad(frac, 3, "0"))
    ms = pc.cast(frac, pa.int64(), safe=False)
    return pc.add(pc.cast(secs, pa.int64()), ms)


def apply_mapping(table: pa.Table, mapping: dict[str, str] | None, flow_type: str,
                  exporter: str | None = None) -> pa.Table:
    mapping = mapping or {}
    cols: dict[str, pa.ChunkedArray] = {}
    for f in FLOW_SCHEMA:
        src = mapping.get(f.name, f.name)
        if src in table.column_names:
            cols[f.name] = table.column(src)
    if "time_start" not in cols:
        raise ValueError("flow log has no start time column (map one with time_start=COLUMN)")
    for k in ("time_start", "time_end"):
        if k in cols:
            raw = cols[k]
            try:
                cols[k] = _times(raw)
            except pa.ArrowInvalid as e:
                raise DataError(f"column {mapping.get(k, k)}: {e}") from None
            _no_missing_times(k, mapping.get(k, k), raw, cols[k])
    cols.setdefault("time_end", cols["time_start"])
    n = table.num_rows
    cols["flow_type"] = pa.array([flow_type] * n, pa.string())
    if "sampling_rate" not in cols:
        cols["sampling_rate"] = pa.array([1] * n, pa.uint32())
    if exporter is not None and "exporter" not in cols:
        cols["exporter"] = pa.array([exporter] * n, pa.string())
    for f in FLOW_SCHEMA:
        if f.name not in cols:
            continue
        try:   # each column as the schema holds it: a value it cannot hold names itself
            cols[f.name] = cols[f.name].cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(f"column {mapping.get(f.name, f.name)} ({f.name}, "
                            f"{f.type}): {e}") from None
    return conform(pa.table(cols))


def _no_missing_times(name: str, shown: str, raw: pa.ChunkedArray, got: pa.Array) -> None:
    """A row whose time could not be read (empty, or text of no known layout) cannot be
    placed in a day: the file is refused, naming the first such row (1 = the first data
    row), rather than stored with a time that is not its own."""
    missing = got.null_count
    if not missing:
        return
    first = pc.index(pc.is_null(got), True).as_py()
    raise DataError(f"column {shown}: {missing} rows without a time this reader knows "
                    f"(first: row {first + 1}, {raw[first].as_py()!r}; epoch seconds or "
                    "ms, or YYYY-MM-DD HH:MM:SS[.fff] with an optional zone)")


def read_flow_log(path: str | Path, mapping: dict[str, str] | None = None) -> pa.Table:
    """A CSV or Parquet flow log, mapped onto FLOW_SCHEMA (``flow_type`` = 'log').
    ``DataError`` naming the file (and column) when a value does not fit the schema."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path)
        return apply_mapping(table, mapping, "log", exporter=path.name)
    except (DataError, pa.ArrowInvalid) as e:
        raise DataError(f"{path}: {e}") from None


def is_nfdump_csv(path: str | Path) -> bool:
    with open(path, "rb") as f:
        head = f.readline()
    return head.startswith(b"ts,te,td,sa,da,sp,dp,pr")


def read_nfdump_csv(path: str | Path) -> pa.Table:
    """``nfdump -o csv`` output (1.6 and 1.7 layouts; the trailing Summary is ignored)."""
    lines = Path(path).read_bytes().splitlines()
    header = lines[0]
    body = [ln for ln in lines[1:] if ln and ln[:1].isdigit() and ln.count(b",") >= 10]
    text = b"\n".join([header, *body]) + b"\n"
    opts = pacsv.ConvertOptions(column_types={"pr": pa.string(), "sa": pa.string(),
                                              "da": pa.string(), "ra": pa.string()})
    table = pacsv.read_csv(pa.BufferReader(text), convert_options=opts)
    if table.num_rows:
        pr = table.column("pr").to_pylist()
        vals = [int(p) if p and p.isdigit() else NFDUMP_PROTO.get((p or "").strip(), 0)
                for p in pr]
        table = table.set_column(table.column_names.index("pr"), "pr", pa.array(vals, pa.uint8()))
    return apply_mapping(table, NFDUMP_MAPPING, "log")
