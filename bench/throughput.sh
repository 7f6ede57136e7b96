#!/usr/bin/env bash
# Data-plane benchmark: raw veth vs Warren vs wireguard-go (Debian's and the
# current upstream anchor) vs nebula.
#
# Builds two network namespaces joined by a veth (underlay 192.0.2.1/24 and
# 192.0.2.2/24), brings up one tunnel design at a time between them (overlay
# 10.99.0.1/24 <-> 10.99.0.2/24, MTU 1420) and measures, through the tunnel:
#   - iperf3 TCP throughput, 1 stream and 4 streams (-P 4), DURATION seconds each
#   - ping RTT on an idle tunnel (200 pings, 10 ms apart): average and p99 in ms
#   - ping RTT while one iperf3 stream runs the other way (B to A): p99 in ms
#   - CPU seconds (utime+stime) consumed by both ends' tunnel processes during
#     the 1-stream run, and the Gbit carried per CPU-second
# ROUNDS rounds run the designs interleaved (each round runs every design
# once); the table shows each figure's median over the rounds.
# and prints a Markdown table (also written to bench/results/throughput-<date>.md).
#
# Must run as root. Everything happens inside namespaces this script creates
# (prefix "wbt<random>"); they, the processes started in them and the temp dir
# are removed on exit, also on failure or Ctrl-C. Host routes, nftables and
# sysctls are never touched.
#
# Environment:
#   DESIGNS     designs to run, in order (default "raw wireguard-go
#               wireguard-go-current nebula warren")
#   DURATION    seconds per iperf3 run (default 10)
#   ROUNDS      interleaved rounds (default 1)
#   WG_GO_CURRENT  the current upstream wireguard-go for the design
#               wireguard-go-current (default <repo>/../shared/anchors/wireguard-go,
#               see the .md beside it)
#   WARREN_BIN  warren binary (default <repo>/target/release/warren; if that
#               default is missing, `cargo build --release -p warren-node` runs)
#   RESULTS_DIR where to write the Markdown result (default <repo>/bench/results)
#
# Exit status: 0 if every design produced numbers, 1 if any row says FAILED.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

DESIGNS=${DESIGNS:-"raw wireguard-go wireguard-go-current nebula warren"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
WG_GO_CURRENT=${WG_GO_CURRENT:-"$REPO_DIR/../shared/anchors/wireguard-go"}
DEFAULT_WARREN_BIN="$REPO_DIR/target/release/warren"
WARREN_BIN=${WARREN_BIN:-$DEFAULT_WARREN_BIN}
RESULTS_DIR=${RESULTS_DIR:-"$REPO_DIR/bench/results"}

UNDER_A=192.0.2.1
UNDER_B=192.0.2.2
OVER_A=10.99.0.1
OVER_B=10.99.0.2
OVER_PREFIX=24
MTU=1420
IPERF_PORT=5201

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ $(id -u) -eq 0 ]] || die "must run as root (creates network namespaces)"
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 3 ]] || die "DURATION must be an integer of at least 3"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be a positive integer"
for tool in ip iperf3 python3 getconf timeout; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
if command -v ping >/dev/null; then
    PING=(ping)
elif command -v busybox >/dev/null; then
    PING=(busybox ping)
else
    die "missing tool: ping (iputils-ping or busybox)"
fi
CLK_TCK=$(getconf CLK_TCK)

