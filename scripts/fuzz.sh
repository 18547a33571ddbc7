#!/usr/bin/env bash
# Build the cargo-fuzz targets (fuzz/) and run them for a short time.
# Usage: scripts/fuzz.sh [OUTDIR] [TARGET...]      (targets: loader verifier equiv; default all)
#   FUZZ_SECONDS=20          seconds of fuzzing per target (the targets run side by side)
#   FUZZ_SANITIZER=address   cargo fuzz's --sanitizer (address, none, ...)
#   FUZZ_OPT_LEVEL=1         optimization level of the build (3 for long runs: about twice the
#                            executions per second, a third more build time)
# Installs what is missing first: the nightly toolchain (rustup, minimal profile) and
# cargo-fuzz (cargo install --locked). Seeds are generated, not committed: the verifier corpus,
# the conformance suite (if ../shared/conformance exists) and the clang-built test objects
# (fuzz/src/bin/seeds.rs). Writes OUTDIR/fuzz.counts ("PASSED FAILED", one per target) for
# scripts/test.sh. Exits non-zero on any crash, printing the crash input's path and how to
# replay it. See docs/fuzzing.md.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

out=""
if [ $# -gt 0 ] && [ -d "$1" ]; then out=$1; shift; fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(loader verifier equiv)
secs=${FUZZ_SECONDS:-20}
sanitizer=${FUZZ_SANITIZER:-address}
# Exact version, so CI builds the same tool every time (0.13.2 builds with Rust 1.85+).
cargo_fuzz_version=0.13.2
# The CI budget (about 3 minutes on a fresh 2-CPU machine, install and build included) is
# mostly build: 16 codegen units instead of cargo fuzz's 1 and opt-level 1 instead of 3 take
# it from about 170 to 125 CPU-seconds; runs of seconds lose little to slower code.
build_flags=(-a --sanitizer "$sanitizer" --codegen-units 16)
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-1}

passed=0; failed=0
finish() {
    [ -n "$out" ] && echo "$passed $failed" > "$out/fuzz.counts"
    echo "fuzz: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
setup_failed() {
    echo "fuzz: $*" >&2
    failed=$((failed + 1))
    finish
}

if ! command -v cargo >/dev/null 2>&1; then
    # shellcheck disable=SC1091
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
start=$(date +%s)
if ! cargo +nightly --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || setup_failed "no nightly toolchain and no rustup to install one"
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal >&2 || setup_failed "rustup could not install nightly"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version" >&2
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked >&2 \
        || setup_failed "cargo install cargo-fuzz failed"
fi

# Seed objects: the ebpf-obj test programs, compiled the way its tests compile them.
objs=fuzz/target/seed-objects
mkdir -p "$objs"
if command -v clang >/dev/null 2>&1 && [ -f /usr/include/bpf/bpf_helpers.h ]; then
    case $(uname -m) in
        x86_64) arch=x86 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;;
    esac
    for src in crates/ebpf-obj/tests/progs/*.bpf.c; do
        clang -O2 -g -target bpf "-D__TARGET_ARCH_$arch" "-I/usr/include/$(uname -m)-linux-gnu" \
            -c "$src" -o "$objs/$(basename "$src" .c).o" \
            || echo "fuzz: clang failed on $src (seeds without it)" >&2
    done
else
    echo "fuzz: clang or libbpf headers missing: no object seeds" >&2
fi

echo "== cargo fuzz build (${build_flags[*]})"
cargo +nightly fuzz build "${build_flags[@]}" 2>&1 | grep -vE '^\s+(Compiling|Downloaded|Downloading)'
[ "${PIPESTATUS[0]}" -eq 0 ] || setup_failed "cargo fuzz build failed"
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=fuzz/target/$triple/release
"$bin/seeds" "$root" fuzz/corpus "$objs" || setup_failed "writing the seed corpora failed"
echo "fuzz: tools, build and seeds took $(( $(date +%s) - start )) s"

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
# Side by side: on a 2-CPU machine three targets in parallel cost 20 s of wall time instead of
# 60, each with two thirds of a CPU. The binaries the build step made, not `cargo fuzz run`,
# which would rebuild first if the sources changed meanwhile (a shared checkout).
# -timeout: an input running 10 s is a hang; -rss_limit_mb: ASan's shadow plus the corpus.
echo "== fuzz ${targets[*]} for $secs s"
pids=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    "$bin/$t" -artifact_prefix="$root/fuzz/artifacts/$t/" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "fuzz/corpus/$t" > "$log/$t.txt" 2>&1 &
    pids+=($!)
done
for i in "${!targets[@]}"; do
    t=${targets[$i]}
    wait "${pids[$i]}"
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log/$t.txt" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log/$t.txt" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log/$t.txt" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $t: ok: ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-cov: ?}"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED (exit $rc)"
        grep -E 'panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY' "$log/$t.txt" | head -5
        grep -A12 'panicked at' "$log/$t.txt" | sed -n '2,13p'
        artifact=$(grep -oE "Test unit written to [^ ]+" "$log/$t.txt" | tail -1 | cut -d' ' -f5)
        if [ -n "$artifact" ]; then
            echo "fuzz $t: crash input: $artifact"
            echo "fuzz $t: replay: $bin/$t $artifact   (or: cargo +nightly fuzz run -a $t $artifact)"
        else
            tail -20 "$log/$t.txt"
        fi
        failed=$((failed + 1))
    fi
done
echo "fuzz: total $(( $(date +%s) - start )) s"
finish
