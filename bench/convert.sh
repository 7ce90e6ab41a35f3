#!/usr/bin/env bash
# oect convert vs the predecessor's converter (oect-infra 3.3.1: batch_clean_json_files +
# process_folders_parallel) on the same generated exports, with num_workers = oect's -j.
#
#   bench/convert.sh                        # default sizes (see below), 2 workers
#   BENCH_WORKERS=4 BENCH_LOOPS=1000 bench/convert.sh
#
# Knobs: BENCH_WORKERS (default: 2), BENCH_LOOPS (loop iterations of the large export,
# default 300; the lab's is 5000), BENCH_SMALL (number of small exports, default 4, 100 loops
# each), BENCH_REPEATS (oect runs per set, the fastest is kept; default 3), BENCH_OECT (an
# oect binary to use instead of building the release one), PYTHON.
# Every loop is one 182-point transfer and one 25 000-point transient (100 cycles at 1 kHz),
# the lab's stability-test shape. Both converters' files are compared with
# tests/scripts/compare_h5.py (everything but export_time_utc and the source folder, which
# differ by nature), and oect's files are opened with the predecessor's reader
# (infra.experiment.Experiment). Wall seconds are the issue's measure (equal cores); CPU
# seconds (user + system, the predecessor's worker processes included) are printed beside
# them because they hold up better when other jobs share the machine.
# Results: bench/results/convert-<UTC stamp>/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
W="${BENCH_WORKERS:-2}"
LOOPS="${BENCH_LOOPS:-300}"
SMALL="${BENCH_SMALL:-4}"
REPEATS="${BENCH_REPEATS:-3}"
VENV="$HERE/.venv"
RES="$HERE/results/convert-$(date -u +%Y%m%dT%H%M%SZ)"
DATA="$HERE/data/convert"
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$RES" "$DATA"
{ nproc; uptime; } >"$RES/machine.txt" # load before and after
cd "$RES" # the predecessor writes logs/ into its working directory

if ! [[ -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import infra.csv2hdf' 2>/dev/null; then
  say "creating $VENV with oect-infra==3.3.1 (PyPI)"
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/pip" install -q oect-infra==3.3.1
fi
if [[ -n "${BENCH_OECT:-}" ]]; then
  OECT="$BENCH_OECT"
else
  say "cargo build --release --workspace"
  (cd "$ROOT" && cargo build --release --workspace) >"$RES/build.log" 2>&1
  OECT="$ROOT/target/release/oect"
fi
H5PY=/usr/bin/python3; "$H5PY" -c 'import h5py' 2>/dev/null || H5PY="$VENV/bin/python"

gen() { # name, generate args...
  local name="$1"; shift
  if [[ -f "$DATA/$name/.done" && "$(cat "$DATA/$name/.done")" == "$*" ]]; then return; fi
  say "generating $name: $*"
  rm -rf "${DATA:?}/$name"
  "$OECT" generate --raw-export -o "$DATA/$name" --points 182 --cycles 100 "$@" >/dev/null
  echo "$*" >"$DATA/$name/.done"
}
gen large --steps "$LOOPS" --final-transfer --seed 11
gen small --steps 100 --experiments "$SMALL" --devices-per-chip 4 --seed 12

printf 'set\tfolders\tcsv_MB\tpredecessor_s\toect_s\tratio\tpredecessor_cpu_s\toect_cpu_s\tcpu_ratio\tidentical_and_read\n' >"$RES/results.tsv"
for set in large small; do
  mb=$(du -sm --exclude='*.truth.json' "$DATA/$set" | cut -f1)
  n=$(find "$DATA/$set" -name test_info.json | wc -l)
  say "$set: predecessor ($W workers)"
  rm -rf "$RES/pred-in" "$RES/pred-$set"; cp -r "$DATA/$set" "$RES/pred-in"
  sync; "$VENV/bin/python" "$HERE/predecessor_convert.py" --inputs "$RES/pred-in" --out "$RES/pred-$set" --workers "$W" >"$RES/pred-$set.json"
  field() { "$VENV/bin/python" -c "import json,sys; print(round(json.load(open(sys.argv[1]))[sys.argv[2]], 3))" "$RES/pred-$set.json" "$1"; }
  pred=$(field seconds); pred_cpu=$(field cpu_seconds)
  rm -rf "$RES/pred-in"
  best=""; best_cpu=""
  for r in $(seq "$REPEATS"); do
    say "$set: oect convert -j $W (run $r)"
    rm -rf "$RES/oect-$set"; sync
    # wall, user and system seconds
    /usr/bin/time -f '%e %U %S' -o "$RES/oect-$set.time" \
      "$OECT" convert "$DATA/$set" -o "$RES/oect-$set" -j "$W" --on-conflict overwrite >/dev/null 2>"$RES/oect-$set.log"
    read -r t u k <"$RES/oect-$set.time"
    if [[ -z "$best" ]] || (( $(echo "$t < $best" | bc) )); then best=$t; fi
    c=$(echo "$u + $k" | bc)
    if [[ -z "$best_cpu" ]] || (( $(echo "$c < $best_cpu" | bc) )); then best_cpu=$c; fi
  done
  same=yes
  for f in "$RES/pred-$set"/*.h5; do
    "$H5PY" "$ROOT/tests/scripts/compare_h5.py" "$f" "$RES/oect-$set/$(basename "$f")" \
      --ignore-attr export_time_utc --ignore-attr source_folder_path --ignore-attr source_folder_name \
      >>"$RES/compare-$set.txt" || same=no
  done
  # the predecessor's reader opens oect's files
  "$VENV/bin/python" "$HERE/predecessor_convert.py" --read "$RES/oect-$set"/*.h5 >"$RES/read-$set.json" 2>>"$RES/read-$set.log" || same=no
  ratio=$(echo "scale=1; $pred / $best" | bc)
  cpu_ratio=$(echo "scale=1; $pred_cpu / $best_cpu" | bc)
  printf '%s\t%s\t%s\t%s\t%.3f\t%sx\t%s\t%.3f\t%sx\t%s\n' "$set" "$n" "$mb" "$pred" "$best" "$ratio" \
    "$pred_cpu" "$best_cpu" "$cpu_ratio" "$same" >>"$RES/results.tsv"
  rm -rf "$RES/pred-$set" "$RES/oect-$set"
done
{ nproc; uptime; } >>"$RES/machine.txt"
column -t -s $'\t' "$RES/results.tsv"
