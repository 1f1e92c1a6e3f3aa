#!/usr/bin/env bash
# Runs every test of the workspace, with the real external clients the tests drive
# (installed on first use).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MLOPS_TEST_PYTHON="$(scripts/python-env.sh)"
export MLOPS_TEST_PYTHON
# The registry's PostgreSQL and S3 tests run against these real servers on 127.0.0.1
# (started on first use, reused afterwards, left running).
MLOPS_TEST_POSTGRES_URL="$(scripts/postgres.sh)"; export MLOPS_TEST_POSTGRES_URL
MLOPS_TEST_S3_ENDPOINT="$(scripts/s3.sh)"; export MLOPS_TEST_S3_ENDPOINT
# MLflow's tracking server, for the MLflow registry backend; stopped when the tests end.
MLOPS_TEST_MLFLOW_URL="$(scripts/mlflow.sh)"; export MLOPS_TEST_MLFLOW_URL
trap 'scripts/mlflow.sh stop' EXIT
# Triton's load tester, pointed at examples/serve.rs by tests/perf_analyzer.rs.
MLOPS_TEST_PERF_ANALYZER="$(scripts/perf-analyzer.sh)"; export MLOPS_TEST_PERF_ANALYZER
# Every optional backend is built and tested here too: candle, PostgreSQL and S3 against
# the servers above; HDFS only where MLOPS_TEST_HDFS_URI names a cluster.
cargo test --workspace --features mlops/full "$@"
# The CUDA build compiles without CUDA; on a machine without a GPU its tests check that
# asking for the GPU fails loudly instead of falling back to the CPU.
cargo test -p mlops-runtime --features cuda --test gpu "$@"
