"""Measure one command from a small process: ``python -S -I mover_launch.py RESULT CMD...``.

Why it exists: on Linux a child's ``ru_maxrss`` starts at its parent's resident size at
``fork`` and survives ``exec``, so a tool started straight from the benchmark (a Python
process with boto3 loaded, ~100 MiB) would report at least that much peak RSS. Started
from this tiny launcher (~8 MiB, stdlib ``os``/``sys``/``time`` only), the floor is ~8 MiB.

It spawns CMD (same stdio, environment, process group), reaps it with ``wait4`` and writes
``wall_s user_s sys_s maxrss_kib wait_status`` on one line to RESULT; its exit code is the
command's (128 + signal when killed). Wall time runs from just before spawn to the reap.
"""

import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: mover_launch.py RESULT CMD [ARGS...]", file=sys.stderr)
        return 2
    result, argv = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ)
    except OSError as e:
        print(f"launch: {argv[0]}: {e}", file=sys.stderr)
        return 127
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter()
    with open(result, "w") as f:
        f.write(f"{t1 - t0!r} {ru.ru_utime!r} {ru.ru_stime!r} {ru.ru_maxrss} {status}\n")
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
