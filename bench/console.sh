#!/usr/bin/env bash
# The console's topic page with 1,000 partitions in headless Chromium, and the topic list of
# the HTTP API with 10,000 topics, each beside its floor measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients, selenium and chromium)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/console.py "$@" 2> >(grep -v "^%" >&2)
