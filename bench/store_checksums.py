"""Downloads of objects by the checksum their store keeps (issue 18): what each costs.

    python bench/store_checksums.py --size 1GiB --algos crc32,crc32c --rounds 5

Method. One SeaweedFS (the embedded one) on loopback; one object of random bytes per
algorithm, put once with boto3 (a single PUT carrying ``x-amz-checksum-<algo>``, as AWS's
SDKs send by default: a FULL_OBJECT checksum the store keeps and returns; ``none``: none
sent, but SeaweedFS computes a CRC-32 itself, as AWS S3 computes a CRC64NVME). With
``crc32c`` the receive loop's own sum settles it; any other needs a second sum. Each object is then downloaded by ``trunkline cp`` with each
``TRUNKLINE_CRC32C`` library (``--libs``, default ``auto`` and ``google``; ``base``: the
tree of ``--base-src`` with its default library), alternating A B A B, into a fresh file on the VM's disk (``--dst``), sha256 checked after every run
and ``verified`` read from ``--json``. Per run, measured by the small launcher of
``common.run_measured`` around the child only: wall, user and system CPU seconds. Medians
over the rounds, CPU per decimal GB. SeaweedFS shares the machine and bounds the wall
time; the client's CPU per GB is what this compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import GB, machine_info, median, run_measured

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from trunkline.embedded_s3 import EmbeddedS3  # noqa: E402
from trunkline.units import parse_size  # noqa: E402

BOTO_ALGO = {"crc32": "CRC32", "crc32c": "CRC32C", "sha256": "SHA256", "sha1": "SHA1",
             "crc64nvme": "CRC64NVME"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--algos", default="crc32,crc32c")
    ap.add_argument("--libs", default="auto,google")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dst", default=None, help="folder of the downloaded file (default: tmp)")
    ap.add_argument("--base-src", default=None, help="lib 'base': this src/ dir, its default")
    a = ap.parse_args()
    size = parse_size(a.size)
    algos, libs = a.algos.split(","), a.libs.split(",")
    work = Path(tempfile.mkdtemp(prefix="tl-storesums-"))
    dst_dir = Path(a.dst) if a.dst else work
    srv = EmbeddedS3(data_dir=work / "weed")
    srv.start()
    try:
        srv.create_bucket("sums")
        c = srv.client()
        data = os.urandom(size)
        want = hashlib.sha256(data).hexdigest()
        for algo in algos:
            extra = {} if algo == "none" else {"ChecksumAlgorithm": BOTO_ALGO[algo]}
            c.put_object(Bucket="sums", Key=algo, Body=data, **extra)
        del data
        env = dict(os.environ, **srv.env, TRUNKLINE_CONFIG="/nonexistent",
                   TRUNKLINE_STATE_DIR=str(work / "state"))
        print(f"load before: {os.getloadavg()}", flush=True)
        rows: dict[tuple[str, str], list] = {}
        kinds: dict[tuple[str, str], set] = {}
        for r in range(a.rounds):
            for algo in algos:
                for lib in libs if r % 2 == 0 else list(reversed(libs)):
                    out = dst_dir / f"tl-storesums-{os.getpid()}.bin"
                    out.unlink(missing_ok=True)
                    lenv = (dict(env, PYTHONPATH=str(Path(a.base_src).resolve()))
                            if lib == "base" else
                            dict(env, PYTHONPATH=str(HERE.parent / "src"), TRUNKLINE_CRC32C=lib))
                    m = run_measured([sys.executable, "-m", "trunkline.cli.main", "cp",
                                      "--json", "-q", "--no-resume", f"s3://sums/{algo}",
                                      str(out)],
                                     env=lenv,
                                     log_dir=work / "logs", tag=f"{algo}-{lib}-{r}")
                    if m.exit_code != 0:
                        raise SystemExit(f"{algo} {lib}: {m.stderr_tail[-300:]}")
                    h = hashlib.sha256()
                    with open(out, "rb") as f:
                        while chunk := f.read(8 << 20):
                            h.update(chunk)
                    if h.hexdigest() != want:
                        raise SystemExit(f"{algo} {lib}: the file differs from the object")
                    res = json.loads((work / "logs" / f"{algo}-{lib}-{r}.out").read_text())
                    kinds.setdefault((algo, lib), set()).update(res["verified"] or {"-": 0})
                    rows.setdefault((algo, lib), []).append(m)
                    out.unlink()
        print(f"load after: {os.getloadavg()}")
        print(f"machine: {machine_info()}")
        gb = size / GB
        print("| store keeps | library | verified as | wall s | user s/GB | sys s/GB | CPU s/GB |")
        print("|---|---|---|---|---|---|---|")
        for algo in algos:
            for lib in libs:
                ms = rows[(algo, lib)]
                print(f"| {algo} | {lib} | {','.join(sorted(kinds[(algo, lib)]))} | "
                      f"{median([m.wall_s for m in ms]):.2f} | "
                      f"{median([m.user_s for m in ms]) / gb:.3f} | "
                      f"{median([m.sys_s for m in ms]) / gb:.3f} | "
                      f"{median([m.user_s + m.sys_s for m in ms]) / gb:.3f} |")
        print(f"medians of {a.rounds} rounds, {a.size} object")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
