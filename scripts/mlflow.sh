#!/usr/bin/env bash
# Starts (or reuses) an MLflow tracking server on 127.0.0.1 for the registry's MLflow tests
# and prints its URI on stdout; everything else goes to stderr. The server is MLflow's own
# (`mlflow server`, pinned in requirements-test.txt), with a SQLite backend store and a
# local artifact root served through its artifact proxy, all under target/mlflow-test.
# `scripts/mlflow.sh stop` stops it. Port: MLOPS_MLFLOW_PORT (default 59500). A set
# MLOPS_TEST_MLFLOW_URL is printed as is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${MLOPS_MLFLOW_PORT:-59500}"
uri="http://127.0.0.1:$port"
dir="$root/target/mlflow-test"
pidfile="$dir/mlflow.pid"

if [ "${1:-}" = stop ]; then
  if [ -f "$pidfile" ]; then
    # setsid made the server a process-group leader: stop it with its workers.
    pgid="$(cat "$pidfile")"
    kill -- "-$pgid" 2>/dev/null || true
    # It shuts its workers down first: wait for the group to be gone, then insist.
    for _ in $(seq 1 20); do
      kill -0 -- "-$pgid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
  exit 0
fi
if [ -n "${MLOPS_TEST_MLFLOW_URL:-}" ]; then echo "$MLOPS_TEST_MLFLOW_URL"; exit 0; fi
python="$("$root/scripts/python-env.sh")"
healthy() { "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/health', timeout=3)" "$uri" 2>/dev/null; }

if ! healthy; then
  mkdir -p "$dir/artifacts"
  # No job runner: its dozen worker processes compete with the tests for two cores, and
  # the registry API needs none of them.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid nohup "$(dirname "$python")/mlflow" server --host 127.0.0.1 --port "$port" \
    --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/artifacts" \
    --workers 1 </dev/null >"$dir/mlflow.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    healthy && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break # died: no point waiting
    sleep 0.5
  done
  healthy || {
    tail -n 20 "$dir/mlflow.log" >&2
    echo "mlflow.sh: MLflow does not answer on $uri; see $dir/mlflow.log" >&2
    exit 1
  }
fi
echo "$uri"
