#!/usr/bin/env bash
# Run pjdfstest and fsx against a live bpfvfs FUSE mount.
# Usage: scripts/fs-suites.sh [OUTDIR]
# Writes OUTDIR/pjdfstest.md, OUTDIR/fsx.log and OUTDIR/suites.counts ("PASSED FAILED").
# A pjdfstest failure listed in docs/pjdfstest-known-failures.txt (with its reason) is
# reported but not counted as a regression; any other failure is.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
bin=${BPFVFS_BIN:-${CARGO_TARGET_DIR:-target}/debug/bpfvfs}
[ -x "$bin" ] || cargo build -p bpfvfs >&2 || exit 1
if [ ! -e /dev/fuse ]; then
    echo "fs-suites: skipped: /dev/fuse is not available on this machine" >&2
    echo "0 0" > "$out/suites.counts"
    exit 0
fi
mnt=$(mktemp -d /tmp/bpfvfs-suite.XXXXXX)
sock="$out/bpfvfs.sock"
"$bin" up "$mnt" --socket "$sock" 2> "$out/daemon.log" &
pid=$!
for _ in $(seq 1 100); do
    mountpoint -q "$mnt" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if ! mountpoint -q "$mnt"; then
    echo "fs-suites: the daemon did not mount $mnt:" >&2
    cat "$out/daemon.log" >&2
    kill "$pid" 2>/dev/null
    echo "0 1" > "$out/suites.counts"
    exit 1
fi
chmod 0755 "$mnt"

passed=0; failed=0
echo "== pjdfstest against $mnt"
if PJD_ALLOW_REMOUNT=${PJD_ALLOW_REMOUNT:-1} scripts/pjdfstest.sh "$mnt" "$out/pjdfstest.md" > /dev/null; then
    log="$out/pjdfstest.log"
    p=$(grep -cE '[[:space:]]ok$' "$log" || true)
    mapfile -t fails < <(grep -E '[[:space:]]FAILED$' "$log" | awk '{print $1}')
    known=docs/pjdfstest-known-failures.txt
    unexpected=0
    for t in "${fails[@]}"; do
        if [ -f "$known" ] && grep -qE "^${t}([[:space:]]|$)" "$known"; then
            echo "   known failure: $t ($(grep -E "^${t}([[:space:]]|$)" "$known" | cut -d' ' -f2-))"
        else
            echo "   FAILED: $t"
            unexpected=$((unexpected + 1))
        fi
    done
    grep -E '^Summary:' "$log" || true
    echo "pjdfstest: $p passed, ${#fails[@]} failed ($unexpected unexpected); report: $out/pjdfstest.md"
    passed=$((passed + p)); failed=$((failed + unexpected))
else
    echo "pjdfstest could not run" >&2
    failed=$((failed + 1))
fi

echo "== fsx (20000 operations) against $mnt"
if scripts/fsx.sh "$mnt" 20000 > "$out/fsx.log" 2>&1; then
    tail -2 "$out/fsx.log"
    echo "fsx: 1 passed"
    passed=$((passed + 1))
else
    tail -20 "$out/fsx.log"
    echo "fsx: FAILED (log: $out/fsx.log)"
    failed=$((failed + 1))
fi

kill -TERM "$pid"
wait "$pid"
rc=$?
if mountpoint -q "$mnt"; then
    echo "fs-suites: the mount is still there after SIGTERM" >&2
    failed=$((failed + 1))
    fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt"
fi
[ $rc -ne 0 ] && { echo "fs-suites: daemon exited with $rc" >&2; failed=$((failed + 1)); }
rmdir "$mnt" 2>/dev/null
echo "$passed $failed" > "$out/suites.counts"
[ "$failed" -eq 0 ]
