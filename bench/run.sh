#!/usr/bin/env bash
# Side-by-side benchmark: oect vs its predecessor (oect-infra 3.3.1 + autotau 0.6.0).
#
#   bench/run.sh                 # quick run (reduced sizes, minutes)
#   BENCH_SCALE=full bench/run.sh  # the issue's sizes (hours: predecessor AutoTau alone is ~1 h/step)
#
# Environment knobs (all optional):
#   BENCH_SCALE      quick | full                         (default quick)
#   BENCH_ONLY       space-separated workload ids to run  (default: all)
#                    ids: transfer_1x5001 transfer_20x500 transient autotau mixed workers rss read
#   BENCH_TAU_STEPS  predecessor AutoTau steps to time    (quick 1, full 2)
#   BENCH_TAU_CYCLES cycles per step of the AutoTau file  (quick 4, full 100)
#   BENCH_PRED_TIMEOUT  seconds before a predecessor AutoTau run is abandoned (quick 900, full 14400)
#   BENCH_PRED_TAU_FROM  results folder of an earlier run whose predecessor AutoTau timing to reuse
#   PYTHON           interpreter used to make the venv    (default python3)
#
# Idempotent: the venv, the build and the generated data are reused when present (data sets
# carry a .done marker), outputs are recomputed each run (--force / fresh folders).
# Results: bench/results/<UTC stamp>/ (raw JSON, logs, results.tsv); the table is printed at the end.
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;;
  "") ;;
  *) echo "run.sh: takes no arguments (configure with the BENCH_* variables; see --help)" >&2; exit 2;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SCALE="${BENCH_SCALE:-quick}"
ONLY="${BENCH_ONLY:-}"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
DATA="$HERE/data/$SCALE"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RES="$HERE/results/$STAMP"
TSV="$RES/results.tsv"

die() { echo "run.sh: error: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }
want() { [[ -z "$ONLY" ]] || [[ " $ONLY " == *" $1 "* ]]; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

case "$SCALE" in
  quick) T1_STEPS=5001; T20_EXP=4;  T20_STEPS=500; TR_STEPS=200; TAU_STEPS_O=3; MIX_EXP=4;  MIX_STEPS=5; RSS_EXP=2;;
  full)  T1_STEPS=5001; T20_EXP=20; T20_STEPS=500; TR_STEPS=200; TAU_STEPS_O=5; MIX_EXP=80; MIX_STEPS=5; RSS_EXP=4;;
  *) die "BENCH_SCALE must be quick or full, not '$SCALE'";;
esac
TAU_STEPS="${BENCH_TAU_STEPS:-$([[ $SCALE == full ]] && echo 2 || echo 1)}"
TAU_CYCLES="${BENCH_TAU_CYCLES:-$([[ $SCALE == full ]] && echo 100 || echo 4)}"
PRED_TIMEOUT="${BENCH_PRED_TIMEOUT:-$([[ $SCALE == full ]] && echo 14400 || echo 900)}"

command -v cargo >/dev/null || die "cargo not found on PATH"
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for peak RSS"
mkdir -p "$RES"
# The predecessor writes log files into its working directory: keep them with the results.
cd "$RES"

# ---------------------------------------------------------------- 1. predecessor venv
if ! [[ -x "$PY" ]] || ! "$PY" -c 'import infra.features_v2, autotau' 2>/dev/null; then
  say "creating $VENV with oect-infra==3.3.1 autotau==0.6.0 (PyPI)"
  "${PYTHON:-python3}" -m venv "$VENV" || die "could not create the venv"
  "$VENV/bin/pip" install -q oect-infra==3.3.1 autotau==0.6.0 || die "pip install of the predecessor failed"
fi
"$PY" -c 'import importlib.metadata as m; print("predecessor:", "oect-infra", m.version("oect-infra"), "autotau", m.version("autotau"), "numpy", m.version("numpy"), "scipy", m.version("scipy"))' | tee "$RES/versions.txt" >&2

# ---------------------------------------------------------------- 2. oect release build
say "cargo build --release --workspace"
(cd "$ROOT" && cargo build --release --workspace) >"$RES/build.log" 2>&1 || { tail -20 "$RES/build.log" >&2; die "release build failed (log: $RES/build.log)"; }
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
OECT="$TARGET_DIR/release/oect"
[[ -x "$OECT" ]] || die "no binary at $OECT"
"$OECT" --version >>"$RES/versions.txt" 2>&1 || true

