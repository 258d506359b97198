"""A one-node Ceph cluster with a RADOS Gateway on loopback: a third S3 implementation.

Why: Ceph RGW is the S3 store most teams run themselves, and it differs from SeaweedFS
where the mover's guarantees live (checksum headers, multipart ETags, listing order).
The cluster is the smallest that serves S3, made in a temporary directory: one monitor,
one OSD on ``memstore`` (RAM, bounded by ``memstore_bytes``; no disk to prepare), pools of
one replica, ``auth none``, then ``radosgw`` with the beast frontend and an S3 user made
with ``radosgw-admin``. No manager: PG creation and I/O need none, and ``ceph-mgr``
drags in a Python stack. Every daemon runs in the foreground in a session of its own
and is stopped (group SIGTERM, then SIGKILL) on ``stop``; the directory goes with it.

The binaries come from Debian (``radosgw``, ``ceph-mon``, ``ceph-osd``; see
``scripts/system-deps.sh``).
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..tools import require_tool
from .server_base import S3ServerBase, free_port, stop_group

# With auth none there is no session key, so a "secure" messenger mode cannot be
# negotiated; radosgw asks for secure-only towards the monitor unless told otherwise.
_CRC_ONLY = ["--ms_mon_client_mode=crc", "--ms_client_mode=crc"]


def _conf(d: Path, fsid: str, mon_port: int, pg_num: int, memstore_bytes: int,
          gc: bool) -> str:
    """ceph.conf of the one-node cluster: everything under ``d``, nothing in /etc or /var."""
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
keyring = {d}/no-keyring
admin socket =
run dir = {d}/run
pid file =
log file = {d}/log/$name.log
log to stderr = false
err to stderr = true
crash dir = {d}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = {pg_num}
osd pool default pgp num = {pg_num}
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon max pg per osd = 1000
# one monitor: nothing to agree with, so commit at once instead of batching for 1 s
paxos propose interval = 0.01
paxos min wait = 0.001
[mon]
mon data = {d}/mon.$id
[osd]
osd data = {d}/osd.$id
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd max object name len = 460
osd max object namespace len = 64
[client]
{_GC_ON if gc else "rgw enable gc threads = false"}
rgw enable lc threads = false
# a dead OSD (out of memory, say) turns into errors after 30 s instead of a hung request
rados osd op timeout = 30
rados mon op timeout = 30
rgw dynamic resharding = false
rgw data = {d}/rgw
"""


# Deleted objects' data is freed by RGW's garbage collector, by default after two hours.
# Benches that upload and delete GiBs into a RAM-backed OSD need it at once.
_GC_ON = """rgw enable gc threads = true
rgw gc obj min wait = 0
rgw gc processor period = 2
rgw gc processor max time = 2"""


@dataclass
class EmbeddedRGW(S3ServerBase):
    """A running one-node Ceph cluster with radosgw on loopback; use as a context manager."""

    pg_num: int = 8
    memstore_bytes: int = 1 << 30
    gc: bool = False               # free deleted data within seconds (benches); off for tests
    procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    name = "rgw"
    start_timeout = 120.0

    @property
    def conf(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "ceph.conf"

    def _run(self, *args: str, timeout: float = 60.0) -> str:
        r = subprocess.run([*args, "-c", str(self.conf), *_CRC_ONLY], capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed ({r.returncode}): "
                               f"{(r.stderr or r.stdout)[-1500:]}")
        return r.stdout

    def _daemon(self, *args: str) -> subprocess.Popen:
        assert self.data_dir is not None
        out = open(self.data_dir / "log" / f"{Path(args[0]).name}.out", "ab")
        p = subprocess.Popen([*args, "-f", "-c", str(self.conf), *_CRC_ONLY],
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def _start(self, timeout: float) -> None:
        mon, osd, rgw = (require_tool(n) for n in ("ceph-mon", "ceph-osd", "radosgw"))
        ceph, admin, monmaptool = (require_tool(n) for n in ("ceph", "radosgw-admin",
                                                             "monmaptool"))
        d = self.data_dir
        assert d is not None
        for sub in ("run", "log", "crash", "rgw", "osd.0"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        mon_port = free_port(self.host)
        self.port = free_port(self.host)
        self.conf.write_text(_conf(d, fsid, mon_port, self.pg_num, self.memstore_bytes,
                                   self.gc))

        subprocess.run([monmaptool, "--create", "--fsid", fsid, "--addv", "a",
                        f"[v2:127.0.0.1:{mon_port}]", str(d / "monmap")],
                       check=True, capture_output=True, timeout=30)
        self._run(mon, "--mkfs", "-i", "a", "--monmap", str(d / "monmap"))
        self._daemon(mon, "-i", "a")
        osd_uuid = str(uuid.uuid4())
        # `osd new` waits for the monitor's quorum: the first command that needs it
        self._run(ceph, "--connect-timeout", "30", "osd", "new", osd_uuid)
        self._run(osd, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon(osd, "-i", "0")
        self._daemon(rgw, "-n", "client.rgw",
                     f"--rgw_frontends=beast endpoint={self.host}:{self.port}")
        self._wait_serving(timeout, self.procs, lambda: f"see {d}/log")
        self._run(admin, "user", "create", "--uid=trunkline", "--display-name=trunkline",
                  f"--access-key={self.access_key}", f"--secret-key={self.secret_key}")

    def _stop_processes(self) -> None:
        # the gateway first (it holds the cluster's clients), the monitor last
        for p in reversed(self.procs):
            stop_group(p)
        self.procs.clear()
