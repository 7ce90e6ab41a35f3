#!/usr/bin/env bash
# Python plugins (#19): per-step overhead of a trivial Python extractor against the same
# in Rust, and 1 vs 2 workers on a CPU-heavy (pure-Python, GIL-holding) extractor.
#
#   bench/python.sh OECT [REPEATS]      # REPEATS defaults to 5; $OECT_PYTHON needs numpy
#
# Times are oect's own `seconds` (`oect run --force --json`, worker start-up included),
# medians of REPEATS runs. Data are generated under $BENCH_DATA (default
# /tmp/oect-bench-python).
set -euo pipefail
[[ $# -ge 1 ]] || { sed -n '2,9p' "$0"; exit 2; }
OECT="$1"; N="${2:-5}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${BENCH_DATA:-/tmp/oect-bench-python}"
export OECT_PYTHON="${OECT_PYTHON:-/usr/bin/python3}"
mkdir -p "$DATA"
[[ -f "$DATA/trivial/.done" ]] || {
  "$OECT" generate -o "$DATA/trivial" --experiments 1 --steps 2000 --points 182 --transfer-only --seed 1 >/dev/null
  touch "$DATA/trivial/.done"; }
[[ -f "$DATA/heavy/.done" ]] || {
  "$OECT" generate -o "$DATA/heavy" --experiments 2 --steps 40 --points 182 --transfer-only --seed 2 >/dev/null
  touch "$DATA/heavy/.done"; }
[[ -f "$DATA/heavy8/.done" ]] || {
  "$OECT" generate -o "$DATA/heavy8" --experiments 8 --steps 10 --points 182 --transfer-only --seed 3 >/dev/null
  touch "$DATA/heavy8/.done"; }
cat > "$DATA/rust.yaml" <<'YAML'
features:
  - {name: m, extractor: transfer.absI_max, input: transfer}
YAML
cat > "$DATA/python.yaml" <<'YAML'
features:
  - {name: m, extractor: bench.abs_i_max, input: transfer}
YAML
cat > "$DATA/heavy.yaml" <<'YAML'
features:
  - {name: h, extractor: bench.heavy, input: transfer, params: {rounds: 6000}}
YAML

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_run() { # data config args...
  local data="$1" cfg="$2"; shift 2
  for _ in $(seq "$N"); do
    "$OECT" run "$DATA/$data" -c "$DATA/$cfg" -o "$DATA/out" --plugin-dir "$HERE/python" \
      --force --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'
  done | median
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for j in 1 2; do
  rust=$(time_run trivial rust.yaml -j "$j")
  py=$(time_run trivial python.yaml -j "$j")
  awk -v r="$rust" -v p="$py" -v j="$j" 'BEGIN {
    printf "trivial, 2000 steps, -j%s: Rust %.3f s, Python %.3f s: %.0f us more per step\n", j, r, p, (p - r) / 2000 * 1e6 * j }'
done
for set in "heavy 2 x 40" "heavy8 8 x 10"; do
  read -r data shape <<<"$set"
  for mode in step experiment; do
    one=$(time_run "$data" heavy.yaml -j 1 --mode "$mode")
    two=$(time_run "$data" heavy.yaml -j 2 --mode "$mode")
    awk -v a="$one" -v b="$two" -v m="$mode" -v s="$shape" 'BEGIN {
      printf "heavy, %s steps, %s mode: -j1 %.3f s, -j2 %.3f s: %.2fx\n", s, m, a, b, a / b }'
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