# ---------------------------------------------------------------- 3. data sets
gen() { # name, oect generate args...
  local name="$1"; shift
  local dir="$DATA/$name"
  if [[ -f "$dir/.done" ]] && [[ "$(cat "$dir/.done")" == "$*" ]]; then return; fi
  say "generating $name: $*"
  rm -rf "$dir"; mkdir -p "$dir"
  "$OECT" generate -o "$dir" "$@" >"$RES/gen_$name.log" 2>&1 || die "oect generate failed for $name (see $RES/gen_$name.log)"
  echo "$*" >"$dir/.done"
}
gen transfer_1x5001  --experiments 1 --steps "$T1_STEPS" --points 182 --transfer-only --seed 1
gen transfer_20x500  --experiments "$T20_EXP" --steps "$T20_STEPS" --points 182 --transfer-only --seed 2
gen transient        --experiments 1 --steps "$TR_STEPS" --cycles 100 --transient-only --seed 3
gen tau_oect         --experiments 1 --steps "$TAU_STEPS_O" --cycles 100 --transient-only --seed 4
gen tau_pred         --experiments 1 --steps "$TAU_STEPS" --cycles "$TAU_CYCLES" --transient-only --seed 4
gen mixed            --experiments "$MIX_EXP" --steps "$MIX_STEPS" --points 182 --cycles 100 --seed 5
gen tau_scale        --experiments 2 --steps 4 --cycles 100 --transient-only --seed 7
gen rss_10x          --experiments "$((RSS_EXP * 10))" --steps 500 --points 182 --transfer-only --seed 6

# ---------------------------------------------------------------- configs
CFG="$RES/configs"; mkdir -p "$CFG"
PRED_BASIC="$("$PY" -c 'import infra.catalog, os; print(os.path.join(os.path.dirname(infra.catalog.__file__), "feature_configs", "v2_transfer_basic.yaml"))')"
[[ -f "$PRED_BASIC" ]] || die "predecessor config missing: $PRED_BASIC"
cp "$HERE/configs/"*.yaml "$CFG/"
for solver in robust compat; do
  sed "s/@SOLVER@/$solver/" "$HERE/configs/tau.yaml.in" >"$CFG/tau_$solver.yaml"
  sed "s/@SOLVER@/$solver/" "$HERE/configs/mixed_tau.yaml.in" >"$CFG/mixed_$solver.yaml"
done

# ---------------------------------------------------------------- helpers
printf 'workload\tpredecessor_s\toect_s\tratio\ttarget\tagree\tnote\n' >"$TSV"
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; }
jget() { # evaluate a Python expression over d = the JSON on stdin (whole text, else its last line)
  "$PY" -c '
import json, sys
t = sys.stdin.read().strip()
try:
    d = json.loads(t)
except ValueError:
    d = json.loads(t.splitlines()[-1])
print(eval(sys.argv[1], {}, {"d": d}))' "$1"
}
ratio() { "$PY" -c 'import sys; p,o=float(sys.argv[1]),float(sys.argv[2]); print(f"{p/o:.0f}x" if o>0 else "n/a")' "$1" "$2"; }

