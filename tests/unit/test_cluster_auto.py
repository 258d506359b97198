"""How many engine processes ``cp`` takes by itself (``cluster/auto.py``, issue 18)."""

from __future__ import annotations

import os

import pytest

from trunkline.cluster.auto import (
    AUTO_MAX_PROCESSES,
    AUTO_PAGE,
    available_cpus,
    processes_for,
)
from trunkline.engine.tune import SMALL_OBJECT_BYTES

pytestmark = pytest.mark.unit

SMALL, LARGE = 256 * 1024, 64 << 20


def test_a_full_first_page_of_small_objects_gets_one_process_per_cpu_up_to_the_cap():
    page = [SMALL] * AUTO_PAGE
    assert processes_for(page, cpus=2) == 2
    assert processes_for(page, cpus=6) == 6
    assert processes_for(page, cpus=64) == AUTO_MAX_PROCESSES
    # the bound of a small object is the tuner's, inclusive
    assert processes_for([SMALL_OBJECT_BYTES] * AUTO_PAGE, cpus=4) == 4
    assert processes_for([SMALL_OBJECT_BYTES + 1] * AUTO_PAGE, cpus=4) == 1


def test_one_process_for_a_short_listing_large_objects_or_one_cpu():
    assert processes_for([SMALL] * (AUTO_PAGE - 1), cpus=16) == 1
    assert processes_for([], cpus=16) == 1
    assert processes_for([SMALL] * AUTO_PAGE, cpus=1) == 1
    assert processes_for([LARGE] * AUTO_PAGE, cpus=16) == 1
    # 90 % small is enough, 89.9 % is not
    n_small = int(0.9 * AUTO_PAGE)
    assert processes_for([SMALL] * n_small + [LARGE] * (AUTO_PAGE - n_small), cpus=4) == 4
    assert processes_for([SMALL] * (n_small - 1) + [LARGE] * (AUTO_PAGE - n_small + 1),
                         cpus=4) == 1


def test_the_cpus_are_those_this_process_may_run_on():
    assert available_cpus() == len(os.sched_getaffinity(0))


def test_the_memory_bound_stays_the_commands_total_across_the_processes_it_chose():
    from trunkline.cluster.auto import memory_shared
    from trunkline.options import DEFAULT_MAX_MEMORY, TransferOptions

    opts = TransferOptions.build(None)
    assert memory_shared(opts, 1) is opts
    assert memory_shared(opts, 2).max_memory == DEFAULT_MAX_MEMORY // 2
    assert memory_shared(opts, 8).max_memory == DEFAULT_MAX_MEMORY // 8
    # never below one part per process
    small = TransferOptions.build(None, max_memory="64MiB", part_size="32MiB")
    assert memory_shared(small, 8).max_memory == 32 << 20
    # the rest is untouched (connections are split by the driver, as for -P N)
    assert memory_shared(opts, 4).max_connections == opts.max_connections
