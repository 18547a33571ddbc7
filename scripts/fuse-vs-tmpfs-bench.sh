#!/usr/bin/env bash
# Compare metadata and data throughput of a mounted file system (e.g. our FUSE
# mount) against a kernel tmpfs baseline, and print a markdown table.
#
# Usage: scripts/fuse-vs-tmpfs-bench.sh MOUNTED_DIR
#
# Needs root (it mounts a scratch tmpfs) and python3. For both MOUNTED_DIR and
# the tmpfs it measures, inside a scratch subdirectory that is removed after:
#   create    N empty files (open(O_CREAT|O_EXCL)+close)          [python3 loop]
#   stat      lstat all N files, warm (one untimed pass first)      [python3 loop]
#   readdir   list the N-entry directory (scandir + d_type), median of R runs
#   unlink    remove the N files                                    [python3 loop]
#   write     dd if=/dev/zero bs=1M count=MB conv=fsync
#   read      dd bs=1M of that file to /dev/null after dropping its cached pages
#             (dd iflag=nocache count=0 = posix_fadvise DONTNEED; a no-op on tmpfs)
#   read warm the same read again, page cache (if any) populated
# Timings are taken inside the measuring process, so interpreter/dd start-up
# is not included for the python parts and is ~1 ms for the dd parts.
#
# The whole set is run BENCH_ROUNDS times (alternating which fs goes first) and
# the median of each operation is reported.
#
# Environment knobs: BENCH_FILES (10000), BENCH_MB (256), BENCH_READDIR_REPS (5),
# BENCH_ROUNDS (3), BENCH_TMPFS_SIZE (size= option of the scratch tmpfs, 1g).
set -euo pipefail

die() { echo "fuse-vs-tmpfs-bench.sh: error: $*" >&2; exit 2; }
note() { echo "fuse-vs-tmpfs-bench.sh: $*" >&2; }

