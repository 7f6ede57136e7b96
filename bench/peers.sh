#!/usr/bin/env bash
# What a network of many peers costs one agent: memory, idle CPU, the time
# to apply a full netmap and one-peer deltas, and the longest pause in
# forwarding while deltas arrive. Needs root (network namespaces), like the
# lab suites. Runs the release build of the agent.
#
#   sudo bench/peers.sh                       # 100 and 10,000 peers
#   sudo PEERS=1000,10000 DELTAS=50 bench/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p warren-node --bin warren
cargo build -p warren-lab --bin warren-peers-bench
WARREN_BIN=${WARREN_BIN:-$PWD/target/release/warren} ./target/debug/warren-peers-bench
