#!/usr/bin/env bash
# Packaging check (as root; `.ci/run` calls it): builds both .deb files from
# a release build, checks their contents, installs them on this machine and
# purges them again, boots a Debian root under systemd-nspawn in which the
# installed units really run (quick start, a second agent through the
# Kubernetes entry script, upgrade, purge), validates the Kubernetes
# manifests, and builds the docs with a link check after checking that
# every documented command line parses. Installs its own tools; safe to run
# again. See packaging/README.md for what each step proves.
#
# Environment: CARGO_TARGET_DIR (default: target), WARREN_CI_CACHE (default:
# /var/cache/warren-ci: the debootstrap root, kept between runs),
# WARREN_CI_SKIP_CONTAINER=1 skips the nspawn step (say so in a report),
# WARREN_CLI_TRACE: the command lines a test run ran (scripts/test), to
# check that every documented command was run by a test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
export CARGO_TARGET_DIR=$TARGET
CACHE=${WARREN_CI_CACHE:-/var/cache/warren-ci}
DEBS=$TARGET/debian
SYS_PATH=/usr/sbin:/usr/bin:/sbin:/bin

# Pinned tool versions. The link check is our own (packaging/tools/check-links.py).
CARGO_DEB_VERSION=3.8.0
MDBOOK_VERSION=0.4.52
K8S_VALIDATE_VERSION=1.37.0
K8S_VERSION=1.33.0

START=$(date +%s)
PASSED=0
step() { echo "== $* [$(($(date +%s) - START)) s]"; }
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; echo "packaging checks: $PASSED passed, 1 failed"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "packaging/ci-check.sh: run as root" >&2; exit 1; }

