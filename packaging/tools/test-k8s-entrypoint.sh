#!/bin/sh
# Runs packaging/docker/warren-k8s-entrypoint with a stub `warren` first on
# PATH that records each command line it is given, one argument per
# bracket, and checks what the script asked for: with the DaemonSet's
# environment (no site: the same join and routes as ever, and --no-site),
# with the router's (site, cluster DNS, key file, two prefixes), with no
# prefixes, and with a refused join. The
# values carry spaces and glob characters, so a split or expanded argument
# shows. Needs nothing but a POSIX shell; packaging/ci-check.sh runs it.
#
# Usage: packaging/tools/test-k8s-entrypoint.sh [ENTRYPOINT]
set -eu

ENTRYPOINT=${1:-$(cd "$(dirname "$0")/../docker" && pwd)/warren-k8s-entrypoint}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/bin"
cat >"$WORK/bin/warren" <<'EOF'
#!/bin/sh
# Stub agent: records argv; `daemon` lives until SIGTERM; `join` exits with
# STUB_JOIN_EXIT.
line=
for arg in "$@"; do line="$line[$arg]"; done
printf '%s\n' "$line" >>"$STUB_LOG"
for arg in "$@"; do
    case $arg in
        daemon)
            trap 'echo terminated >>"$STUB_LOG"; exit 0' TERM
            while :; do sleep 0.05; done
            ;;
        status) exit 0 ;;
        join) exit "${STUB_JOIN_EXIT:-0}" ;;
        routes) exit 0 ;;
    esac
done
exit 0
EOF
chmod 755 "$WORK/bin/warren"

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run NAME EXPECTED-EXIT ENV... (EXPECTED-EXIT: a number, or nonzero): runs the entry script with only ENV (and
# the stub's PATH), stops it once it has advertised (or exited by itself),
# and leaves the stub's log in $WORK/NAME.log.
run() {
    name=$1
    expected=$2
    shift 2
    log="$WORK/$name.log"
    : >"$log"
    env -i PATH="$WORK/bin:/usr/bin:/bin" STUB_LOG="$log" \
        WARREN_SOCKET="$WORK/warren.sock" "$@" sh "$ENTRYPOINT" 2>"$WORK/$name.err" &
    pid=$!
    tries=0
    while kill -0 "$pid" 2>/dev/null && ! grep -q '^\[--socket\].*\[routes\]' "$log"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 200 ]; then
            fail "$name: the entry script neither advertised nor exited within 10 s"
            kill -TERM "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    status=0
    wait "$pid" || status=$?
    if [ "$expected" = nonzero ] && [ "$status" != 0 ]; then
        :
    elif [ "$status" != "$expected" ]; then
        fail "$name: exit status $status, expected $expected ($(cat "$WORK/$name.err"))"
    fi
}

# expect NAME LINE: the stub was run with exactly these arguments.
expect() {
    grep -qxF -- "$2" "$WORK/$1.log" || {
        fail "$1: no command line $2; the stub saw:"
        sed 's/^/    /' "$WORK/$1.log" >&2
    }
}

# refute NAME TEXT: no command line contains TEXT.
refute() {
    if grep -qF -- "$2" "$WORK/$1.log"; then
        fail "$1: a command line holds $2"
    fi
}

SOCK="[--socket][$WORK/warren.sock]"
NET=0123456789abcdef

# The DaemonSet on the masters: no site (a site an earlier start set is
# cleared), the key in the environment.
run daemonset 0 WARREN_NETWORK_ID=$NET WARREN_CONTROLLER=ctl.example:7443 \
    WARREN_PREAUTH_KEY='wpk_secret *' WARREN_NODE_NAME='master one*' \
    WARREN_ADVERTISE_ROUTES=10.96.0.0/12
expect daemonset "[daemon]"
expect daemonset "$SOCK[join][$NET][--controller][ctl.example:7443][--trust-first-use][--name][master one*]"
expect daemonset "$SOCK[routes][advertise][--network][$NET][10.96.0.0/12][--replace][--no-site]"
expect daemonset "terminated"
refute daemonset "wpk_secret"
refute daemonset "[--site]"
refute daemonset "[--dns-"

# The router of a managed cluster: a site with its DNS, the key in a file.
printf 'wpk_secret\n' >"$WORK/key file"
chmod 600 "$WORK/key file"
FP=$(printf 'ab%.0s' 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32)
run router 0 WARREN_NETWORK_ID=$NET WARREN_CONTROLLER=ctl.example:7443 \
    WARREN_FINGERPRINT="$FP" WARREN_PREAUTH_KEY_FILE="$WORK/key file" \
    WARREN_NODE_NAME=m-warren-router-0 WARREN_ADVERTISE_ROUTES='10.96.0.0/12, 10.244.0.0/16' \
    WARREN_SITE='m *' WARREN_DNS_DOMAIN=cluster.local WARREN_DNS_SERVER=10.96.0.10
expect router "$SOCK[join][$NET][--controller][ctl.example:7443][--fingerprint][$FP][--key-file][$WORK/key file][--name][m-warren-router-0]"
expect router "$SOCK[routes][advertise][--network][$NET][10.96.0.0/12][10.244.0.0/16][--replace][--site][m *][--dns-domain][cluster.local][--dns-server][10.96.0.10]"
expect router "terminated"
refute router "wpk_secret"

# A site without DNS: --site alone.
run site-only 0 WARREN_NETWORK_ID=$NET WARREN_CONTROLLER=ctl.example:7443 \
    WARREN_ADVERTISE_ROUTES=10.96.0.0/12 WARREN_SITE=w
expect site-only "$SOCK[routes][advertise][--network][$NET][10.96.0.0/12][--replace][--site][w]"
refute site-only "--dns-"

# No prefixes: everything withdrawn, and no site to speak of.
run withdrawn 0 WARREN_NETWORK_ID=$NET WARREN_CONTROLLER=ctl.example:7443 \
    WARREN_ADVERTISE_ROUTES= WARREN_SITE=m WARREN_DNS_DOMAIN=cluster.local WARREN_DNS_SERVER=10.96.0.10
expect withdrawn "$SOCK[routes][advertise][--network][$NET][--none]"
refute withdrawn "site]"

# A refused join (a used-up or expired key: exit 13) stops the pod, and
# the daemon with it; nothing is advertised.
run refused 1 STUB_JOIN_EXIT=13 WARREN_NETWORK_ID=$NET WARREN_CONTROLLER=ctl.example:7443 \
    WARREN_ADVERTISE_ROUTES=10.96.0.0/12 WARREN_SITE=m
expect refused "terminated"
refute refused "[routes]"

# A controller not reachable yet (exit 10) does not: the agent keeps trying.
run unreachable 0 STUB_JOIN_EXIT=10 WARREN_NETWORK_ID=$NET WARREN_CONTROLLER=ctl.example:7443 \
    WARREN_ADVERTISE_ROUTES=10.96.0.0/12 WARREN_SITE=m
expect unreachable "$SOCK[routes][advertise][--network][$NET][10.96.0.0/12][--replace][--site][m]"

# Required values missing: the script refuses to start anything.
run no-network nonzero WARREN_CONTROLLER=ctl.example:7443
refute no-network "[daemon]"

if [ "$failures" -gt 0 ]; then
    echo "test-k8s-entrypoint: $failures failure(s)" >&2
    exit 1
fi
echo "test-k8s-entrypoint: all cases pass"
