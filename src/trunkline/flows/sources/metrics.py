"""Prometheus text exposition of the collector's counters, on a tiny HTTP server.

Served from the collector's last published snapshot (a dict replaced atomically), so
scraping never touches the decoder's live state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(snap: dict) -> str:
    lines = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
        lines.append(f"# HELP trunkline_flows_{name} {help_}")
        lines.append(f"# TYPE trunkline_flows_{name} {kind}")
        for labels, v in samples:
            lab = ",".join(f'{k}="{_esc(str(x))}"' for k, x in labels.items())
            lines.append(f"trunkline_flows_{name}{{{lab}}} {v}" if lab else
                         f"trunkline_flows_{name} {v}")

    ex = snap.get("exporters", {})
    for key, help_ in (("packets", "datagrams received"), ("records", "flow records decoded"),
                       ("templates", "templates learned"),
                       ("discarded_records", "records discarded with their failing datagram"),
                       ("evicted_domains", "template domains evicted for memory"),
                       ("buffered_sets", "data sets buffered awaiting their template")):
        metric(f"{key}_total", "counter", help_,
               [({"exporter": e}, c.get(key, 0)) for e, c in ex.items()])
    metric("drops_total", "counter", "malformed or undecodable datagrams and sets",
           [({"exporter": e, "reason": r}, n) for e, c in ex.items()
            for r, n in c.get("drops", {}).items()])
    col = snap.get("collector", {})
    for key, kind in (("written_records", "counter"), ("write_errors", "counter"),
                      ("lost_records", "counter"), ("status_errors", "counter"),
                      ("socket_drops", "counter"), ("workers", "gauge"),
                      ("pending_records", "gauge"), ("queued_batches", "gauge"),
                      ("templates", "gauge"), ("template_bytes", "gauge"),
                      ("uptime_s", "gauge")):
        if key in col:
            metric(f"collector_{key}", kind, key.replace("_", " "), [({}, col[key])])
    if "quarantined" in col:
        metric("quarantined_records_total", "counter",
               "records kept out of the day partitions (times not sane)",
               [({"reason": r}, n) for r, n in col["quarantined"].items()])
    if "state" in col:
        metric("collector_failed", "gauge", "1 once a receive loop died (see flows status)",
               [({}, int(col["state"] == "failed"))])
    return "\n".join(lines) + "\n"


MAX_CLIENTS = 16
"""Scrapes served at once; a connection beyond them is closed at once."""
CLIENT_TIMEOUT_S = 5.0
"""A client that sends nothing (or trickles its request) for this long is dropped."""


class _BoundedServer(ThreadingHTTPServer):
    """An open port like the collector's UDP ones, so hostile input too: a thread per
    connection, but at most ``MAX_CLIENTS`` of them, each dropped after
    ``CLIENT_TIMEOUT_S`` without progress. (``ThreadingHTTPServer`` alone kept one thread
    for ever per idle connection: a few thousand idle sockets and the collector's process
    runs out of threads.)"""

    daemon_threads = True

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.turned_away = 0

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.turned_away += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_metrics(host: str, port: int, snapshot: Callable[[], dict]) -> ThreadingHTTPServer:
    """Start serving ``/metrics`` in a daemon thread; call ``.shutdown()`` to stop."""

    class Handler(BaseHTTPRequestHandler):
        timeout = CLIENT_TIMEOUT_S   # applied to the connection's socket by the handler

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = render(snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    srv = _BoundedServer((host, port), Handler)
    threading.Thread(target=srv.serve_forever, name="flow-metrics", daemon=True).start()
    return srv
