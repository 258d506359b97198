"""flows collect | ingest | sql | status: parse flags, call the flow sources, print."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading

import click

from ..text import safe
from .exits import fail as _fail
from .exits import guarded
from .flows_common import STORE_HELP, STORE_METAVAR, StoreLocation, open_store, warn_skipped


def _hostport(spec: str) -> tuple[str, int]:
    from ..flows.sources.collector import parse_listen

    try:
        return parse_listen(spec)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def rollup_options(f, default: bool | None = None):
    what = ("default: on when enrichment data is found" if default is None else
            "default: off: they cost the receive path CPU (bench/RESULTS.md); `flows rollup` "
            "adds them later")
    opts = [
        click.option("--rollups/--no-rollups", "rollups", default=default,
                     help=f"Write rollups beside each batch (what the report reads); {what}."),
        click.option("--enrich-data", type=click.Path(file_okay=False), default=None,
                     help="Enrichment data for the rollups (default: $TRUNKLINE_ENRICH_DATA or "
                          "../shared/data/enrich)."),
        click.option("--taxonomy", type=click.Path(dir_okay=False), default=None,
                     help="TOML rules for the rollups' categories (use the report's)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _rollups(flag: bool | None, enrich_data, taxonomy, debug: bool):
    """The store's rollup writer, or None (``--no-rollups``, or no enrichment data found
    when not asked for explicitly: the report then scans raw flows)."""
    from ..flows.enrich import Enricher, find_data_dir
    from ..flows.rollup import Rollups

    if flag is False:
        return None
    if enrich_data is None and find_data_dir() is None:
        if flag:
            _fail(debug, 2, FileNotFoundError("--rollups needs enrichment data: --enrich-data DIR"))
        click.echo("trunkline: no enrichment data found: no rollups written (the report scans "
                   "raw flows; `trunkline flows rollup` adds them later)", err=True)
        return None
    try:
        return Rollups(Enricher.from_dir(enrich_data, taxonomy_file=taxonomy))
    except (ValueError, KeyError) as e:
        _fail(debug, 2, e)
    except OSError as e:
        _fail(debug, 1, e)


@click.command()
@click.option("--listen", "listens", multiple=True, required=True, metavar="HOST:PORT",
              help="UDP address to receive NetFlow/IPFIX/sFlow on (repeatable; any protocol "
                   "on any port).")
@click.option("--store", "store_dir", required=True, type=StoreLocation(),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--metrics", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics.")
@click.option("--batch-records", default=250_000, show_default=True,
              help="Write a Parquet batch once this many records are pending.")
@click.option("--flush-interval", default=5.0, show_default=True,
              help="... or this often (seconds).")
@click.option("--rcvbuf", default=64 << 20, show_default=True,
              help="Socket receive buffer per port (bytes).")
@click.option("--template-budget", default=256, show_default=True, metavar="MiB",
              help="Memory for templates and buffered data sets, all exporters together.")
@click.option("--exporter-quota", default=16, show_default=True, metavar="MiB",
              help="... and for one exporter address (a flood evicts only its own).")
@click.option("--template-churn", default=50.0, show_default=True, metavar="PER_S",
              help="Template (re)definitions accepted per exporter per second (burst 2048).")
@click.option("--time-window", default=86_400.0, show_default=True, metavar="SECONDS",
              help="Records whose times are further than this from their export header's "
                   "time are quarantined (kept apart, counted), never stored by day.")
@click.option("--max-partitions", default=8, show_default=True,
              help="Day partitions one batch may create; records of further days are "
                   "quarantined.")
@click.option("--workers", default=1, show_default=True,
              help="Receive/decode/write processes sharing the ports (SO_REUSEPORT); "
                   "0 = one per CPU.")
@click.option("--receiver", default="process", show_default=True,
              type=click.Choice(["process", "inline"]),
              help="process: a receive process per worker reads the sockets (recvmmsg) and "
                   "queues datagrams ahead of decoding; inline: the decoding thread reads.")
@click.option("--receive-queue", default=64, show_default=True, metavar="MiB",
              help="Datagrams a receive process may hold while the decoder is busy; beyond "
                   "it the socket overflows (counted as socket drops).")
@click.option("--duration", default=None, type=float,
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
@lambda f: rollup_options(f, default=False)
@click.option("--debug", is_flag=True, help="Tracebacks on errors.")
def collect(listens, store_dir, metrics, batch_records, flush_interval, rcvbuf,
            template_budget, exporter_quota, template_churn, time_window, max_partitions,
            workers, receiver, receive_queue, duration, rollups, enrich_data, taxonomy,
            debug):
    """Receive flows over UDP and store them; SIGINT/SIGTERM flushes and exits."""
    from ..flows.sources.collector import Collector, CollectorConfig
    from ..flows.sources.metrics import serve_metrics
    cfg = CollectorConfig([_hostport(s) for s in listens], batch_records=batch_records,
                          flush_interval_s=flush_interval, rcvbuf_bytes=rcvbuf,
                          template_budget_bytes=template_budget << 20,
                          exporter_quota_bytes=exporter_quota << 20,
                          template_changes_per_s=template_churn, receiver=receiver,
                          receive_queue_bytes=receive_queue << 20)
    store = open_store(store_dir, debug, time_window_s=time_window,
                       max_partitions_per_write=max_partitions,
                       rollups=_rollups(rollups, enrich_data, taxonomy, debug))
    workers = workers or os.cpu_count() or 1
    try:
        if workers > 1:
            from ..flows.sources.workers import WorkerPool

            col = WorkerPool(cfg, store, workers)
            bound = col.bound
        else:
            col = Collector(cfg, store)
            bound = col.bind()
    except OSError as e:
        _fail(debug, 1, e)
    if workers > 1:
        col.start()  # fork before any thread of ours exists
    srv = None
    if metrics:
        h, p = _hostport(metrics)
        try:
            srv = serve_metrics(h, p, lambda: col.snapshot)
        except OSError as e:
            _fail(debug, 1, e)
    _stop_on_signals(col.stop)
    timer = None
    if duration is not None:
        timer = threading.Timer(duration, col.stop)
        timer.daemon = True  # never keeps the process alive past the collector
        timer.start()
    where = ", ".join(f"{h}:{p}" for h, p in bound)
    click.echo(f"trunkline: collecting on {where} into {store_dir}"
               + (f" with {workers} workers" if workers > 1 else "")
               + (f"; metrics on http://{metrics}/metrics" if metrics else ""), err=True)
    if workers > 1:
        code = col.run()
        failure = col.status(final=True)["collector"]["failure"]
    else:
        ok = col.run()
        code = 3 if not ok else 1 if col.write_errors else 0
        failure = col.failure
    if timer is not None:
        timer.cancel()
    if srv is not None:
        srv.shutdown()
    t = col.snapshot or col.status()
    click.echo(json.dumps({"records_written": t["collector"].get("written_records", 0),
                           **t["totals"]}), err=True)
    if failure:
        click.echo(f"trunkline: error: {failure}", err=True)
    sys.exit(code)


def _stop_on_signals(stop) -> None:
    """SIGINT/SIGTERM: the first one stops cleanly (drain, flush); a second one, while
    the flush is still running, exits at once (status 128 + signal)."""
    seen = []

    def handler(signum, _frame):
        if seen:
            os._exit(128 + signum)
        seen.append(signum)
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            raise click.BadParameter(f"--map {p!r}: expected SCHEMA_COLUMN=LOG_COLUMN")
        out[k.strip()] = v.strip()
    return out


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store_dir", required=True, type=StoreLocation(),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--port", "ports", multiple=True, type=int,
              help="Only UDP datagrams to this port (captures; repeatable).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=LOGCOLUMN",
              help="Column mapping for CSV/Parquet flow logs (repeatable).")
@click.option("--time-window", default=86_400.0, show_default=True, metavar="SECONDS",
              help="Capture records further than this from their export header's time are "
                   "quarantined (a probe replaying an old pcap: widen it).")
@click.option("--json", "as_json", is_flag=True, help="Print counters as JSON.")
@rollup_options
@click.option("--debug", is_flag=True)
def ingest(files, store_dir, ports, maps, time_window, as_json, rollups, enrich_data, taxonomy, debug):
    """Decode pcap/pcapng captures of exports, CSV/Parquet flow logs or nfdump CSV
    into the store (captures in the order given: templates first)."""
    from ..flows.sources.ingest import ingest_files

    # a plain ValueError of the sources names a file or a --map they cannot use (a
    # capture they cannot read is a PcapError: exit 1)
    store = open_store(store_dir, debug, time_window_s=time_window,
                       rollups=_rollups(rollups, enrich_data, taxonomy, debug))
    out = guarded(debug, ingest_files, files, store,
                  ports=set(ports) or None, mapping=_mapping(maps), usage=(ValueError,))
    if as_json:
        click.echo(json.dumps(out, indent=1))
    else:
        t = out["totals"]
        drops = sum(t["drops"].values())
        q = {k: v for k, v in out["quarantined"].items() if v}
        click.echo(f"{out['written_records']} records from {len(files)} file(s); "
                   f"{t['packets']} datagrams, {t['templates']} templates, {drops} dropped"
                   + (f" {dict(t['drops'])}" if drops else "")
                   + (f"; {sum(q.values())} quarantined {q}" if q else ""))


def _jsonable(v):
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    return v


@click.command()
@click.argument("query")
@click.option("--store", "store_dir", required=True, type=StoreLocation(),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of objects.")
@click.option("--debug", is_flag=True)
def sql(query, store_dir, as_json, debug):
    """Run SQL over the store (table ``flows``); print CSV, or JSON with --json."""
    import csv

    import duckdb

    from ..errors import TrunklineError

    store = open_store(store_dir, debug)
    try:
        table = store.query(query)
    except duckdb.Error as e:
        _fail(debug, 2, str(e).splitlines()[0])
    except (OSError, TrunklineError) as e:
        _fail(debug, 1, e)
    warn_skipped(store)
    if as_json:
        cols = [_pylist(c) for c in table.columns]
        rows = [{k: _jsonable(v) for k, v in zip(table.column_names, r, strict=True)}
                for r in zip(*cols, strict=True)]
        click.echo(json.dumps(rows, default=str))
    else:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(table.column_names)
        for batch in table.to_batches(65536):
            cols = [_pylist(c) for c in batch.columns]
            w.writerows(zip(*cols, strict=True))


def _pylist(col) -> list:
    """Python values of a column; a time Python cannot represent (past year 9999, in a
    store written before times were checked) is printed as Arrow's text, not a crash."""
    try:
        return col.to_pylist()
    except (OverflowError, ValueError):
        import pyarrow as pa

        return col.cast(pa.string()).to_pylist()


