#!/usr/bin/env python3
"""The predecessor's raw-export converter, timed (oect-infra 3.3.1).

    predecessor_convert.py --inputs DIR --out DIR --workers N
    predecessor_convert.py --read FILE...      # open files with the predecessor's reader

Runs the lab's pipeline on every export folder under DIR: `batch_clean_json_files` (rewrites
each test_info.json in place, so pass a copy) and then `process_folders_parallel` with
`num_workers=N` (a ProcessPoolExecutor of N processes, one folder per task). Prints one JSON
line: seconds for cleaning and converting (imports excluded), the CPU seconds they took
(user + system, the worker processes included), folders, failures.
"""
import argparse
import json
import logging
import os
import resource
import time


def read(files):
    """Opens each file with infra.experiment.Experiment and reads its first and last steps."""
    from infra.experiment import Experiment
    out = []
    for f in files:
        e = Experiment(f)
        bd = e.get_batch_data()
        n_tr, n_ts = bd.get_transfer_step_count(), bd.get_transient_step_count()
        for i in {0, n_tr - 1} if n_tr else ():
            assert e.get_transfer_step_measurement(i)["Vg"].size > 0
        for j in {0, n_ts - 1} if n_ts else ():
            assert e.get_transient_step_measurement(j)["drain_current"].size > 0
        out.append({"file": os.path.basename(f), "transfer_steps": n_tr, "transient_steps": n_ts})
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inputs")
    p.add_argument("--out")
    p.add_argument("--workers", type=int)
    p.add_argument("--read", nargs="+")
    a = p.parse_args()
    if a.read:
        logging.disable(logging.CRITICAL)
        return read(a.read)
    t0 = time.perf_counter()
    from infra.csv2hdf.batch_csvjson2hdf import process_folders_parallel
    from infra.csv2hdf.clean_json import batch_clean_json_files
    import_s = time.perf_counter() - t0
    logging.disable(logging.CRITICAL)  # its INFO lines per step would be timed too
    folders = sorted(
        os.path.join(a.inputs, d)
        for d in os.listdir(a.inputs)
        if os.path.isfile(os.path.join(a.inputs, d, "test_info.json"))
    )
    def cpu():
        # this process and its reaped children (the pool's workers, joined on shutdown)
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)
    c0 = cpu()
    t0 = time.perf_counter()
    batch_clean_json_files(a.inputs)
    t1 = time.perf_counter()
    results = process_folders_parallel(folders, a.out, num_workers=a.workers, show_progress=False)
    t2 = time.perf_counter()
    print(json.dumps({
        "seconds": t2 - t0, "cpu_seconds": cpu() - c0, "clean_seconds": t1 - t0, "convert_seconds": t2 - t1,
        "import_seconds": import_s, "folders": len(folders),
        "failed": [r.folder for r in results if not r.ok],
    }))


if __name__ == "__main__":
    main()
