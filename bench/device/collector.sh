#!/bin/bash
# The flow collector's worker scaling on a bare many-core machine (issue 15): the loopback
# replay of the shared NetFlow v5 capture at rising rates, 1..8 workers, no pmacct there.
# See env.sh for what travels. Usage there: bash bench/device/collector.sh [flows_replay.py args]
set -u
source "$(dirname "$0")/env.sh"
cd "$OUT"
PYTHONUNBUFFERED=1 python3 "$OLDPWD/bench/flows_replay.py" --out "$OUT/flows_replay_device.json" "$@" \
    2>&1 | tee "$OUT/flows_replay.log"
true
