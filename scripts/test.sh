#!/usr/bin/env bash
# The test command: set the machine up, run every test suite, print one closing line
# "N passed, M failed".  Usage: scripts/test.sh
#   BPFVFS_SKIP_FS_SUITES=1  skip pjdfstest/fsx against the FUSE mount
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

passed=0; failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# 1. cargo tests (unit, integration with real FUSE mounts, CLI).
cargo build --workspace --all-targets 2>&1 | tail -3
cargo test --workspace --no-fail-fast 2>&1 | tee "$log/cargo.txt"
cargo_rc=${PIPESTATUS[0]}
read -r p f < <(awk '/^test result:/ {p += $4; f += $6} END {print p + 0, f + 0}' "$log/cargo.txt")
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
[ "$cargo_rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && failed=$((failed + 1))

# 2. POSIX suites against a real mount.
if [ "${BPFVFS_SKIP_FS_SUITES:-0}" != 1 ]; then
    scripts/fs-suites.sh "$log" 
    rc=$?
    if [ -f "$log/suites.counts" ]; then
        read -r sp sf < "$log/suites.counts"
        passed=$((passed + sp)); failed=$((failed + sf))
    fi
    [ $rc -ne 0 ] && failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
