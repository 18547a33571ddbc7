#!/usr/bin/env bash
# scripts/qemu-oracle/setup.sh: make the kernel oracle runnable; print the guest kernel's path.
#
# Installs what is missing (apt-get, as root or through sudo): qemu-system-x86, busybox-static
# and cpio to boot the guest, clang/libbpf-dev/gcc to build what runs in it. Then finds a
# bzImage of Debian's kernel with BPF LSM and BTF:
#   1. $BPFVFS_ORACLE_KERNEL, if set;
#   2. /boot/vmlinuz-* whose /boot/config-* has CONFIG_BPF_LSM=y and CONFIG_DEBUG_INFO_BTF=y;
#   3. the cache ($BPFVFS_ORACLE_CACHE, default /var/cache/bpfvfs/qemu-oracle), filled by
#      `apt-get download` of the package linux-image-amd64 depends on and extracting its
#      /boot/vmlinuz-* with dpkg-deb (nothing is installed, /boot is not touched).
# Exit status: 0 (kernel path on stdout), 77 when the oracle cannot be had here (reason on
# stderr).
set -uo pipefail

say() { echo "qemu-oracle: $*" >&2; }
cant() { say "$*"; exit 77; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n"
fi

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Packages (tool checked first: a tool installed some other way is fine too).
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
{ [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; } ||
    have_pkg busybox-static || need+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v clang >/dev/null 2>&1 || need+=(clang)
[ -f /usr/include/bpf/libbpf.h ] && [ -f /usr/lib/x86_64-linux-gnu/libbpf.a ] || need+=(libbpf-dev)
[ -f /usr/lib/x86_64-linux-gnu/libelf.a ] || need+=(libelf-dev)
[ -f /usr/lib/x86_64-linux-gnu/libz.a ] || need+=(zlib1g-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v file >/dev/null 2>&1 || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || cant "no apt-get to install ${need[*]}"
    [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ] || cant "not root (and no sudo) to install ${need[*]}"
    say "installing ${need[*]}"
    $SUDO apt-get update -qq >&2 || say "apt-get update failed (trying the lists as they are)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
        cant "apt-get install ${need[*]} failed"
fi

kernel_ok() { # a bzImage with BPF LSM and BTF (by its config file next to it)
    local k=$1 cfg
    [ -r "$k" ] || return 1
    cfg=$(dirname "$k")/config-${k##*/vmlinuz-}
    [ -r "$cfg" ] || return 0 # no config (e.g. the cache): trust the source
    grep -q '^CONFIG_BPF_LSM=y' "$cfg" && grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$cfg"
}

if [ -n "${BPFVFS_ORACLE_KERNEL:-}" ]; then
    kernel_ok "$BPFVFS_ORACLE_KERNEL" || cant "BPFVFS_ORACLE_KERNEL=$BPFVFS_ORACLE_KERNEL is not usable"
    echo "$BPFVFS_ORACLE_KERNEL"
    exit 0
fi
for k in $(ls -1v /boot/vmlinuz-* 2>/dev/null | tac); do
    if kernel_ok "$k"; then echo "$k"; exit 0; fi
done

CACHE=${BPFVFS_ORACLE_CACHE:-/var/cache/bpfvfs/qemu-oracle}
if ! mkdir -p "$CACHE" 2>/dev/null || [ ! -w "$CACHE" ]; then
    CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bpfvfs/qemu-oracle
    mkdir -p "$CACHE" || cant "no writable cache directory"
fi
# The kernel package linux-image-amd64 points at now (e.g. linux-image-6.1.0-57-amd64).
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
if [ -z "$pkg" ]; then
    $SUDO apt-get update -qq >&2 || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
fi
if [ -n "$pkg" ] && [ -s "$CACHE/vmlinuz-${pkg#linux-image-}" ]; then
    echo "$CACHE/vmlinuz-${pkg#linux-image-}"
    exit 0
fi
if [ -z "$pkg" ]; then
    # No package lists: an earlier download is still good.
    k=$(ls -1v "$CACHE"/vmlinuz-* 2>/dev/null | tail -1)
    [ -n "$k" ] && { echo "$k"; exit 0; }
    cant "apt-cache knows no linux-image-amd64 (and nothing cached in $CACHE)"
fi
dl=$(mktemp -d "$CACHE/dl.XXXXXX")
trap 'rm -rf "$dl"' EXIT
say "downloading $pkg (its /boot/vmlinuz only goes to $CACHE)"
(cd "$dl" && chmod 0777 . && apt-get download -qq "$pkg" >&2 2>/dev/null) || cant "apt-get download $pkg failed"
deb=$(ls "$dl"/*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || cant "apt-get download $pkg gave no .deb"
(cd "$dl" && dpkg-deb --fsys-tarfile "$deb" | tar -x --wildcards './boot/vmlinuz-*' './boot/config-*') ||
    cant "could not extract the kernel from $deb"
k=$(ls "$dl"/boot/vmlinuz-* | head -1)
mv -f "$dl"/boot/config-* "$CACHE"/ 2>/dev/null
mv -f "$k" "$CACHE/" || cant "could not store the kernel in $CACHE"
echo "$CACHE/${k##*/}"
