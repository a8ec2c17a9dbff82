#!/usr/bin/env bash
# Key lookups in the archive (#18): `silt archive find` against replaying the key's partition,
# index and filter bytes against segment bytes, through the latency proxy in front of moto.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients and moto)"; exit 1; }
cargo build --release --quiet --bin silt
# librdkafka logs each refused reconnect of a client left from before a restart: not news here.
exec .venv/bin/python bench/archive_find.py "$@" 2> >(grep -v "^%" >&2)
