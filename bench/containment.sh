#!/usr/bin/env bash
# What containment costs on healthy files: `oect run` of two builds (before / after) on
# the transfer and transient workloads of docs/BENCHMARKS.md, the builds interleaved run
# by run, median of REPEATS runs each; then whether every pair of outputs is identical.
#
#   bench/containment.sh BASE_OECT NEW_OECT [REPEATS]     # REPEATS defaults to 7
#
# Data sets are generated once under $BENCH_DATA (default /tmp/oect-bench-containment) with
# the quick-scale arguments of bench/run.sh, plus its full-size 20 x 500 transfer set. Needs python3 with pyarrow for the comparison
# ($PYTHON, default python3).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,10p' "$0"; exit 2; }
BASE="$1"; NEW="$2"; N="${3:-7}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${BENCH_DATA:-/tmp/oect-bench-containment}"
PY="${PYTHON:-python3}"
OUT="$DATA/out"
mkdir -p "$DATA"

gen() { # name, args...
  local name="$1"; shift
  [[ -f "$DATA/$name/.done" ]] && return
  rm -rf "${DATA:?}/$name"
  "$BASE" generate -o "$DATA/$name" "$@" >/dev/null
  touch "$DATA/$name/.done"
}
gen transfer_1x5001 --experiments 1 --steps 5001 --points 182 --transfer-only --seed 1
gen transfer_4x500 --experiments 4 --steps 500 --points 182 --transfer-only --seed 2
gen transfer_20x500 --experiments 20 --steps 500 --points 182 --transfer-only --seed 4
gen transient --experiments 1 --steps 200 --cycles 100 --transient-only --seed 3

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
seconds() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'; }

printf '%-44s %10s %10s %8s\n' workload before_s after_s ratio
for w in "transfer_1x5001 v2_transfer_basic 1" "transfer_1x5001 v2_transfer_basic 2" \
         "transfer_4x500 v2_transfer_basic 1" \
         "transfer_20x500 v2_transfer_basic 1" "transfer_20x500 v2_transfer_basic 2" \
         "transient $HERE/configs/transient_cycles_peak.yaml 1" \
         "transient $HERE/configs/transient_cycles_peak.yaml 2"; do
  read -r set config j <<<"$w"
  : >"$DATA/base.t"; : >"$DATA/new.t"
  for _ in $(seq "$N"); do
    for side in base new; do
      bin="$BASE"; [[ $side == new ]] && bin="$NEW"
      "$bin" run "$DATA/$set" -c "$config" -o "$OUT/$side-$set-j$j" --force --json -j "$j" \
        | seconds >>"$DATA/$side.t"
    done
  done
  b="$(median <"$DATA/base.t")"; a="$(median <"$DATA/new.t")"
  printf '%-44s %10.4f %10.4f %8.3f\n' "$set $(basename "$config" .yaml) -j$j" "$b" "$a" \
    "$(echo "$a / $b" | bc -l)"
done

# Identical tables: every output of the new build equals the base build's, column by column.
"$PY" - "$OUT" <<'EOF'
import glob, os, sys
import pyarrow.parquet as pq
out = sys.argv[1]
bad = 0
for base_dir in sorted(glob.glob(os.path.join(out, "base-*"))):
    new_dir = base_dir.replace("/base-", "/new-")
    key = lambda p: os.path.basename(p).split("-feat_")[0]
    # Outputs are in one folder per config (OUT/<config>/...).
    files = lambda d: glob.glob(os.path.join(d, "**", "*.parquet"), recursive=True)
    b = {key(p): p for p in files(base_dir)}
    n = {key(p): p for p in files(new_dir)}
    assert b and b.keys() == n.keys(), (base_dir, sorted(b), sorted(n))
    for k in b:
        # pandas' equals: same shape, dtypes and values, NaN equal to NaN in the same place.
        if not pq.read_table(b[k]).to_pandas().equals(pq.read_table(n[k]).to_pandas()):
            print("DIFFERENT:", b[k], n[k]); bad += 1
print("identical tables:", "yes" if bad == 0 else f"no ({bad} differ)")
sys.exit(1 if bad else 0)
EOF
