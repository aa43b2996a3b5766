#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each; fails on the first crash, leaving the
# input that caused it in fuzz/artifacts/<target>/ (replay it: cargo fuzz run <target> <file>).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# The seeds in fuzz/corpus/<target>/ are kept in git; what a run discovers goes to
# <target dir>/corpus/<target>/, which later runs reuse. FUZZ_TARGET_DIR moves the build (and
# that corpus) out of fuzz/target, e.g. to a cache kept between CI runs.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${1:-60}
TARGETS=(host_route request_target snapshot_restore)
TARGET_DIR=${FUZZ_TARGET_DIR:-target}
# snapshot_restore restores into a scratch dir per run, and a successful restore syncs its
# filesystem: on tmpfs that costs nothing (five times the runs per second of a disk).
SCRATCH=${TMPDIR:-/tmp}
if [[ -d /dev/shm && -w /dev/shm ]]; then
  SCRATCH=/dev/shm
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...); a stable toolchain takes them
# with RUSTC_BOOTSTRAP=1, so no nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1

echo "== building the fuzz targets"
cargo fuzz build --debug-assertions --target-dir "$TARGET_DIR"
for target in "${TARGETS[@]}"; do
  echo "== fuzzing $target for ${SECONDS_EACH}s"
  mkdir -p "$TARGET_DIR/corpus/$target" "corpus/$target"
  TMPDIR=$SCRATCH cargo fuzz run --debug-assertions --target-dir "$TARGET_DIR" "$target" \
    "$TARGET_DIR/corpus/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1
done
echo "== fuzzing: no crash in ${#TARGETS[@]} targets"
