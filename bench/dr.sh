#!/usr/bin/env bash
# Disaster recovery from a replicated bucket: RTO of `silt cluster restore` for 1 GB across 12
# partitions (to the first and the last partition serving), and the RPO as configured; against
# moto's S3 server, with a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients and moto)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/dr.py "$@"
