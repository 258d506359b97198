#!/bin/bash
# The flow collector's worker scaling on a bare many-core machine (issue 15): the loopback
# replay of the shared NetFlow v5 capture at rising rates, 1..8 workers, and nfacctd (carried
# in .devbin by pack.sh) beside them. See env.sh for what travels (carry [".devbin"]).
# Usage there: bash bench/device/collector.sh [flows_replay.py args], e.g.
#   --peers trunkline,nfacctd --workers 1,2,4,8 --rates 50000,100000,200000,300000
#   --step 20 --rounds 1 --senders 4 --exporters 32 --max-wall 540
set -u
source "$(dirname "$0")/env.sh"
cd "$OUT"
PYTHONUNBUFFERED=1 python3 "$OLDPWD/bench/flows_replay.py" --out "$OUT/flows_replay_device.json" "$@" \
    2>&1 | tee "$OUT/flows_replay.log"
true
