#!/usr/bin/env bash
# Historical reads through the archive (cold, hot, time to first byte, produce latency during a
# replay) against moto's S3 server, beside the store's raw bandwidth, with a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients and moto)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/historical.py "$@"
