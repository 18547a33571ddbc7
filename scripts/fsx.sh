#!/usr/bin/env bash
# Run fsx (File System eXerciser, Rust rewrite, crates.io `fsx`) against a file
# in DIR: OPS pseudo-random read/write/truncate/mmap/... operations, every read
# verified against an in-memory model of the file.
#
# Usage: scripts/fsx.sh DIR [OPS]        (OPS default 20000)
#
# Exit status: 0 if all operations completed and verified, non-zero on any fsx
# failure (1 = data/size miscompare or failed syscall, 101 = fsx panicked on an
# unexpected syscall error, 2 = bad configuration) or if fsx cannot be run.
# On failure the test file and fsx's artifacts (FILE.fsxgood, the expected
# contents) are kept and their paths printed; the seed is printed up front so a
# run can be replayed with FSX_SEED.
#
# Environment knobs (all optional):
#   FSX_VERSION       crate version to install if missing          (default 0.3.2)
#   FSX_SEED          RNG seed                         (default: random, printed)
#   FSX_MMAP          auto|1|0  mapread/mapwrite/msync-invalidate ops  (default auto:
#                     enabled if a MAP_SHARED read/write mapping works on DIR)
#   FSX_FALLOCATE     auto|1|0  posix_fallocate ops                 (default auto)
#   FSX_PUNCH_HOLE    auto|1|0  fallocate(PUNCH_HOLE|KEEP_SIZE) ops (default auto)
#   FSX_COPY_RANGE    auto|1|0  copy_file_range ops                 (default auto)
#   FSX_FLEN          maximum file size in bytes                  (default 262144)
#   FSX_OPSIZE_MAX    maximum size of one read/write             (default 65536)
#   FSX_CONFIG        use this fsx.toml verbatim instead of generating one
#   FSX_EXTRA_ARGS    extra fsx arguments, e.g. "-v" (log every operation)
set -euo pipefail

die() { echo "fsx.sh: error: $*" >&2; exit 2; }
note() { echo "fsx.sh: $*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
DIR=$1
OPS=${2:-20000}
[[ -d $DIR ]] || die "$DIR is not a directory"
[[ $OPS =~ ^[0-9]+$ && $OPS -gt 0 ]] || die "OPS must be a positive integer"
DIR=$(cd "$DIR" && pwd -P)

FSX_VERSION=${FSX_VERSION:-0.3.2}
FSX_MMAP=${FSX_MMAP:-auto}
FSX_FALLOCATE=${FSX_FALLOCATE:-auto}
FSX_PUNCH_HOLE=${FSX_PUNCH_HOLE:-auto}
FSX_COPY_RANGE=${FSX_COPY_RANGE:-auto}
FSX_FLEN=${FSX_FLEN:-262144}
FSX_OPSIZE_MAX=${FSX_OPSIZE_MAX:-65536}
# fsx takes a u64 seed; keep it in bash's positive integer range
FSX_SEED=${FSX_SEED:-$(( ( $(date +%s%N) ^ ($$ << 20) ^ RANDOM ) & 0x7fffffffffffffff ))}

# ---------------------------------------------------------------- install
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v fsx >/dev/null 2>&1; then
    command -v cargo >/dev/null 2>&1 || die "fsx not found and cargo is not available"
    note "installing fsx $FSX_VERSION with cargo (takes ~45 s)"
    cargo install --locked fsx --version "$FSX_VERSION" >&2 \
        || cargo install fsx --version "$FSX_VERSION" >&2 \
        || die "cargo install fsx failed"
fi
FSX_BIN=$(command -v fsx)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fsx-sh.XXXXXX")
TESTFILE=$DIR/fsx.$$.$FSX_SEED
PROBE=$DIR/.fsx-probe.$$
KEEP=0
cleanup() {
    rm -f "$PROBE"
    if [[ $KEEP -eq 0 ]]; then rm -rf "$WORK"; rm -f "$TESTFILE"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- probes
# Each probe exercises the syscall on a scratch file in DIR and prints 1/0.
probe() { # $1 = name
    if ! command -v python3 >/dev/null 2>&1; then
        note "python3 not found; assuming '$1' works"; echo 1; return
    fi
    python3 - "$PROBE" "$1" <<'PY' 2>/dev/null || echo 0
import ctypes, ctypes.util, mmap, os, sys
path, what = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    os.ftruncate(fd, 8192)
    if what == "mmap":
        m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[100:105] = b"hello"; m.flush(); m.close()
        ok = os.pread(fd, 5, 100) == b"hello"
    elif what == "fallocate":
        os.posix_fallocate(fd, 0, 16384); ok = os.fstat(fd).st_size == 16384
    elif what == "punch_hole":
        os.pwrite(fd, b"x" * 8192, 0)
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        ok = libc.fallocate(fd, 0x01 | 0x02, 0, 4096) == 0 and os.pread(fd, 1, 0) == b"\0"
    elif what == "copy_range":
        os.pwrite(fd, b"abcdefgh", 0)
        ok = os.copy_file_range(fd, fd, 8, 0, 4096) == 8 and os.pread(fd, 8, 4096) == b"abcdefgh"
    else:
        ok = False
finally:
    os.close(fd)
print(1 if ok else 0)
PY
}
decide() { # $1 = knob value, $2 = probe name
    case $1 in
        1|yes|on|true) echo 1 ;;
        0|no|off|false) echo 0 ;;
        auto) probe "$2" ;;
        *) die "bad value '$1' (use auto, 1 or 0)" ;;
    esac
}
MMAP=$(decide "$FSX_MMAP" mmap)
FALLOC=$(decide "$FSX_FALLOCATE" fallocate)
PUNCH=$(decide "$FSX_PUNCH_HOLE" punch_hole)
COPYR=$(decide "$FSX_COPY_RANGE" copy_range)
rm -f "$PROBE"

