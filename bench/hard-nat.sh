#!/usr/bin/env bash
# Birthday probing (hard-NAT traversal) over many NAT-lab runs: how often a
# symmetric NAT against a port-restricted one goes direct, after how many
# tries, and how fast. Needs root (network namespaces), like the lab suites.
#
#   sudo bench/hard-nat.sh            # 20 runs of each pair
#   sudo RUNS=50 bench/hard-nat.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
case $RUNS in '' | *[!0-9]*) echo "RUNS must be a number, not '$RUNS'" >&2; exit 2 ;; esac
cargo build --workspace --bins
HARD_NAT_RUNS=$RUNS cargo test -p warren-lab --test hard_nat \
    symmetric_against_port_restricted_goes_direct -- --exact --nocapture