# run oect; echo its JSON summary's seconds; keep JSON + peak RSS
oect_run() { # tag, inputs, config, extra args...
  local tag="$1" in="$2" cfg="$3"; shift 3
  rm -rf "$RES/out_oect_$tag"
  say "oect $tag (load $(load))"
  echo "load $(load)" >"$RES/oect_$tag.load"
  /usr/bin/time -v -o "$RES/oect_$tag.time" "$OECT" run "$in" -c "$cfg" -o "$RES/out_oect_$tag" --force --json "$@" \
    >"$RES/oect_$tag.json" 2>"$RES/oect_$tag.err" || die "oect run $tag failed (see $RES/oect_$tag.err)"
  jget 'd["seconds"]' <"$RES/oect_$tag.json"
}
pred_batch() { # tag, inputs, config, workers
  local tag="$1" in="$2" cfg="$3" w="${4:-1}"
  rm -rf "$RES/out_pred_$tag"
  say "predecessor $tag (load $(load))"
  echo "load $(load)" >"$RES/pred_$tag.load"
  /usr/bin/time -v -o "$RES/pred_$tag.time" "$PY" "$HERE/predecessor.py" batch --inputs "$in" --config "$cfg" \
    --out "$RES/out_pred_$tag" --workers "$w" >"$RES/pred_$tag.json" 2>"$RES/pred_$tag.err" \
    || die "predecessor batch $tag failed (see $RES/pred_$tag.err)"
  [[ "$(jget 'len(d["failed"])' <"$RES/pred_$tag.json")" == 0 ]] || die "predecessor $tag: failed experiments (see $RES/pred_$tag.json)"
  jget 'd["seconds"]' <"$RES/pred_$tag.json"
}
compare() { # tag, rtol, atol
  "$PY" "$HERE/predecessor.py" compare --a "$RES/out_pred_$1" --b "$RES/out_oect_$1" --rtol "$2" --atol "$3" >"$RES/compare_$1.json"
  jget '"yes" if d["agree"] else "NO: " + ",".join(k for k,v in d["columns"].items() if v["outside_tol"] or v["nan_mismatch"]) + (" missing" if d["missing"] else "")' <"$RES/compare_$1.json"
}
split() { jget '"read %.3f, extract %.3f, write %.3f s" % (d["time_split"]["read"], d["time_split"]["extract"], d["time_split"]["write"])' <"$RES/oect_$1.json"; }
rss_mb() { awk -F: '/Maximum resident/ {printf "%.0f", $2/1024}' "$1"; }

# ---------------------------------------------------------------- 4. workloads
if want transfer_1x5001; then
  p=$(pred_batch t1 "$DATA/transfer_1x5001" "$PRED_BASIC"); o=$(oect_run t1 "$DATA/transfer_1x5001" v2_transfer_basic -j 1)
  row "transfer v2_transfer_basic 1 exp x $T1_STEPS steps x 182 pts (-j1)" "$p" "$o" "$(ratio "$p" "$o")" ">=100x" "$(compare t1 1e-6 1e-15)" "$(split t1)"
  o=$(oect_run t1_j2 "$DATA/transfer_1x5001" v2_transfer_basic -j 2)
  row "transfer v2_transfer_basic 1 exp x $T1_STEPS steps x 182 pts (-j2)" "$p" "$o" "$(ratio "$p" "$o")" ">=100x" "" "$(split t1_j2)"
fi
if want transfer_20x500; then
  p=$(pred_batch t20 "$DATA/transfer_20x500" "$PRED_BASIC"); o=$(oect_run t20 "$DATA/transfer_20x500" v2_transfer_basic -j 1)
  row "transfer v2_transfer_basic $T20_EXP exp x $T20_STEPS steps (-j1)" "$p" "$o" "$(ratio "$p" "$o")" ">=100x" "$(compare t20 1e-6 1e-15)" ""
fi
if want transient; then
  p=$(pred_batch tr "$DATA/transient" "$CFG/transient_cycles_peak.yaml"); o=$(oect_run tr "$DATA/transient" "$CFG/transient_cycles_peak.yaml" -j 1)
  row "transient cycles+peak_current 1 exp x $TR_STEPS steps x 25000 pts (-j1)" "$p" "$o" "$(ratio "$p" "$o")" ">=50x" "$(compare tr 1e-6 1e-15)" "$(split tr)"
  o=$(oect_run tr_j2 "$DATA/transient" "$CFG/transient_cycles_peak.yaml" -j 2)
  row "transient cycles+peak_current 1 exp x $TR_STEPS steps x 25000 pts (-j2)" "$p" "$o" "$(ratio "$p" "$o")" ">=50x" "" "$(split tr_j2)"
