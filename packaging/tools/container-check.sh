#!/usr/bin/env bash
# The installed packages under a real systemd, as far as this machine
# allows: PID 1 here is not systemd, so a Debian root (debootstrap, cached)
# boots under systemd-nspawn in a network namespace of its own, and its
# systemd runs the units exactly as packaged, with all their hardening.
#
#   container (netns A, 192.0.2.1)          netns B (192.0.2.2)
#   warren-controller.service  <--QUIC---   warren-k8s-entrypoint
#   warren.service (joins by the            (`warren daemon` + `warren join`,
#    quick start's commands)                 the DaemonSet's entry script)
#
# Checks: install starts and enables both units; the quick start's commands
# (network, invite, join: as root, through the admin socket, no token)
# work against them, and another user is refused; the agent holds only
# CAP_NET_ADMIN and CAP_NET_BIND_SERVICE; socket and state owners and
# modes; the `warren` group may use the CLI and others may not; split DNS
# rewrites /etc/resolv.conf under ProtectSystem=strict and names in the
# zone resolve, and the same through systemd-resolved (per-link DNS and
# a ~zone routing domain); `warren ping` finds a direct path and ICMP crosses the
# overlay; the relay-only unit, installed but not enabled, runs with no
# capabilities once enabled, both agents connect to it when the controller
# names it, and with direct UDP blocked ICMP crosses it; an upgrade
# (reinstall) restarts all three units, keeps a local edit
# of a conffile, and the node comes back into its network; purge stops
# everything, restores resolv.conf and routing, and leaves nothing.
#
# Usage: container-check.sh AGENT.deb CONTROLLER.deb WARREN_BIN CACHE_DIR
# All traffic stays inside the two namespaces this script makes.
set -euo pipefail
AGENT_DEB=$1
CONTROLLER_DEB=$2
WARREN_BIN=$3
CACHE=$4
HERE=$(cd "$(dirname "$0")/.." && pwd)
SYS_PATH=/usr/sbin:/usr/bin:/sbin:/bin
NS_A=warren-ci-a
NS_B=warren-ci-b
A_ADDR=192.0.2.1
B_ADDR=192.0.2.2
SERVICE_RANGE=10.96.0.0/12
SERVICE_IP=10.96.0.10
RELAY_METRICS_PORT=7481

fail() { echo "FAIL (container): $*" >&2; exit 1; }
note() { echo "   container: $*"; }

# ---- the Debian root, made once and kept in the cache (named by its
# package list, so a new list makes a new root)
INCLUDE=systemd,systemd-sysv,systemd-resolved,dbus,iproute2,nftables,iputils-ping
ROOTFS=$CACHE/rootfs-bookworm-$(echo "$INCLUDE" | sha256sum | cut -c1-8)
if [ ! -e "$ROOTFS/.complete" ]; then
    note "debootstrap (once; kept in $ROOTFS)"
    rm -rf "$ROOTFS.tmp"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include="$INCLUDE" \
        bookworm "$ROOTFS.tmp" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -n 20 "$CACHE/debootstrap.log"; fail "debootstrap"; }
    # systemd-resolved is there for its own phase below; the system starts
    # on a plain resolv.conf, as most servers do.
    systemctl --root="$ROOTFS.tmp" disable systemd-resolved.service >/dev/null 2>&1 ||
        fail "disabling systemd-resolved in the root"
    touch "$ROOTFS.tmp/.complete"
    rm -rf "$ROOTFS"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi

