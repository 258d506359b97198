"""A real multi-node Ray cluster on this one machine, for tests and benchmarks.

A head without CPUs and one worker node per name, each its own raylet, all on 127.0.0.1
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray's multi-node test mode on loopback).
Node ``NAME`` carries the custom resource ``trunkline_node_NAME``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def local_ray_cluster(names: Iterable[str] = ("a", "b"),
                      object_store_memory: int = 80 << 20) -> Iterator[Any]:
    """Start the cluster, connect this process to it, yield the ``Cluster``; on exit
    disconnect, stop every node and restore Ray's loopback flag."""
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    old_env = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    old_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # loopback only
    ray_constants.ENABLE_RAY_CLUSTER = False
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, object_store_memory=object_store_memory, include_dashboard=False))
    try:
        for name in names:
            c.add_node(num_cpus=1, object_store_memory=object_store_memory,
                       resources={f"trunkline_node_{name}": 1})
        ray.init(address=c.address, log_to_driver=False, configure_logging=False)
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = old_env
