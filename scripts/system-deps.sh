#!/usr/bin/env bash
# Debian packages the tests use as real peers and references: tshark and nfdump
# (reference decoders), softflowd (a real exporter), iperf3 (loopback ceiling),
# chromium (renders the report), pmacct (nfacctd, the peer collector of
# bench/flows_replay.py); a one-node Ceph (radosgw, ceph-mon, ceph-osd: the RADOS Gateway
# the mover is tested against, beside SeaweedFS and JuiceFS; no ceph-mgr needed); libisal2
# (Intel ISA-L: the fastest CRC32C native/crc.py can pick; without it, google-crc32c's).
# Installed only when missing and running as root.
set -uo pipefail
need=()
command -v tshark    >/dev/null || need+=(tshark)
command -v nfcapd    >/dev/null || need+=(nfdump)
command -v softflowd >/dev/null || need+=(softflowd)
command -v iperf3    >/dev/null || need+=(iperf3)
command -v chromium  >/dev/null || need+=(chromium)
command -v nfacctd   >/dev/null || need+=(pmacct)
command -v radosgw   >/dev/null || need+=(radosgw)
command -v ceph-mon  >/dev/null || need+=(ceph-mon)
command -v ceph-osd  >/dev/null || need+=(ceph-osd)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libisal\.so\.2 ' || need+=(libisal2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root." >&2
  echo "system-deps: tests that need them will be skipped with a reason." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
