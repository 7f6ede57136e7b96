#!/usr/bin/env bash
# Writes the docs' command reference pages from the binaries' clap
# definitions: docs/reference/warren.md and docs/reference/warren-controller.md.
# Run it after changing a command or flag (packaging/ci-check.sh also
# regenerates stale pages, and says so). Any build's binaries do: the help
# text is the same in debug and release builds.
#
# Usage: packaging/tools/cli-reference.sh [BIN_DIR [OUT_DIR]]
#   BIN_DIR  folder with warren and warren-controller (default: target/release,
#            built if missing)
#   OUT_DIR  where the pages go (default: docs/reference)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN_DIR=${1:-${CARGO_TARGET_DIR:-target}/release}
OUT_DIR=${2:-docs/reference}
if [ $# -eq 0 ]; then
    cargo build --release -p warren-node -p warren-controller --bins
fi
mkdir -p "$OUT_DIR"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for bin in warren warren-controller; do
    # A clean environment: clap shows the values of set WARREN_* variables.
    env -i PATH=/usr/bin:/bin "$BIN_DIR/$bin" generate-assets --out "$scratch/$bin"
    cp "$scratch/$bin/reference.md" "$OUT_DIR/$bin.md"
done
