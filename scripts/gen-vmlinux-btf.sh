#!/usr/bin/env bash
# Regenerate crates/runtime/src/vmlinux.btf: the BTF of include/bpfvfs/vmlinux.h, which the
# runtime uses as the target of CO-RE relocations (so programs built against a kernel's
# vmlinux.h find our layout). Needs clang and llvm-objcopy.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
clang -g -O2 -target bpf -Iinclude/bpfvfs -c include/bpfvfs/vmlinux_btf.c -o "$tmp/v.o"
llvm-objcopy --dump-section .BTF="$tmp/v.btf" "$tmp/v.o"
cp "$tmp/v.btf" crates/runtime/src/vmlinux.btf
echo "wrote crates/runtime/src/vmlinux.btf ($(stat -c %s crates/runtime/src/vmlinux.btf) bytes)"
