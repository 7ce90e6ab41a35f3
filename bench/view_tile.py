"""Tile real oect outputs (10 experiments x 500 steps) into 80 experiments x 5000 steps per
config, for timing oect plot/report on a batch of the issue's size."""
import json, sys, glob, os
import pyarrow as pa, pyarrow.parquet as pq
import pyarrow.compute as pc

src, dst, copies, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for config in sorted(os.listdir(src)):
    os.makedirs(f"{dst}/{config}", exist_ok=True)
    for f in sorted(glob.glob(f"{src}/{config}/*.parquet")):
        t = pq.read_table(f)
        attrs = json.loads(t.schema.metadata[b"PANDAS_ATTRS"])
        n = t.num_rows
        big = pa.concat_tables([t] * reps)
        cols = {}
        for name in ("step_index", "transfer_step", "transient_step"):
            if name in big.column_names:
                per = max(attrs["steps"].values()) + 1
                off = pa.array([i // n * per for i in range(n * reps)], pa.int64())
                cols[name] = pc.add(big[name], off)
        if "elapsed_s" in big.column_names:
            span = pc.max(t["elapsed_s"]).as_py() + 60
            off = pa.array([i // n * span for i in range(n * reps)], pa.float64())
            cols["elapsed_s"] = pc.add(big["elapsed_s"], off)
        for name, col in cols.items():
            i = big.column_names.index(name)
            big = big.set_column(i, big.schema.field(i), col)
        for k in range(copies):
            a = dict(attrs)
            a["device_id"] = str(int(attrs["device_id"]) * 100 + k)
            a["test_id"] = attrs["test_id"] + f"_{k}"
            a["rows"] = n * reps
            a["steps"] = {kind: c * reps for kind, c in attrs["steps"].items()}
            i = big.column_names.index("device_id")
            out = big.set_column(i, big.schema.field(i),
                                 pa.array([a["device_id"]] * (n * reps)).dictionary_encode())
            i = out.column_names.index("test_id")
            out = out.set_column(i, out.schema.field(i),
                                 pa.array([a["test_id"]] * (n * reps)).dictionary_encode())
            meta = dict(out.schema.metadata)
            meta[b"PANDAS_ATTRS"] = json.dumps(a).encode()
            out = out.replace_schema_metadata(meta)
            name = os.path.basename(f).replace(attrs["test_id"], a["test_id"]).replace(
                f"-{attrs['device_id']}-", f"-{a['device_id']}-")
            pq.write_table(out, f"{dst}/{config}/{name}", compression="zstd")
