#!/bin/sh
# Example (c) of issue 9: a map truly pinned in a project directory of the in-memory
# filesystem. It survives the removal of its bpffs pin and is freed when the project
# directory is removed with rm -r, with no bpffs involved at the end.
#
# Usage: project_pin.sh MOUNT   (MOUNT: where `bpfvfs up MOUNT` serves the tree; the CLI
# finds the daemon through BPFVFS_SOCKET or its default socket; BPFVFS names the binary)
set -eu
M=${1:?usage: project_pin.sh MOUNT}
B=${BPFVFS:-bpfvfs}
P="$M/project"

mkdir -p "$P/build"
# A map of build counters, pinned in bpffs as usual...
"$B" map create /sys/fs/bpf/build_counts type hash key 4 value 8 entries 64 name build_counts
"$B" map update pinned /sys/fs/bpf/build_counts key 1 0 0 0 value 3 0 0 0 0 0 0 0
# ...then truly pinned inside the project: an ordinary 0600 file holding the map.
"$B" map pin pinned /sys/fs/bpf/build_counts "$P/build/counts"
stat -c '%n: %F, mode %a, %s bytes' "$P/build/counts"
id=$("$B" -j map show pinned "$P/build/counts" | sed -n 's/^{"id":\([0-9]*\).*/\1/p')
echo "map $id pinned at:"
"$B" -f map show id "$id" | sed -n 's/^[[:space:]]*pinned /  /p'

rm "$M/sys/fs/bpf/build_counts"
echo "bpffs pin removed; the project pin still holds map $id:"
"$B" map lookup pinned "$P/build/counts" key 1 0 0 0
echo "destruction watches held by pins:"
"$B" watch --held

rm -r "$P"
# The file's inode dies once the kernel forgets it (at once for an unlinked file).
i=0
while "$B" map show id "$id" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 50 ]; then
        echo "map $id still alive after rm -r" >&2
        exit 1
    fi
    sleep 0.1
done
echo "project removed: map $id freed"
