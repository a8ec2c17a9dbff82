#!/usr/bin/env bash
# Produce/consume benchmark with librdkafka against a release build, beside the raw disk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/produce_consume.py "$@"