WORK=$(mktemp -d /var/tmp/warren-ci.XXXXXX)
NSPAWN_PID=
B_PID=
cleanup() {
    if [ -n "$B_PID" ] && kill -0 "$B_PID" 2>/dev/null; then
        kill -TERM "$B_PID" 2>/dev/null || true
        wait "$B_PID" 2>/dev/null || true
    fi
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cp -a "$ROOTFS" "$WORK/root"
mkdir -p "$WORK/root/srv/debs" "$WORK/b"
cp "$AGENT_DEB" "$WORK/root/srv/debs/warren.deb"
cp "$CONTROLLER_DEB" "$WORK/root/srv/debs/warren-controller.deb"
# Nothing in the container may ask a resolver outside the machine. (The
# systemd-resolved package made resolv.conf a link to its stub file.)
rm -f "$WORK/root/etc/resolv.conf"
printf 'nameserver 127.0.0.1\n' >"$WORK/root/etc/resolv.conf"

# ---- two namespaces joined by a veth
ip netns del "$NS_A" 2>/dev/null || true
ip netns del "$NS_B" 2>/dev/null || true
ip netns add "$NS_A"
ip netns add "$NS_B"
ip link add wci-a type veth peer name wci-b
ip link set wci-a netns "$NS_A"
ip link set wci-b netns "$NS_B"
ip -n "$NS_A" addr add "$A_ADDR/24" dev wci-a
ip -n "$NS_B" addr add "$B_ADDR/24" dev wci-b
for ns in "$NS_A" "$NS_B"; do
    ip -n "$ns" link set lo up
done
# A "service" address behind agent B, inside the range B advertises, as a
# cluster master's service range sits behind it.
ip -n "$NS_B" addr add "$SERVICE_IP/32" dev lo
ip -n "$NS_A" link set wci-a up
ip -n "$NS_B" link set wci-b up

# ---- boot
systemd-nspawn -D "$WORK/root" --boot --register=no --keep-unit --machine=warren-ci \
    --network-namespace-path="/run/netns/$NS_A" --capability=CAP_NET_ADMIN \
    --resolv-conf=off --timezone=off --link-journal=no --console=read-only \
    >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
# The container's init: the child of nspawn in a PID namespace of its own.
# nspawn's short-lived outer child shares ours, and entering it races its exit.
find_leader() {
    local pid
    for pid in $(ps -o pid= --ppid "$NSPAWN_PID"); do
        if [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" != "$(readlink /proc/self/ns/pid)" ] &&
            [ -n "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" ]; then
            echo "$pid"
            return
        fi
    done
}
LEADER=
for _ in $(seq 100); do
    LEADER=$(find_leader)
    [ -n "$LEADER" ] && break
    sleep 0.1
done
[ -n "$LEADER" ] || { cat "$WORK/console.log"; fail "the container did not start"; }
c() { nsenter --target "$LEADER" --all env -i PATH=$SYS_PATH "$@"; }
state=offline
for _ in $(seq 120); do
    # "offline" until the container's systemd answers on its bus.
    state=$(timeout 60 nsenter --target "$LEADER" --all env -i PATH=$SYS_PATH systemctl is-system-running --wait || true)
    [ "$state" = offline ] || [ -z "$state" ] || break
    sleep 0.5
done
case $state in
    running | degraded) note "systemd is $state" ;;
    *) cat "$WORK/console.log"; fail "systemd in the container: '$state'" ;;
esac
resolv_before=$(c cat /etc/resolv.conf)
rules_before=$(c ip rule)
# Routes anyone added (the kernel's own for addresses and link-local come and go).
routes() { c ip route show table all | grep -vE 'proto kernel|^(local|broadcast|multicast) |fe80::' || true; }
routes_before=$(routes)

# ---- install: the units start by themselves
c dpkg -i /srv/debs/warren-controller.deb /srv/debs/warren.deb >/dev/null
wait_active() {
    for _ in $(seq 50); do
        c systemctl is-active --quiet "$1" && return 0
        sleep 0.2
    done
    c systemctl status --no-pager "$1" || true
    fail "$1 is not active"
}
wait_active warren-controller.service
wait_active warren.service
for unit in warren warren-controller; do
    [ "$(c systemctl is-enabled "$unit.service")" = enabled ] || fail "$unit.service not enabled"
done
note "dpkg -i started and enabled both units"

# ---- privileges and files
cap_of() { c grep "^$2:" "/proc/$(c systemctl show -p MainPID --value "$1")/status" | awk '{print $2}'; }
# CAP_NET_BIND_SERVICE is bit 10, CAP_NET_ADMIN bit 12.
for set in CapEff CapBnd CapAmb; do
    [ "$(cap_of warren.service "$set")" = 0000000000001400 ] || fail "warren.service $set is $(cap_of warren.service "$set")"
    [ "$(cap_of warren-controller.service "$set")" = 0000000000000400 ] ||
        fail "warren-controller.service $set is $(cap_of warren-controller.service "$set")"
