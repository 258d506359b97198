"""Shared fixtures: a real SeaweedFS S3 server on loopback for the whole session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from trunkline.embedded_s3 import EmbeddedS3

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = Path(os.environ.get("TRUNKLINE_SHARED_DATA", SHARED / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (captures, enrichment tables); skip clearly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set TRUNKLINE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_state(tmp_path_factory):
    """Resume journals of the tests live in a temp dir, never in the user's state dir."""
    old = os.environ.get("TRUNKLINE_STATE_DIR")
    os.environ["TRUNKLINE_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if old is None:
        os.environ.pop("TRUNKLINE_STATE_DIR", None)
    else:
        os.environ["TRUNKLINE_STATE_DIR"] = old


@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """A real SeaweedFS (weed mini) on free loopback ports, stopped at session end."""
    srv = EmbeddedS3(data_dir=tmp_path_factory.mktemp("weed"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def aws_env(s3server, monkeypatch):
    """The AWS_* variables of the session server, and no user config file."""
    for k, v in s3server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent/trunkline.toml")
    return s3server


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} not installed (scripts/system-deps.sh installs it as root)")
    return path
