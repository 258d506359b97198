"""What every embedded S3 server for tests and benches shares, whatever implements it.

Why: the mover is proven on several S3 implementations (SeaweedFS, Ceph RGW, the JuiceFS
gateway). Tests and benches must treat them alike, so each exposes one surface
(``endpoint_url``, ``env``, ``client()``, ``create_bucket``, ``start``/``stop``, context
manager); everything that does not depend on the implementation lives here once, and
each server (``trunkline.embedded_s3.EmbeddedS3``, ``embedded_rgw``, ``embedded_juicefs``)
only says how to launch and stop its processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

ACCESS_KEY = "trunkline-local"
SECRET_KEY = "trunkline-local-secret"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class S3ServerBase:
    """Credentials, client, buckets, the start/stop frame and process-group teardown of
    an embedded server. A server implements ``_start`` (launch, then ``_wait_serving``)
    and ``_stop_processes``; ``start`` owns the rest: a temporary directory when none was
    given, the buckets, the start time, and a full stop if anything fails on the way.
    A server's own settings are the fields its dataclass adds after these."""

    data_dir: Path | None = None
    buckets: tuple[str, ...] = ()
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    host: str = "127.0.0.1"
    port: int = 0
    start_seconds: float = field(default=0.0, kw_only=True)   # measured: until S3 answers
    _owned_dir: str | None = field(default=None, repr=False, kw_only=True)

    name: ClassVar[str] = "s3"
    start_timeout: ClassVar[float] = 60.0
    # botocore's checksum behaviour for ``client()``: only where an API requires one, so
    # that objects set up by tests carry no checksum the test did not ask for
    client_checksums: ClassVar[dict[str, Any]] = {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required"}

    def start(self, timeout: float | None = None):
        t0 = time.monotonic()
        try:
            if self.data_dir is None:
                self._owned_dir = tempfile.mkdtemp(prefix=f"trunkline-{self.name}-")
                self.data_dir = Path(self._owned_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._start(timeout if timeout is not None else self.start_timeout)
            for b in self.buckets:
                self.create_bucket(b)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self._stop_processes()
        if self._owned_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def _start(self, timeout: float) -> None:
        raise NotImplementedError

    def _stop_processes(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        """Whether the server serves S3 (some need more than an HTTP answer)."""
        return self._answers_http()

    def _wait_serving(self, timeout: float, procs: Iterable[subprocess.Popen],
                      why: Callable[[], str]) -> None:
        """Wait until ``_ready``; a process of ``procs`` that exits, or the timeout, fails
        the start with ``why()`` (where its log is)."""
        deadline = time.monotonic() + timeout
        while not self._ready():
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{self.name}: {Path(str(p.args[0])).name} exited "
                                       f"({p.returncode}); {why()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not serve within {timeout:g}s; {why()}")
            time.sleep(0.1)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point AWS-convention tools (and trunkline) at us."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def client(self):
        """A plain botocore S3 client for this server (test set-up and independent checks)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5},
                          **self.client_checksums),
        )

    def create_bucket(self, name: str) -> None:
        c = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                c.create_bucket(Bucket=name)
                return
            except (c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists):
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def _answers_http(self) -> bool:
        """Any HTTP answer on the endpoint (403 for an unsigned list) means it serves."""
        try:
            urllib.request.urlopen(self.endpoint_url + "/", timeout=1)
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), SIGKILL
    after ``grace`` seconds, and reap it: nothing it started outlives it."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # stragglers of the group, if any
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
