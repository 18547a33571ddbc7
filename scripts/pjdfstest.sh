#!/usr/bin/env bash
# Run the pjdfstest POSIX conformance suite (Rust rewrite, crates.io `pjdfstest`)
# against DIR and write a markdown report.
#
# Usage: scripts/pjdfstest.sh DIR [OUT.md]
#
#   DIR     directory on the file system under test (e.g. a FUSE mount point).
#           pjdfstest creates (and removes) a `.tmpXXXXXX` directory inside it.
#   OUT.md  where to write the markdown report (default: stdout). The raw
#           pjdfstest log is written next to it as OUT.log (or kept in a temp
#           file whose path is printed on stderr when OUT.md is not given).
#
# Exit status: 0 whenever the suite ran to completion, even if tests failed
# (read the report / the "failed" column). Non-zero only when the tool itself
# could not be installed or run (bad DIR, crash, no summary line).
#
# Environment knobs (all optional):
#   PJDFSTEST_VERSION  crate version to install if missing       (default 0.2.2)
#   PJD_CONFIG         use this pjdfstest.toml verbatim instead of generating one
#   PJD_FEATURES       opt-in features to enable, space/comma separated
#                      (default: "posix_fallocate utime_now utimensat rename_ctime";
#                      `pjdfstest -l` lists all; chflags, nfsv4_acls,
#                      stat_st_birthtime, chflags_sf_snapshot are FreeBSD-only)
#   PJD_NAPTIME        seconds slept between timestamp-sensitive steps; must
#                      exceed the fs timestamp granularity  (default 0.01;
#                      pjdfstest's own default is 1.0, which is much slower)
#   PJD_SECONDARY_FS   path of a second fs for EXDEV tests, "auto" (root only:
#                      mount a scratch tmpfs) or "none"        (default auto)
#   PJD_ALLOW_REMOUNT  1 = also run the EROFS tests, which `mount -o remount,ro`
#                      the fs holding DIR; they run in a second, separate pass
#                      because in a single full run they fail with "mount point
#                      is busy" (a leaked fd from an earlier test); mount(8) is
#                      wrapped to add -i so FUSE remounts skip mount.fuse (default 0)
#   PJD_USERS          two "user:group" pairs used for permission tests
#                      (default "nobody:<nobody's group> tests:tests"; the
#                      `tests` user is created with useradd when running as
#                      root and it does not exist, unless PJD_CREATE_USER=0, in
#                      which case `daemon:daemon` is used instead)
#   PJD_FILTER         space separated substrings selecting tests (default: all)
set -euo pipefail

