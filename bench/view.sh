#!/usr/bin/env bash
# Timing of `oect plot` and `oect report` (issue #18: "a report over 80 experiments × 5 000
# steps in seconds").
#
#   bench/view.sh DIR
#
# In DIR (created, reused when present): 10 generated experiments × 500 steps on 5 chips (two
# devices each, ragged, final transfer, 100 cycles at 1 kHz), `oect run` with the three
# shipped configs v2_mixed, transient_tau and v2_transient_cycles, then those outputs tiled
# by bench/view_tile.py into 80 experiments × 5 000 steps per config (8 copies of each output
# under other device and test ids, its rows repeated 10 times with step and time columns
# continued). Generating and extracting 80 × 5 000 steps directly takes hours on a small
# machine; the view stage only reads the outputs (and 43 steps of each experiment file found),
# so the tiled batch times it at full size. Needs target/release/oect (with its plugins) and a
# Python with pyarrow (PYTHON, default python3).
set -euo pipefail
DIR="${1:?usage: bench/view.sh DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OECT="$ROOT/target/release/oect"
PY="${PYTHON:-python3}"
mkdir -p "$DIR" && cd "$DIR"
if [[ ! -e data/.done ]]; then
    for set in a:1 b:2; do
        "$OECT" generate -o "data/${set%:*}" --experiments 5 --steps 500 --ragged \
            --final-transfer --seed "${set#*:}" --chip-prefix '#RB' --tau-jitter 0.1 >/dev/null
    done
    # The second set are other devices of the same five chips.
    "$PY" - <<'PY'
import glob, h5py
for i, f in enumerate(sorted(glob.glob("data/b/*.h5"))):
    with h5py.File(f, "r+") as h:
        del h.attrs["device_number"]
        h.attrs["device_number"] = str(6 + i)
PY
    touch data/.done
fi
for c in v2_mixed transient_tau v2_transient_cycles; do
    [[ -d "out/$c" ]] || "$OECT" run data -c "$c" -o out >/dev/null
done
[[ -d big ]] || "$PY" "$ROOT/bench/view_tile.py" out big 8 10
t() { /usr/bin/time -f "%e s wall, %M KiB max RSS" "$@"; }
echo "== 10 experiments x 500 steps"
t "$OECT" report out data -o report-10x500.html
t "$OECT" plot out data -o figs-10x500 >/dev/null
echo "== 80 experiments x 5000 steps (tiled)"
t "$OECT" report big data -o report-80x5000.html
t "$OECT" report big -o report-80x5000-features.html
t "$OECT" plot big -o figs-80x5000 >/dev/null
t "$OECT" plot big -o svg-80x5000 --format svg >/dev/null
ls -l report-*.html
