#!/bin/bash
# Small objects with 1..N engine processes (`cp -P N`) beside s5cmd on a bare many-core
# machine (issue 18 item 3: objects per second bound by the server, not by one interpreter);
# see env.sh for what travels (carry [".devbin", ".whl"]). Usage there:
#   bash bench/device/small_processes.sh --objects 20000 --rounds 3 --processes 2,4,8,12
set -u
source "$(dirname "$0")/env.sh"
id www-data >/dev/null 2>&1 || useradd -r -M www-data
mkdir -p /var/log/nginx /var/lib/nginx
root=/tmp/tl-tmpfs; mkdir -p $root
mount -t tmpfs -o size=40g tmpfs $root 2>/dev/null || root=/dev/shm
PYTHONUNBUFFERED=1 python3 bench/small_processes.py --dst-root $root --workdir $root/work "$@" \
    2>&1 | tee "$OUT/small_processes.log"
umount $root 2>/dev/null
true