fi
if want autotau; then
  say "predecessor AutoTau: $TAU_STEPS step(s) x $TAU_CYCLES cycles (timeout ${PRED_TIMEOUT}s, load $(load))"
  echo "load $(load)" >"$RES/pred_tau.load"
  pred_tau_ok=1
  if [[ -n "${BENCH_PRED_TAU_FROM:-}" ]]; then
    # reuse the predecessor AutoTau timing of an earlier run on the same data (it takes minutes to hours)
    say "reusing predecessor AutoTau results from $BENCH_PRED_TAU_FROM"
    for f in pred_tau.json pred_tau.npz pred_tau.err pred_tau.load; do
      cp "$BENCH_PRED_TAU_FROM/$f" "$RES/$f" || die "BENCH_PRED_TAU_FROM: $f missing in $BENCH_PRED_TAU_FROM"
    done
  else
    timeout "$PRED_TIMEOUT" "$PY" "$HERE/predecessor.py" autotau --file "$(ls "$DATA"/tau_pred/*.h5 | head -1)" \
      --steps "$TAU_STEPS" --out "$RES/pred_tau.npz" >"$RES/pred_tau.json" 2>"$RES/pred_tau.err" || pred_tau_ok=0
  fi
  for solver in robust compat; do
    o=$(oect_run "tau_$solver" "$DATA/tau_oect" "$CFG/tau_$solver.yaml" -j 1)
    o_step=$("$PY" -c 'import sys; print(float(sys.argv[1])/int(sys.argv[2]))' "$o" "$TAU_STEPS_O")
    # same-file comparison: oect on the predecessor's (short) file
    oect_run "tau_${solver}_predfile" "$DATA/tau_pred" "$CFG/tau_$solver.yaml" -j 1 >/dev/null
    if [[ $pred_tau_ok == 1 ]]; then
      p_step=$(jget 'sum(s["wall_s"] for s in d["steps"]) / len(d["steps"])' <"$RES/pred_tau.json")
      "$PY" "$HERE/predecessor.py" compare-tau --npz "$RES/pred_tau.npz" \
        --parquet "$(ls "$RES/out_oect_tau_${solver}_predfile"/*/*.parquet | head -1)" >"$RES/compare_tau_$solver.json"
      agree=$(jget '"tau within 5%: " + ", ".join("%.0f%%" % (100 * s.get("frac_within_rtol", 0)) for s in d["steps"])' <"$RES/compare_tau_$solver.json")
      row "AutoTau $solver, per step (pred: ${TAU_CYCLES}-cycle step; oect: 100-cycle steps)" "$p_step" "$o_step" "$(ratio "$p_step" "$o_step")" "$([[ $solver == robust ]] && echo '>=500x' || echo '-')" "$agree" "pred per-step time is for a ${TAU_CYCLES}-cycle step"
    else
      row "AutoTau $solver, per 100-cycle step" "timeout>${PRED_TIMEOUT}" "$o_step" "n/a" "$([[ $solver == robust ]] && echo '>=500x' || echo '-')" "n/a" "predecessor did not finish"
    fi
  done
fi
if want mixed; then
  # transfer part through the predecessor's batch; AutoTau part estimated from its per-step time
  p=$(pred_batch mix "$DATA/mixed" "$PRED_BASIC")
  for solver in robust compat; do
    o=$(oect_run "mix_$solver" "$DATA/mixed" "$CFG/mixed_$solver.yaml" -j 2)
    row "mixed $MIX_EXP exp x $MIX_STEPS steps, transfer(5)+AutoTau $solver (-j2)" "transfer only: $p" "$o" "n/a" "-" "transfer cols: $(cd "$RES" && "$PY" "$HERE/predecessor.py" compare --a "out_pred_mix" --b "out_oect_mix_$solver" --rtol 1e-6 --atol 1e-15 | jget '"yes" if all(v["outside_tol"]==0 and v["nan_mismatch"]==0 for k,v in d["columns"].items() if not k.startswith("tau")) and not d["missing"] else "NO"')" "predecessor AutoTau part not run (see autotau rows)"
  done
fi
if want workers; then
  for mode in step experiment; do
    for j in 1 2; do
      o=$(oect_run "w_${mode}_$j" "$DATA/transfer_20x500" v2_transfer_basic --mode "$mode" -j "$j")
      steps=$((T20_EXP * T20_STEPS))
      row "throughput transfer $T20_EXP x $T20_STEPS, --mode $mode -j$j" "" "$o" "" "" "" "$("$PY" -c 'import sys; print(f"{int(sys.argv[1])/float(sys.argv[2]):.0f} steps/s")' "$steps" "$o")"
    done
  done
  # AutoTau-heavy: compat (about 1 s per 100-cycle step) on 2 experiments x 4 steps, and
  # robust on the 200-step transient file (reading is then a large share of the work)
  for mode in step experiment; do
    for j in 1 2; do
      o=$(oect_run "wtau_${mode}_$j" "$DATA/tau_scale" "$CFG/tau_compat.yaml" --mode "$mode" -j "$j")
      row "scaling AutoTau compat 2 x 4 steps, --mode $mode -j$j" "" "$o" "" "" "" "$(jget '"extract %.2f s, read %.2f s" % (d["time_split"]["extract"], d["time_split"]["read"])' <"$RES/oect_wtau_${mode}_$j.json")"
      o=$(oect_run "wtaur_${mode}_$j" "$DATA/transient" "$CFG/tau_robust.yaml" --mode "$mode" -j "$j")
      row "scaling AutoTau robust 1 x $TR_STEPS steps, --mode $mode -j$j" "" "$o" "" "" "" "$(jget '"extract %.2f s, read %.2f s" % (d["time_split"]["extract"], d["time_split"]["read"])' <"$RES/oect_wtaur_${mode}_$j.json")"
    done
  done
  p2=$(pred_batch t20_w2 "$DATA/transfer_20x500" "$PRED_BASIC" 2)
  row "predecessor batch n_workers=2, transfer $T20_EXP x $T20_STEPS" "$p2" "" "" "" "" "$("$PY" -c 'import sys; print(f"{int(sys.argv[1])/float(sys.argv[2]):.0f} steps/s")' "$((T20_EXP * T20_STEPS))" "$p2")"
