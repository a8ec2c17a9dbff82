#!/usr/bin/env bash
# Replication benchmark (RF=3 vs RF=1 throughput, latency, fail-over, idle cost of 1,000
# partitions) against a release build; every figure beside the raw disk from the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/replication.py "$@"
