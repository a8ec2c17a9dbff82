#!/usr/bin/env bash
# Broker-side compression benchmark: an uncompressed producer into a zstd topic against a
# producer topic, with stored bytes and broker CPU, against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/compression.py "$@"
