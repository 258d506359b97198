"""Multi-node transfers on Ray: ``trunkline.copy(..., cluster=...)`` / ``cp --ray``.

The driver lists the source (streaming), cuts it into shards (batches of objects, and part
ranges of large objects for s3 -> s3) and hands them to one worker actor per Ray node; each
worker runs the ordinary single-node engine. See docs/cluster.md.

Ray is optional (``pip install 'trunkline[ray]'``): this module imports it only when used.
"""

from __future__ import annotations

from .driver import ClusterResult, ClusterUnavailable, NodeProgress, copy_on_ray

__all__ = ["ClusterResult", "ClusterUnavailable", "NodeProgress", "copy_on_ray"]
