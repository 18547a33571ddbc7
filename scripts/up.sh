#!/usr/bin/env bash
# The main job: set the machine up, build bpfvfs, and serve the in-memory tree at DIR until
# SIGINT/SIGTERM.  Usage: scripts/up.sh DIR [bpfvfs up options...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/up.sh DIR [options]" >&2; exit 2; }
scripts/setup.sh
cargo build --release -p bpfvfs >&2
mkdir -p "$1"
exec "${CARGO_TARGET_DIR:-target}"/release/bpfvfs up "$@"
