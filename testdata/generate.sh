#!/usr/bin/env bash
# Rebuild every fixture in testdata/ with the pinned tools in requirements.txt.
# The venv lives at <repo root>/.venv-testdata and is reused on later runs.
# Set PYTHON to choose the interpreter used to create it (default: python3.11).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$root/.venv-testdata"

if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3.11}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" "$here/generate.py"
