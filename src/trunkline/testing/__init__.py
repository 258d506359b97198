"""Test and benchmark helpers: a WAN-emulating, fault-injecting loopback proxy.

The kernel here has no netem, so latency, windows, rate caps and HTTP faults are made in
user space by :class:`~trunkline.testing.proxy.Proxy`, in front of a real S3 server.
"""

from __future__ import annotations

from .proxy import Fault, Proxy, ProxyStats, Rewrite

__all__ = ["Fault", "Proxy", "ProxyStats", "Rewrite"]
