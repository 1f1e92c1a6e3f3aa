#!/usr/bin/env bash
# Starts (or reuses) moto's S3-compatible server on 127.0.0.1 for the registry tests, with
# the bucket mlops-test, and prints its endpoint on stdout; everything else goes to stderr.
# moto keeps objects in memory and does not check signatures: any access key works, but
# object requests must be signed (it denies anonymous ones; the bucket PUT below is fine).
# Port: MLOPS_S3_PORT (default 59000). A set MLOPS_TEST_S3_ENDPOINT is printed as is.
set -euo pipefail
if [ -n "${MLOPS_TEST_S3_ENDPOINT:-}" ]; then echo "$MLOPS_TEST_S3_ENDPOINT"; exit 0; fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${MLOPS_S3_PORT:-59000}"
endpoint="http://127.0.0.1:$port"
dir="$root/target/s3-test"
mkdir -p "$dir"
python="$("$root/scripts/python-env.sh")" # moto is pinned in requirements-test.txt

# Sends one unsigned request; fails on no answer or an HTTP error other than the allowed one.
request() { # METHOD URL [ALLOWED_STATUS]
  "$python" - "$@" <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[2], method=sys.argv[1]), timeout=5)
except urllib.error.HTTPError as e:
    sys.exit(0 if sys.argv[3:] == [str(e.code)] else f"s3.sh: {sys.argv[1]} {sys.argv[2]}: {e}")
except OSError:
    sys.exit(1)
EOF
}

if ! request GET "$endpoint/" 2>/dev/null; then
  # setsid + nohup: the server outlives this script and the test run that started it,
  # and holds none of the caller's file descriptors (so "$(scripts/s3.sh)" returns).
  setsid nohup "$python" -m moto.server -H 127.0.0.1 -p "$port" \
    </dev/null >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/moto.pid"
  for _ in $(seq 1 60); do
    request GET "$endpoint/" 2>/dev/null && break
    kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null || break # died: no point waiting
    sleep 0.5
  done
  request GET "$endpoint/" 2>/dev/null || {
    tail -n 20 "$dir/moto.log" >&2
    echo "s3.sh: moto does not answer on $endpoint; see $dir/moto.log" >&2
    exit 1
  }
fi
# Creating a bucket that exists answers 409 on some servers: that is fine too.
request PUT "$endpoint/mlops-test" 409
echo "$endpoint"
