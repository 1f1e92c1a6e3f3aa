#!/usr/bin/env bash
# The server's CPU per request under perf_analyzer: starts the release build of
# examples/serve.rs on the MLP alone, drives it with perf_analyzer at each concurrency and
# over each protocol, and prints one line per run: the throughput and p50 perf_analyzer
# reports, and the server process's user+system CPU time over the run divided by the
# requests its statistics counted.
#   usage: scripts/serve-cpu.sh [CONCURRENCY...]     (default: 1 16)
# Environment: SERVE_FLAGS (extra flags for serve, such as --idle-spin-us 50), WINDOW_MS
# (perf_analyzer's measurement window, default 3000), PROTOCOLS (default
# "http_json http_binary grpc"), SERVE_BIN (another build of serve to measure).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
levels=("${@:-1 16}")
read -r -a levels <<< "${levels[*]}"
window="${WINDOW_MS:-3000}"
read -r -a protocols <<< "${PROTOCOLS:-http_json http_binary grpc}"
pa="$(scripts/perf-analyzer.sh)"
cargo build --release --quiet --example serve
models="$(mktemp -d)"
cp testdata/mlp.onnx "$models/"
# shellcheck disable=SC2086
"${SERVE_BIN:-target/release/examples/serve}" "$models" --http 127.0.0.1:18500 --grpc 127.0.0.1:18501 \
  --metrics 127.0.0.1:18502 ${SERVE_FLAGS:-} > /dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$models"' EXIT
deadline=$((SECONDS + 60))
until curl -sf http://127.0.0.1:18500/v2/health/ready > /dev/null; do
  if ! kill -0 "$server" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "serve-cpu.sh: the server did not become ready on 127.0.0.1:18500 within 60 s (is the port taken?)" >&2
    exit 1
  fi
  sleep 0.2
done

ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
served() {
  curl -s http://127.0.0.1:18500/v2/models/mlp/stats |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'
}
hz="$(getconf CLK_TCK)"
printf '%-12s %5s %10s %9s %12s\n' protocol conc 'req/s' 'p50 us' 'CPU us/req'
for c in "${levels[@]}"; do
  for protocol in "${protocols[@]}"; do
    case $protocol in
      http_json) flags=(-i http -u 127.0.0.1:18500 --input-tensor-format json --output-tensor-format json) ;;
      http_binary) flags=(-i http -u 127.0.0.1:18500) ;;
      grpc) flags=(-i grpc -u 127.0.0.1:18501) ;;
    esac
    t0="$(ticks)"; n0="$(served)"
    out="$("$pa" -m mlp "${flags[@]}" --concurrency-range "$c" \
      --measurement-interval "$window" --stability-percentage 100 --max-trials 3 2>&1 || true)"
    t1="$(ticks)"; n1="$(served)"
    rps="$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' <<< "$out" | tail -n1)"
    p50="$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' <<< "$out" | tail -n1)"
    cpu="$(python3 -c "print(f'{($t1 - $t0) / $hz / max($n1 - $n0, 1) * 1e6:.1f}')")"
    printf '%-12s %5s %10s %9s %12s\n' "$protocol" "$c" "${rps:-?}" "${p50:-?}" "$cpu"
  done
done
