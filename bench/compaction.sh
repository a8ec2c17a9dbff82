#!/usr/bin/env bash
# Compaction benchmark (throughput against the machine's rewrite rate, produce p99 while the
# compactor works, bucket bytes against the live keys) against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/compaction.py "$@"