fi
if want rss; then
  mkdir -p "$DATA/rss_1x"
  if ! [[ -f "$DATA/rss_1x/.done" ]]; then
    ls "$DATA/rss_10x"/*.h5 | head -n "$RSS_EXP" | while read -r f; do ln -sf "$f" "$DATA/rss_1x/"; done
    echo links >"$DATA/rss_1x/.done"
  fi
  for n in 1x 10x; do
    oect_run "rss_$n" "$DATA/rss_$n" v2_transfer_basic -j 2 >/dev/null
    pred_batch "rss_$n" "$DATA/rss_$n" "$PRED_BASIC" 2 >/dev/null
    # GNU time reports the largest single process of the tree (wait4 rusage), not the sum
    row "peak RSS transfer, $n ($([[ $n == 1x ]] && echo $RSS_EXP || echo $((RSS_EXP*10))) exp x 500 steps, 2 workers) MB" \
      "$(rss_mb "$RES/pred_rss_$n.time")" "$(rss_mb "$RES/oect_rss_$n.time")" "" "" "" "pred: largest single process (parent or one worker), not the sum"
  done
fi
if want read; then
  say "read-only timings (load $(load))"
  "$PY" "$HERE/predecessor.py" load --inputs "$DATA/transfer_1x5001" --source transfer >"$RES/pred_read_t1.json" 2>/dev/null
  "$PY" "$HERE/predecessor.py" load --inputs "$DATA/transient" --source transient >"$RES/pred_read_tr.json" 2>/dev/null
  for set in transfer_1x5001 transient; do
    "$PY" "$HERE/predecessor.py" h5read --inputs "$DATA/$set" >"$RES/h5read_$set.json"
    row "read floor: $set, whole datasets through h5py (HDF5 C library)" "$(jget 'd["seconds"]' <"$RES/h5read_$set.json")" "" "" "" "" "read + decompress only, no extraction"
  done
  o=$(oect_run read_t1 "$DATA/transfer_1x5001" "$CFG/read_transfer.yaml" -j 1)
  row "read only: transfer 1 x $T1_STEPS (oect: absI_max only)" "$(jget 'd["seconds"]' <"$RES/pred_read_t1.json")" "$o" "" "" "" "predecessor: FeatureSet transfer loader"
  o=$(oect_run read_tr "$DATA/transient" "$CFG/read_transient.yaml" -j 1)
  row "read only: transient 1 x $TR_STEPS (oect: peak_current only)" "$(jget 'd["seconds"]' <"$RES/pred_read_tr.json")" "$o" "" "" "" "predecessor: FeatureSet transient loader"
fi

# ---------------------------------------------------------------- 5. table
{
  echo "scale=$SCALE  machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2; exit}'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load at end $(load)"
  "$PY" -c '
import re, sys
def f(x):  # 4 significant digits for numbers, also after a "label: " prefix
    m = re.fullmatch(r"(.*?: )?([-+0-9.eE]+)", x)
    if not m:
        return x
    try:
        return (m.group(1) or "") + "%.4g" % float(m.group(2))
    except ValueError:
        return x
for line in open(sys.argv[1]):
    print("\t".join(f(c) for c in line.rstrip("\n").split("\t")))' "$TSV" | column -t -s $'\t'
} | tee "$RES/table.txt"
say "results in $RES"
