"""Test and benchmark helpers: a WAN-emulating, fault-injecting loopback proxy, and more
real S3 servers.

The kernel here has no netem, so latency, windows, rate caps and HTTP faults are made in
user space by :class:`~trunkline.testing.proxy.Proxy`, in front of a real S3 server.
Besides SeaweedFS (``trunkline.embedded_s3``), ``embedded_rgw`` (a one-node Ceph RGW) and
``embedded_juicefs`` (the JuiceFS gateway) start other S3 implementations on loopback;
``refusing_proxy`` plays a store that refuses checksum headers. They are imported from
their modules (not here) so that importing the proxy stays cheap.
"""

from __future__ import annotations

from .proxy import Fault, Proxy, ProxyStats, Rewrite

__all__ = ["Fault", "Proxy", "ProxyStats", "Rewrite"]
