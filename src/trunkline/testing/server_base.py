"""What every embedded S3 server for tests and benches shares, whatever implements it.

Why: the mover is proven on several S3 implementations (SeaweedFS, Ceph RGW, the JuiceFS
gateway). Tests and benches must treat them alike, so each exposes the surface of
:class:`~trunkline.embedded_s3.EmbeddedS3` (``endpoint_url``, ``env``, ``client()``,
``create_bucket``, ``start``/``stop``, context manager); the parts that do not depend on
the implementation live here once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request


class S3ServerBase:
    """Credentials, client, buckets and process-group teardown for an embedded server."""

    name = "s3"
    host: str
    port: int
    access_key: str
    secret_key: str

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
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"),
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
        return self.start()  # type: ignore[attr-defined]

    def __exit__(self, *exc) -> None:
        self.stop()  # type: ignore[attr-defined]


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
