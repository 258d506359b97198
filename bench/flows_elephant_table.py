"""What deriving the quarters' elephant tables costs (issue 20), on an existing store:

    PYTHONPATH=src .venv/bin/python bench/flows_elephant_table.py /tmp/tl100/store 2025Q3 2025Q4

Prints one JSON object: wall s, CPU s (getrusage of this process, every thread), peak RSS,
and per quarter the records and tuples kept (``elephant_table.derive``'s counts).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from trunkline.flows import elephant_table
from trunkline.flows.elephants import Thresholds
from trunkline.flows.stats import Quarter
from trunkline.flows.store import FlowStore


def main() -> None:
    store = FlowStore(sys.argv[1])
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = {}
    for q in sys.argv[2:]:
        t1 = time.perf_counter()
        out[q] = elephant_table.derive(store, Quarter.parse(q), Thresholds())
        out[q]["s"] = time.perf_counter() - t1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall_s": time.perf_counter() - t,
                      "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
                      "peak_rss_mb": r1.ru_maxrss / 1024, **out}))


if __name__ == "__main__":
    main()
