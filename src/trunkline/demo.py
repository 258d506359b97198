"""The demo: one command, no configuration, loopback only (``make demo``).

    python -m trunkline.demo [--size 1GiB] [--out demo-out]

1. starts an embedded S3 server (SeaweedFS) on 127.0.0.1, on free ports;
2. writes a dataset of training shards (32 random ``.tar`` shards plus small index files),
   hashing each file (SHA-256) as it is written;
3. uploads it with ``trunkline.copy`` and a live progress display, exporting the
   transfer's connections as flows into a flow lake on the same server
   (``flows_store="demo:flows/lake"``: Parquet under an S3 prefix, docs/flows-lake.md);
4. downloads it back the same way;
5. verifies every downloaded file against the SHA-256 of its original;
6. adds a SIMULATED quarter of a storage provider's edge traffic to the same lake;
7. writes the network-stats report (HTML, JSON, PNG charts) read back from the lake,
   copies the lake to ``flows/`` (a local store, for queries after the demo), stops the
   server and prints a summary.

Everything lands in ``--out`` (default ./demo-out, wiped at start if it is a previous
demo's); the bulky data (dataset, download, server volumes) is removed at the end unless
``--keep-data``. Every process the demo starts is stopped, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .engine.plan import parse_size
from .telemetry.units import human_bytes

MARKER = ".trunkline-demo"
BUCKET = "datasets"
LAKE_BUCKET = "flows"  # the flow lake: demo:flows/lake/day=YYYY-MM-DD/*.parquet
ENDPOINT = "demo"  # a named endpoint in a config file of the demo's own: nothing of the
KEY_ENV = ("TRUNKLINE_DEMO_KEY_ID", "TRUNKLINE_DEMO_SECRET")  # user's AWS setup is read
CHUNK = 4 << 20


def demo_thresholds():
    """Elephant thresholds at the demo's scale, for the transfer's own connections.

    The report keeps the defaults (100 Mb/s over 2 x 60 s, 1 GB): they fit the simulated
    quarter of edge traffic. A demo transfer lasts seconds, each connection a few, so
    here: 1 s intervals, 10 Mb/s sustained over 2 of them, at least 8 MB and 2 s.
    """
    from .flows.elephants import Thresholds

    return Thresholds(interval_s=1, rate_on_bps=10e6, rate_off_bps=5e6, on_intervals=2,
                      off_intervals=2, min_bytes=8e6, min_duration_s=2)


# --- output ---------------------------------------------------------------------------

def say(msg: str = "") -> None:
    print(msg, flush=True)


def progress(label: str):
    """The rich view on a terminal; a plain line every 2 s on stdout otherwise (CI, logs)."""
    from .telemetry.progress import LineProgress, LiveProgress

    if sys.stderr.isatty():
        return LiveProgress(label=f"    {label}")
    return LineProgress(sys.stdout, label=f"    {label}", every=2.0)


# --- steps ----------------------------------------------------------------------------

def prepare_out(out: Path) -> Path:
    """A fresh output directory; a previous demo's is wiped, anything else is refused."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists()):
            raise SystemExit(f"trunkline demo: {out} exists and is not a demo output; "
                             f"pass --out to choose another directory")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by python -m trunkline.demo; wiped by its next run\n")
    return out.resolve()