done
[ "$(c stat -c %U "/proc/$(c systemctl show -p MainPID --value warren-controller.service)")" = warren-controller ] ||
    fail "the controller does not run as warren-controller"
owner_mode() { c stat -c '%U:%G %a' "$1"; }
[ "$(owner_mode /run/warren/warren.sock)" = "root:warren 660" ] || fail "socket: $(owner_mode /run/warren/warren.sock)"
[ "$(owner_mode /run/warren)" = "root:warren 750" ] || fail "/run/warren: $(owner_mode /run/warren)"
[ "$(owner_mode /var/lib/warren)" = "root:warren 700" ] || fail "/var/lib/warren: $(owner_mode /var/lib/warren)"
[ "$(owner_mode /var/lib/warren/node.key)" = "root:warren 600" ] || fail "node.key: $(owner_mode /var/lib/warren/node.key)"
[ "$(owner_mode /var/lib/warren-controller)" = "warren-controller:warren-controller 750" ] ||
    fail "/var/lib/warren-controller: $(owner_mode /var/lib/warren-controller)"
for secret in controller.key tls-key.pem; do
    [ "$(owner_mode "/var/lib/warren-controller/$secret")" = "warren-controller:warren-controller 600" ] ||
        fail "$secret: $(owner_mode "/var/lib/warren-controller/$secret")"
done
[ "$(owner_mode /var/lib/warren-controller/controller.db)" = "warren-controller:warren-controller 640" ] ||
    fail "controller.db: $(owner_mode /var/lib/warren-controller/controller.db)"
[ "$(owner_mode /run/warren-controller)" = "warren-controller:warren-controller 700" ] ||
    fail "/run/warren-controller: $(owner_mode /run/warren-controller)"
[ "$(owner_mode /run/warren-controller/admin.sock)" = "warren-controller:warren-controller 600" ] ||
    fail "admin socket: $(owner_mode /run/warren-controller/admin.sock)"
note "capabilities (agent: NET_ADMIN + NET_BIND_SERVICE; controller: NET_BIND_SERVICE), owners and modes"

# ---- the quick start, as its page shows it (the controller's data belong to its user)
FP=
for _ in $(seq 50); do
    FP=$(c warren-controller fingerprint --data-dir /var/lib/warren-controller 2>/dev/null) && break
    sleep 0.2
done
[ -n "$FP" ] || fail "no fingerprint"
# Root needs no token: the CLI uses the admin socket.
admin() { c warren-controller "$@"; }
NET=$(admin network create ci)
actor=$(admin audit --action network.create --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["entries"][-1]["actor"])')
[ "$actor" = local:root ] || fail "network create over the admin socket recorded actor '$actor'"
KEY_B=$(admin key create "$NET" --expires 1h 2>/dev/null)
admin route auto-approve add "$NET" "$SERVICE_RANGE" --any >/dev/null
# The quick start's invite: one line, `warren join CODE`, run as printed
# (plus a name). The controller listens on [::]:7443: the code needs --address.
invite=$(admin network invite "$NET" --address 127.0.0.1:7443 --new-key --expires 1h 2>/dev/null)
case "$invite" in
    "warren join wj1_"*) ;;
    *) fail "network invite printed: $invite" ;;
esac
joined=$(c warren join "${invite#warren join }" --name packaged)
echo "$joined" | grep -q "^joined $NET as packaged.ci.warren.internal" || fail "join: $joined"
A_OVERLAY=$(echo "$joined" | sed -n 's/.*(\([0-9.]*\)\/.*/\1/p')
note "$joined"

