#!/bin/bash
# The mover's hot path on a bare many-core machine (issue 18), one call: small objects with
# 1..N engine processes (`cp -P N`) beside s5cmd, then the client-bound downloads (1 x 1 GiB,
# 16 x 64 MiB, 2,000 x 256 KiB) beside s5cmd and rclone, all from nginx on loopback into a
# tmpfs. Each part is bounded in time. Pack here first (`bash bench/device/pack.sh --mover`
# and the wheels of env.sh), carry [".devbin", ".whl"]. Usage there:
#   bash bench/device/hot_path.sh [objects] [processes] [rounds] [disk]
# With a fourth argument "disk", the large sets are downloaded into the machine's disk
# instead (bench/RESULTS.md: where the kernel's page-cache work goes), and the small-object
# part is skipped (one call stays within its 10 minutes).
set -u
source "$(dirname "$0")/env.sh"
objects=${1:-20000}; processes=${2:-2,4,8,12}; rounds=${3:-3}; disk=${4:-}
id www-data >/dev/null 2>&1 || useradd -r -M www-data
mkdir -p /var/log/nginx /var/lib/nginx
root=/tmp/tl-tmpfs; mkdir -p $root
mount -t tmpfs -o size=40g tmpfs $root 2>/dev/null || root=/dev/shm
command -v rclone s5cmd trunkline nginx
export PYTHONUNBUFFERED=1
if [ "$disk" = disk ]; then
  mkdir -p /var/tmp/tl-disk
  timeout 400 python3 bench/client_bound.py --datasets huge1,large16 --dst-root /var/tmp/tl-disk \
      --workdir $root --rounds "$rounds" 2>&1 | tee "$OUT/client_bound_disk.log"
  rm -rf /var/tmp/tl-disk; uptime; umount $root 2>/dev/null; exit 0
fi
timeout 300 python3 bench/small_processes.py --dst-root $root --workdir $root/work \
    --objects "$objects" --rounds "$rounds" --processes "$processes" \
    2>&1 | tee "$OUT/small_processes.log"
rm -rf $root/work $root/tl-small-processes
mkdir -p $root/cb
timeout 200 python3 bench/client_bound.py --dst-root $root --workdir $root/cb \
    --rounds "$rounds" 2>&1 | tee "$OUT/client_bound.log"
uptime
umount $root 2>/dev/null
true
