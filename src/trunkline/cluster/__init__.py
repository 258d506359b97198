"""Sharded transfers: on Ray (``copy(..., cluster=...)`` / ``cp --ray``) or on several
engine processes of this host (``copy(..., processes=N)`` / ``cp --processes N``).

The driver lists the source (streaming), cuts it into shards (batches of objects, and part
ranges of large objects for s3 -> s3) and hands them to worker actors: one per Ray node, or
child processes of this one (``processes.py``); each worker runs the ordinary single-node
engine. See docs/cluster.md.

Ray is optional (``pip install 'trunkline[ray]'``): this module imports it only when used.
"""

from __future__ import annotations

from .driver import (
    ClusterResult,
    ClusterUnavailable,
    NodeProgress,
    copy_on_processes,
    copy_on_ray,
)

__all__ = ["ClusterResult", "ClusterUnavailable", "NodeProgress", "copy_on_processes",
           "copy_on_ray"]
