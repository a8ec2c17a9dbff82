#!/usr/bin/env bash
# Security benchmark: produce/consume over SASL_SSL against PLAINTEXT on one broker in the same
# run, and produce latency with 10,000 ACLs loaded against a handful, against a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./test.sh once first (it installs the Python clients)"; exit 1; }
cargo build --release --quiet --bin silt
exec .venv/bin/python bench/security.py "$@"
