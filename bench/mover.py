"""The mover benchmark (issue 2): ``trunkline cp`` side by side with its peers.

    .venv/bin/python bench/mover.py                      # full sets, 5 alternating rounds
    .venv/bin/python bench/mover.py --quick --pairs 1    # smoke run (tiny sets)
    .venv/bin/python bench/mover.py --tools trunkline,s5cmd --datasets large16 --pairs 7

Method. One SeaweedFS (``weed mini``, embedded, loopback; or ``--server-url``) serves
every tool, with the same credentials passed through the AWS environment variables. The
datasets are flat directories of random (incompressible) bytes; the download source is
seeded once per dataset with boto3 (s3transfer defaults: multipart above 8 MiB). For each
(dataset, direction) the tools run in rotating order (A B C D E, B C D E A, ...) for
``--pairs`` rounds. Before each download the local destination is deleted; each upload goes
to a fresh bucket (warmed with one tiny object, so volume allocation is not timed) that
is deleted afterwards; so does each ``copy`` (``--directions copy``: from the seeded
bucket, the store copying the objects itself: CopyObject, UploadPartCopy). ``sync`` runs before each timed run, so no tool pays for another's
write-back, and before a download the bench touches and frees as many bytes of memory as
the set holds (``common.prefault``: on this VM a page the balloon gave back costs ~2.7 s of
system time per GB at first touch, billed to whichever tool gets it). A run counts only if its exit code is 0 and the result verifies (every object
present with its size, plus the sha256 of ``--sha-sample`` objects); otherwise the row says
FAIL and why. Figures per run (child process only, via ``wait4``): wall seconds, user+sys
CPU seconds, peak RSS. The table gives medians over the good runs and ratios to s5cmd.
Output: Markdown on stdout and in bench/out/mover-<UTC>.md, every raw run in the .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    GB,
    Dataset,
    Generated,
    MiB,
    add_content_md5,
    capture,
    compare_listing,
    fmt,
    generate_dataset,
    iperf3_ceiling,
    local_listing,
    machine_info,
    md_table,
    median,
    pkg_version,
    prefault,
    run_measured,
    sha256_file,
    venv_bin,
)

HERE = Path(__file__).resolve().parent
KiB = 1024
TOOLS = ("trunkline", "s5cmd", "rclone", "boto3", "obstore", "trunkline_base")
DEFAULT_TOOLS = TOOLS[:5]
DIRECTIONS = ("upload", "download", "copy")
FULL = {
    "large16": Dataset("large16", 16, 64 * MiB),
    "huge1": Dataset("huge1", 1, 1024 * MiB),
    "small2000": Dataset("small2000", 2000, 256 * KiB),
}
QUICK = {
    "large16": Dataset("large16", 4, 16 * MiB),
    "huge1": Dataset("huge1", 1, 128 * MiB),
    "small2000": Dataset("small2000", 200, 256 * KiB),
}
TOOL_NOTES = {
    "trunkline": "`trunkline cp --recursive` + `--trunkline-args`; its own defaults",
    "trunkline_base": "the same `trunkline cp` run with PYTHONPATH=`--baseline-src` "
                      "(the code before a change, to measure what the change costs)",
    "s5cmd": "defaults: --numworkers 256, cp --concurrency 5, --part-size 50 MiB",
    "rclone": (
        "`rclone copy`, defaults: --transfers 4, --checkers 8, s3 chunk_size 5 MiB, "
        "upload_concurrency 4, upload_cutoff 200 MiB, --multi-thread-streams 4 above "
        "--multi-thread-cutoff 256 MiB; MD5 computed on upload and checked on download "
        "where the ETag allows (its default)"
    ),
    "boto3": (
        "bench/mover_boto3.py: 8 objects in flight (threads), TransferConfig defaults "
        "(multipart > 8 MiB, 8 MiB parts, 10 threads per object)"
    ),
    "obstore": (
        "bench/mover_obstore.py: asyncio, 32 objects in flight; put_async defaults "
        "(5 MiB parts x 12), get_async + stream (one GET per object)"
    ),
}


# --------------------------------------------------------------------------- server


class Server:
    """The S3 endpoint under test: an EmbeddedS3 we start, or an existing URL."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self._embedded = None
        self.rclone_provider = {"rgw": "Ceph", "juicefs": "Other"}.get(args.server, "SeaweedFS")
        if args.server_url:
            self.endpoint_url = args.server_url.rstrip("/")
            self.access_key = args.access_key or os.environ.get("AWS_ACCESS_KEY_ID", "")
            self.secret_key = args.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            self.region = os.environ.get("AWS_REGION", "us-east-1")
            self.kind = f"external ({self.endpoint_url})"
        else:
            self._embedded = _start_server(args.server, work)
            self.endpoint_url = self._embedded.endpoint_url
            self.access_key = self._embedded.access_key
            self.secret_key = self._embedded.secret_key
            self.region = "us-east-1"
            self.kind = _server_kind(args.server)
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5},
                max_pool_connections=16,
            ),
        )
        # the JuiceFS gateway takes batch deletes only with Content-MD5 (docs/stores.md)
        self.client.meta.events.register("before-sign.s3.DeleteObjects", add_content_md5)

    def create_bucket(self, name: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.create_bucket(Bucket=name)
                return
            except (
                self.client.exceptions.BucketAlreadyOwnedByYou,
                self.client.exceptions.BucketAlreadyExists,
            ):
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def delete_bucket(self, name: str) -> None:
        c = self.client
        try:
            for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=name):
                for u in page.get("Uploads", []):
                    c.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        except Exception:
            pass
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                c.delete_objects(Bucket=name, Delete={"Objects": keys[i : i + 1000], "Quiet": True})
        c.delete_bucket(Bucket=name)

    def listing(self, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
        """basename -> (size, key) under prefix."""
        out: dict[str, tuple[int, str]] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            for o in page.get("Contents", []):
                out[o["Key"].rsplit("/", 1)[-1]] = (o["Size"], o["Key"])
        return out

    def sha256_object(self, bucket: str, key: str) -> str:
        import hashlib

        h = hashlib.sha256()
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(4 * MiB):
            h.update(chunk)
        return h.hexdigest()

    def tool_env(self, work: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        empty = work / "empty.conf"
        empty.touch()
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_CONFIG_FILE": str(empty),  # hermetic: no user profile leaks in
                "AWS_SHARED_CREDENTIALS_FILE": str(empty),
                "S3_ENDPOINT_URL": self.endpoint_url,
                "RCLONE_CONFIG": str(empty),
                "RCLONE_CONFIG_BENCH_TYPE": "s3",
                "RCLONE_CONFIG_BENCH_PROVIDER": self.rclone_provider,
                "RCLONE_CONFIG_BENCH_ENDPOINT": self.endpoint_url,
                "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": self.access_key,
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": self.secret_key,
                "RCLONE_CONFIG_BENCH_REGION": self.region,
                "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        return env

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None


def _start_server(kind: str, work: Path):
    """One of the three embedded S3 implementations (docs/stores.md), started."""
    if kind == "rgw":
        from trunkline.testing.embedded_rgw import EmbeddedRGW

        # memstore holds objects in RAM: room for the seeded set, one upload of it and
        # what the garbage collector (on, every 2 s) has not freed yet of the last one
        return EmbeddedRGW(data_dir=work / "rgw", memstore_bytes=4 << 30, gc=True).start()
    if kind == "juicefs":
        from trunkline.testing.embedded_juicefs import EmbeddedJuiceFS

        return EmbeddedJuiceFS(data_dir=work / "juicefs").start()
    from trunkline.embedded_s3 import EmbeddedS3

    return EmbeddedS3(data_dir=work / "weed").start()


def _server_kind(kind: str) -> str:
    if kind == "rgw":
        v = capture(["radosgw", "--version"]).split("(")[0].strip()
        return (f"embedded Ceph RGW on loopback ({v}; one monitor, one memstore OSD, "
                "1 replica, beast frontend)")
    if kind == "juicefs":
        from trunkline.tools import require_tool

        v = capture([require_tool("juicefs"), "version"]).strip()
        return f"embedded JuiceFS S3 gateway on loopback ({v}; SQLite metadata, local blocks)"
    weed = capture([_weed_binary(), "version"]).splitlines()
    return f"embedded SeaweedFS `weed mini` on loopback ({weed[0] if weed else '?'})"


def _weed_binary() -> str:
    from trunkline.embedded_s3 import weed_binary

    return weed_binary()


# --------------------------------------------------------------------------- tools


def tool_argv(tool: str, direction: str, local: Path, url: str, a: argparse.Namespace,
              src_url: str = "") -> list[str]:
    """The command line of one run. ``url`` is s3://bucket/prefix/ (trailing slash); a
    ``copy`` goes from ``src_url`` (same form, same store) to ``url``: every tool then has
    the store copy the objects itself (CopyObject, UploadPartCopy)."""
    py = sys.executable
    extra = shlex.split(getattr(a, f"{tool}_args") or "")
    up = direction == "upload"
    copy = direction == "copy"
    if tool in ("trunkline", "trunkline_base"):
        src, dst = (src_url, url) if copy else (f"{local}/", url) if up else (url, f"{local}/")
        base = ["env", f"PYTHONPATH={a.baseline_src}"] if tool == "trunkline_base" else []
        return [*base, a.bin["trunkline"], "cp", "--recursive", *extra, src, dst]
    if tool == "s5cmd":
        src, dst = ((f"{src_url}*", url) if copy else (f"{local}/*", url) if up
                    else (f"{url}*", f"{local}/"))
        return [a.bin["s5cmd"], "--endpoint-url", a.endpoint_url, "cp", *extra, src, dst]
    if tool == "rclone":
        remote = "bench:" + url[len("s3://") :].rstrip("/")
        src, dst = (("bench:" + src_url[len("s3://") :].rstrip("/"), remote) if copy
                    else (str(local), remote) if up else (remote, str(local)))
        return [a.bin["rclone"], "copy", *extra, src, dst]
    if tool in ("boto3", "obstore"):
        script = HERE / f"mover_{tool}.py"
        src, dst = (str(local), url) if up else (url, str(local))
        return [py, str(script), direction, src, dst, *extra]
    raise ValueError(tool)


def tool_versions(a: argparse.Namespace) -> dict[str, str]:
    def first(argv: list[str]) -> str:
        out = capture(argv) if argv[0] else ""
        return out.splitlines()[0] if out else "not found"

    return {
        "trunkline": first([a.bin["trunkline"] or "", "--version"]),
        "s5cmd": first([a.bin["s5cmd"] or "", "version"]),
        "rclone": first([a.bin["rclone"] or "", "version"]),
        "boto3": f"boto3 {pkg_version('boto3')}, botocore {pkg_version('botocore')}, "
        f"s3transfer {pkg_version('s3transfer')}",
        "obstore": f"obstore {pkg_version('obstore')}",
        "iperf3": first(["iperf3", "--version"]),
    }


def probe_trunkline(a: argparse.Namespace) -> str | None:
    """None when ``trunkline cp`` exists, else why it is n/a."""
    if not a.bin["trunkline"]:
        return "trunkline not installed"
    out = capture([a.bin["trunkline"], "cp", "--help"])
    if "Usage" in out and "cp" in out and "No such command" not in out:
        if a.max_memory_mib is None:  # the RSS target: --max-memory given, else its default
            a.max_memory_mib = trunkline_max_memory_mib(a.trunkline_args, out)
        return None
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return (lines[-1] if lines else "`trunkline cp --help` failed")[:120]


def _mib(text: str) -> float | None:
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        return None
    scale = {"": 1 / MiB, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    return float(m.group(1)) * scale[m.group(2).upper()]


def trunkline_max_memory_mib(extra_args: str, help_text: str) -> float | None:
    """``--max-memory`` from --trunkline-args, else the default its help states."""
    args = shlex.split(extra_args or "")
    for i, arg in enumerate(args):
        if arg == "--max-memory" and i + 1 < len(args):
            return _mib(args[i + 1])
        if arg.startswith("--max-memory="):
            return _mib(arg.split("=", 1)[1])
    m = re.search(r"--max-memory\b.*?\(default\s+([^)]+)\)", help_text, re.DOTALL)
    return _mib(m.group(1)) if m else None


def _json_from(path: Path) -> object | None:
    """The JSON document a tool printed on stdout (whole, or its last line), if any."""
    try:
        if path.stat().st_size > 16 * MiB:
            return None
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    for cand in (text, *reversed([ln for ln in text.splitlines() if ln.startswith("{")])):
        try:
            return json.loads(cand)
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------- runs


class Bench:
    def __init__(self, a: argparse.Namespace, server: Server, work: Path) -> None:
        self.a = a
        self.srv = server
        self.work = work
        self.env = server.tool_env(work)
        self.runs: list[dict] = []
        self.gen: dict[str, Generated] = {}
        self.na: dict[str, str] = {}
        self.seed_bucket = f"tlb-{a.run_id}-seed"
        self.n_up = 0
        self.rng = random.Random(1)

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def prepare(self, ds: Dataset) -> None:
        t = time.monotonic()
        g = generate_dataset(ds, self.work / "src" / ds.name)
        self.gen[ds.name] = g
        self.log(f"  generated {ds.name}: {ds.describe()} in {time.monotonic() - t:.1f}s")
        if {"download", "copy"} & set(self.a.direction_list):
            from boto3.s3.transfer import TransferConfig

            self.srv.create_bucket(self.seed_bucket)
            t = time.monotonic()
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda n: self.srv.client.upload_file(
                            str(g.root / n), self.seed_bucket, f"{ds.name}/{n}",
                            Config=TransferConfig(),
                        ),
                        sorted(g.sizes),
                    )
                )  # fmt: skip
            err = self._verify_s3(g, self.seed_bucket, f"{ds.name}/", sample=0)
            if err:
                raise RuntimeError(f"seeding {ds.name} failed: {err}")
            self.log(f"  seeded s3://{self.seed_bucket}/{ds.name}/ in {time.monotonic() - t:.1f}s")

    def fixed_cost(self, repeat: int = 3) -> dict:
        """Each tool's cost per invocation: download one 1-byte object (median of 3)."""
        self.srv.create_bucket(self.seed_bucket)
        self.srv.client.put_object(Bucket=self.seed_bucket, Key="tiny/one.bin", Body=b"1")
        out: dict = {}
        for tool in self.a.tool_list:
            if tool in self.na:
                continue
            local = self.work / "dl" / f"tiny-{tool}"
            argv = tool_argv(tool, "download", local, f"s3://{self.seed_bucket}/tiny/", self.a)
            ms = []
            for i in range(repeat):
                shutil.rmtree(local, ignore_errors=True)
                local.mkdir(parents=True)
                ms.append(
                    run_measured(
                        argv, env=self.env, cwd=self.work, timeout=60,
                        log_dir=self.work / "logs", tag=f"tiny-{tool}-{i}",
                    )
                )  # fmt: skip
            shutil.rmtree(local, ignore_errors=True)
            good = [m for m in ms if m.exit_code == 0]
            out[tool] = {
                "argv": argv,
                "ok": len(good),
                "error": None if good else ms[-1].last_err_line,
                "wall_s": median([m.wall_s for m in good]),
                "cpu_s": median([m.cpu_s for m in good]),
                "maxrss_mib": median([m.maxrss_mib for m in good]),
            }
        return out

    def _verify_s3(self, g: Generated, bucket: str, prefix: str, sample: int) -> str | None:
        found = self.srv.listing(bucket, prefix)
        err = compare_listing({k: v[0] for k, v in found.items()}, g.sizes)
        if err:
            return err
        for name in self.rng.sample(sorted(g.sizes), min(sample, len(g.sizes))):
            if self.srv.sha256_object(bucket, found[name][1]) != g.sha256[name]:
                return f"verify: sha256 mismatch on {name}"
        return None

    def _verify_local(self, g: Generated, root: Path, sample: int) -> str | None:
        sizes, paths = local_listing(root)
        err = compare_listing(sizes, g.sizes)
        if err:
            return err
        for name in self.rng.sample(sorted(g.sizes), min(sample, len(g.sizes))):
            if sha256_file(paths[name]) != g.sha256[name]:
                return f"verify: sha256 mismatch on {name}"
        return None

    def one(self, tool: str, ds: Dataset, direction: str, rnd: int, pos: int) -> dict:
        rec: dict = {
            "tool": tool, "dataset": ds.name, "direction": direction, "round": rnd,
            "position": pos, "bytes": ds.total_bytes, "objects": ds.count,
        }  # fmt: skip
        if tool in self.na:
            rec.update(status="n/a", reason=self.na[tool])
            return rec
        g = self.gen[ds.name]
        cleanup: Callable[[], None]
        if direction == "download":
            local = self.work / "dl" / tool
            shutil.rmtree(local, ignore_errors=True)
            local.mkdir(parents=True)
            url = f"s3://{self.seed_bucket}/{ds.name}/"

            def cleanup() -> None:
                shutil.rmtree(local, ignore_errors=True)

            def verify() -> str | None:
                return self._verify_local(g, local, self.a.sha_sample)
        else:
            self.n_up += 1
            bucket = f"tlb-{self.a.run_id}-u{self.n_up}"
            self.srv.create_bucket(bucket)
            self.srv.client.put_object(Bucket=bucket, Key="warm/.keep", Body=b"x")
            local = g.root
            url = f"s3://{bucket}/data/"
            src_url = f"s3://{self.seed_bucket}/{ds.name}/"

            def cleanup() -> None:
                try:
                    self.srv.delete_bucket(bucket)
                except Exception as e:  # never let cleanup hide a result
                    self.log(f"  warning: could not delete bucket {bucket}: {e}")

            def verify() -> str | None:
                return self._verify_s3(g, bucket, "data/", self.a.sha_sample)

        argv = tool_argv(tool, direction, local, url, self.a,
                         src_url if direction == "copy" else "")
        rec["argv"] = argv
        tag = f"{ds.name}-{direction}-{rnd}-{tool}"
        os.sync()
        if direction == "download":   # pages the guest owns for every tool (common.prefault)
            prefault(ds.total_bytes + 64 * MiB)
        try:
            m = run_measured(
                argv,
                env=self.env,
                cwd=self.work,
                timeout=self.a.timeout,
                log_dir=self.work / "logs",
                tag=tag,
            )
            rec.update(
                exit_code=m.exit_code, wall_s=m.wall_s, user_s=m.user_s, sys_s=m.sys_s,
                cpu_s=m.cpu_s, maxrss_mib=m.maxrss_mib, timed_out=m.timed_out,
            )  # fmt: skip
            if tool == "trunkline":  # its --json summary, when asked for via --trunkline-args
                summary = _json_from(self.work / "logs" / f"{tag}.out")
                if summary is not None:
                    rec["trunkline_json"] = summary
            if m.exit_code != 0:
                why = "timeout" if m.timed_out else m.last_err_line
                if (
                    tool == "trunkline"
                    and m.exit_code == 2
                    and "No such command" in (m.stderr_tail + m.stdout_tail)
                ):
                    self.na[tool] = why
                    rec.update(status="n/a", reason=why)
                else:
                    rec.update(status="FAIL", reason=f"exit {m.exit_code}: {why}")
            else:
                err = verify()
                rec.update(status="FAIL" if err else "ok", reason=err or "")
        finally:
            cleanup()
        return rec

    def run_all(self) -> None:
        tools = self.a.tool_list
        for name in self.a.dataset_list:
            ds = self.a.sets[name]
            for direction in self.a.direction_list:
                self.log(f"{ds.name} {direction} ({ds.describe()}), {self.a.pairs} rounds")
                for rnd in range(self.a.pairs):
                    k = rnd % len(tools)
                    order = tools[k:] + tools[:k]
                    for pos, tool in enumerate(order):
                        rec = self.one(tool, ds, direction, rnd, pos)
                        self.runs.append(rec)
                        if rec["status"] == "ok":
                            gbps = ds.total_bytes * 8 / rec["wall_s"] / GB
                            self.log(
                                f"  r{rnd} {tool:9s} {rec['wall_s']:7.2f}s {gbps:6.2f} Gbit/s "
                                f"cpu {rec['cpu_s']:6.2f}s rss {rec['maxrss_mib']:6.0f} MiB"
                            )
                        else:
                            self.log(f"  r{rnd} {tool:9s} {rec['status']}: {rec['reason']}")


# --------------------------------------------------------------------------- report


def summarize(runs: list[dict], ds: Dataset, direction: str, tool: str) -> dict:
    mine = [
        r for r in runs if (r["dataset"], r["direction"], r["tool"]) == (ds.name, direction, tool)
    ]
    ok = [r for r in mine if r["status"] == "ok"]
    s: dict = {"n": len(mine), "ok": len(ok)}
    na = [r for r in mine if r["status"] == "n/a"]
    bad = [r for r in mine if r["status"] == "FAIL"]
    s["na"] = na[0]["reason"] if na else None
    s["fail"] = bad[-1]["reason"] if bad else None
    if ok:
        walls = [r["wall_s"] for r in ok]
        s["wall"] = median(walls)
        s["wall_min"], s["wall_max"] = min(walls), max(walls)
        s["gbps"] = ds.total_bytes * 8 / s["wall"] / GB
        s["objps"] = ds.count / s["wall"]
        s["cpu_per_gb"] = median([r["cpu_s"] / (ds.total_bytes / GB) for r in ok])
        s["rss"] = median([r["maxrss_mib"] for r in ok])
        s["rss_max"] = max(r["maxrss_mib"] for r in ok)
        own = [
            r["trunkline_json"]["seconds"]
            for r in ok
            if isinstance(r.get("trunkline_json"), dict)
            and isinstance(r["trunkline_json"].get("seconds"), int | float)
        ]
        s["own_seconds"] = median(own)  # the tool's own transfer time (trunkline --json)
    return s


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def render(a: argparse.Namespace, meta: dict, runs: list[dict]) -> tuple[str, dict]:
    m = meta["machine"]
    out = [
        f"# trunkline mover benchmark, {meta['started']}",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"- Machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB, "
        f"{m.get('os', '?')}, kernel {m.get('kernel')}, Python {m.get('python')}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m.get('loadavg', ()))}, "
        f"at end {', '.join(f'{x:.2f}' for x in meta.get('loadavg_end', ()))}",
        f"- Server: {meta['server']}; client and server share the CPUs",
    ]
    ip = meta.get("iperf3") or {}
    if ip.get("error") or not ip:
        out.append(f"- Loopback ceiling (iperf3): {ip.get('error', 'not measured')}")
    else:
        streams = ", ".join(
            f"{k[1:]} stream{'s' if k != 'P1' else ''} "
            + (f"{v} Gbit/s" if v is not None else f"failed ({ip.get(k + '_error')})")
            for k, v in ip.items()
            if k[0] == "P" and not k.endswith("_error")
        )
        out.append(f"- Loopback ceiling (iperf3, 127.0.0.1, {ip['seconds']} s each): {streams}")
    out.append("- Tools (each with its defaults unless said):")
    for t in a.tool_list:
        extra = getattr(a, f"{t}_args")
        note = TOOL_NOTES[t] + (f"; extra args `{extra}`" if extra else "")
        out.append(f"  - {t}: {meta['versions'].get(t)}; {note}")
    out += [
        f"- Method: rounds {a.pairs}, rotating order {' '.join(a.tool_list)}; medians over the "
        "runs that exited 0 and verified (all sizes, sha256 of "
        f"{a.sha_sample} sampled object(s)); wall, user+sys CPU and peak RSS of the tool's "
        "process tree, from `wait4` in a tiny launcher (RSS floor ~8 MiB); "
        "Gbit/s = bytes x 8 / median wall / 1e9; CPU s/GB per 1e9 bytes; "
        "ratios are to s5cmd's medians.",
        "- Set-up (not timed): download sources seeded once with boto3 defaults (multipart "
        "above 8 MiB, 8 MiB parts); each upload into a fresh bucket, warmed with one tiny "
        "object and deleted after; local download destination emptied before each run; "
        "`sync` before each run; source files are in the page cache.",
        "",
    ]
    st = meta.get("startup") or {}
    if st:
        out += [
            "Fixed cost per invocation (start-up, connect, list, one GET: each tool downloads "
            "one 1-byte object; median of 3). It is inside every run below and weighs on "
            "small (`--quick`) sets:",
            "",
            md_table(
                ["tool", "wall s", "CPU s", "peak RSS MiB"],
                [
                    [t, fmt(v["wall_s"], 3), fmt(v["cpu_s"], 3), fmt(v["maxrss_mib"], 0)]
                    if v["ok"]
                    else [t, f"FAIL: {v['error']}", "—", "—"]
                    for t, v in st.items()
                ],
            ),
            "",
        ]
    summary: dict = {}
    header = [
        "tool", "runs", "wall s (min–max)", "Gbit/s", "obj/s", "CPU s/GB",
        "peak RSS MiB", "wall ÷ s5cmd", "CPU ÷ s5cmd",
    ]  # fmt: skip
    for name in a.dataset_list:
        ds = a.sets[name]
        for direction in a.direction_list:
            stats = {t: summarize(runs, ds, direction, t) for t in a.tool_list}
            summary[f"{name}/{direction}"] = stats
            ref = stats.get("s5cmd", {})
            rows = []
            for t in a.tool_list:
                s = stats[t]
                if s["na"]:
                    rows.append([t, f"n/a: {s['na']}"] + ["—"] * 7)
                    continue
                status = f"{s['ok']}/{s['n']} ok" + (f"; FAIL: {s['fail']}" if s["fail"] else "")
                if not s["ok"]:
                    rows.append([t, status] + ["—"] * 7)
                    continue
                rows.append(
                    [
                        t,
                        status,
                        f"{fmt(s['wall'])} ({fmt(s['wall_min'])}–{fmt(s['wall_max'])})",
                        fmt(s["gbps"]),
                        fmt(s["objps"], 1),
                        fmt(s["cpu_per_gb"]),
                        f"{fmt(s['rss'], 0)}"
                        + (f" (max {s['rss_max']:.0f})" if s["ok"] > 1 else ""),
                        fmt(ratio(s["wall"], ref.get("wall"))),
                        fmt(ratio(s["cpu_per_gb"], ref.get("cpu_per_gb"))),
                    ]
                )
            out += [f"## {name}: {ds.describe()}, {direction}", "", md_table(header, rows), ""]

    # trunkline against the targets
    if "trunkline" in a.tool_list and "s5cmd" in a.tool_list:
        rows = []
        for key, stats in summary.items():
            t, s = stats["trunkline"], stats["s5cmd"]
            if not t.get("wall") or not s.get("wall"):
                why = t["na"] and f"n/a: {t['na']}" or t["fail"] or s["fail"] or "no good runs"
                rows.append([key, why, "—", "—", "—", "—"])
                continue
            w = ratio(t["wall"], s["wall"])
            o = ratio(t["objps"], s["objps"])
            c = ratio(t["cpu_per_gb"], s["cpu_per_gb"])
            rss = f"{t['rss_max']:.0f}"
            if a.max_memory_mib:
                ok = t["rss_max"] <= a.max_memory_mib + 150
                rss += f" ({'met' if ok else 'MISSED'}: <= {a.max_memory_mib:g} + 150)"
            rows.append(
                [
                    key,
                    f"{w:.2f} ({'met' if w <= 1.0 else 'MISSED'})",
                    f"{o:.2f} ({'met' if o >= 1.0 else 'MISSED'})"
                    if a.sets[key.split("/")[0]].size < 8 * MiB
                    else "—",
                    f"{c:.2f} ({'met' if c <= 1.5 else 'MISSED'})",
                    rss,
                    f"{fmt(t['wall'])} / {fmt(t['own_seconds'])} / {fmt(s['wall'])}",
                ]
            )
        out += [
            "## trunkline against the targets of issue 2",
            "",
            md_table(
                [
                    "set/direction",
                    "wall ÷ s5cmd (<= 1.0)",
                    "obj/s ÷ s5cmd (>= 1.0, small sets)",
                    "CPU/GB ÷ s5cmd (<= 1.5)",
                    "peak RSS MiB",
                    "wall s / in-transfer s (--json) / s5cmd wall s",
                ],
                rows,
            ),
            "",
        ]
    return "\n".join(out), summary


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="trunkline cp against s5cmd, rclone, boto3 and obstore on loopback S3.",
        epilog=__doc__.split("Method.")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="tiny sets: 4x16MiB, 1x128MiB, 200x256KiB")
    ap.add_argument(
        "--datasets", default=",".join(FULL), help="comma list (large16,huge1,small2000)"
    )
    ap.add_argument("--directions", default="upload,download",
                    help="upload,download,copy (copy: server-side, seeded bucket to a fresh one)")
    ap.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                    help="comma list, also the rotation order")
    ap.add_argument("--baseline-src", help="for tool trunkline_base: a src/ dir of the "
                                           "trunkline to compare with (e.g. main's)")
    ap.add_argument("--pairs", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--sha-sample", type=int, default=1, help="objects sha256-checked per run")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run before kill")
    ap.add_argument("--server", choices=("seaweedfs", "rgw", "juicefs"), default="seaweedfs",
                    help="which embedded S3 implementation to start (docs/stores.md)")
    ap.add_argument("--server-url", help="use this running S3 server instead of starting one")
    ap.add_argument("--access-key", help="with --server-url (default: $AWS_ACCESS_KEY_ID)")
    ap.add_argument("--secret-key", help="with --server-url (default: $AWS_SECRET_ACCESS_KEY)")
    ap.add_argument(
        "--max-memory-mib", type=float, help="trunkline's --max-memory, for the RSS target"
    )
    ap.add_argument("--no-iperf", action="store_true", help="skip the iperf3 loopback ceiling")
    ap.add_argument("--iperf-seconds", type=int, default=3)
    ap.add_argument("--workdir", help="parent of the scratch dir (default: system tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, data)")
    ap.add_argument("--out-dir", default=str(HERE / "out"))
    for t in TOOLS:
        ap.add_argument(f"--{t}-args", default="", help=f"extra args for {t} (one string)")
    a = ap.parse_args(argv)
    a.sets = QUICK if a.quick else FULL
    a.dataset_list = [d for d in a.datasets.split(",") if d]
    a.direction_list = [d for d in a.directions.split(",") if d]
    a.tool_list = [t for t in a.tools.split(",") if t]
    for kind, got, allowed in (
        ("dataset", a.dataset_list, a.sets),
        ("direction", a.direction_list, DIRECTIONS),
        ("tool", a.tool_list, TOOLS),
    ):
        bad = [x for x in got if x not in allowed]
        if bad or not got:
            ap.error(f"unknown {kind}(s) {bad or got}; choose from {', '.join(allowed)}")
    if a.pairs < 1:
        ap.error("--pairs must be >= 1")
    if "trunkline_base" in a.tool_list and not a.baseline_src:
        ap.error("tool trunkline_base needs --baseline-src")
    a.bin = {t: venv_bin(t) for t in ("trunkline", "s5cmd", "rclone")}
    a.bin["trunkline_base"] = a.bin["trunkline"]
    a.run_id = dt.datetime.now(dt.UTC).strftime("%H%M%S") + f"{os.getpid() % 1000:03d}"
    return a


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    cmd = shlex.join(
        ["python", os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)]
    )
    meta: dict = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": cmd,
        "machine": machine_info(),
        "datasets": {n: vars(a.sets[n]) for n in a.dataset_list},
        "pairs": a.pairs,
        "tools": a.tool_list,
        "tool_args": {t: getattr(a, f"{t}_args") for t in a.tool_list},
    }
    for t in a.tool_list:
        if t in ("s5cmd", "rclone", "trunkline") and not a.bin[t]:
            print(f"warning: {t} not found; its rows will be n/a", file=sys.stderr)
    meta["versions"] = tool_versions(a)
    work = Path(tempfile.mkdtemp(prefix="trunkline-bench-", dir=a.workdir))
    server = None
    bench = None
    interrupted = False
    try:
        if not a.no_iperf:
            print("iperf3 loopback ceiling ...", file=sys.stderr, flush=True)
            meta["iperf3"] = iperf3_ceiling((1, 8), a.iperf_seconds)
        print(f"starting S3 server (scratch {work}) ...", file=sys.stderr, flush=True)
        server = Server(a, work)
        a.endpoint_url = server.endpoint_url
        meta["server"] = server.kind
        bench = Bench(a, server, work)
        if "trunkline" in a.tool_list:
            why = probe_trunkline(a)
            if why:
                bench.na["trunkline"] = why
                print(f"trunkline cp n/a: {why}", file=sys.stderr)
        for t in ("s5cmd", "rclone"):
            if t in a.tool_list and not a.bin[t]:
                bench.na[t] = "not installed"
        meta["startup"] = bench.fixed_cost()
        for name in a.dataset_list:
            bench.prepare(a.sets[name])
        bench.run_all()
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted; writing what was measured", file=sys.stderr)
    finally:
        if server is not None:
            if a.server_url and bench is not None and bench.gen and \
                    {"download", "copy"} & set(a.direction_list):
                try:  # leave a shared server as we found it
                    server.delete_bucket(bench.seed_bucket)
                except Exception as e:
                    print(f"warning: could not delete {bench.seed_bucket}: {e}", file=sys.stderr)
            server.close()
        if a.keep:
            print(f"scratch kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta["loadavg_end"] = os.getloadavg()
    meta.setdefault("server", "not started")
    meta["interrupted"] = interrupted
    runs = bench.runs if bench else []
    text, summary = render(a, meta, runs)
    if interrupted:
        text = "**Interrupted: partial results.**\n\n" + text
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, js_path = out_dir / f"mover-{stamp}.md", out_dir / f"mover-{stamp}.json"
    md_path.write_text(text + "\n")
    js_path.write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))
    print(text)
    print(f"\nwritten: {md_path} and {js_path.name}", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
