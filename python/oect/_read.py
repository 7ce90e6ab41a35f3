"""Reading ``oect run`` outputs into pandas or polars.

Outputs are found by what they carry, not by their names: a Parquet file is an output of
config C when its ``PANDAS_ATTRS`` metadata says ``config_name: C``. Only the footers are
read to find them; the rows are read through one pyarrow dataset with the outputs'
common schema.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

PathLike = Union[str, "os.PathLike[str]"]

#: Columns that name the experiment of a row, first in every table.
ID_COLUMNS = ("chip_id", "device_id")


def _attrs(schema: pa.Schema) -> Optional[dict]:
    raw = (schema.metadata or {}).get(b"PANDAS_ATTRS")
    if raw is None:
        return None
    try:
        attrs = json.loads(raw)
    except ValueError:
        return None
    return attrs if isinstance(attrs, dict) and "config_name" in attrs else None


def _units(schema: pa.Schema, attrs: dict) -> Dict[str, str]:
    """Column -> unit, from the fields' ``unit`` metadata and the ``units`` attribute."""
    units = {str(k): str(v) for k, v in (attrs.get("units") or {}).items()}
    for f in schema:
        unit = (f.metadata or {}).get(b"unit")
        if unit:
            units[f.name] = unit.decode()
    return units


def _outputs(path: Path, config: Optional[str]) -> Tuple[List[Path], List[pa.Schema]]:
    """The output files of ``config`` at ``path`` (a file or a folder searched
    recursively) and their schemas."""
    if path.is_file():
        schema = pq.read_schema(path)
        attrs = _attrs(schema)
        if attrs is None:
            raise ValueError(f"{path}: not an oect output (no PANDAS_ATTRS with config_name)")
        if config is not None and attrs["config_name"] != config:
            found = attrs["config_name"]
            raise ValueError(f"{path}: an output of config '{found}', not '{config}'")
        return [path], [schema]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    by_config: Dict[str, List[Tuple[Path, pa.Schema]]] = {}
    for f in sorted(path.rglob("*.parquet")):
        if f.name.startswith("."):
            continue  # a temporary file of a run in progress
        schema = pq.read_schema(f)
        attrs = _attrs(schema)
        if attrs is not None:
            by_config.setdefault(attrs["config_name"], []).append((f, schema))
    if not by_config:
        raise ValueError(f"{path}: no oect outputs in this folder")
    if config is None:
        if len(by_config) > 1:
            raise ValueError(
                f"{path}: outputs of several configs ({', '.join(sorted(by_config))}); "
                "choose one with config="
            )
        config = next(iter(by_config))
    if config not in by_config:
        raise ValueError(
            f"{path}: no outputs of config '{config}' (found: {', '.join(sorted(by_config))})"
        )
    found = by_config[config]
    return [f for f, _ in found], [s for _, s in found]


def _ids_first(table: pa.Table) -> pa.Table:
    """``table`` with ``chip_id`` and ``device_id`` (stored dictionary-encoded in every
    output) as its first columns."""
    for i, name in enumerate(ID_COLUMNS):
        column = table.column(name)
        table = table.remove_column(table.column_names.index(name))
        table = table.add_column(i, name, column)
    return table


def read_table(path: PathLike, config: Optional[str] = None) -> Tuple[pa.Table, Dict[str, Any]]:
    """The rows of one output file, or of every output of ``config`` in a folder, as one
    Arrow table (``chip_id``, ``device_id`` first), and the attributes ``read`` puts in
    ``df.attrs``. Refuses outputs of one config whose columns or config hash differ."""
    files, schemas = _outputs(Path(path), config)
    attrs = [_attrs(s) or {} for s in schemas]
    first = schemas[0].remove_metadata()
    for f, s in zip(files, schemas):
        if not s.remove_metadata().equals(first):
            raise ValueError(
                f"{f}: its columns differ from {files[0]}; both are outputs of config "
                f"'{attrs[0]['config_name']}' (rerun `oect run` so they agree)"
            )
    hashes = sorted({a.get("config_hash") for a in attrs})
    if len(hashes) > 1:
        raise ValueError(
            f"{path}: outputs of config '{attrs[0]['config_name']}' computed by different "
            f"versions of it or of its plugins (config hashes {', '.join(map(str, hashes))}); "
            "rerun `oect run` on the batch to bring them up to date"
        )
    missing = [name for name in ID_COLUMNS if name not in first.names]
    if missing:
        raise ValueError(f"{files[0]}: no {' or '.join(missing)} column (not an oect output)")
    dataset = ds.dataset([os.fspath(f) for f in files], format="parquet", schema=first)
    table = _ids_first(dataset.to_table())
    units = _units(schemas[0], attrs[0])
    if len(files) == 1 and Path(path).is_file():
        meta = dict(attrs[0])
    else:
        meta = {
            "config_name": attrs[0].get("config_name"),
            "config_hash": attrs[0].get("config_hash"),
            "experiments": attrs,
        }
    meta["units"] = units
    return table, meta


def read(path: PathLike, config: Optional[str] = None):
    """One experiment's output (a Parquet file), or every experiment of ``config`` in a
    folder (searched recursively; ``config`` may be left out when the folder holds one
    config's outputs), as a pandas DataFrame.

    Rows are steps; ``chip_id`` and ``device_id`` come first, so experiments stay apart.
    ``df.attrs`` holds the file's metadata (for a folder: ``config_name``,
    ``config_hash`` and ``experiments``, one metadata dict per file) and ``units``
    (column -> unit).
    """
    table, meta = read_table(path, config)
    df = table.to_pandas()
    df.attrs = meta
    return df


def read_polars(path: PathLike, config: Optional[str] = None):
    """:func:`read` as a polars DataFrame (polars keeps no attrs; use :func:`read` or
    :func:`read_table` for the metadata). Needs ``pip install oect[polars]``."""
    import polars as pl

    table, _ = read_table(path, config)
    return pl.from_arrow(table)
