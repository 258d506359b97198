"""A cheap S3 origin for client-bound benchmarks: nginx serving files, read-only.

Why: against SeaweedFS on this 2-core box the server takes as much CPU as the client, so a
download measures both. nginx serves a file with ``sendfile`` for a few microseconds of
CPU per request, and answers what a downloader needs of S3: ``GET``/``HEAD`` of
``/bucket/key`` with ``Range``, ``ETag``, ``Last-Modified`` and ``If-Match``; the
ListObjectsV2 pages of each dataset prefix are static XML written beside the data and
chosen by an nginx rewrite on the query (``prefix=``, ``continuation-token=``). Request
signatures are ignored (it is a benchmark origin on loopback, not a store).

Needs Debian's nginx (``apt-get install nginx-light``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

PAGE = 1000  # keys per ListObjectsV2 page, as S3


def nginx_etag(st: os.stat_result) -> str:
    """The ETag nginx sends for a static file: hex mtime - hex size, quoted."""
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def write_listing(root: Path, bucket: str, prefix: str) -> int:
    """The ListObjectsV2 pages of ``bucket/prefix`` as files ``_list/<prefix>-<n>.xml``."""
    base = root / bucket / prefix
    names = sorted(p.name for p in base.iterdir() if p.is_file())
    out = root / "_list"
    out.mkdir(exist_ok=True)
    pages = [names[i:i + PAGE] for i in range(0, len(names), PAGE)] or [[]]
    for n, page in enumerate(pages, 1):
        rows = []
        for name in page:
            st = (base / name).stat()
            mtime = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            rows.append(f"<Contents><Key>{escape(prefix + '/' + name)}</Key>"
                        f"<LastModified>{mtime}</LastModified>"
                        f"<ETag>{escape(nginx_etag(st))}</ETag><Size>{st.st_size}</Size>"
                        "<StorageClass>STANDARD</StorageClass></Contents>")
        more = n < len(pages)
        token = f"<NextContinuationToken>p{n + 1}</NextContinuationToken>" if more else ""
        (out / f"{prefix}-{n}.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{bucket}</Name><Prefix>{prefix}/</Prefix><KeyCount>{len(page)}</KeyCount>"
            f"<MaxKeys>{PAGE}</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>"
            + "".join(rows) + token + "</ListBucketResult>")
    return len(names)


CONF = """
worker_processes {workers};
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    types {{ application/octet-stream bin; application/xml xml; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
        location = /{bucket} {{ rewrite ^ /{bucket}/ last; }}
        location = /{bucket}/ {{
            set $ds "";
            set $page 1;
            if ($args ~ "prefix=([A-Za-z0-9_]+)") {{ set $ds $1; }}
            if ($args ~ "continuation-token=p([0-9]+)") {{ set $page $1; }}
            rewrite ^ /_list/$ds-$page.xml last;
        }}
        location /_list/ {{ internal; default_type application/xml; }}
        location /{bucket}/ {{ }}
    }}
}}
"""


class NginxOrigin:
    """nginx on 127.0.0.1:port serving ``root/bucket``; a context manager."""

    def __init__(self, root: Path, bucket: str, port: int, workers: int = 1):
        self.root, self.bucket, self.port, self.workers = root, bucket, port, workers
        self.run = root / "_nginx"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> NginxOrigin:
        self.run.mkdir(exist_ok=True)
        conf = self.run / "nginx.conf"
        conf.write_text(CONF.format(workers=self.workers, run=self.run, port=self.port,
                                    root=self.root, bucket=self.bucket))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.run)],
                                     start_new_session=True, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/{self.bucket}/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # answering (404 for an unknown prefix's listing)
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"nginx did not start; see {self.run}/error.log")

    def cpu_seconds(self) -> float:
        """user+sys CPU of the nginx processes so far (from /proc)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
                if self.proc is None or os.getpgid(int(p.name)) != self.proc.pid:
                    continue
            except (OSError, ProcessLookupError):
                continue
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
