#!/usr/bin/env bash
# Transaction benchmark (transactional vs idempotent produce, commit latency, read_committed vs
# read_uncommitted consume) against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/transactions.py "$@"
