#!/usr/bin/env bash
# Install what a fresh machine lacks to build, run and test bpfvfs. Idempotent; safe to source
# or run. Needs root (or sudo) for apt-get; skips what is already present.
set -euo pipefail

APT_PACKAGES=(fuse3 pkg-config util-linux python3 tar findutils coreutils clang llvm libbpf-dev bpftool gcc libc6-dev)

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do have_pkg "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    # shellcheck disable=SC1091
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }

# /dev/fuse is needed for the mount; a container may lack it.
if [ ! -e /dev/fuse ] && [ "$(id -u)" -eq 0 ]; then
    mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
fi