# ---- a second agent in netns B, started by the DaemonSet's entry script
ip netns exec "$NS_B" env -i PATH=$SYS_PATH WARREN_BIN="$WARREN_BIN" \
    WARREN_SOCKET="$WORK/b/warren.sock" WARREN_STATE_DIR="$WORK/b/state" WARREN_DNS_MANAGE=off \
    WARREN_NETWORK_ID="$NET" WARREN_CONTROLLER="$A_ADDR:7443" WARREN_FINGERPRINT="$FP" \
    WARREN_PREAUTH_KEY="$KEY_B" WARREN_NODE_NAME=laptop-b WARREN_ADVERTISE_ROUTES="$SERVICE_RANGE" \
    "$HERE/docker/warren-k8s-entrypoint" >"$WORK/b/log" 2>&1 &
B_PID=$!
b() { ip netns exec "$NS_B" env -i PATH=$SYS_PATH "$WARREN_BIN" --socket "$WORK/b/warren.sock" "$@"; }
for _ in $(seq 100); do
    b status 2>/dev/null | grep -q "laptop-b.ci.warren.internal" && break
    kill -0 "$B_PID" 2>/dev/null || { cat "$WORK/b/log"; fail "the entry script exited"; }
    sleep 0.2
done
b status | grep -q "authorized" || { cat "$WORK/b/log"; fail "agent B did not join"; }
members=$(admin member list "$NET" --json)
echo "$members" | python3 -c '
import json, sys
names = {m["name"]: m for m in json.load(sys.stdin)["members"]}
assert set(names) == {"packaged", "laptop-b"}, names
assert all(m["state"] == "authorized" and m["online"] for m in names.values()), names
' || fail "member list: $members"
note "agent B joined through warren-k8s-entrypoint; member list shows both online"

# ---- paths, overlay traffic, DNS
ping_out=$(c warren ping laptop-b --count 10) || fail "warren ping laptop-b: $ping_out"
echo "$ping_out" | grep -q direct || fail "no direct path: $ping_out"
note "warren ping: $(echo "$ping_out" | tail -n 1)"
ip netns exec "$NS_B" ping -c 3 -W 2 -q "$A_OVERLAY" >/dev/null || fail "ICMP over the overlay to $A_OVERLAY"
note "ICMP from B to the packaged agent's $A_OVERLAY crosses the overlay"
head -n 1 <(c cat /etc/resolv.conf) | grep -q "^# Written by warren" || fail "resolv.conf not managed: $(c cat /etc/resolv.conf)"
c warren dns --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["mode"] == "resolv-conf" and d["error"] is None and d["backup"], d
assert all(s["serving"] and s.get("error") is None for s in d["stubs"]) and d["stubs"], d
' || fail "warren dns: $(c warren dns)"
resolved=$(c getent hosts laptop-b.ci.warren.internal | awk '{print $1}' | head -n 1)
[ -n "$resolved" ] || fail "laptop-b.ci.warren.internal does not resolve in the container"
note "split DNS: resolv.conf rewritten under ProtectSystem=strict; laptop-b.ci.warren.internal is $resolved"

# ---- split DNS through systemd-resolved, where it is the system's resolver:
# the agent restarts with resolved in charge, gives warren0 its stub and
# ~zone as a routing-only domain, names resolve through resolved's own
# stub, and a clean stop takes the link settings away again.
c systemctl stop warren.service
[ "$(c cat /etc/resolv.conf)" = "$resolv_before" ] || fail "a clean stop left resolv.conf: $(c cat /etc/resolv.conf)"
c systemctl start systemd-resolved.service
wait_active systemd-resolved.service
c ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
c systemctl start warren.service
wait_active warren.service
dns_json=
for _ in $(seq 100); do
    dns_json=$(c warren dns --json 2>/dev/null) && echo "$dns_json" | grep -q '"resolved"' && break
    sleep 0.2