# ---------------------------------------------------------------- config
CONF=$WORK/fsx.toml
if [[ -n ${FSX_CONFIG:-} ]]; then
    [[ -f $FSX_CONFIG ]] || die "FSX_CONFIG=$FSX_CONFIG does not exist"
    cp "$FSX_CONFIG" "$CONF"
else
    m=$(( MMAP * 10 ))
    cat >"$CONF" <<EOF
flen = $FSX_FLEN

[opsize]
max = $FSX_OPSIZE_MAX

[weights]
close_open = 1
read = 10
write = 10
mapread = $m
mapwrite = $m
invalidate = $MMAP
truncate = 10
fsync = 1
fdatasync = 1
posix_fallocate = $FALLOC
punch_hole = $PUNCH
sendfile = 1
posix_fadvise = 1
copy_file_range = $COPYR
EOF
fi

# ---------------------------------------------------------------- run
note "target=$DIR ops=$OPS seed=$FSX_SEED mmap=$MMAP posix_fallocate=$FALLOC punch_hole=$PUNCH copy_file_range=$COPYR ($("$FSX_BIN" --version))"
read -r -a EXTRA <<<"${FSX_EXTRA_ARGS:-}"
START=$(date +%s.%N)
rc=0
"$FSX_BIN" -N "$OPS" -S "$FSX_SEED" -f "$CONF" -P "$WORK" "${EXTRA[@]}" "$TESTFILE" || rc=$?
END=$(date +%s.%N)
ELAPSED=$(awk -v a="$START" -v b="$END" 'BEGIN{printf "%.2f", b-a}')

if [[ $rc -ne 0 ]]; then
    KEEP=1
    note "FAILED (fsx exit $rc) after ${ELAPSED}s; seed=$FSX_SEED"
    note "test file kept: $TESTFILE"
    note "artifacts (config, expected contents *.fsxgood): $WORK"
    note "replay: FSX_SEED=$FSX_SEED FSX_MMAP=$MMAP FSX_FALLOCATE=$FALLOC FSX_PUNCH_HOLE=$PUNCH FSX_COPY_RANGE=$COPYR $0 $DIR $OPS"
    exit "$rc"
fi
note "OK: $OPS operations verified in ${ELAPSED}s"
