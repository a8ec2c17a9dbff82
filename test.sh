#!/usr/bin/env bash
# Runs every test of silt. First installs, idempotently, what the tests need besides the Rust
# toolchain: a Python venv with Kafka clients (librdkafka's confluent-kafka, kafka-python),
# an S3-compatible server (moto) and selenium, Node's kafkajs, kcat, and headless
# Chromium. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "test dependencies"
REQS=tests/clients/requirements.txt
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! cmp -s "$REQS" .venv/.installed-requirements 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$REQS"
  cp "$REQS" .venv/.installed-requirements
fi
if ! cmp -s tests/clients/package-lock.json tests/clients/node_modules/.package-lock.json 2>/dev/null; then
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
fi
# kcat, and Debian's Chromium with its driver for the console's browser test (no browser
# download at test time).
APT=()
command -v kcat >/dev/null 2>&1 || APT+=(kcat)
command -v chromedriver >/dev/null 2>&1 || APT+=(chromium chromium-driver)
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build"
cargo build --workspace --quiet

step "Rust tests (unit, property, log engine, protocol edges, CLI)"
cargo test --workspace --quiet

step "replication simulation: 2,000 more seeds on an optimized build"
SILT_SIM_SEEDS=2000 SILT_SIM_FIRST=100001 cargo test --release --quiet -p silt-broker --test raft_sim

step "client compatibility (librdkafka, kafka-python, kafkajs, kcat) against target/debug/silt"
SILT_TEST_BIN="$ROOT/target/debug/silt" .venv/bin/python -m pytest tests/clients -q -p no:cacheprovider

step "all tests passed"
