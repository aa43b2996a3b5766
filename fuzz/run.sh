#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each; fails on the first crash, leaving the
# input that caused it in fuzz/artifacts/<target>/ (replay it: cargo fuzz run <target> <file>).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# The seeds in fuzz/corpus/<target>/ are kept in git; what a run discovers goes to
# fuzz/target/corpus/<target>/, which later runs on this machine reuse.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${1:-60}
TARGETS=(host_route snapshot_restore)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...); a stable toolchain takes them
# with RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1

echo "== building the fuzz targets"
cargo fuzz build --debug-assertions
for target in "${TARGETS[@]}"; do
  echo "== fuzzing $target for ${SECONDS_EACH}s"
  mkdir -p "target/corpus/$target"
  cargo fuzz run --debug-assertions "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1
done
echo "== fuzzing: no crash in ${#TARGETS[@]} targets"