[[ $# -eq 1 ]] || { sed -n '2,22p' "$0" >&2; exit 2; }
[[ -d $1 ]] || die "$1 is not a directory"
MOUNTED=$(cd "$1" && pwd -P)
[[ $(id -u) -eq 0 ]] || die "must run as root (mounts a scratch tmpfs)"
command -v python3 >/dev/null || die "python3 is required"

FILES=${BENCH_FILES:-10000}
MB=${BENCH_MB:-256}
REPS=${BENCH_READDIR_REPS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
TMPFS_SIZE=${BENCH_TMPFS_SIZE:-1g}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fuse-bench.XXXXXX")
TMPFS=$WORK/tmpfs
mkdir "$TMPFS"
mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0755" bench-tmpfs "$TMPFS" || die "cannot mount tmpfs on $TMPFS"
SCRATCH_M=""
cleanup() {
    [[ -n $SCRATCH_M ]] && rm -rf "$SCRATCH_M"
    umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
SCRATCH_M=$(mktemp -d "$MOUNTED/.fuse-bench.XXXXXX") || die "cannot create a directory in $MOUNTED"
SCRATCH_T=$(mktemp -d "$TMPFS/.fuse-bench.XXXXXX")

cat >"$WORK/meta.py" <<'PY'
import os, statistics, sys, time
base, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = os.path.join(base, "files")
os.mkdir(d)
names = [os.path.join(d, "f%06d" % i) for i in range(n)]
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
res = {}

t = time.perf_counter()
for p in names:
    os.close(os.open(p, flags, 0o644))
res["create"] = time.perf_counter() - t

for p in names:                      # warm-up pass (dentry/attr caches)
    os.lstat(p)
t = time.perf_counter()
for p in names:
    os.lstat(p)
res["stat"] = time.perf_counter() - t

runs = []
for _ in range(reps):
    t = time.perf_counter()
    cnt = 0
    with os.scandir(d) as it:
        for e in it:
            e.is_dir(follow_symlinks=False)   # uses d_type, no stat
            cnt += 1
    runs.append(time.perf_counter() - t)
    if cnt != n:
        sys.exit("readdir returned %d entries, expected %d" % (cnt, n))
res["readdir"] = statistics.median(runs)

t = time.perf_counter()
for p in names:
    os.unlink(p)
res["unlink"] = time.perf_counter() - t
os.rmdir(d)
for k in ("create", "stat", "readdir", "unlink"):
    print(k, "%.6f" % res[k])
PY

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.6f", b-a}'; }

bench_dir() { # $1 = scratch dir; prints "key seconds" lines
    local d=$1 f=$1/data.bin t0 t1
    python3 "$WORK/meta.py" "$d" "$FILES" "$REPS"
    sync
    t0=$(now); dd if=/dev/zero of="$f" bs=1M count="$MB" conv=fsync status=none; t1=$(now)
    echo "write $(elapsed "$t0" "$t1")"
    dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true
    t0=$(now); dd if="$f" of=/dev/null bs=1M status=none; t1=$(now)
    echo "read $(elapsed "$t0" "$t1")"
    t0=$(now); dd if="$f" of=/dev/null bs=1M status=none; t1=$(now)
    echo "readwarm $(elapsed "$t0" "$t1")"
    [[ $(stat -c %s "$f") -eq $((MB * 1024 * 1024)) ]] || { echo "size mismatch on $f" >&2; return 1; }
    rm -f "$f"
}

# Whole suite ROUNDS times, alternating which side goes first; the table shows
# the per-operation median (first-touch page allocation makes single runs noisy).
: >"$WORK/m.txt"; : >"$WORK/t.txt"
for ((r = 1; r <= ROUNDS; r++)); do
    note "round $r/$ROUNDS: $MOUNTED ($(stat -f -c %T "$MOUNTED")) and tmpfs baseline"
    if (( r % 2 )); then
        bench_dir "$SCRATCH_M" >>"$WORK/m.txt"; bench_dir "$SCRATCH_T" >>"$WORK/t.txt"
    else
        bench_dir "$SCRATCH_T" >>"$WORK/t.txt"; bench_dir "$SCRATCH_M" >>"$WORK/m.txt"
    fi
done
median() { # $1 = file of "key value" lines -> "key median" lines
    sort -k1,1 -k2,2g "$1" | awk '{ v[$1, ++c[$1]] = $2 }
        END { for (k in c) { n = c[k]
            print k, (n % 2 ? v[k, (n + 1) / 2] : (v[k, n / 2] + v[k, n / 2 + 1]) / 2) } }'
}
median "$WORK/m.txt" >"$WORK/m.med"; median "$WORK/t.txt" >"$WORK/t.med"

FSTYPE=$(findmnt -n -o FSTYPE --target "$MOUNTED" 2>/dev/null || stat -f -c %T "$MOUNTED")
awk -v rounds="$ROUNDS" -v files="$FILES" -v mb="$MB" -v reps="$REPS" -v mdir="$MOUNTED" -v fstype="$FSTYPE" '
    FNR == NR { m[$1] = $2; next }
    { t[$1] = $2 }
    END {
        split("create stat readdir unlink write read readwarm", keys, " ")
        label["create"]   = "create " files " empty files"
        label["stat"]     = "stat " files " files (warm)"
        label["readdir"]  = "readdir " files "-entry dir (median of " reps ")"
        label["unlink"]   = "unlink " files " files"
        label["write"]    = "write " mb " MiB (dd bs=1M conv=fsync)"
        label["read"]     = "read " mb " MiB (dd bs=1M, cache dropped)"
        label["readwarm"] = "read " mb " MiB again (warm)"
        printf "Target: `%s` (%s) vs kernel tmpfs; median of %d rounds\n\n", mdir, fstype, rounds
        printf "| operation | MOUNTED (s) | tmpfs (s) | ratio MOUNTED/tmpfs |\n"
        printf "|---|---:|---:|---:|\n"
        for (i = 1; i <= 7; i++) { k = keys[i]
            r = (t[k] > 0) ? sprintf("%.2f", m[k] / t[k]) : "n/a"
            printf "| %s | %.4f | %.4f | %s |\n", label[k], m[k], t[k], r }
        printf "\nThroughput: write %.0f vs %.0f MiB/s, read %.0f vs %.0f MiB/s (MOUNTED vs tmpfs)\n",
            mb / m["write"], mb / t["write"], mb / m["read"], mb / t["read"]
    }' "$WORK/m.med" "$WORK/t.med"
