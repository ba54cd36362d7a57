#!/usr/bin/env bash
# Runs one fuzz target for a while, seeded with the bundled specs and the
# diagnostics corpus:  fuzz/run.sh pipeline 600   (target, seconds)
# Further arguments go to libFuzzer, e.g. `-fork=1 -ignore_crashes=1` to go
# on after a crash and collect every kind.
#
# cargo-fuzz needs nightly flags (-Z sanitizer, coverage instrumentation);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. The crate forbids
# unsafe code, so no sanitizer is needed; debug assertions catch overflow.
# Crashes and timeouts land in fuzz/artifacts/<target>/.
set -euo pipefail
target=${1:?usage: fuzz/run.sh parse|analyze|pipeline [seconds]}
seconds=${2:-600}
shift $(($# < 2 ? $# : 2))
cd "$(dirname "$0")"
mkdir -p "corpus/$target"
cp ../specs/*.dl ../tests/diagnostics/*.dl "corpus/$target/"
# What the other targets found seeds this one too (read, not written).
others=$(find corpus -mindepth 1 -maxdepth 1 -type d ! -name "$target")
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run "$target" --sanitizer none --debug-assertions \
    "corpus/$target" $others -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -max_len=8192 \
    -dict=dl.dict -print_final_stats=1 "$@"
