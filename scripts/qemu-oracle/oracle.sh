#!/usr/bin/env bash
# scripts/qemu-oracle/oracle.sh OUTDIR
#
# The kernel side of the kernel-parity test (docs/kernel-parity.md): installs what is missing
# and finds the guest kernel (setup.sh), builds the examples of the step file UNCHANGED
# against include/bpfvfs/vmlinux.h and the static guest driver (driver.c), boots the kernel
# once under qemu (boot.sh) and runs the driver on the step file there. Writes
#   OUTDIR/kernel.txt     the driver's transcript (one line per step; see driver.c)
#   OUTDIR/guest/         what went into the guest (driver, objects, steps)
# and prints the transcript. Exit status 0; 77 when the oracle cannot run here (not root
# and nothing installed, no qemu, no kernel, the guest timed out: the reason is on stderr and
# in OUTDIR/skip); anything else is a failure.
#   BPFVFS_PARITY_STEPS  the step file (default crates/bpfvfs/tests/data/kernel_parity_steps.txt)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:?usage: oracle.sh OUTDIR}
STEPS=${BPFVFS_PARITY_STEPS:-$REPO/crates/bpfvfs/tests/data/kernel_parity_steps.txt}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# One oracle at a time per OUTDIR (test processes may share it).
exec 9>"$OUT/.lock"
flock 9
rm -f "$OUT/kernel.txt" "$OUT/skip"
skip() { echo "qemu-oracle: $*" >&2; echo "$*" > "$OUT/skip"; exit 77; }

t0=$(date +%s)
KERNEL=$("$HERE/setup.sh" 2>"$OUT/setup.err")
rc=$?
cat "$OUT/setup.err" >&2
[ $rc -eq 77 ] && skip "$(tail -1 "$OUT/setup.err" | sed 's/^qemu-oracle: //')"
[ $rc -ne 0 ] && { echo "qemu-oracle: setup.sh failed ($rc)" >&2; exit 1; }
t1=$(date +%s)

# Build: every example named in the step file, and the driver (static: the guest has only
# busybox).
G=$OUT/guest
rm -rf "$G"; mkdir -p "$G"
cp "$STEPS" "$G/steps.txt"
for ex in $(awk '$1 == "example" { print $2 }' "$STEPS"); do
    clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
        -I"$REPO/include/bpfvfs" -c "$REPO/examples/$ex.bpf.c" -o "$G/$ex.bpf.o" ||
        { echo "qemu-oracle: clang failed on examples/$ex.bpf.c" >&2; exit 1; }
done
# The CO-RE probes: every field include/bpfvfs/vmlinux.h models, relocated in the guest.
probes=()
for p in "$HERE"/*.bpf.c; do
    n=$(basename "$p" .bpf.c)
    clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
        -I"$REPO/include/bpfvfs" -c "$p" -o "$G/$n.bpf.o" ||
        { echo "qemu-oracle: clang failed on $p" >&2; exit 1; }
    probes+=("$n.bpf.o")
done
gcc -O2 -Wall -static -o "$G/driver" "$HERE/driver.c" -lbpf -lelf -lz ||
    { echo "qemu-oracle: building the driver failed" >&2; exit 1; }
t2=$(date +%s)

BPFVFS_ORACLE_CONSOLE=$OUT/console.txt \
    "$HERE/boot.sh" "$KERNEL" "$G" ./driver steps.txt /oracle /scratch /sys/fs/bpf "${probes[@]}" > "$OUT/kernel.txt"
rc=$?
t3=$(date +%s)
echo "qemu-oracle: kernel $KERNEL; setup $((t1 - t0))s, build $((t2 - t1))s, guest $((t3 - t2))s" >&2
case $rc in
    0) ;;
    124) skip "the guest did not finish in time (TCG on a busy machine?)" ;;
    125) skip "qemu could not boot $KERNEL" ;;
    *) cat "$OUT/kernel.txt"; echo "qemu-oracle: the driver failed in the guest ($rc)" >&2; exit 1 ;;
esac
grep -q '^@done' "$OUT/kernel.txt" || { cat "$OUT/kernel.txt"; echo "qemu-oracle: the driver did not finish" >&2; exit 1; }
cat "$OUT/kernel.txt"