# Unique per run: 3 letters + 4 hex digits, so "${PFX}xx" is 9 chars (< 15).
PFX="wbt$(printf '%04x' $((RANDOM % 65536)))"
TMP=$(mktemp -d "/tmp/${PFX}.XXXXXX")
NS_A="" NS_B=""
PIDS=()          # every process this script started (tunnels, iperf3 servers)
CREATED_NS=()    # every namespace this script created
WG_SOCKS=()      # wireguard-go UAPI sockets in /var/run/wireguard (shared fs)

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Tear down the current design: processes, then namespaces (which removes the
# veth pair and any TUN device still there).
teardown() {
    local pid ns sock
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    PIDS=()
    for ns in "${CREATED_NS[@]+"${CREATED_NS[@]}"}"; do
        # Processes still inside a namespace we created were started by us.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
        ip netns del "$ns" 2>/dev/null || true
    done
    CREATED_NS=()
    for sock in "${WG_SOCKS[@]+"${WG_SOCKS[@]}"}"; do rm -f "$sock"; done
    WG_SOCKS=()
    NS_A="" NS_B=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    teardown
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- underlay ---
setup_underlay() { # $1 = design index (keeps names unique within the run)
    NS_A="${PFX}-$1a"
    NS_B="${PFX}-$1b"
    ip netns add "$NS_A" && CREATED_NS+=("$NS_A") || return 1
    ip netns add "$NS_B" && CREATED_NS+=("$NS_B") || return 1
    # Create the pair inside A with its peer directly in B: the host
    # namespace never sees either end.
    ip -n "$NS_A" link set lo up &&
    ip -n "$NS_B" link set lo up &&
    ip -n "$NS_A" link add "${PFX}va" type veth peer name "${PFX}vb" netns "$NS_B" &&
    ip -n "$NS_A" addr add "$UNDER_A/24" dev "${PFX}va" &&
    ip -n "$NS_B" addr add "$UNDER_B/24" dev "${PFX}vb" &&
    ip -n "$NS_A" link set "${PFX}va" up &&
    ip -n "$NS_B" link set "${PFX}vb" up || { log "underlay setup failed"; return 1; }
    wait_ping "$UNDER_B" 5
}

# wait_ping DST SECONDS: succeed once one ping from A to DST gets an answer.
wait_ping() {
    local dst=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if ip netns exec "$NS_A" "${PING[@]}" -c 1 -W 1 "$dst" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    log "no ping answer from $dst within $2 s"
    return 1
}

# ----------------------------------------------------------------- designs ---
# Each up_* sets TUN_PIDS (tunnel processes of both ends), TUN_IF_A (overlay
# interface in A, for the traffic check) and TARGET (address to measure to).

up_raw() {
    TUN_PIDS=() TUN_IF_A="" TARGET=$UNDER_B
}

up_wireguard_go() {
    command -v wireguard-go >/dev/null || { log "wireguard-go not installed"; return 1; }
    wg_go_up wireguard-go w
}

up_wireguard_go_current() {
    [[ -x $WG_GO_CURRENT ]] || { log "no wireguard-go at $WG_GO_CURRENT (WG_GO_CURRENT)"; return 1; }
    wg_go_up "$WG_GO_CURRENT" g
}

wg_go_up() { # binary, interface letter (distinct per binary: sockets are shared)
    command -v wg >/dev/null || { log "wg not installed"; return 1; }
    local bin=$1 letter=$2 d="$RUN_DIR/wg" side ns ifn pid
    mkdir -p "$d"
    (umask 077 && wg genkey >"$d/a.key" && wg genkey >"$d/b.key") || return 1
    local pub_a pub_b
    pub_a=$(wg pubkey <"$d/a.key"); pub_b=$(wg pubkey <"$d/b.key")
    TUN_PIDS=()
    # The UAPI socket lives in /var/run/wireguard/IFNAME.sock, which is not
    # per namespace, so the two ends need distinct interface names.
    for side in a b; do
        if [[ $side == a ]]; then ns=$NS_A; else ns=$NS_B; fi
        ifn="${PFX}$letter$side"
        WG_SOCKS+=("/var/run/wireguard/$ifn.sock")
        ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 \
            "$bin" -f "$ifn" >"$d/$side.log" 2>&1 &
        pid=$!; PIDS+=("$pid"); TUN_PIDS+=("$pid")
    done
    local deadline=$((SECONDS + 10))
    until [[ -S /var/run/wireguard/${PFX}${letter}a.sock && -S /var/run/wireguard/${PFX}${letter}b.sock ]]; do
        ((SECONDS < deadline)) || { log "wireguard-go did not create its sockets"; cat "$d"/*.log >&2; return 1; }
        sleep 0.1
    done
    # (Functions run under `if`, where set -e is off: check explicitly.)
    ip netns exec "$NS_A" wg set "${PFX}${letter}a" listen-port 51820 private-key "$d/a.key" \
        peer "$pub_b" endpoint "$UNDER_B:51820" allowed-ips "$OVER_B/32" &&
    ip netns exec "$NS_B" wg set "${PFX}${letter}b" listen-port 51820 private-key "$d/b.key" \
        peer "$pub_a" endpoint "$UNDER_A:51820" allowed-ips "$OVER_A/32" &&
    ip -n "$NS_A" addr add "$OVER_A/$OVER_PREFIX" dev "${PFX}${letter}a" &&
    ip -n "$NS_B" addr add "$OVER_B/$OVER_PREFIX" dev "${PFX}${letter}b" &&
    ip -n "$NS_A" link set "${PFX}${letter}a" mtu "$MTU" up &&
    ip -n "$NS_B" link set "${PFX}${letter}b" mtu "$MTU" up || { log "configuring $bin failed"; return 1; }
    TUN_IF_A="${PFX}${letter}a" TARGET=$OVER_B
}

nebula_config() { # side, cert dir, my underlay, peer overlay, peer underlay, tun dev
    cat <<EOF
pki:
  ca: $2/ca.crt
  cert: $2/$1.crt
  key: $2/$1.key
static_host_map:
  "$4": ["$5:4242"]
lighthouse:
  am_lighthouse: false
  interval: 60
  hosts: []
listen:
  host: $3
  port: 4242
punchy:
  punch: false
  respond: false
relay:
  use_relays: false
tun:
  disabled: false
  dev: $6
  mtu: $MTU
logging:
  level: info
  format: text
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
EOF
}

up_nebula() {
    command -v nebula >/dev/null || { log "nebula not installed"; return 1; }
    command -v nebula-cert >/dev/null || { log "nebula-cert not installed"; return 1; }
    local d="$RUN_DIR/nebula" pid
    mkdir -p "$d"
    nebula-cert ca -name "warren-bench" -out-crt "$d/ca.crt" -out-key "$d/ca.key" >/dev/null
    nebula-cert sign -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" -name a \
        -ip "$OVER_A/$OVER_PREFIX" -out-crt "$d/a.crt" -out-key "$d/a.key" >/dev/null
    nebula-cert sign -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" -name b \
        -ip "$OVER_B/$OVER_PREFIX" -out-crt "$d/b.crt" -out-key "$d/b.key" >/dev/null
    nebula_config a "$d" "$UNDER_A" "$OVER_B" "$UNDER_B" "${PFX}na" >"$d/a.yml"
    nebula_config b "$d" "$UNDER_B" "$OVER_A" "$UNDER_A" "${PFX}nb" >"$d/b.yml"
    TUN_PIDS=()
    ip netns exec "$NS_A" nebula -config "$d/a.yml" >"$d/a.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); TUN_PIDS+=("$pid")
    ip netns exec "$NS_B" nebula -config "$d/b.yml" >"$d/b.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); TUN_PIDS+=("$pid")
    wait_link "$NS_A" "${PFX}na" || { cat "$d/a.log" >&2; return 1; }
    wait_link "$NS_B" "${PFX}nb" || { cat "$d/b.log" >&2; return 1; }
    TUN_IF_A="${PFX}na" TARGET=$OVER_B
}

# wait_link NS IFNAME: wait (max 10 s) until the interface exists and is up.
wait_link() {
    local deadline=$((SECONDS + 10))
    until ip -n "$1" link show "$2" 2>/dev/null | grep -q ',UP'; do
        ((SECONDS < deadline)) || { log "interface $2 in $1 did not come up"; return 1; }
        sleep 0.1
    done
}

ensure_warren_bin() {
    [[ -x $WARREN_BIN ]] && return 0
    if [[ $WARREN_BIN == "$DEFAULT_WARREN_BIN" ]]; then
        log "warren binary missing; running cargo build --release -p warren-node"
        (cd "$REPO_DIR" && timeout 1800 cargo build --release -p warren-node) >&2 || return 1
        [[ -x $WARREN_BIN ]] && return 0
    fi
    log "warren binary not found at $WARREN_BIN"
    return 1
}

warren_config() { # side, key file, addr, socket, peer pub, peer underlay, peer overlay, ifname
    cat <<EOF
[node]
private-key-file = "$2"
listen-port = 51820
addresses = ["$3/$OVER_PREFIX"]
interface-name = "$8"
mtu = $MTU
socket = "$4"

[[peer]]
public-key = "$5"
endpoint = "$6:51820"
allowed-ips = ["$7/32"]
EOF
}

up_warren() {
    ensure_warren_bin || return 1
    local d="$RUN_DIR/warren" pid pub_a pub_b side ns
    mkdir -p "$d"
    pub_a=$("$WARREN_BIN" key generate "$d/a.key" | tr -d '[:space:]')
    pub_b=$("$WARREN_BIN" key generate "$d/b.key" | tr -d '[:space:]')
    [[ -n $pub_a && -n $pub_b ]] || { log "warren key generate printed no public key"; return 1; }
    warren_config a "$d/a.key" "$OVER_A" "$d/a.sock" "$pub_b" "$UNDER_B" "$OVER_B" "${PFX}xa" >"$d/a.toml"
    warren_config b "$d/b.key" "$OVER_B" "$d/b.sock" "$pub_a" "$UNDER_A" "$OVER_A" "${PFX}xb" >"$d/b.toml"
    TUN_PIDS=()
    for side in a b; do
        if [[ $side == a ]]; then ns=$NS_A; else ns=$NS_B; fi
        ip netns exec "$ns" "$WARREN_BIN" daemon --config "$d/$side.toml" >"$d/$side.log" 2>&1 &
        pid=$!; PIDS+=("$pid"); TUN_PIDS+=("$pid")
    done
    # Readiness: `warren status` on the control socket, else the link, 10 s max.
    for side in a b; do
        if [[ $side == a ]]; then ns=$NS_A; else ns=$NS_B; fi
        local deadline=$((SECONDS + 10)) ready=0
        while ((SECONDS < deadline)); do
            if ! kill -0 "${TUN_PIDS[0]}" 2>/dev/null || ! kill -0 "${TUN_PIDS[1]}" 2>/dev/null; then
                log "a warren daemon exited"; break
            fi
            if timeout 2 "$WARREN_BIN" status --json --socket "$d/$side.sock" >/dev/null 2>&1 \
                || ip -n "$ns" link show "${PFX}x$side" 2>/dev/null | grep -q ',UP'; then
                ready=1; break
            fi
            sleep 0.2
        done
        if ((ready == 0)); then
            log "warren ($side) not ready within 10 s"; tail -n 30 "$d"/*.log >&2 || true
            return 1
        fi
    done
    TUN_IF_A="${PFX}xa" TARGET=$OVER_B
}

# ---------------------------------------------------------------- measures ---
proc_ticks() { # utime+stime of a process (all its threads), in clock ticks
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    # Fields after "(comm)": state is field 3, utime 14, stime 15.
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} ))
}

proc_tree() { # a process and its descendants (should a daemon fork helpers)
    local pid=$1 child
    echo "$pid"
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        proc_tree "$child"
    done
}

tunnel_ticks() {
    local total=0 root pid
    for root in "${TUN_PIDS[@]+"${TUN_PIDS[@]}"}"; do
        for pid in $(proc_tree "$root"); do
            total=$((total + $(proc_ticks "$pid")))
        done
    done
    echo "$total"
}

if_tx_bytes() { # tx_bytes of an interface in namespace A
    ip netns exec "$NS_A" cat "/sys/class/net/$1/statistics/tx_bytes" 2>/dev/null || echo 0
}

start_iperf_server() {
    ip netns exec "$NS_B" iperf3 -s -p "$IPERF_PORT" >"$TMP/iperf3-server.log" 2>&1 &
    PIDS+=("$!")
    local deadline=$((SECONDS + 5))
    until ip netns exec "$NS_B" ss -Hltn "sport = :$IPERF_PORT" 2>/dev/null | grep -q LISTEN; do
        ((SECONDS < deadline)) || { log "iperf3 server did not start"; return 1; }
        sleep 0.1
    done
}

# run_iperf STREAMS OUTFILE: prints Gbit/s received, or fails.
run_iperf() {
    local json=$2
    if ! timeout $((DURATION + 30)) ip netns exec "$NS_A" \
        iperf3 -c "$TARGET" -p "$IPERF_PORT" -t "$DURATION" -P "$1" -J --connect-timeout 5000 \
        >"$json" 2>>"$TMP/iperf3-client.err"; then
        log "iperf3 -P $1 failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error",""))' "$json" 2>/dev/null || true)"
        return 1
    fi
    python3 - "$json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
EOF
}

iperf_bytes_sent() {
    python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"]))' "$1"
}

# run_ping COUNT INTERVAL: prints "AVG P99" of the RTTs in ms (the per-reply
# lines; p99 by nearest rank). Fails if fewer than 90% answered.
run_ping() {
    local out
    out=$(timeout $(( $1 / 20 + 15 )) ip netns exec "$NS_A" "${PING[@]}" -c "$1" -i "$2" -W 2 "$TARGET" 2>&1) || {
        log "ping failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
        return 1
    }
    python3 -c '
import math, re, sys
sent = int(sys.argv[1])
rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", sys.stdin.read()))
if len(rtts) < sent * 9 // 10:
    sys.exit("only %d of %d pings answered" % (len(rtts), sent))
p99 = rtts[max(0, math.ceil(len(rtts) * 0.99) - 1)]
print("%.3f %.3f" % (sum(rtts) / len(rtts), p99))' "$1" <<<"$out"
}

# loaded_ping: p99 RTT in ms of pings A -> B while iperf3 sends B -> A.
loaded_ping() {
    local json="$TMP/loaded.json" iperf_pid out
    timeout $((DURATION + 30)) ip netns exec "$NS_A" \
        iperf3 -c "$TARGET" -p "$IPERF_PORT" -t "$DURATION" -R -J --connect-timeout 5000 \
        >"$json" 2>>"$TMP/iperf3-client.err" &
    iperf_pid=$!
    sleep 1
    out=$(run_ping $(( (DURATION - 2) * 50 )) 0.02) || { wait "$iperf_pid" || true; return 1; }
    wait "$iperf_pid" || { log "iperf3 -R failed"; return 1; }
    echo "${out#* }"
}

# ------------------------------------------------------------------- main ----
# Per "DESIGN ROUND": figures; per design: ok, or FAILED if any round failed.
declare -A R1 R4 RTT P99 LOADED CPU GPC STATUS
FAILED=0

measure_design() { # design, index, round
    local design=$1 idx=$2 key="$1 $3" fn
    # This run's keys, configs and logs (each round starts afresh).
    RUN_DIR="$TMP/run$idx"
    mkdir -p "$RUN_DIR"
    fn="up_${design//-/_}"
    declare -F "$fn" >/dev/null || { log "unknown design: $design"; return 1; }
    setup_underlay "$idx" || return 1
    "$fn" || { log "$design failed to come up"; return 1; }
    # The tunnel must carry traffic before anything is measured.
    wait_ping "$TARGET" 15 || { log "$design: no traffic through the tunnel"; return 1; }
    start_iperf_server || return 1

    local tx0 tx1 t0 t1 g1 g4 rtt sent
    tx0=$( [[ -n $TUN_IF_A ]] && if_tx_bytes "$TUN_IF_A" || echo 0 )
    t0=$(tunnel_ticks)
    log "$design: iperf3 1 stream, ${DURATION} s"
    g1=$(run_iperf 1 "$RUN_DIR/p1.json") || return 1
    t1=$(tunnel_ticks)
    tx1=$( [[ -n $TUN_IF_A ]] && if_tx_bytes "$TUN_IF_A" || echo 0 )
    R1[$key]=$g1
    if ((${#TUN_PIDS[@]} > 0)); then
        CPU[$key]=$(python3 -c 'import sys; print("%.2f" % (int(sys.argv[1]) / int(sys.argv[2])))' \
            $((t1 - t0)) "$CLK_TCK")
        # Gbit carried per CPU-second of both ends.
        GPC[$key]=$(python3 -c 'import sys; g,d,c=map(float,sys.argv[1:]); print("%.2f" % (g*d/c) if c > 0 else "-")' \
            "$g1" "$DURATION" "${CPU[$key]}")
        # Traffic check: the overlay interface in A must have sent (at least
        # nearly) everything iperf3 sent, i.e. the bytes went through the tunnel.
        sent=$(iperf_bytes_sent "$RUN_DIR/p1.json")
        if (( (tx1 - tx0) < sent * 9 / 10 )); then
            log "$design: tunnel interface $TUN_IF_A sent $((tx1 - tx0)) bytes but iperf3 sent $sent"
            return 1
        fi
        log "$design: tunnel interface carried $((tx1 - tx0)) bytes (iperf3 sent $sent)"
    else
        CPU[$key]="-" GPC[$key]="-"
    fi
    log "$design: iperf3 4 streams, ${DURATION} s"
    g4=$(run_iperf 4 "$RUN_DIR/p4.json") || return 1
    R4[$key]=$g4
    log "$design: ping, idle"
    rtt=$(run_ping 200 0.01) || return 1
    RTT[$key]=${rtt% *} P99[$key]=${rtt#* }
    log "$design: ping while iperf3 runs B -> A"
    LOADED[$key]=$(loaded_ping) || return 1
    local pid
    for pid in "${TUN_PIDS[@]+"${TUN_PIDS[@]}"}"; do
        kill -0 "$pid" 2>/dev/null || { log "$design: tunnel process $pid died during the run"; return 1; }
    done
    log "$design: 1-stream ${g1} Gbit/s, 4-stream ${g4} Gbit/s, ping avg/p99 ${RTT[$key]}/${P99[$key]} ms, loaded p99 ${LOADED[$key]} ms, CPU ${CPU[$key]} s"
}

label() {
    case $1 in
        raw) echo "raw veth (no tunnel)" ;;
        wireguard-go) echo "wireguard-go $(wireguard-go --version 2>/dev/null | sed -n 's/^wireguard-go \(v[^ ]*\).*/\1/p' | head -n1) (Debian)" ;;
        wireguard-go-current) echo "wireguard-go $("$WG_GO_CURRENT" --version 2>/dev/null | sed -n 's/^wireguard-go \(v[^ ]*\).*/\1/p' | head -n1) (current upstream)" ;;
        nebula) echo "nebula $(nebula -version 2>/dev/null | sed -n 's/^Version: //p')" ;;
        *) echo "$1" ;;
    esac
}

