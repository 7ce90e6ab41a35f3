#!/usr/bin/env python3
"""Benchmark driver for the predecessor (oect-infra 3.3.1 + autotau 0.6.0), and value comparison.

Subcommands (each prints one JSON line on stdout):
  batch    --inputs DIR --config YAML --out DIR [--workers N]
           The predecessor's experiment-mode batch: one call of the catalog's own multi-process
           worker (infra.catalog.unified._extract_v2_wrapper: Experiment(file) ->
           FeatureSet.from_config -> compute -> to_parquet) per experiment; a ProcessPoolExecutor
           with N workers when N > 1, serial calls when N == 1. The catalog's SQLite bookkeeping
           is left out (no catalog exists for synthetic files).
  load     --inputs DIR --source transfer|transient
           Only the FeatureSet data-source loader (reading the data), no extraction.
  autotau  --file H5 --steps K --out NPZ [--period S --sample-rate HZ]
           autotau.CyclesAutoTauFitter per transient step with the parameters of the
           transient.tau_on_off extractor (spec algorithm_autotau.md §2.1).
  compare  --a DIR --b DIR [--rtol R --atol A]      Parquet vs Parquet, per column.
  compare-tau --npz NPZ --parquet FILE [--rtol R]   predecessor tau arrays vs oect tau_cycles.
"""
import argparse
import glob
import json
import os
import sys
import time


def _h5_files(d):
    files = sorted(glob.glob(os.path.join(d, "**", "*.h5"), recursive=True))
    if not files:
        sys.exit(f"predecessor.py: no .h5 files under {d}")
    return files


def _ids(path):
    # oect generate names files '<chip>-<device>-<description>_<stamp>_<hash>.h5'
    base = os.path.basename(path)
    parts = base.split("-")
    return parts[0], parts[1]


def _one(args):
    path, config, out = args
    from infra.catalog.unified import _extract_v2_wrapper
    chip, dev = _ids(path)
    r = _extract_v2_wrapper(None, chip, dev, path, config, out, "parquet")
    return r.get("time_ms")


def cmd_batch(a):
    os.makedirs(a.out, exist_ok=True)
    files = _h5_files(a.inputs)
    jobs = [(f, os.path.abspath(a.config), a.out) for f in files]
    ti = time.perf_counter()
    import infra.catalog.unified  # noqa: F401  (imported before timing; forked workers inherit it)
    import infra.features_v2.extractors.transfer  # noqa: F401
    import infra.features_v2.extractors.transient  # noqa: F401
    import_s = time.perf_counter() - ti
    t0 = time.perf_counter()
    failed = []
    if a.workers <= 1:
        for j in jobs:
            try:
                _one(j)
            except Exception as e:  # the batch records per-experiment failures
                failed.append((j[0], repr(e)))
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        with ProcessPoolExecutor(max_workers=a.workers) as ex:
            futs = {ex.submit(_one, j): j for j in jobs}
            for f in as_completed(futs):
                try:
                    f.result()
                except Exception as e:
                    failed.append((futs[f][0], repr(e)))
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "import_seconds": import_s, "experiments": len(files), "failed": failed}))


def cmd_load(a):
    from infra.experiment import Experiment
    from infra.features_v2 import FeatureSet
    files = _h5_files(a.inputs)
    t0 = time.perf_counter()
    n = 0
    for f in files:
        fs = FeatureSet(experiment=Experiment(f))
        n += len(fs.data_loaders[a.source]())
    print(json.dumps({"seconds": time.perf_counter() - t0, "steps": n, "experiments": len(files)}))


def cmd_h5read(a):
    """The read floor: every measurement dataset read whole by the HDF5 C library (h5py),
    i.e. the time to read and decompress the data and nothing else."""
    import h5py
    files = _h5_files(a.inputs)
    t0 = time.perf_counter()
    values = 0
    for f in files:
        with h5py.File(f, "r") as h:
            for g in ("transfer", "transient"):
                if g in h and "measurement_data" in h[g]:
                    values += h[g]["measurement_data"][()].size
    print(json.dumps({"seconds": time.perf_counter() - t0, "values": values, "experiments": len(files)}))


def cmd_autotau(a):
    import numpy as np
    from autotau import CyclesAutoTauFitter
    from infra.experiment import Experiment
    from infra.features_v2 import FeatureSet
    fs = FeatureSet(experiment=Experiment(a.file))
    steps = fs.data_loaders["transient"]()[: a.steps]
    out, per_step = {}, []
    for i, st in enumerate(steps):
        t0 = time.perf_counter()
        c0 = time.process_time()
        try:
            fitter = CyclesAutoTauFitter(
                np.asarray(st["continuous_time"]), np.asarray(st["drain_current"]),
                period=a.period, sample_rate=a.sample_rate, fitter_factory=None,
                window_scalar_min=0.1, window_scalar_max=3 / 8, window_points_step=5,
                window_start_idx_step=1, normalize=False, language="en", show_progress=False)
            fitter.fit_all_cycles(r_squared_threshold=0.99)
            df = fitter.get_summary_data()
            if df is None or len(df) == 0:
                arr = np.empty((0, 2), np.float32)
            else:
                arr = np.stack([df["tau_on"].to_numpy(), df["tau_off"].to_numpy()], axis=1).astype(np.float32)
        except Exception as e:  # the extractor turns any exception into (0, 2)
            print(f"step {i}: {e!r}", file=sys.stderr)
            arr = np.empty((0, 2), np.float32)
        per_step.append({"step": i, "wall_s": time.perf_counter() - t0,
                         "cpu_s": time.process_time() - c0, "cycles": int(arr.shape[0])})
        out[f"step{i}"] = arr
        print(json.dumps(per_step[-1]), file=sys.stderr, flush=True)
    np.savez(a.out, **out)
    print(json.dumps({"steps": per_step}))


