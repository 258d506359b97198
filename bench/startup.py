"""Start-up of a short copy (issue 18): ``trunkline cp`` of one small object, per tree.

    python bench/startup.py --tree base=/tmp/base/src --tree new=src --rounds 9

Method. One SeaweedFS (the embedded one) on loopback holds a 256 KiB object; each tree
(a ``src/`` directory, put first on PYTHONPATH; its compiled core built in place) runs
``trunkline cp -q --no-resume`` of it to a local file, download and upload, the trees
alternating A B A B so both see the same load. Per run, measured by the small launcher
of ``common.run_measured`` around the child only: wall seconds from process start to
exit, user and system CPU seconds. Medians; the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import median, run_measured

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from trunkline.embedded_s3 import EmbeddedS3  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=SRC")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--size", type=int, default=256 * 1024)
    a = ap.parse_args()
    trees = [t.split("=", 1) for t in a.tree]
    work = Path(tempfile.mkdtemp(prefix="tl-startup-"))
    srv = EmbeddedS3(data_dir=work / "weed")
    srv.start()
    try:
        srv.create_bucket("startup")
        src = work / "small.bin"
        src.write_bytes(os.urandom(a.size))
        srv.client().put_object(Bucket="startup", Key="small", Body=src.read_bytes())
        env = dict(os.environ, **srv.env, TRUNKLINE_CONFIG="/nonexistent",
                   TRUNKLINE_STATE_DIR=str(work / "state"))
        print(f"load before: {os.getloadavg()}")
        res: dict[tuple[str, str], list] = {}
        for r in range(a.rounds):
            for name, tree in trees if r % 2 == 0 else reversed(trees):
                e = dict(env, PYTHONPATH=str(Path(tree).resolve()))
                for how, argv in (("download", ["s3://startup/small", str(work / "x")]),
                                  ("upload", [str(src), f"s3://startup/up-{name}-{r}"])):
                    m = run_measured([sys.executable, "-m", "trunkline.cli.main", "cp", "-q",
                                      "--no-resume", *argv], env=e, log_dir=work / "logs",
                                     tag=f"{name}-{how}-{r}")
                    if m.exit_code != 0:
                        raise SystemExit(f"{name} {how}: {m.last_err_line}")
                    res.setdefault((name, how), []).append(m)
                    (work / "x").unlink(missing_ok=True)
        print(f"load after: {os.getloadavg()}")
        print("| tree | direction | wall s | user s | sys s | runs |")
        print("| --- | --- | --- | --- | --- | --- |")
        for (name, how), ms in res.items():
            print(f"| {name} | {how} | {median([m.wall_s for m in ms]):.3f} | "
                  f"{median([m.user_s for m in ms]):.3f} | {median([m.sys_s for m in ms]):.3f} "
                  f"| {len(ms)} |")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