# ---------------------------------------------------------------- tools
step "tools"
apt_needed=()
for pkg in debootstrap systemd-container dpkg-dev man-db iproute2 iputils-ping nftables python3-pip; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || apt_needed+=("$pkg")
done
if [ ${#apt_needed[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi
cargo_tool() { # CRATE VERSION: `cargo install` only when that version is missing
    if ! cargo install --list | grep -q "^$1 v$2:"; then
        cargo install --locked --quiet "$1" --version "=$2"
    fi
}
cargo_tool cargo-deb "$CARGO_DEB_VERSION"
cargo_tool mdbook "$MDBOOK_VERSION"
export PATH="$HOME/.cargo/bin:$PATH"
if ! python3 -c "import kubernetes_validate" 2>/dev/null ||
    [ "$(python3 -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')" != "$K8S_VALIDATE_VERSION" ]; then
    # Debian's own python3 refuses pip installs unless told (PEP 668).
    python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$K8S_VALIDATE_VERSION" ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "kubernetes-validate==$K8S_VALIDATE_VERSION"
fi
ok "tools: cargo-deb $CARGO_DEB_VERSION, mdbook $MDBOOK_VERSION, kubernetes-validate $K8S_VALIDATE_VERSION"

# ---------------------------------------------------------------- build
step "release build and packages"
cargo build --release --locked -p warren-node -p warren-controller --bins
for bin in warren warren-controller; do
    rm -rf "$TARGET/release/assets/$bin"
    # A clean environment: clap prints the values of set WARREN_* variables in help text.
    env -i PATH=$SYS_PATH "$TARGET/release/$bin" generate-assets --out "$TARGET/release/assets/$bin"
    gzip -9n "$TARGET/release/assets/$bin"/man/*.1 # Debian ships man pages compressed
done
rm -rf "$DEBS"
cargo deb --no-build --strip --quiet -p warren-node --output "$DEBS/" >/dev/null
cargo deb --no-build --strip --quiet -p warren-controller --output "$DEBS/" >/dev/null
AGENT_DEB=$(ls "$DEBS"/warren_*.deb)
CONTROLLER_DEB=$(ls "$DEBS"/warren-controller_*.deb)
ok "built $(basename "$AGENT_DEB") and $(basename "$CONTROLLER_DEB")"

# ---------------------------------------------------------------- .deb contents
step "package contents"
# path owner mode, as dpkg-deb lists them
expect_in_deb() { # DEB PATH MODE
    local line listing
    listing=$(dpkg-deb -c "$1")
    line=$(awk -v p="./$2" '$6 == p { print $1, $2 }' <<<"$listing")
    [ -n "$line" ] || fail "$(basename "$1") lacks $2"
    [ "$line" = "$3 root/root" ] || [ "$line" = "$3 0/0" ] || fail "$(basename "$1"): $2 is '$line', expected '$3 root/root'"
}
expect_in_deb "$AGENT_DEB" usr/bin/warren -rwxr-xr-x
expect_in_deb "$AGENT_DEB" etc/warren/warren.toml -rw-r--r--
expect_in_deb "$AGENT_DEB" usr/lib/systemd/system/warren.service -rw-r--r--
expect_in_deb "$AGENT_DEB" usr/lib/sysusers.d/warren.conf -rw-r--r--
expect_in_deb "$AGENT_DEB" usr/lib/tmpfiles.d/warren.conf -rw-r--r--
expect_in_deb "$AGENT_DEB" usr/share/bash-completion/completions/warren -rw-r--r--
expect_in_deb "$AGENT_DEB" usr/share/zsh/vendor-completions/_warren -rw-r--r--
expect_in_deb "$AGENT_DEB" usr/share/fish/vendor_completions.d/warren.fish -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" usr/bin/warren-controller -rwxr-xr-x
expect_in_deb "$CONTROLLER_DEB" etc/warren-controller/controller.toml -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" usr/lib/systemd/system/warren-controller.service -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" etc/warren-controller/relay.toml -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" usr/lib/systemd/system/warren-controller-relay.service -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" usr/lib/sysusers.d/warren-controller.conf -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" usr/lib/tmpfiles.d/warren-controller.conf -rw-r--r--
expect_in_deb "$CONTROLLER_DEB" usr/share/bash-completion/completions/warren-controller -rw-r--r--
for deb in "$AGENT_DEB" "$CONTROLLER_DEB"; do
    pkg=$(dpkg-deb -f "$deb" Package)
    listing=$(dpkg-deb -c "$deb")
    grep -q "usr/share/man/man1/$pkg\.1\.gz" <<<"$listing" || fail "$pkg: no man page $pkg.1.gz"
    pages=$(grep -c "usr/share/man/man1/" <<<"$listing")
    control=$(mktemp -d)
    dpkg-deb -e "$deb" "$control"
    grep -qx "/etc/$pkg/$([ "$pkg" = warren ] && echo warren.toml || echo controller.toml)" "$control/conffiles" ||
        fail "$pkg: config file not a conffile"
    if [ "$pkg" = warren-controller ]; then
        grep -qx /etc/warren-controller/relay.toml "$control/conffiles" || fail "$pkg: relay.toml not a conffile"
        grep -q "deb-systemd-helper enable warren-controller-relay" "$control/postinst" &&
            ! grep -q "was-enabled warren-controller-relay" "$control/postinst" &&
            fail "$pkg: postinst enables the relay unit unasked"
        grep -q "try-restart warren-controller-relay.service" "$control/postinst" ||
            fail "$pkg: postinst does not restart a running relay unit on upgrade"
        grep -q "deb-systemd-invoke stop warren-controller-relay.service" "$control/prerm" ||
            fail "$pkg: prerm does not stop the relay unit"
        grep -q "deb-systemd-helper purge warren-controller-relay.service" "$control/postrm" ||
            fail "$pkg: postrm does not remove the relay unit's links on purge"
    fi
    grep -q "systemd-sysusers" "$control/postinst" || fail "$pkg: postinst does not create its user/group"
    grep -q "deb-systemd-helper enable" "$control/postinst" || fail "$pkg: postinst does not enable the unit"
    grep -q "_dh_action=restart\|deb-systemd-invoke restart\|_dh_action=try-restart" "$control/postinst" ||
        fail "$pkg: postinst does not restart the unit on upgrade"
    grep -q 'deb-systemd-invoke stop' "$control/prerm" || fail "$pkg: prerm does not stop the unit"
    grep -q '\[ "$1" = remove \]' "$control/prerm" || fail "$pkg: prerm stops the unit on upgrade too"
    grep -q "rm -rf /var/lib/$pkg" "$control/postrm" || fail "$pkg: postrm does not remove its state on purge"
    rm -rf "$control"
    ok "$pkg: files, modes, $pages man pages, conffile, maintainer scripts ($(dpkg-deb -f "$deb" Depends))"
done

# ---------------------------------------------------------------- host install
step "install on this machine, check, purge"
snapshot() {
    find /etc /usr /var /run -xdev \
        \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache -o -path /var/log \
        -o -path /var/tmp -o -path /run/netns -o -path /run/user -o -path /var/lib/man-db \
        -o -path "$TARGET" -o -path "$ROOT" \) -prune -o -print 2>/dev/null |
        grep -vxE '/etc/(group|gshadow|passwd|shadow|subuid|subgid)-?' |
        grep -vx /run/systemd/systemd-units-load | sort
}
for pkg in warren warren-controller; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q installed; then
        fail "$pkg is already installed on this machine; purge it first"
    fi
done
getent group warren >/dev/null && fail "group warren exists before the install"
getent passwd warren-controller >/dev/null && fail "user warren-controller exists before the install"
getent passwd warren-controller-relay >/dev/null && fail "user warren-controller-relay exists before the install"
before=$(mktemp)
after=$(mktemp)
snapshot >"$before"
host_cleanup() { # whatever happens: leave the machine as it was
    dpkg --purge warren warren-controller >/dev/null 2>&1 || true
    getent passwd warren-controller-relay >/dev/null && userdel warren-controller-relay 2>/dev/null || true
    getent group warren-controller-relay >/dev/null && groupdel warren-controller-relay 2>/dev/null || true
    getent passwd warren-controller >/dev/null && userdel warren-controller 2>/dev/null || true
    getent group warren-controller >/dev/null && groupdel warren-controller 2>/dev/null || true
    getent group warren >/dev/null && groupdel warren 2>/dev/null || true
}
trap host_cleanup EXIT
dpkg -i "$CONTROLLER_DEB" "$AGENT_DEB" >/dev/null
stat_is() { # PATH "owner:group mode"
    local got
    got=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || fail "$1 missing"
    [ "$got" = "$2" ] || fail "$1 is '$got', expected '$2'"
}
stat_is /usr/bin/warren "root:root 755"
stat_is /usr/bin/warren-controller "root:root 755"
stat_is /etc/warren/warren.toml "root:root 644"
stat_is /etc/warren-controller/controller.toml "root:root 644"
stat_is /usr/lib/systemd/system/warren.service "root:root 644"
stat_is /usr/lib/systemd/system/warren-controller.service "root:root 644"
stat_is /etc/warren-controller/relay.toml "root:root 644"
stat_is /usr/lib/systemd/system/warren-controller-relay.service "root:root 644"
getent group warren >/dev/null || fail "postinst made no group warren"
[ "$(getent passwd warren-controller | cut -d: -f6,7)" = "/var/lib/warren-controller:/usr/sbin/nologin" ] ||
    fail "user warren-controller: $(getent passwd warren-controller)"
[ "$(getent passwd warren-controller-relay | cut -d: -f6,7)" = "/var/lib/warren-controller-relay:/usr/sbin/nologin" ] ||
    fail "user warren-controller-relay: $(getent passwd warren-controller-relay)"
# The relay's user reads the controller's database through its group, and
# is in no other group of the controller's.
[ "$(id -nG warren-controller-relay | tr ' ' '\n' | sort | tr '\n' ' ')" = "warren-controller warren-controller-relay " ] ||
    fail "user warren-controller-relay is in groups '$(id -nG warren-controller-relay)'"
for unit in warren warren-controller; do
    [ -L "/etc/systemd/system/multi-user.target.wants/$unit.service" ] || fail "$unit.service not enabled"
done
[ -e /etc/systemd/system/multi-user.target.wants/warren-controller-relay.service ] &&
    fail "warren-controller-relay.service enabled by the install (the operator enables it)"
stat_is /usr/share/man/man1/warren-join.1.gz "root:root 644"
man -w warren-controller-serve >/dev/null || fail "man cannot find warren-controller-serve(1)"
# tmpfiles.d entries: what systemd would make at boot (no systemd as PID 1 here).
systemd-tmpfiles --create warren.conf warren-controller.conf
stat_is /var/lib/warren "root:warren 700"
stat_is /run/warren "root:warren 750"
stat_is /var/lib/warren-controller "warren-controller:warren-controller 750"
stat_is /var/lib/warren-controller-relay "warren-controller-relay:warren-controller-relay 700"
stat_is /run/warren-controller "warren-controller:warren-controller 700"
ok "installed: files, owners, modes, group warren, users warren-controller and warren-controller-relay, units enabled, man pages, tmpfiles"
UNITS=(warren warren-controller warren-controller-relay)
unit_files=()
for unit in "${UNITS[@]}"; do unit_files+=("/usr/lib/systemd/system/$unit.service"); done
verify=$(systemd-analyze verify "${unit_files[@]}" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
ok "systemd-analyze verify: all ${#UNITS[@]} units clean"
for unit in "${UNITS[@]}"; do
    line=$(systemd-analyze security --offline=yes --no-pager "/usr/lib/systemd/system/$unit.service" | tail -n 1)
    echo "   $line"
    echo "$line" | grep -qE "(PERFECT|SAFE|OK) " || fail "$unit.service exposure is worse than OK: $line"
done
ok "systemd-analyze security: all ${#UNITS[@]} units in the OK band or better"
# The installed binaries run: version, and a config check of the shipped conffiles.
warren --version | grep -q "^warren " || fail "warren --version"
warren check-config --config /etc/warren/warren.toml >/dev/null || fail "shipped /etc/warren/warren.toml does not check"
warren-controller check-config --config /etc/warren-controller/controller.toml >/dev/null ||
    fail "shipped controller.toml does not check"
warren-controller relay --check-config --config /etc/warren-controller/relay.toml >/dev/null ||
    fail "shipped relay.toml does not check"
ok "installed binaries run; the shipped config files check"
listed=$(dpkg -L warren warren-controller | sort -u)
dpkg --purge warren warren-controller >/dev/null
for path in $listed; do
    [ -d "$path" ] && continue
    [ -e "$path" ] && fail "$path is still there after purge"
done
for path in /etc/warren /etc/warren-controller /var/lib/warren /var/lib/warren-controller /var/lib/warren-controller-relay /run/warren /run/warren-controller; do
    [ -e "$path" ] && fail "$path is still there after purge"
done
ls /etc/systemd/system/*/warren*.service >/dev/null 2>&1 && fail "unit symlinks left after purge"
# Debian keeps system users and groups on purge; this check removes them itself.
getent group warren >/dev/null || fail "group warren vanished (expected to stay after purge)"
host_cleanup
trap - EXIT
snapshot >"$after"
leftover=$(comm -13 "$before" "$after")
[ -z "$leftover" ] || fail "left behind after purge: $leftover"
rm -f "$before" "$after"
ok "purged: no file, directory or unit link left (the documented user and group removed by this check)"

# ---------------------------------------------------------------- systemd container
if [ "${WARREN_CI_SKIP_CONTAINER:-0}" = 1 ]; then
    echo "SKIPPED: the systemd container step (WARREN_CI_SKIP_CONTAINER=1)"
else
    step "the packages under systemd (nspawn)"
    "$ROOT/packaging/tools/container-check.sh" "$AGENT_DEB" "$CONTROLLER_DEB" "$TARGET/release/warren" "$CACHE" ||
        fail "the packages under systemd (above)"
    ok "systemd container: install, quick start, second agent via the k8s entry script, upgrade, purge"
fi

# ---------------------------------------------------------------- Kubernetes
step "Kubernetes manifests"
# Two kustomizations, applied one or the other: the controller with the
# DaemonSet on masters, and the in-cluster router of managed clusters.
mapfile -t manifests < <(ls "$ROOT"/packaging/k8s/*.yaml "$ROOT"/packaging/k8s/router/*.yaml | grep -v /kustomization.yaml)
python3 -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "${manifests[@]}" || fail "kubernetes-validate"
for kustomization in "$ROOT/packaging/k8s" "$ROOT/packaging/k8s/router"; do
    python3 "$ROOT/packaging/tools/check-kustomization.py" "$kustomization" || fail "$kustomization/kustomization.yaml"
done
sh -n "$ROOT/packaging/docker/warren-k8s-entrypoint" || fail "entry script syntax"
sh "$ROOT/packaging/tools/test-k8s-entrypoint.sh" || fail "entry script's command lines (stub warren)"
ok "Kubernetes: ${#manifests[@]} manifests valid against $K8S_VERSION (strict); both kustomizations consistent (no schema: checked by structure); the entry script's command lines as expected"

# ---------------------------------------------------------------- docs
step "docs"
# The command reference pages come from the binaries just built. Stale
# committed pages are replaced (the site is always built from the binaries'
# own text) and reported, so that the fresh ones get committed.
reference=$(mktemp -d)
"$ROOT/packaging/tools/cli-reference.sh" "$TARGET/release" "$reference"
for page in warren warren-controller; do
    if ! diff -q "$ROOT/docs/reference/$page.md" "$reference/$page.md" >/dev/null 2>&1; then
        cp "$reference/$page.md" "$ROOT/docs/reference/$page.md"
        echo "NOTE: docs/reference/$page.md was stale and has been regenerated: commit it"
    fi
done
rm -rf "$reference"
ok "command reference pages are the binaries' (regenerated where stale)"
# With the trace of a test run (scripts/test writes it), each documented
# command must also have been run by a test.
coverage=()
if [ -s "${WARREN_CLI_TRACE:-}" ]; then
    coverage=(--trace "$WARREN_CLI_TRACE")
else
    echo "SKIPPED: which documented commands the tests ran (no WARREN_CLI_TRACE from scripts/test)"
fi
python3 "$ROOT/packaging/tools/doc-commands.py" --warren "$TARGET/release/warren" \
    --controller "$TARGET/release/warren-controller" "${coverage[@]}" \
    "$ROOT"/docs/*.md "$ROOT"/docs/reference/*.md "$ROOT/README.md" ||
    fail "a command line in the docs does not parse, or no test runs it"
ok "every command line in the docs parses${coverage:+, and the tests ran every documented command}"
book_log=$(mktemp)
mdbook build --dest-dir "$TARGET/book" "$ROOT/docs" >"$book_log" 2>&1 || { cat "$book_log"; fail "mdbook build"; }
if grep -E "WARN|ERROR|[Ww]arning|[Ee]rror" "$book_log"; then
    fail "mdbook build printed warnings"
fi
rm -f "$book_log"
python3 "$ROOT/packaging/tools/check-links.py" "$TARGET/book" || fail "dead links or #anchors in the docs"
ok "mdbook build with link check: no warnings, no dead links or anchors"

echo "packaging checks: $PASSED passed, 0 failed ($(($(date +%s) - START)) s)"
