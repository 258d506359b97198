#!/usr/bin/env bash
# Create the project's virtualenv and install trunkline with its test tools.
set -euo pipefail
venv=${1:-.venv}
python=${2:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[dev]"
