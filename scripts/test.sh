#!/usr/bin/env bash
# Runs every test of the workspace, with the real external clients the tests drive
# (installed on first use).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MLOPS_TEST_PYTHON="$(scripts/python-env.sh)"
export MLOPS_TEST_PYTHON
# candle is an optional backend; its tests run here too.
cargo test --workspace --features mlops/candle "$@"