log "run prefix $PFX, designs: $DESIGNS, duration ${DURATION} s, rounds $ROUNDS"
idx=0
for round in $(seq 1 "$ROUNDS"); do
    for design in $DESIGNS; do
        idx=$((idx + 1))
        log "=== $design (round $round of $ROUNDS) ==="
        # Not in a subshell (the result arrays must survive); failures are
        # contained by the explicit `|| return 1` checks inside.
        if measure_design "$design" "$idx" "$round"; then
            [[ ${STATUS[$design]:-ok} == ok ]] && STATUS[$design]=ok
        else
            STATUS[$design]=FAILED
            FAILED=1
            log "$design: FAILED"
        fi
        teardown
    done
done

# median ARRAY DESIGN: a figure's median over the rounds ("-" if none).
median() {
    local -n fig=$1
    local r values=()
    for r in $(seq 1 "$ROUNDS"); do
        [[ -n ${fig["$2 $r"]:-} ]] && values+=("${fig["$2 $r"]}")
    done
    python3 -c '
import statistics, sys
v = [float(x) for x in sys.argv[1:] if x != "-"]
print(("%.3f" % statistics.median(v)).rstrip("0").rstrip(".") if v else "-")' "${values[@]+"${values[@]}"}"
}

ratio() { # warren vs another design (1-stream medians)
    if [[ ${STATUS[warren]:-} == ok && ${STATUS[$1]:-} == ok ]]; then
        python3 -c 'import sys; a,b=map(float,sys.argv[1:]); print("%.2fx" % (a/b) if b > 0 else "n/a")' \
            "$(median R1 warren)" "$(median R1 "$1")"
    else
        echo "n/a"
    fi
}