done
echo "$dns_json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["mode"] == "resolved" and d["error"] is None and not d["backup"], d
assert all(s["serving"] and s.get("error") is None for s in d["stubs"]) and d["stubs"], d
' || fail "warren dns with systemd-resolved: $dns_json"
stub_ip=$(echo "$dns_json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["stubs"][0]["listen"].rsplit(":", 1)[0])')
link_dns=$(c resolvectl dns warren0)
link_domain=$(c resolvectl domain warren0)
echo "$link_dns" | grep -qF "$stub_ip" || fail "resolved has no stub for warren0: $link_dns"
echo "$link_domain" | grep -qF "~ci.warren.internal" || fail "resolved has no ~zone on warren0: $link_domain"
c resolvectl query laptop-b.ci.warren.internal >/dev/null || fail "resolvectl query laptop-b: $(c resolvectl query laptop-b.ci.warren.internal 2>&1)"
via_resolved=$(c getent hosts laptop-b.ci.warren.internal | awk '{print $1}' | head -n 1)
[ "$via_resolved" = "$resolved" ] || fail "through resolved laptop-b is '$via_resolved', not $resolved"
[ "$(c readlink /etc/resolv.conf)" = ../run/systemd/resolve/stub-resolv.conf ] || fail "the agent touched resolv.conf under resolved"
note "split DNS via systemd-resolved: warren0 -> $stub_ip for ~ci.warren.internal; laptop-b is $via_resolved"
c systemctl stop warren.service
c resolvectl status 2>/dev/null | grep -q "ci.warren.internal" && fail "resolved still routes the zone after a clean stop: $(c resolvectl status)"
c systemctl stop systemd-resolved.service
c rm -f /etc/resolv.conf
c sh -c "printf '%s\n' '$resolv_before' > /etc/resolv.conf"
[ "$(c cat /etc/resolv.conf)" = "$resolv_before" ] || fail "could not put resolv.conf back"
c systemctl start warren.service
wait_active warren.service
for _ in $(seq 100); do
    c warren dns --json 2>/dev/null | grep -q '"resolv-conf"' && break
    sleep 0.2
done
c warren dns --json | grep -q '"resolv-conf"' || fail "back on resolv.conf: $(c warren dns)"
note "a clean stop took resolved's link settings away; back on resolv.conf without it"

# ---- the cluster-master case: B advertises a range, A accepts it and reaches an address in it
c warren routes accept on >/dev/null
installed=
for _ in $(seq 100); do
    installed=$(c warren routes --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(r["prefix"] for n in d["networks"] for r in n["peer_routes"] if r["installed"]))
') || true
    [ "$installed" = "$SERVICE_RANGE" ] && break
    sleep 0.2
done
[ "$installed" = "$SERVICE_RANGE" ] || fail "route $SERVICE_RANGE not installed on A: $(c warren routes)"
c ping -c 3 -W 2 -q "$SERVICE_IP" >/dev/null || fail "no answer from $SERVICE_IP behind B: $(c warren routes)"
note "B advertised $SERVICE_RANGE (auto-approved); A accepted it and reaches $SERVICE_IP through B"

# ---- the relay-only instance: installed but not enabled; once enabled it
# runs as a user of its own with its own certificate, cannot read the
# controller's keys, and once named by the controller (advertise-relay and
# its fingerprint), both agents connect to it, and with direct UDP between
# them blocked their traffic crosses it.
[ "$(c systemctl is-enabled warren-controller-relay.service)" = disabled ] ||
    fail "warren-controller-relay.service is $(c systemctl is-enabled warren-controller-relay.service) after install"
c systemctl is-active --quiet warren-controller-relay.service && fail "the relay unit started by itself"
c sh -c "echo 'listen-metrics = \"127.0.0.1:$RELAY_METRICS_PORT\"' >> /etc/warren-controller/relay.toml"
relay_log() { c systemctl status --no-pager warren-controller-relay.service || true; c journalctl --no-pager -n 30 -u warren-controller-relay.service || true; }
c systemctl enable --now warren-controller-relay.service 2>/dev/null
wait_active warren-controller-relay.service
# Active comes at fork; the capabilities are dropped only at exec. Its
# /healthz answering means the program itself runs.
relay_healthy() {
    ip netns exec "$NS_A" python3 -c '
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:" + sys.argv[1] + "/healthz", timeout=2).read()
' "$RELAY_METRICS_PORT" 2>/dev/null
}
for _ in $(seq 50); do relay_healthy && break; sleep 0.2; done
relay_healthy || { relay_log; fail "the relay-only instance's /healthz does not answer"; }
relay_pid=$(c systemctl show -p MainPID --value warren-controller-relay.service)
for set in CapEff CapBnd CapAmb; do
    got=$(c grep "^$set:" "/proc/$relay_pid/status" | awk '{print $2}') || true
    [ "$got" = 0000000000000000 ] || { relay_log; fail "warren-controller-relay.service (PID $relay_pid) $set is '$got'"; }
done
[ "$(c stat -c %U "/proc/$relay_pid")" = warren-controller-relay ] ||
    { relay_log; fail "the relay runs as $(c stat -c %U "/proc/$relay_pid"), not warren-controller-relay"; }
# Its own certificate, not the controller's; the controller's keys are out
# of its user's reach, the database is not.
relay_fp=$(c warren-controller fingerprint --data-dir /var/lib/warren-controller-relay) ||
    { relay_log; fail "no certificate in the relay's state directory"; }
controller_fp=$(c warren-controller fingerprint --data-dir /var/lib/warren-controller)
[ "$relay_fp" != "$controller_fp" ] || fail "the relay serves the controller's certificate"
for secret in controller.key tls-key.pem; do
    c runuser -u warren-controller-relay -- cat "/var/lib/warren-controller/$secret" >/dev/null 2>&1 &&
        fail "the relay's user can read the controller's $secret"
done
c runuser -u warren-controller-relay -- test -r /var/lib/warren-controller/controller.db ||
    fail "the relay's user cannot read controller.db"
c sh -c "printf 'advertise-relay = \"%s\"\nadvertise-relay-fingerprint = \"%s\"\n' '$A_ADDR:7444' '$relay_fp' >> /etc/warren-controller/controller.toml"
c systemctl restart warren-controller.service
wait_active warren-controller.service
relay_line() { "$@" netcheck 2>/dev/null | grep "relay reachable" || true; }
want="relay reachable (relay-only instance $A_ADDR:7444)"
for _ in $(seq 150); do
    [ "$(relay_line c warren)" = "  $want" ] && [ "$(relay_line b)" = "  $want" ] && break
    sleep 0.2
done
[ "$(relay_line c warren)" = "  $want" ] || fail "agent A: '$(relay_line c warren)', expected '$want'"
[ "$(relay_line b)" = "  $want" ] || fail "agent B: '$(relay_line b)', expected '$want'"
# Only QUIC to the controller and the relay may pass between A and B.
ip netns exec "$NS_B" nft -f - <<NFT
table inet warren_ci_block {
    chain out { type filter hook output priority 0; ip daddr $A_ADDR udp dport != { 7443, 7444 } drop; }
    chain in { type filter hook input priority 0; ip saddr $A_ADDR udp sport != { 7443, 7444 } drop; }
}
NFT
relayed=
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
    relayed=$(c warren ping laptop-b --count 2 2>&1 || true)
    echo "$relayed" | tail -n 1 | grep -q "via relay" && break
    sleep 1
done
echo "$relayed" | tail -n 1 | grep -q "via relay" || fail "no relayed path with direct UDP blocked: $relayed"
relay_metric() {
    ip netns exec "$NS_A" python3 -c '
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:" + sys.argv[1] + "/metrics", timeout=5).read().decode()
print(sum(int(float(l.split()[-1])) for l in body.splitlines() if l.startswith("warren_relay_frames_total")))
' "$RELAY_METRICS_PORT"
}
frames_before=$(relay_metric)
ip netns exec "$NS_B" ping -c 5 -W 2 -q "$A_OVERLAY" >/dev/null || fail "ICMP over the relay to $A_OVERLAY"
frames_after=$(relay_metric)
# At least one echo and its reply, each one frame through the instance.
[ "$frames_after" -ge $((frames_before + 2)) ] ||
    fail "the relay-only instance forwarded $((frames_after - frames_before)) frames for 5 pings (expected at least 2)"
ip netns exec "$NS_B" nft delete table inet warren_ci_block
note "relay unit: enabled by hand, own user and certificate, no capabilities, controller keys out of reach; both agents use it; ICMP crossed it ($((frames_after - frames_before)) frames)"

# ---- the warren group may use the local API; others may not
c useradd --no-create-home --groups warren ci-member
c useradd --no-create-home ci-outsider
c runuser -u ci-member -- warren status >/dev/null || fail "a member of group warren cannot run warren status"
if c runuser -u ci-outsider -- warren status >/dev/null 2>&1; then
    fail "a user outside group warren can use the local API"
fi
note "group warren may use the CLI; other users are refused"
if out=$(c runuser -u ci-outsider -- warren-controller network list 2>&1); then
    fail "a user other than root can use the controller's admin socket: $out"
fi
echo "$out" | grep -q "permission denied" || fail "the admin CLI as another user says: $out"
note "the controller's admin socket refuses other users: $out"

# ---- upgrade: reinstall restarts both units; a local conffile edit stays
c sh -c 'echo "# local edit kept by upgrades" >> /etc/warren/warren.toml'
pid_agent=$(c systemctl show -p MainPID --value warren.service)
pid_controller=$(c systemctl show -p MainPID --value warren-controller.service)
pid_relay=$(c systemctl show -p MainPID --value warren-controller-relay.service)
c dpkg -i /srv/debs/warren-controller.deb /srv/debs/warren.deb >/dev/null
wait_active warren-controller.service
wait_active warren.service
[ "$(c systemctl show -p MainPID --value warren.service)" != "$pid_agent" ] || fail "upgrade did not restart warren"
[ "$(c systemctl show -p MainPID --value warren-controller.service)" != "$pid_controller" ] ||
    fail "upgrade did not restart warren-controller"
wait_active warren-controller-relay.service
[ "$(c systemctl show -p MainPID --value warren-controller-relay.service)" != "$pid_relay" ] ||
    fail "upgrade did not restart the running warren-controller-relay"
c grep -q "local edit kept by upgrades" /etc/warren/warren.toml || fail "upgrade overwrote the edited conffile"
for _ in $(seq 100); do
    c warren status 2>/dev/null | grep -q "authorized" && break
    sleep 0.2
done
c warren status | grep -q "authorized" || fail "after the upgrade the node is not back in its network"
c warren ping laptop-b --count 10 >/dev/null || fail "after the upgrade laptop-b does not answer"
note "upgrade: all three units restarted, conffile edit kept, node back in its network"

# ---- purge: everything stops and goes; resolv.conf and routing as before
listed=$(c dpkg -L warren warren-controller | sort -u)
c dpkg --purge warren warren-controller >/dev/null
for unit in warren warren-controller warren-controller-relay; do
    c systemctl is-active --quiet "$unit.service" && fail "$unit.service still runs after purge"
done
[ "$(c cat /etc/resolv.conf)" = "$resolv_before" ] || fail "resolv.conf not restored: $(c cat /etc/resolv.conf)"
[ "$(c ip rule)" = "$rules_before" ] || fail "ip rules changed: $(c ip rule)"
[ "$(routes)" = "$routes_before" ] || fail "routes changed: before [$routes_before], after [$(routes)]"
c ip link show warren0 >/dev/null 2>&1 && fail "warren0 still exists"
if c nft list tables 2>/dev/null | grep -q warren; then fail "nftables table warren left"; fi
for path in $listed; do
    c test -d "$path" && continue # shared folders such as /usr/bin
    c test -e "$path" && fail "$path left after purge"
done
for path in /etc/warren /etc/warren-controller /var/lib/warren /var/lib/warren-controller /var/lib/warren-controller-relay /run/warren; do
    c test -e "$path" && fail "$path left after purge"
done
left=$(c find /etc/systemd /var/lib/systemd -name '*warren*' 2>/dev/null || true)
[ -z "$left" ] || fail "systemd state left after purge: $left"
note "purge: units stopped, files gone, resolv.conf, rules and routes as before"

# ---- agent B stops cleanly on SIGTERM, as the kubelet stops it
kill -TERM "$B_PID"
b_status=0
wait "$B_PID" || b_status=$?
B_PID=
[ "$b_status" = 0 ] || { cat "$WORK/b/log"; fail "the entry script exited with $b_status on SIGTERM"; }
note "entry script: clean exit on SIGTERM"

c systemctl poweroff >/dev/null 2>&1 || true
for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.2; done