def make_dataset(root: Path, size: int, shards: int, seed: int = 7) -> dict[str, str]:
    """``shards`` random shards of ``size // shards`` bytes plus index files;
    -> {relative path: sha256}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    each = max(size // shards, 1)
    digests: dict[str, str] = {}
    index = []
    for i in range(shards):
        name = f"train/shard-{i:05d}.tar"
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        with open(p, "wb") as f:
            left = each
            while left:
                b = rng.bytes(min(CHUNK, left))
                h.update(b)
                f.write(b)
                left -= len(b)
        digests[name] = h.hexdigest()
        index.append({"shard": name, "bytes": each, "sha256": digests[name]})
    n_val = max(shards // 16, 1)
    small = {
        "index.json": json.dumps({"shards": index}, indent=1),
        "splits/train.txt": "\n".join(x["shard"] for x in index[n_val:]) + "\n",
        "splits/val.txt": "\n".join(x["shard"] for x in index[:n_val]) + "\n",
        "dataset_info.json": json.dumps({"name": "trunkline-demo", "format": "webdataset-tar",
                                         "shards": shards, "bytes_per_shard": each,
                                         "content": "random bytes"}, indent=1),
    }
    for name, text in small.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def verify(root: Path, digests: dict[str, str]) -> tuple[int, list[str]]:
    """-> (files identical, problems) comparing ``root`` with the originals' digests."""
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    problems = [f"missing {n}" for n in sorted(set(digests) - found)]
    problems += [f"unexpected {n}" for n in sorted(found - set(digests))]
    ok = 0
    for name in sorted(set(digests) & found):
        h = hashlib.sha256()
        with open(root / name, "rb") as f:
            while b := f.read(CHUNK):
                h.update(b)
        if h.hexdigest() == digests[name]:
            ok += 1
        else:
            problems.append(f"sha256 differs: {name}")
    return ok, problems


def use_server(out: Path, srv) -> dict[str, str | None]:
    """Point the ``demo:`` endpoint at ``srv``; -> the environment to restore."""
    cfg = out / "trunkline.toml"
    cfg.write_text(f'[endpoints.{ENDPOINT}]\nurl = "{srv.endpoint_url}"\nregion = "us-east-1"\n'
                   f'access_key_id_env = "{KEY_ENV[0]}"\nsecret_access_key_env = "{KEY_ENV[1]}"\n'
                   f'addressing_style = "path"\n')
    new = {"TRUNKLINE_CONFIG": str(cfg), KEY_ENV[0]: srv.access_key, KEY_ENV[1]: srv.secret_key}
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    return old


