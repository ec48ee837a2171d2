#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), each for a short time.
#
#   ./deploy/fuzz.sh                          every target, FUZZ_SECONDS (10) each
#   FUZZ_SECONDS=600 ./deploy/fuzz.sh dicom_header    one target, ten minutes
#
# Installs cargo-fuzz if missing, builds every target in one cargo invocation, then runs
# each on a copy of its committed seeds (fuzz/corpus/TARGET), so the work tree stays as it
# was. A crash (panic), an input slower than FUZZ_TIMEOUT seconds (300), one allocation over
# 256 MiB (fuzz/src/lib.rs) or an out-of-memory fails the script; libFuzzer writes the input
# to fuzz/artifacts/TARGET/ (ignored by git) and prints it in base64 when it is small.
#
# Stable Rust: `-s none` (no sanitizer). Coverage instrumentation is stable rustc flags;
# only the sanitizers need nightly (-Zsanitizer), and our crates forbid unsafe code (a
# sanitizer would watch the dependencies' unsafe code: a decoder's, memchr's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-10}
# Generous: on this shared machine, inputs that take 0.1 s were seen stalled 20 to 127 s
# (every process at once); a real hang still fails, after 5 minutes.
timeout=${FUZZ_TIMEOUT:-300}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install, about a minute)" >&2
    cargo install --locked cargo-fuzz --version 0.13.2
fi

# --dev: the fuzz crate's dev profile, opt-level 1 (see fuzz/Cargo.toml): a cold build about
# 30 % shorter than cargo-fuzz's release, for most of its speed.
fuzz=(--fuzz-dir fuzz --sanitizer none --dev)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

start=$(date +%s)
# All targets at once: their shared dependencies are compiled once.
cargo fuzz build "${fuzz[@]}"
echo "fuzz targets built in $(($(date +%s) - start))s" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    cp -r "fuzz/corpus/$target/." "$work/$target/"
    echo "== fuzz $target for ${seconds}s" >&2
    cargo fuzz run "${fuzz[@]}" "$target" "$work/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1
done
