#!/usr/bin/env bash
# Before/after of one change on the transient read-only pass (bench/configs/read_transient.yaml:
# `transient.peak_current` alone, which declares only the drain current): the 200-step,
# 25 000-sample experiment of bench/run.sh, run alternately by two oect builds, REPEATS times
# each, with the median of the run's `seconds` and of its read phase.
#
#   bench/channels.sh BEFORE_BIN_DIR AFTER_BIN_DIR [REPEATS]
#
# Each BIN_DIR holds an `oect` binary and the built-in plugins beside it (liboect_*.so), as
# `cargo build --release` leaves them in target/release.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BEFORE="$1/oect" AFTER="$2/oect" REPEATS="${3:-9}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$AFTER" generate -o "$WORK/data" --experiments 1 --steps 200 --cycles 100 --transient-only --seed 3 >/dev/null
run() { # binary, tag -> "seconds read_seconds"
  "$1" run "$WORK/data" -c "$HERE/configs/read_transient.yaml" -o "$WORK/out_$2" --force --json -j 1 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["seconds"], d["time_split"]["read"])'
}
for ((k = 0; k < REPEATS; k++)); do
  run "$BEFORE" before >>"$WORK/before.txt"
  run "$AFTER" after >>"$WORK/after.txt"
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for tag in before after; do
  printf '%-6s run %s s, read %s s (median of %d; load %s)\n' "$tag" \
    "$(cut -d' ' -f1 "$WORK/$tag.txt" | median)" "$(cut -d' ' -f2 "$WORK/$tag.txt" | median)" \
    "$REPEATS" "$(cut -d' ' -f1 /proc/loadavg)"
done