die() { echo "pjdfstest.sh: error: $*" >&2; exit 2; }
note() { echo "pjdfstest.sh: $*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
DIR=$1
OUT=${2:-}
[[ -d $DIR ]] || die "$DIR is not a directory"
DIR=$(cd "$DIR" && pwd -P)

PJDFSTEST_VERSION=${PJDFSTEST_VERSION:-0.2.2}
PJD_FEATURES=${PJD_FEATURES-posix_fallocate utime_now utimensat rename_ctime}
PJD_NAPTIME=${PJD_NAPTIME:-0.01}
PJD_SECONDARY_FS=${PJD_SECONDARY_FS:-auto}
PJD_ALLOW_REMOUNT=${PJD_ALLOW_REMOUNT:-0}
PJD_CREATE_USER=${PJD_CREATE_USER:-1}
PJD_FILTER=${PJD_FILTER:-}

# ---------------------------------------------------------------- install
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v pjdfstest >/dev/null 2>&1; then
    command -v cargo >/dev/null 2>&1 || die "pjdfstest not found and cargo is not available"
    note "installing pjdfstest $PJDFSTEST_VERSION with cargo (takes ~40 s)"
    cargo install --locked pjdfstest --version "$PJDFSTEST_VERSION" >&2 \
        || cargo install pjdfstest --version "$PJDFSTEST_VERSION" >&2 \
        || die "cargo install pjdfstest failed"
fi
PJD_BIN=$(command -v pjdfstest)
PJD_VER=$("$PJD_BIN" --version 2>/dev/null || echo "pjdfstest ?")

# ---------------------------------------------------------------- scratch
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pjdfstest-sh.XXXXXX")
SEC_MOUNTED=""
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    if [[ -n $SEC_MOUNTED ]]; then
        umount "$SEC_MOUNTED" 2>/dev/null || umount -l "$SEC_MOUNTED" 2>/dev/null || true
        rmdir "$SEC_MOUNTED" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1
[[ $IS_ROOT -eq 1 ]] || note "warning: not root; tests that need root (chown, user switching, mknod...) will be skipped"

# Others must be able to traverse DIR (tests switch to the dummy users).
if [[ $IS_ROOT -eq 1 ]]; then
    mode=$(stat -c %a "$DIR" 2>/dev/null || echo 0)
    (( 8#$mode & 1 )) || note "warning: $DIR (mode $mode) is not o+x; tests running as the dummy users will fail"
fi

# ---------------------------------------------------------------- config
users_toml() {
    local pairs=() u g
    if [[ -n ${PJD_USERS:-} ]]; then
        read -r -a pairs <<<"${PJD_USERS//,/ }"
    else
        getent passwd nobody >/dev/null || die "user 'nobody' does not exist (set PJD_USERS)"
        g=$(getent group "$(id -g nobody)" | cut -d: -f1)
        [[ -n $g ]] || die "primary group of 'nobody' does not exist (set PJD_USERS)"
        pairs+=("nobody:$g")
        if ! getent passwd tests >/dev/null && [[ $IS_ROOT -eq 1 && $PJD_CREATE_USER == 1 ]]; then
            note "creating dummy user 'tests' (useradd --system --user-group)"
            useradd --system --user-group --no-create-home --home-dir / \
                --shell /usr/sbin/nologin tests >&2 \
                || note "warning: could not create user 'tests'"
        fi
        if getent passwd tests >/dev/null; then
            g=$(getent group "$(id -g tests)" | cut -d: -f1)
            pairs+=("tests:$g")
        else
            getent passwd daemon >/dev/null || die "no second dummy user available (set PJD_USERS)"
            g=$(getent group "$(id -g daemon)" | cut -d: -f1)
            pairs+=("daemon:$g")
        fi
    fi
    [[ ${#pairs[@]} -eq 2 ]] || die "PJD_USERS must name exactly two user:group pairs"
    local out="" p
    for p in "${pairs[@]}"; do
        u=${p%%:*}; g=${p#*:}
        out+="[\"$u\", \"$g\"], "
    done
    echo "entries = [${out%, }]"
}

make_config() { # $1 = allow_remount (true/false)
    local f
    echo "[features]"
    for f in ${PJD_FEATURES//,/ }; do echo "$f = {}"; done
    echo
    echo "[settings]"
    echo "naptime = $PJD_NAPTIME"
    echo "allow_remount = $1"
    echo
    echo "[dummy_auth]"
    users_toml
}

if [[ -n ${PJD_CONFIG:-} ]]; then
    [[ -f $PJD_CONFIG ]] || die "PJD_CONFIG=$PJD_CONFIG does not exist"
    cp "$PJD_CONFIG" "$WORK/main.toml"
    cp "$PJD_CONFIG" "$WORK/erofs.toml"
else
    make_config false >"$WORK/main.toml"
    make_config true >"$WORK/erofs.toml"
fi

# ---------------------------------------------------------------- secondary fs
SEC_ARGS=()
case $PJD_SECONDARY_FS in
    none|"") ;;
    auto)
        if [[ $IS_ROOT -eq 1 ]]; then
            SEC_MOUNTED=$(mktemp -d "${TMPDIR:-/tmp}/pjdfstest-sec.XXXXXX")
            if mount -t tmpfs -o size=64m pjdfstest-sec "$SEC_MOUNTED"; then
                SEC_ARGS=(-s "$SEC_MOUNTED")
            else
                note "warning: could not mount a secondary tmpfs; EXDEV tests will be skipped"
                rmdir "$SEC_MOUNTED"; SEC_MOUNTED=""
            fi
        fi ;;
    *)  [[ -d $PJD_SECONDARY_FS ]] || die "PJD_SECONDARY_FS=$PJD_SECONDARY_FS is not a directory"
        SEC_ARGS=(-s "$PJD_SECONDARY_FS") ;;
esac

# ---------------------------------------------------------------- run
export NO_COLOR=1 RUST_BACKTRACE=0
read -r -a FILTER <<<"$PJD_FILTER"
RAW=$WORK/raw.log
: >"$RAW"

run_pass() { # $1 = config, rest = test patterns
    local cfg=$1 rc=0 log=$WORK/pass.log
    shift
    (cd "$WORK" && "$PJD_BIN" -c "$cfg" -p "$DIR" "${SEC_ARGS[@]}" "$@") >"$log" 2>&1 || rc=$?
    # strip any ANSI colour codes
    sed -e 's/\x1b\[[0-9;]*m//g' "$log" >>"$RAW"
    if ! grep -q '^Summary: ' "$log"; then
        note "pjdfstest did not complete (exit $rc); last lines of its output:"
        tail -n 30 "$log" >&2
        return 1
    fi
}

# pjdfstest works in DIR/.tmpXXXXXX; remember what was there to spot leftovers.
list_tmp() { find "$DIR" -mindepth 1 -maxdepth 1 -name '.tmp*' -type d 2>/dev/null | sort; }
list_tmp >"$WORK/tmp.before"

START=$(date +%s.%N)
run_pass "$WORK/main.toml" "${FILTER[@]}" || die "pjdfstest could not run"
if [[ $PJD_ALLOW_REMOUNT == 1 ]]; then
    # pjdfstest runs `mount -o remount,ro MOUNTPOINT` via PATH. For FUSE mounts
    # mount(8) would invoke the mount.fuse helper, which tries to start the fs
    # daemon again and fails; `mount -i` (no helpers) issues the plain
    # MS_REMOUNT syscall, which FUSE supports.
    REAL_MOUNT=$(command -v mount) || die "mount(8) not found"
    mkdir -p "$WORK/bin"
    printf '#!/bin/sh\nexec %s -i "$@"\n' "$REAL_MOUNT" >"$WORK/bin/mount"
    chmod +x "$WORK/bin/mount"
    echo "=== second pass: erofs tests with allow_remount = true ===" >>"$RAW"
    PATH="$WORK/bin:$PATH" run_pass "$WORK/erofs.toml" erofs \
        || die "pjdfstest (erofs pass) could not run"
fi
END=$(date +%s.%N)
ELAPSED=$(awk -v a="$START" -v b="$END" 'BEGIN{printf "%.1f", b-a}')

# pjdfstest silently ignores failures to delete its temp dir; on a buggy fs it
# can be left behind. Report and remove such leftovers.
list_tmp | comm -13 "$WORK/tmp.before" - >"$WORK/tmp.left" || true
LEFTOVER_NOTE=""
if [[ -s $WORK/tmp.left ]]; then
    LEFTOVER_NOTE="pjdfstest left $(wc -l <"$WORK/tmp.left") temp dir(s) behind in DIR (its own cleanup failed)"
    while read -r d; do rm -rf -- "$d" || LEFTOVER_NOTE+="; rm -rf $d failed"; done <"$WORK/tmp.left"
    note "$LEFTOVER_NOTE"
fi

# ---------------------------------------------------------------- report
# Result lines look like "<name><spaces><status>", status one of: ok, FAILED,
# skipped, "failed as expected", "PASSED UNEXPECTEDLY". Detail lines (failure
# messages, skip reasons) start with a tab. A later result for the same test
# (the erofs pass) overrides an earlier one.
report() {
    awk -v dir="$DIR" -v ver="$PJD_VER" -v leftover="$LEFTOVER_NOTE" -v secs="$ELAPSED" -v cfg="$WORK/main.toml" '
    function flush() { if (cur != "" && detail[cur] == "") detail[cur] = msg; }
    /^[^ \t].*[ ](ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY)$/ && /::/ {
        flush()
        name = $1
        st = $0; sub(/^[^ ]+ +/, "", st)
        if (!(name in status)) order[++n] = name
        status[name] = st; detail[name] = ""; cur = name; msg = ""
        next
    }
    /^Summary: / || /^=== / || /^[ \t]*$/ { flush(); cur = ""; next }
    {   # detail line (tab-indented first line, possibly multi-line panic message)
        if (cur != "") { m = $0; sub(/^[ \t]+/, "", m); msg = (msg == "" ? m : msg " / " m) }
    }
    END {
        flush()
        for (i = 1; i <= n; i++) {
            name = order[i]; split(name, parts, "::"); g = parts[1]
            if (!(g in seen)) { seen[g] = 1; groups[++ng] = g }
            st = status[name]
            if (st == "ok") k = "pass"
            else if (st == "FAILED" || st == "PASSED UNEXPECTEDLY") k = "fail"
            else if (st == "skipped") k = "skip"
            else k = "xfail"
            cnt[g, k]++; tot[k]++
        }
        # sort groups alphabetically (simple insertion sort, portable awk)
        for (i = 2; i <= ng; i++) { v = groups[i]; j = i - 1
            while (j > 0 && groups[j] > v) { groups[j+1] = groups[j]; j-- } groups[j+1] = v }
        printf "# pjdfstest results\n\n"
        printf "- target: `%s`\n- tool: %s\n- wall time: %s s\n", dir, ver, secs
        if (leftover != "") printf "- note: %s\n", leftover
        printf "\n"
        printf "| group | pass | fail | skip | expected-fail | total |\n"
        printf "|---|---:|---:|---:|---:|---:|\n"
        for (i = 1; i <= ng; i++) { g = groups[i]
            t = cnt[g,"pass"] + cnt[g,"fail"] + cnt[g,"skip"] + cnt[g,"xfail"]
            printf "| %s | %d | %d | %d | %d | %d |\n", g, cnt[g,"pass"], cnt[g,"fail"], cnt[g,"skip"], cnt[g,"xfail"], t }
        t = tot["pass"] + tot["fail"] + tot["skip"] + tot["xfail"]
        printf "| **total** | **%d** | **%d** | **%d** | **%d** | **%d** |\n\n", tot["pass"], tot["fail"], tot["skip"], tot["xfail"], t
        printf "## Failing tests (%d)\n\n", tot["fail"]
        if (tot["fail"] == 0) printf "None.\n"
        for (i = 1; i <= n; i++) { name = order[i]; st = status[name]
            if (st == "FAILED" || st == "PASSED UNEXPECTEDLY") {
                d = detail[name]; if (length(d) > 300) d = substr(d, 1, 300) "..."
                if (st != "FAILED") d = st (d == "" ? "" : ": " d)
                printf "- `%s`%s\n", name, (d == "" ? "" : ": " d) } }
        printf "\n## Skipped tests (%d)\n\n", tot["skip"]
        if (tot["skip"] == 0) printf "None.\n"
        for (i = 1; i <= n; i++) { name = order[i]
            if (status[name] == "skipped") printf "- `%s`: %s\n", name, detail[name] }
        printf "\n<details><summary>pjdfstest.toml used</summary>\n\n```toml\n"
        while ((getline line < cfg) > 0) print line
        printf "```\n\n</details>\n"
    }' "$RAW"
}

if [[ -n $OUT ]]; then
    report >"$OUT"
    LOGOUT=${OUT%.md}.log
    cp "$RAW" "$LOGOUT"
    note "report: $OUT   raw log: $LOGOUT   ($(grep '^Summary: ' "$RAW" | head -n1))"
else
    report
    KEEP=$(mktemp "${TMPDIR:-/tmp}/pjdfstest-raw.XXXXXX.log")
    cp "$RAW" "$KEEP"
    note "raw log: $KEEP"
fi
exit 0
