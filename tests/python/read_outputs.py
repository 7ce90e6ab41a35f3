"""Reads one config's outputs of an oect output folder with pandas, pyarrow, DuckDB and
polars, and checks that each gives the same single table, with units and chip/device/test
columns, although the folder also holds another config's outputs.

Usage: read_outputs.py OUT CONFIG EXPECTED_ROWS EXPECTED_TESTS UNIT_COLUMN UNIT
Run by tests/tests/python.rs; exits non-zero with a message on the first mismatch.
"""

import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq

out, config, rows, tests, unit_column, unit = sys.argv[1:]
rows, tests = int(rows), int(tests)
folder = Path(out) / config
files = sorted(str(p) for p in folder.glob("*.parquet"))
assert files, f"no outputs in {folder}"
glob = str(folder / "*.parquet")


def check(name, df_columns, n_rows, chips, devices, test_ids):
    assert n_rows == rows, f"{name}: {n_rows} rows, expected {rows}"
    for key in ["chip_id", "device_id", "test_id", "step_index", "start_time", "elapsed_s"]:
        assert key in df_columns, f"{name}: no {key} column: {df_columns}"
    assert len(df_columns) == len(set(df_columns)), f"{name}: duplicate columns"
    assert set(chips) == {"#SYN0001"}, f"{name}: chip ids {set(chips)}"
    assert set(devices) == {"1"}, f"{name}: device ids {set(devices)}"
    assert len(set(test_ids)) == tests, f"{name}: {len(set(test_ids))} tests"


# pandas: the folder is the table; attrs carry the metadata, units included.
df = pd.read_parquet(folder)
check("pandas", list(df.columns), len(df), df.chip_id, df.device_id, df.test_id)
assert df.attrs["units"][unit_column] == unit, df.attrs["units"]
assert df.attrs["config_name"] == config
assert str(df.start_time.dtype).startswith("datetime64"), df.start_time.dtype
assert np.isfinite(df.elapsed_s).all()
reference = df.sort_values(["test_id", "step_index"]).reset_index(drop=True)

# pyarrow: a dataset over the folder, units in the field metadata.
table = ds.dataset(folder, format="parquet").to_table()
check(
    "pyarrow",
    table.column_names,
    table.num_rows,
    table.column("chip_id").to_pylist(),
    table.column("device_id").to_pylist(),
    table.column("test_id").to_pylist(),
)
field = table.schema.field(unit_column)
assert field.metadata[b"unit"].decode() == unit, field.metadata
assert pq.read_schema(files[0]).field(unit_column).metadata[b"unit"].decode() == unit

# DuckDB: a glob; units from the key-value metadata.
con = duckdb.connect()
rel = con.sql(f"SELECT * FROM read_parquet('{glob}')")
columns = rel.columns
got = rel.df()
check("duckdb", columns, len(got), got.chip_id, got.device_id, got.test_id)
meta = con.execute(
    f"SELECT decode(value) FROM parquet_kv_metadata('{files[0]}') "
    "WHERE decode(key) = 'PANDAS_ATTRS'"
).fetchone()[0]
assert json.loads(meta)["units"][unit_column] == unit
got = got.sort_values(["test_id", "step_index"]).reset_index(drop=True)
assert np.allclose(got[unit_column], reference[unit_column], equal_nan=True)

# polars: a glob; units from the file's metadata.
frame = pl.read_parquet(glob)
check(
    "polars",
    frame.columns,
    frame.height,
    frame["chip_id"].cast(pl.Utf8).to_list(),
    frame["device_id"].cast(pl.Utf8).to_list(),
    frame["test_id"].cast(pl.Utf8).to_list(),
)
kv = pl.read_parquet_metadata(files[0])
assert json.loads(kv["PANDAS_ATTRS"])["units"][unit_column] == unit
values = frame.sort(["test_id", "step_index"])[unit_column].to_numpy()
assert np.allclose(values, reference[unit_column], equal_nan=True)

# Nested per-cycle pairs, where the config has them: components named in the metadata.
for f in df.attrs["features"]:
    if f.get("components"):
        assert pq.read_schema(files[0]).field(f["name"]).metadata[b"components"]
        pairs = df[f["name"]].iloc[0]
        assert len(pairs[0]) == len(f["components"]), pairs[0]

print(f"{config}: pandas, pyarrow, DuckDB and polars read {rows} rows of {tests} tests")
