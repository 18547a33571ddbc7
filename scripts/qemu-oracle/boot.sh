#!/usr/bin/env bash
# scripts/qemu-oracle/boot.sh KERNEL DIR CMD [ARG...]
#
# Boots KERNEL (a bzImage) under qemu with a busybox initramfs that carries DIR at /oracle,
# runs `CMD ARG...` there once as root (working directory /oracle), prints what it wrote
# (stdout and stderr, through the serial console) and exits with its status; 124 when the
# guest did not finish in time, 125 when qemu failed.
#
# The guest has proc, sysfs, devtmpfs, bpffs at /sys/fs/bpf, securityfs, tracefs, debugfs,
# tmpfs at /tmp and at /scratch; `lsm=lockdown,capability,landlock,bpf` so BPF LSM programs
# run; no lockdown (a direct kernel boot is no EFI secure boot); `ulimit -l unlimited`.
# Executables in DIR must be static (nothing else but busybox is in the guest).
#
# Acceleration: TCG with `-cpu max`. KVM is used only with BPFVFS_ORACLE_KVM=1: where /dev/kvm
# is PVM (a nested VM without vmx/svm), a stock kernel hangs under -enable-kvm.
# Knobs: BPFVFS_ORACLE_TIMEOUT (seconds, default 150), BPFVFS_ORACLE_MEM (default 1G),
# BPFVFS_ORACLE_CONSOLE=FILE (keep the whole console log there).
set -uo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 KERNEL DIR CMD [ARG...]" >&2
    exit 2
fi
KERNEL=$1 DIR=$2
shift 2
TIMEOUT=${BPFVFS_ORACLE_TIMEOUT:-150}
MEM=${BPFVFS_ORACLE_MEM:-1G}

for t in qemu-system-x86_64 cpio gzip; do
    command -v "$t" >/dev/null || { echo "boot.sh: $t missing (scripts/qemu-oracle/setup.sh)" >&2; exit 125; }
done
[ -r "$KERNEL" ] || { echo "boot.sh: no kernel $KERNEL" >&2; exit 125; }

tmp=$(mktemp -d /tmp/bpfvfs-oracle-boot.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,scratch,oracle,root}
cp /bin/busybox "$root/bin/busybox"
# Only the applets the init script uses, as links.
for a in sh mount mkdir cat cut uname poweroff sync echo; do ln -s busybox "$root/bin/$a"; done
cp -a "$DIR"/. "$root/oracle/"

# The command, each word single-quoted for the guest's sh.
for w in "$@"; do printf "'%s' " "${w//\'/\'\\\'\'}"; done > "$root/cmd"
echo >> "$root/cmd"

cat > "$root/init" <<'EOF'
#!/bin/sh
export PATH=/oracle:/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs scratch /scratch
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
ulimit -l unlimited
cd /oracle
echo "==ORACLE-BEGIN== kernel=$(uname -r) lsm=$(cat /sys/kernel/security/lsm) lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null) uptime=$(cut -d' ' -f1 /proc/uptime)"
sh /cmd </dev/null 2>&1
echo "==ORACLE-END== rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
EOF
chmod 0755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/initrd.gz" ||
    { echo "boot.sh: initramfs build failed" >&2; exit 125; }

accel=(-accel tcg -cpu max)
[ "${BPFVFS_ORACLE_KVM:-0}" = 1 ] && accel=(-enable-kvm -cpu host)
t0=$(date +%s.%N)
timeout --kill-after=5 "$TIMEOUT" qemu-system-x86_64 "${accel[@]}" -m "$MEM" -smp 1 \
    -kernel "$KERNEL" -initrd "$tmp/initrd.gz" \
    -append "console=ttyS0 lsm=lockdown,capability,landlock,bpf quiet panic=-1 oops=panic" \
    -nographic -no-reboot -display none -serial stdio -monitor none \
    </dev/null >"$tmp/console" 2>"$tmp/qemu.err"
qrc=$?
t1=$(date +%s.%N)
# Drop carriage returns, and what the firmware wrote before the marker on its line.
tr -d '\r' <"$tmp/console" | sed 's/^.*\(==ORACLE-BEGIN==\)/\1/' >"$tmp/console.txt"
[ -n "${BPFVFS_ORACLE_CONSOLE:-}" ] && cp "$tmp/console.txt" "$BPFVFS_ORACLE_CONSOLE"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "boot.sh: qemu ran %.1fs\n", b - a }' >&2

if ! grep -q '^==ORACLE-END== rc=' "$tmp/console.txt"; then
    if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
        echo "boot.sh: the guest did not finish within ${TIMEOUT}s; console tail:" >&2
        tail -20 "$tmp/console.txt" >&2
        exit 124
    fi
    echo "boot.sh: qemu exited ($qrc) before the command finished:" >&2
    cat "$tmp/qemu.err" >&2
    tail -20 "$tmp/console.txt" >&2
    exit 125
fi
sed -n '/^==ORACLE-BEGIN==/,/^==ORACLE-END==/p' "$tmp/console.txt"
rc=$(sed -n 's/^==ORACLE-END== rc=\([0-9]*\).*/\1/p' "$tmp/console.txt" | tail -1)
exit "$rc"
