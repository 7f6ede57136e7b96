#!/usr/bin/env bash
# DNS benchmark: queries per second at an agent's stub and at the
# controller's authoritative server, side by side.
#
# Builds the namespace lab of tests/tests/dns.rs (a controller serving DNS
# on 192.0.2.10:53, two agents with stubs on their overlay addresses; the
# daemons are release builds, the lab harness a debug build, which only
# sends pre-encoded queries), then from agent a's namespace queries `b.<zone> A`:
#   - with warren-lab's own bounded load generator (UDP, 64 in flight);
#   - with Debian's dnsperf (-q 64), if it is installed (apt-get install dnsperf).
# Prints a Markdown table. Everything runs inside namespaces the lab makes
# and removes; nothing leaves the machine.
#
# Must run as root. Environment:
#   DNS_BENCH_SECONDS  seconds per measurement (default 5)
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
cd "$SCRIPT_DIR/.."
[[ $(id -u) -eq 0 ]] || { echo "bench/dns.sh: must run as root (network namespaces)" >&2; exit 2; }
export DNS_BENCH_SECONDS=${DNS_BENCH_SECONDS:-5}
cargo build --release --bins -q
WARREN_BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/warren" \
WARREN_CONTROLLER_BIN="$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/warren-controller" \
WARREN_LAB_LOG=warn WARREN_LAB_CONTROLLER_LOG=warn \
    cargo test -q -p warren-lab --test dns -- --ignored --nocapture bench_stub_and_controller_qps \
    | grep '^|'
