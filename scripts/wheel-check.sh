#!/usr/bin/env bash
# The wheel works on its own: build it, install it (not editable) into a fresh venv,
# run the demo small and `flows report` on the demo's store, from outside the source tree,
# so that nothing of src/ or of the project's .venv can stand in for a missing file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
enrich=${TRUNKLINE_ENRICH_DATA:-$root/../shared/data/enrich}
work=$(mktemp -d -t trunkline-wheel-XXXXXX)
trap 'rm -rf "$work"' EXIT

"$python" -m pip wheel -q --no-deps -w "$work/dist" "$root"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$work"/dist/trunkline-*.whl
cd "$work"
installed=$("$work/venv/bin/python" -c 'import trunkline, os; print(os.path.dirname(trunkline.__file__))')
case "$installed" in
  "$work/venv/"*) ;;
  *) echo "wheel-check: trunkline imported from $installed, not from the wheel" >&2; exit 1;;
esac

env -u TRUNKLINE_CONFIG "$work/venv/bin/trunkline" demo --size 16MiB --shards 4 --flows 3000 \
  --out "$work/demo" --enrich-data "$enrich"
test -s "$work/demo/report/report.html"
quarter=$("$work/venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["quarter"])' \
  "$work/demo/summary.json")
TRUNKLINE_ENRICH_DATA=$enrich "$work/venv/bin/trunkline" flows report --store "$work/demo/flows" \
  --quarter "$quarter" --out "$work/report2"
test -s "$work/report2/report.html" && test -s "$work/report2/report.json"
echo "wheel-check: OK ($(basename "$work"/dist/trunkline-*.whl) installed in a fresh venv: demo and flows report ran)"