def _read_dir(d):
    import pandas as pd
    res = {}
    # oect writes OUT/<config>/<chip>-<device>-... with the chip's leading '#' dropped;
    # the predecessor OUT/#<chip>-<device>-...
    files = glob.glob(os.path.join(d, "*.parquet")) + glob.glob(os.path.join(d, "*", "*.parquet"))
    for f in sorted(files):
        key = "-".join(os.path.basename(f).split("-")[:2]).lstrip("#")
        res[key] = pd.read_parquet(f)
    return res


def cmd_compare(a):
    import numpy as np
    A, B = _read_dir(a.a), _read_dir(a.b)
    report = {"experiments_a": len(A), "experiments_b": len(B), "missing": sorted(set(A) ^ set(B)), "columns": {}}
    for k in sorted(set(A) & set(B)):
        da, db = A[k], B[k]
        if len(da) != len(db):
            report.setdefault("row_mismatch", []).append([k, len(da), len(db)])
            continue
        for c in da.columns:
            if c == "step_index" or c not in db.columns:
                if c not in db.columns:
                    report.setdefault("only_in_a", set()).add(c)
                continue
            x = np.asarray(da[c], float)
            y = np.asarray(db[c], float)
            nan_mismatch = int(np.sum(np.isnan(x) != np.isnan(y)))
            m = ~(np.isnan(x) | np.isnan(y))
            bad = int(np.sum(~np.isclose(x[m], y[m], rtol=a.rtol, atol=a.atol)))
            rel = float(np.max(np.abs(x[m] - y[m]) / np.maximum(np.abs(y[m]), 1e-300))) if m.any() else 0.0
            s = report["columns"].setdefault(c, {"n": 0, "outside_tol": 0, "nan_mismatch": 0, "max_rel": 0.0})
            s["n"] += int(m.sum()); s["outside_tol"] += bad; s["nan_mismatch"] += nan_mismatch
            s["max_rel"] = max(s["max_rel"], rel)
    if "only_in_a" in report:
        report["only_in_a"] = sorted(report["only_in_a"])
    ok = (not report["missing"] and "row_mismatch" not in report and report["columns"]
          and all(v["outside_tol"] == 0 and v["nan_mismatch"] == 0 for v in report["columns"].values()))
    report["agree"] = bool(ok)
    print(json.dumps(report))


def cmd_compare_tau(a):
    import numpy as np
    import pandas as pd
    pred = np.load(a.npz)
    df = pd.read_parquet(a.parquet)
    rows = []
    for i in range(len(pred.files)):
        p = pred[f"step{i}"]
        cell = df["tau_cycles"].iloc[i]
        o = np.array([np.asarray(r, float) for r in cell], float).reshape(-1, 2) if len(cell) else np.empty((0, 2))
        o = o[~np.isnan(o).all(axis=1)]
        n = min(len(p), len(o))
        if n == 0:
            rows.append({"step": i, "pred_cycles": len(p), "oect_cycles": len(o)}); continue
        rel = np.abs(p[:n] - o[:n]) / np.maximum(np.abs(p[:n]), 1e-300)
        rows.append({"step": i, "pred_cycles": int(len(p)), "oect_cycles": int(len(o)),
                     "median_rel_on": float(np.nanmedian(rel[:, 0])), "median_rel_off": float(np.nanmedian(rel[:, 1])),
                     "frac_within_rtol": float(np.mean(rel <= a.rtol)),
                     "pred_median_on_off": [float(np.nanmedian(p[:, 0])), float(np.nanmedian(p[:, 1]))],
                     "oect_median_on_off": [float(np.nanmedian(o[:, 0])), float(np.nanmedian(o[:, 1]))]})
    print(json.dumps({"steps": rows}))


def main():
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("batch"); b.add_argument("--inputs", required=True); b.add_argument("--config", required=True)
    b.add_argument("--out", required=True); b.add_argument("--workers", type=int, default=1)
    l = sp.add_parser("load"); l.add_argument("--inputs", required=True)
    l.add_argument("--source", choices=["transfer", "transient"], required=True)
    h = sp.add_parser("h5read"); h.add_argument("--inputs", required=True)
    t = sp.add_parser("autotau"); t.add_argument("--file", required=True); t.add_argument("--steps", type=int, default=1)
    t.add_argument("--out", required=True); t.add_argument("--period", type=float, default=0.25)
    t.add_argument("--sample-rate", type=float, default=1000.0)
    c = sp.add_parser("compare"); c.add_argument("--a", required=True); c.add_argument("--b", required=True)
    c.add_argument("--rtol", type=float, default=1e-9); c.add_argument("--atol", type=float, default=0.0)
    ct = sp.add_parser("compare-tau"); ct.add_argument("--npz", required=True); ct.add_argument("--parquet", required=True)
    ct.add_argument("--rtol", type=float, default=0.05)
    a = p.parse_args()
    {"batch": cmd_batch, "load": cmd_load, "h5read": cmd_h5read, "autotau": cmd_autotau, "compare": cmd_compare,
     "compare-tau": cmd_compare_tau}[a.cmd](a)


if __name__ == "__main__":
    main()