def restore_env(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def transfer(label: str, src: str, dst: str, out: Path, store: str):
    from .api import copy

    with progress(label) as prog:
        r = copy(src, dst, recursive=True, on_progress=prog.update, flows_store=str(store),
                 state_dir=str(out / "state"), resume=False)
    tail = f"; {len(r.failures)} FAILED: {r.failures[0]}" if r.failures else ""
    say(f"    {label}  {human_bytes(r.bytes)} in {r.seconds:.2f} s = {r.gbps:.2f} Gbit/s, "
        f"{r.objects} objects, {len(r.connections)} connections, {r.retries} retries{tail}")
    return r


def copy_lake(lake: str, dst: Path) -> dict:
    """The lake, copied down with ``trunkline.copy`` into a local store (same layout), so
    that ``flows sql --store`` works after the demo's server is gone."""
    from .api import copy

    try:
        r = copy(f"{lake}/", f"{dst}/", recursive=True, resume=False,
                 state_dir=str(dst.parent / "state"))
    except Exception as e:  # noqa: BLE001 - reported, and the demo then fails
        say(f"      lake copy failed: {e}")
        return {"ok": False, "error": str(e)}
    say(f"      lake copied to {_rel(dst)}: {r.objects} files, {human_bytes(r.bytes)}")
    return {"ok": r.ok, "objects": r.objects, "bytes": r.bytes}


def check_store(src: str, dst: str) -> dict:
    """``trunkline.verify`` of the uploaded objects against the dataset (checksums the
    store keeps: MD5 ETags, CRC32C...), before the download proves them byte for byte."""
    from . import verify as tl_verify

    t = time.perf_counter()
    try:
        v = tl_verify(src, dst)
    except Exception as e:  # noqa: BLE001 - reported, and the demo then fails
        say(f"    verify    trunkline verify failed: {e}")
        return {"ok": False, "error": str(e)}
    methods = ", ".join(f"{k} {n}" for k, n in sorted(v.methods.items()))
    say(f"    verify    {v.compared} objects in the store match the dataset ({methods}); "
        f"{len(v.mismatches)} mismatches ({time.perf_counter() - t:.1f} s)")
    return {"ok": v.ok, "compared": v.compared, "mismatches": [str(m) for m in v.mismatches[:10]],
            "methods": v.methods}


def load_enricher(data_dir: str | None):
    """-> (enricher, note). Without enrichment data the report still runs (addresses
    unclassified) but the simulated quarter, which draws real ASNs' addresses, cannot."""
    from .flows.enrich import Enricher
    from .flows.enrich.asn import AsnRanges

    try:
        e = Enricher.from_dir(data_dir)
    except FileNotFoundError as err:
        return Enricher(None, None), str(err)
    if not isinstance(e.asn, AsnRanges):
        return e, (f"no ASN range tables (ip-asn/asn-ipv4.csv*) in the enrichment data "
                   f"{data_dir or ''}; set TRUNKLINE_ENRICH_DATA (docs/flows-report.md)")
    return e, ""


def transfer_elephants(store, enricher, th) -> tuple[list[dict], int]:
    """Elephant episodes among the transfer's own flows (flow_type 'trunkline')."""
    from .flows.elephants import find
    from .flows.stats import prepare

    con = store.connect()
    lo, hi, n = con.execute("SELECT min(time_start), max(time_end), count(*) FROM flows "
                            "WHERE flow_type = 'trunkline'").fetchone()
    if not n:
        return [], 0
    from datetime import timedelta

    prepare(con, enricher, lo - timedelta(seconds=1), hi + timedelta(seconds=1))
    return find(con, th, "flow_type = 'trunkline'"), int(n)


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(args) -> int:
    from .embedded_s3 import EmbeddedS3
    from .flows.store import FlowStore

    t_start = time.perf_counter()
    size = parse_size(args.size)
    if size < args.shards:
        raise SystemExit("trunkline demo: --size must be at least one byte per shard")
    out = prepare_out(Path(args.out))
    store_dir = out / "flows"
    say(f"trunkline demo: {human_bytes(size)} of training shards up and down through an "
        f"embedded S3 on loopback, seen as flows  ->  {out}")

    t = time.perf_counter()
    digests = make_dataset(out / "dataset", size, args.shards)
    say(f"[1/6] dataset: {args.shards} shards x {human_bytes(size // args.shards)} + "
        f"{len(digests) - args.shards} index files, SHA-256 while written "
        f"({time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    with EmbeddedS3(data_dir=out / "s3", buckets=(BUCKET, LAKE_BUCKET)) as srv:
        _RUNNING.append(srv)
        pid = srv.proc.pid
        say(f"[2/6] SeaweedFS S3 on {srv.endpoint_url} (pid {pid}), "
            f"buckets '{BUCKET}' and '{LAKE_BUCKET}' ({time.perf_counter() - t:.1f} s)")
        old = use_server(out, srv)
        lake = f"{ENDPOINT}:{LAKE_BUCKET}/lake"
        try:
            say(f"[3/6] upload   (each connection -> flow records in the lake {lake})")
            up = transfer("upload  ", f"{out / 'dataset'}/", f"{ENDPOINT}:{BUCKET}/shards/",
                          out, lake)
            store_check = check_store(f"{out / 'dataset'}/", f"{ENDPOINT}:{BUCKET}/shards/")
            say("[4/6] download")
            down = transfer("download", f"{ENDPOINT}:{BUCKET}/shards/", f"{out / 'download'}/",
                            out, lake)

            t = time.perf_counter()
            ok_files, problems = verify(out / "download", digests)
            verified = not problems and ok_files == len(digests) and store_check["ok"]
            say(f"[5/6] verify: {ok_files}/{len(digests)} downloaded files identical by SHA-256"
                + ("" if verified else f"; {len(problems)} problems: {problems[:3]}")
                + f" ({time.perf_counter() - t:.1f} s)")

            t = time.perf_counter()
            from .flows.stats import Quarter

            store = FlowStore(lake)
            now = datetime.now(UTC)
            q = Quarter.of(now)
            enricher, note = load_enricher(args.enrich_data)
            sim = None
            if note:
                say(f"[6/6] no simulated quarter: {note}")
            elif args.flows:
                from .flows import maintain, scan
                from .flows.rollup import Rollups
                from .flows.simulate import PREVIOUS_SHIFT, simulate

                transfer_days = scan.raw_days(store)  # the collector wrote them without rollups
                writer = FlowStore(lake, rollups=Rollups(enricher))
                simulate(q.prev(), writer, enricher, max(args.flows // 2, 1), 7, 0.5,
                         PREVIOUS_SHIFT)
                sim = simulate(q, writer, enricher, args.flows, 7)
                # the report reads rollups: those of the transfer's days, then the monthly
                # peer tables (what a lake's cron job runs: flows rollup [--compact])
                maintain.backfill(store, enricher, transfer_days)
                maintain.compact(store, scan.raw_days(store))
                say(f"[6/6] SIMULATED edge traffic: {q} {sim.flows:,} flows "
                    f"({sim.elephant_sessions} elephant sessions, {sim.unique_peers:,} peers) + "
                    f"{q.prev()} {max(args.flows // 2, 1):,} flows into the lake, with their "
                    f"rollups ({time.perf_counter() - t:.1f} s)")
            t = time.perf_counter()
            from .flows.report import write_report

            rep = write_report(store, q, enricher, out / "report")
            th = demo_thresholds()
            t_els, t_flows = transfer_elephants(store, enricher, th)
            lake_files = len(store.files())
            say(f"      report: {rep['totals']['flows']:,} flows of {q} from the lake's "
                f"{rep['source']['kind']} ({lake_files} raw files), "
                f"{rep['elephants']['count']:,} elephants -> "
                f"{out / 'report' / 'report.html'} ({time.perf_counter() - t:.1f} s)")
            lake_copy = copy_lake(lake, store_dir)
        finally:
            restore_env(old)
            _RUNNING.remove(srv)
    say(f"      SeaweedFS stopped (pid {pid} {'still running!' if _alive(pid) else 'gone'})")

    n_conns = len(up.connections) + len(down.connections)
    mv = rep["mover"]
    summary = {
        "ok": bool(verified and up.ok and down.ok and lake_copy["ok"]),
        "bytes": up.bytes, "files": len(digests),
        "upload": {"gbps": round(up.gbps, 3), "seconds": round(up.seconds, 3),
                   "bytes": up.bytes, "connections": len(up.connections), "ok": up.ok},
        "download": {"gbps": round(down.gbps, 3), "seconds": round(down.seconds, 3),
                     "bytes": down.bytes, "connections": len(down.connections), "ok": down.ok},
        "verified": verified, "verify_problems": problems, "store_check": store_check,
        "transfer_flows": t_flows,
        "transfer_elephants": len(t_els),
        "transfer_elephant_thresholds": th.as_dict(),
        "mover_rtt_us_median": mv["rtt_us_median"], "mover_retransmits": mv["retransmits"],
        "quarter": str(q), "simulated_flows": rep["simulated_flows"],
        "report_flows": rep["totals"]["flows"],
        "report_elephants": rep["elephants"]["count"],
        "report_source": rep["source"]["kind"],
        "report_elephant_thresholds": rep["elephants"]["thresholds"],
        "enrichment_note": note or None,
        "report": str(out / "report" / "report.html"),
        "flow_lake": lake, "flow_lake_files": lake_files, "flow_lake_copy": lake_copy,
        "flow_store": str(store_dir),
        "seconds": None,
    }
    if not args.keep_data and summary["ok"]:
        for d in ("dataset", "download", "s3", "state"):
            shutil.rmtree(out / d, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))

    rtt = "n/a" if mv["rtt_us_median"] is None else f"{mv['rtt_us_median'] / 1000:.2f} ms"
    line = "=" * 78
    say(line)
    say(f" trunkline demo {'OK' if summary['ok'] else 'FAILED'}   ({summary['seconds']:.0f} s in all)")
    say(f"  moved      {human_bytes(up.bytes)} in {len(digests)} files, up and down")
    say(f"  upload     {up.gbps:6.2f} Gbit/s  ({up.seconds:.1f} s, {len(up.connections)} connections)")
    say(f"  download   {down.gbps:6.2f} Gbit/s  ({down.seconds:.1f} s, {len(down.connections)} connections)")
    say(f"  verified   {'yes' if verified else 'NO'}: {ok_files}/{len(digests)} files by SHA-256 after "
        f"the round trip; {store_check.get('compared', 0)} objects by trunkline verify")
    say(f"  flows      {t_flows} records of the transfer's {n_conns} connections; "
        f"median RTT {rtt}, {mv['retransmits']} retransmits")
    say(f"  elephants  {len(t_els)} of the transfer's flows at demo scale "
        f"(>= 10 Mb/s for 2 x 1 s, >= 8 MB);")
    say(f"             {rep['elephants']['count']:,} in {q}'s report (defaults: >= 100 Mb/s for "
        f"2 x 60 s, >= 1 GB){' - SIMULATED edge traffic' if sim else ''}")
    say(f"  report     {_rel(out / 'report' / 'report.html')}  (+ report.json, charts/*.png)")
    say(f"  flow lake  {lake} on the embedded S3 ({lake_files} raw files and their rollups), copied to "
        f"{_rel(store_dir)}")
    say(f"             (trunkline flows sql --store {_rel(store_dir)} \"SELECT ... FROM flows\")")
    if args.keep_data or not summary["ok"]:
        say(f"  data kept  {out / 'dataset'}, {out / 'download'}, {out / 's3'}")
    say(line)
    return 0 if summary["ok"] else 1


def main(argv: list[str] | None = None, prog: str = "python -m trunkline.demo") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1GiB", help="dataset size (default 1GiB = 32 x 32 MiB shards)")
    p.add_argument("--shards", type=int, default=32, help="number of .tar shards (default 32)")
    p.add_argument("--flows", type=int, default=300_000,
                   help="simulated flow records of edge traffic for the quarter (0: none)")
    p.add_argument("--out", default="demo-out", help="output directory (default ./demo-out)")
    p.add_argument("--enrich-data", default=None,
                   help="enrichment data directory (default: $TRUNKLINE_ENRICH_DATA or ../shared/data/enrich)")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the dataset, the download and the server's volumes")
    args = p.parse_args(argv)
    if args.shards < 1 or args.flows < 0:
        p.error("--shards must be >= 1 and --flows >= 0")

    sigs = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored: a background job
        sigs.append(signal.SIGINT)
    old = {sig: signal.signal(sig, _on_signal) for sig in sigs}
    try:
        return run(args)
    except KeyboardInterrupt:
        _stop_servers()
        print("\ntrunkline demo: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, ValueError) as e:
        print(f"trunkline demo: error: {e}", file=sys.stderr)
        return 1
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


_RUNNING: list = []  # embedded servers the demo has started and not yet stopped
_SIGNALLED = [0]


def _stop_servers() -> None:
    for srv in list(_RUNNING):
        srv.stop()


def _on_signal(signum, frame):
    """Ctrl-C / SIGTERM: stop the server at once (the transfer's threads may take a while
    to wind down), then unwind; a second signal exits without waiting for them."""
    _SIGNALLED[0] += 1
    _stop_servers()
    if _SIGNALLED[0] > 1:
        print("\ntrunkline demo: interrupted twice; server stopped, exiting now", file=sys.stderr)
        os._exit(130)
    print("\ntrunkline demo: stopping (the S3 server is stopped; Ctrl-C again to exit now)",
          file=sys.stderr, flush=True)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
