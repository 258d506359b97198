"""Issue 8 benchmark: multi-node copies on Ray, on this one machine.

A local Ray cluster (a head without CPUs plus two worker nodes, each its own raylet, all
on 127.0.0.1) and an embedded SeaweedFS. Measures:

1. one worker vs two, s3 -> s3 (streamed through the workers) and s3 -> each node's local
   path, alternating rounds; the driver's ``seconds`` (first dispatch to last result) and
   the wall time of the whole call (actor start-up included), plus the single-node engine
   in-process as the reference. Every node shares the same 2 cores and the same SeaweedFS,
   so two workers can at best match one: this measures overhead, not scaling.
2. the driver's scheduling rate: ``dry_run`` over N tiny objects (listed, sharded,
   dispatched to the workers, which build the jobs; nothing moved), against listing alone.

    .venv/bin/python bench/cluster.py --objects 16 --size 32M --rounds 3 --tiny 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

MiB = 1 << 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=16)
    ap.add_argument("--size", default="32M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", type=int, default=100_000, help="objects for the dry run")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()

    import trunkline
    from trunkline.cluster import copy_on_ray
    from trunkline.embedded_s3 import EmbeddedS3
    from trunkline.engine.jobs import EndpointCache, _sources
    from trunkline.engine.plan import parse_size
    from trunkline.testing.ray_cluster import local_ray_cluster
    from trunkline.url import parse_location

    tmp = Path(tempfile.mkdtemp(prefix="trunkline-bench-ray-"))
    os.environ["TRUNKLINE_STATE_DIR"] = str(tmp / "state")
    srv = EmbeddedS3(data_dir=tmp / "weed")
    srv.start()
    stack = ExitStack()     # the Ray cluster, once started
    out: dict = {"machine": {"cpus": os.cpu_count(), "load1_start": os.getloadavg()[0]},
                 "args": vars(args)}
    try:
        os.environ.update(srv.env)
        for b in ("bsrc", "bdst", "btiny"):
            srv.create_bucket(b)
        size = parse_size(args.size)
        data = tmp / "data"
        data.mkdir()
        for i in range(args.objects):
            (data / f"obj-{i:03d}.bin").write_bytes(os.urandom(size))
        r = trunkline.copy(str(data) + "/", "s3://bsrc/set/", recursive=True)
        assert r.ok, r.failures
        shutil.rmtree(data)
        total = args.objects * size
        cluster = stack.enter_context(local_ray_cluster(("a", "b"), object_store_memory=80 * MiB))
        addr = cluster.address

        rows: dict[str, list[dict]] = {}

        def record(label: str, res, wall: float) -> None:
            assert res.ok, res.failures
            rows.setdefault(label, []).append({
                "seconds": res.seconds, "wall": wall, "gbps": res.bytes * 8 / res.seconds / 1e9,
                "bytes": res.bytes, "nodes": getattr(res, "nodes", [])})

        for rnd in range(args.rounds):
            t = time.perf_counter()
            res = trunkline.copy("s3://bsrc/set/", "s3://bdst/single/", recursive=True,
                                 server_side=False, resume=False)
            record("single-node engine, s3->s3 (in-process)", res, time.perf_counter() - t)
            for workers, sel in ((1, "trunkline_node_a"), (2, None)):
                t = time.perf_counter()
                res = copy_on_ray("s3://bsrc/set/", f"s3://bdst/ray{workers}/", recursive=True,
                                  cluster=addr, node_resource=sel, server_side=False,
                                  resume=False, shard_size="64M")
                record(f"ray {workers} worker(s), s3->s3", res, time.perf_counter() - t)
                dst = tmp / f"local{workers}-{rnd}" / "n-{node}"
                t = time.perf_counter()
                res = copy_on_ray("s3://bsrc/set/", str(dst) + "/", recursive=True,
                                  cluster=addr, node_resource=sel, per_node_dest=True,
                                  resume=False, shard_size="64M")
                record(f"ray {workers} worker(s), s3->local per node", res,
                       time.perf_counter() - t)
                shutil.rmtree(dst.parent, ignore_errors=True)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

        out["transfer"] = {
            label: {"median_gbps": statistics.median(x["gbps"] for x in v),
                    "median_seconds": statistics.median(x["seconds"] for x in v),
                    "median_wall": statistics.median(x["wall"] for x in v),
                    "runs": v}
            for label, v in rows.items()
        }
        out["transfer_bytes"] = total

        # -- the driver's scheduling rate ----------------------------------------------
        tiny = tmp / "tiny"
        tiny.mkdir()
        for i in range(args.tiny):
            (tiny / f"t{i:07d}").write_bytes(b"x")
        t = time.perf_counter()
        r = trunkline.copy(str(tiny) + "/", "s3://btiny/t/", recursive=True)
        assert r.ok, r.failures[:3]
        out["tiny_upload_s"] = time.perf_counter() - t
        shutil.rmtree(tiny)
        t = time.perf_counter()
        n = sum(1 for _ in _sources(parse_location("s3://btiny/t/"), EndpointCache(), True))
        out["list_only"] = {"objects": n, "seconds": time.perf_counter() - t}
        out["list_only"]["objects_per_s"] = n / out["list_only"]["seconds"]
        dry = {}
        for workers, sel in ((1, "trunkline_node_a"), (2, None)):
            runs = []
            for _ in range(2):
                t = time.perf_counter()
                res = copy_on_ray("s3://btiny/t/", "s3://bdst/dry/", recursive=True,
                                  cluster=addr, node_resource=sel, dry_run=True)
                wall = time.perf_counter() - t
                assert res.ok and res.objects == n, (res.objects, res.failures)
                runs.append({"seconds": res.seconds, "wall": wall,
                             "objects_per_s": res.objects / res.seconds,
                             "shards": res.shards, "parts": res.planned_parts})
            dry[f"{workers} worker(s)"] = runs
        out["dry_run"] = dry
        out["machine"]["load1_end"] = os.getloadavg()[0]
    finally:
        stack.close()
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
