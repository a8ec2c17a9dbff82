#!/usr/bin/env bash
# Rebalance benchmark: KIP-848 consumer protocol against the classic protocol with the
# cooperative-sticky assignor (time to balance after a join, pause of unmoved partitions),
# against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/rebalance.py "$@"