@click.command()
@click.option("--store", "store_dir", required=True, type=StoreLocation(),
              metavar=STORE_METAVAR, help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True)
@click.option("--debug", is_flag=True)
def status(store_dir, as_json, debug):
    """Counters of the last (or running) collector on this store (on this host), and the
    store's size."""
    from ..errors import TrunklineError
    from ..flows.lake import RAW
    from ..flows.sources.collector import read_status

    store = open_store(store_dir, debug)
    try:
        snap = read_status(store.status_dir) or {}
        files = store.listing().data(RAW)
        records = store.query("SELECT count(*) AS n FROM flows").column("n")[0].as_py() \
            if files else 0
        skipped = dict(store.skipped)
        q = store.quarantine()
    except (OSError, TrunklineError) as e:
        _fail(debug, 1, e)
    snap["store"] = {"files": len(files), "records": records,
                     "bytes": sum(f.size for f in files),
                     "quarantined_records": q.num_rows, "skipped_keys": skipped}
    if as_json:
        click.echo(json.dumps(snap, indent=1, sort_keys=True))
        return
    st = snap["store"]
    click.echo(f"store {store_dir}: {st['records']} records in {st['files']} files "
               f"({st['bytes']} bytes); {st['quarantined_records']} quarantined"
               + (f"; skipped keys {st['skipped_keys']}" if st["skipped_keys"] else ""))
    col = snap.get("collector")
    if col:   # .get: a status of an older version lacks the newer counters
        state = col.get("state") or ("running" if col.get("running") else "stopped")
        if col.get("failure"):
            state += f": {col['failure']}"
        lst = col.get("listen")
        listen = ", ".join(map(str, lst)) if isinstance(lst, list) else str(lst or "?")
        click.echo(safe(f"collector ({state}, pid {col.get('pid')}) on {listen}: "
                        f"{col.get('written_records', 0)} written, "
                        f"{col.get('pending_records', 0)} pending, "
                        f"{col.get('templates', 0)} templates, "
                        f"{col.get('write_errors', 0)} write errors, "
                        f"{col.get('lost_records', 0)} records lost"
                        + (f" (last: {col['last_write_error']})"
                           if col.get("last_write_error") else "")))
    for ex, c in sorted(snap.get("exporters", {}).items()):
        c = c if isinstance(c, dict) else {}
        d = c.get("drops")
        drops = ", ".join(f"{k}={v}" for k, v in sorted(d.items())) if isinstance(d, dict) \
            else ""
        click.echo(safe(f"  {ex}: {c.get('packets', 0)} datagrams, {c.get('records', 0)} "
                        f"records, {c.get('templates', 0)} templates; drops: {drops or 'none'}"))


def register(group: click.Group) -> None:
    """Attach these commands to the ``flows`` group."""
    for command in (collect, ingest, sql, status):
        group.add_command(command)
