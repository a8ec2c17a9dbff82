#!/usr/bin/env bash
# The replication simulation (broker/tests/raft_sim.rs) over many seeds on an optimized build:
# bench/raft-sim.sh [SEEDS] [FIRST]. A failing seed prints how to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
SILT_SIM_SEEDS="${1:-5000}" SILT_SIM_FIRST="${2:-1}" \
  cargo test --release -p silt-broker --test raft_sim -- --nocapture
