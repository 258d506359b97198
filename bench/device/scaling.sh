#!/bin/bash
# The mover's scaling benchmark on a bare many-core machine (issue 18 item 6); see env.sh
# for what travels. Usage there: bash bench/device/scaling.sh [scaling.py args...]
set -u
source "$(dirname "$0")/env.sh"
id www-data >/dev/null 2>&1 || useradd -r -M www-data
mkdir -p /var/log/nginx /var/lib/nginx
root=/tmp/tl-tmpfs; mkdir -p $root
mount -t tmpfs -o size=40g tmpfs $root 2>/dev/null || root=/dev/shm
df -h $root | tail -1
PYTHONUNBUFFERED=1 python3 bench/scaling.py --root $root --json-out "$OUT/scaling.json" "$@" \
    2>&1 | tee "$OUT/scaling.log"
umount $root 2>/dev/null
true
