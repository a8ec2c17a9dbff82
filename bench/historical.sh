#!/usr/bin/env bash
# Historical reads through the archive at real object-store latency (a proxy in front of moto:
# 30 ms to first byte, 50 MB/s per connection), economy, first byte, produce during a replay.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients and moto)"; exit 1; }
cargo build --release --quiet --bin silt
# librdkafka logs each refused reconnect of a client left from before a restart: not news here.
exec .venv/bin/python bench/historical.py "$@" 2> >(grep -v "^%" >&2)