report() {
    echo "## Data-plane throughput, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo "Two namespaces over a veth on $(uname -r), $(nproc) cores; overlay MTU $MTU;"
    echo "iperf3 TCP ${DURATION} s per run; idle ping: 200 x 10 ms; loaded ping: every 20 ms"
    echo "while one iperf3 stream runs B to A; tunnel CPU = utime+stime of both ends' tunnel"
    echo "processes during the 1-stream run. Medians of $ROUNDS interleaved round(s)."
    echo
    echo "| design | 1-stream Gbit/s | 4-stream Gbit/s | ping avg ms | ping p99 ms | loaded ping p99 ms | tunnel CPU s (1-stream run) | Gbit per CPU-s |"
    echo "|---|---|---|---|---|---|---|---|"
    local d
    for d in $DESIGNS; do
        if [[ ${STATUS[$d]:-} == ok ]]; then
            echo "| $(label "$d") | $(median R1 "$d") | $(median R4 "$d") | $(median RTT "$d") | $(median P99 "$d") | $(median LOADED "$d") | $(median CPU "$d") | $(median GPC "$d") |"
        else
            echo "| $(label "$d") | FAILED | FAILED | FAILED | FAILED | FAILED | FAILED | FAILED |"
        fi
    done
    if [[ " $DESIGNS " == *" warren "* ]]; then
        echo
        local other line=""
        for other in wireguard-go-current wireguard-go nebula; do
            [[ " $DESIGNS " == *" $other "* ]] && line+="warren/$other: $(ratio "$other"), "
        done
        echo "${line%, } (1-stream)"
    fi
}

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/throughput-$(date +%Y-%m-%d-%H%M%S).md"
report | tee "$OUT"
log "written to $OUT"
exit "$FAILED"
