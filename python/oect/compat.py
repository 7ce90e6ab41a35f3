"""The predecessor's (oect-infra ``features_v2``) batch entry points over oect, so that
user code written for it runs with only its import line changed::

    from oect.compat import UnifiedExperimentManager      # was: from infra.catalog import ...

    manager = UnifiedExperimentManager('catalog_config.yaml')
    experiments = manager.search(chip_id="#20250804008")
    result = manager.batch_extract_features_v2(
        experiments=experiments,
        feature_config='v2_transfer_basic',
        execution_mode='step',
        n_workers=47,
    )

The computation is ``oect run`` (:func:`oect.run`); these functions only translate the
arguments and the result. There is no SQLite catalog: experiments are the ``.h5`` files
under the catalog's ``raw_data`` folder, described by their own attributes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from . import _process
from ._api import run

#: The predecessor's default output folder (its catalog's ``roots.features_v2``).
DEFAULT_OUTPUT_DIR = Path("data") / "features_v2"


@dataclass(frozen=True)
class Experiment:
    """One experiment file, as the predecessor's ``UnifiedExperiment`` exposes it."""

    #: Position in the catalog's sorted file list (1-based), like a catalog row id.
    id: int
    file_path: str
    chip_id: str
    device_id: str
    test_id: Optional[str] = None
    batch_id: Optional[str] = None
    description: Optional[str] = None
    status: Optional[str] = None
    transfer_steps: int = 0
    transient_steps: int = 0
    #: Every root attribute of the file.
    attributes: Dict[str, Any] = field(default_factory=dict, repr=False)


def _inputs(experiments: Any) -> List[tuple]:
    """(id, path) per experiment: a path is its own id; an object with ``file_path``
    (the predecessor's experiment, or :class:`Experiment`) is known by its ``id``."""
    if isinstance(experiments, (str, os.PathLike)):
        experiments = [experiments]
    pairs = []
    for e in experiments:
        if isinstance(e, (str, os.PathLike)):
            pairs.append((os.fspath(e), os.fspath(e)))
        elif getattr(e, "file_path", None):
            pairs.append((getattr(e, "id", os.fspath(e.file_path)), os.fspath(e.file_path)))
        else:
            raise TypeError(f"{e!r}: an experiment is a file path or has a file_path")
    return pairs


def batch_extract_features_v2(
    experiments: Union[Iterable[Any], str, "os.PathLike[str]"],
    feature_config: Union[str, Mapping[str, Any]],
    output_dir: Union[str, "os.PathLike[str]", None] = None,
    save_format: str = "parquet",
    n_workers: int = 1,
    execution_mode: str = "experiment",
    force_recompute: bool = False,
) -> Dict[str, Any]:
    """The predecessor's batch extraction, computed by ``oect run``.

    ``experiments`` are ``.h5`` paths or objects with a ``file_path``;
    ``feature_config`` a config name, a path or a dict; ``output_dir`` defaults to
    ``data/features_v2`` (the predecessor's catalog default); ``save_format='none'``
    computes without keeping files. ``n_workers`` are oect's worker threads,
    ``execution_mode`` ``'step'`` or ``'experiment'``.

    Returns the predecessor's result dict: ``successful`` (ids written), ``failed``
    (``(id, error)``), ``skipped`` (ids whose output was up to date), ``timings`` (id ->
    ms), ``total_time_ms``, ``total_tasks``; plus ``outputs`` (id -> Parquet path) and
    ``step_errors`` (id -> failed steps, for written experiments that have some).
    Unlike the predecessor, an experiment counts as successful only when its file was
    written, and skipping is per config.
    """
    if execution_mode not in ("step", "experiment"):
        raise ValueError(
            f"unknown execution_mode: {execution_mode!r}; supported modes: 'step', 'experiment'"
        )
    if save_format not in ("parquet", "none"):
        raise ValueError(f"unknown save_format: {save_format!r}; supported: 'parquet', 'none'")
    pairs = _inputs(experiments)
    result: Dict[str, Any] = {
        "successful": [],
        "failed": [],
        "skipped": [],
        "timings": {},
        "total_time_ms": 0.0,
        "total_tasks": 0,
        "outputs": {},
        "step_errors": {},
    }
    if not pairs:
        return result
    scratch = tempfile.mkdtemp(prefix="oect-none-") if save_format == "none" else None
    out = scratch or os.fspath(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR)
    try:
        summary = run(
            [p for _, p in pairs],
            feature_config,
            out,
            mode=execution_mode,
            workers=n_workers,
            force=force_recompute or scratch is not None,
        )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    ids = {os.path.realpath(p): i for i, p in pairs}
    for o in summary.experiments:
        exp_id = ids.get(os.path.realpath(o.input), os.fspath(o.input))
        if o.status == "written":
            result["successful"].append(exp_id)
            result["timings"][exp_id] = (o.seconds or 0.0) * 1000.0
            if o.step_errors:
                result["step_errors"][exp_id] = o.step_errors
        elif o.status == "skipped":
            result["skipped"].append(exp_id)
        else:
            result["failed"].append((exp_id, o.reason or o.status))
        if o.output is not None and scratch is None:
            result["outputs"][exp_id] = os.fspath(o.output)
    result["total_time_ms"] = summary.seconds * 1000.0
    result["total_tasks"] = summary.tasks
    return result


#: Filters of :meth:`UnifiedExperimentManager.search` that compare a file attribute.
_ATTRIBUTE_FILTERS = ("chip_id", "device_id", "test_id", "batch_id", "status", "description")


class UnifiedExperimentManager:
    """The predecessor's catalog entry point, over the files of its ``raw_data`` folder.

    ``config_path`` is the predecessor's ``catalog_config.yaml``; of it, ``roots.raw_data``
    (default ``data/raw``) and ``roots.features_v2`` (default ``data/features_v2``) are
    used, relative to the file's folder (the predecessor took them relative to the
    working directory; the same thing when run from there). The other sections
    (database, sync, ...) are accepted and unused.
    """

    def __init__(self, config_path: Union[str, "os.PathLike[str]"] = "catalog_config.yaml"):
        import yaml

        path = Path(config_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: catalog config not found")
        doc = yaml.safe_load(path.read_text()) or {}
        roots = doc.get("roots") or {}
        if not isinstance(roots, dict):
            raise ValueError(f"{path}: 'roots' must be a mapping")
        base = path.resolve().parent
        self.raw_data = base / roots.get("raw_data", "data/raw")
        self.features_v2 = base / roots.get("features_v2", "data/features_v2")

    def _experiments(self) -> List[Experiment]:
        if not self.raw_data.is_dir():
            raise FileNotFoundError(f"{self.raw_data}: raw_data folder not found")
        files = sorted(self.raw_data.rglob("*.h5"))

        def describe(item):
            index, f = item
            try:
                doc = json.loads(_process.output(["inspect", "--json", os.fspath(f)]))
            except _process.OectError as e:
                warnings.warn(f"{f}: skipped, not a readable experiment file: {e}", stacklevel=3)
                return None
            attrs = doc.get("attributes", {})
            return Experiment(
                id=index,
                file_path=os.fspath(f),
                chip_id=doc["chip_id"],
                device_id=doc["device_id"],
                test_id=attrs.get("test_id"),
                batch_id=attrs.get("batch_id"),
                description=attrs.get("description"),
                status=attrs.get("status"),
                transfer_steps=(doc.get("transfer") or {}).get("steps", 0),
                transient_steps=(doc.get("transient") or {}).get("steps", 0),
                attributes=attrs,
            )

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            found = pool.map(describe, enumerate(files, start=1))
            return [e for e in found if e is not None]

    def search(self, **filters: Any) -> List[Experiment]:
        """The experiments whose attributes equal the given filters (``chip_id``,
        ``device_id``, ``test_id``, ``batch_id``, ``status``, ``description``; an empty
        value is no filter, as before) and whose chip id, description or test id
        contains ``text_search``. An unknown filter is an error (the predecessor
        ignored it silently)."""
        unknown = sorted(set(filters) - set(_ATTRIBUTE_FILTERS) - {"text_search"})
        if unknown:
            raise TypeError(
                f"unsupported search filters: {', '.join(unknown)} "
                f"(supported: {', '.join(_ATTRIBUTE_FILTERS)}, text_search)"
            )
        wanted = {k: str(v) for k, v in filters.items() if v and k != "text_search"}
        text = filters.get("text_search")

        def matches(e: Experiment) -> bool:
            if any(str(getattr(e, k)) != v for k, v in wanted.items()):
                return False
            return not text or any(text in (s or "") for s in (e.chip_id, e.description, e.test_id))

        return [e for e in self._experiments() if matches(e)]

    def batch_extract_features_v2(
        self,
        experiments: Union[Iterable[Any], str, "os.PathLike[str]"],
        feature_config: Union[str, Mapping[str, Any]],
        output_dir: Union[str, "os.PathLike[str]", None] = None,
        save_format: str = "parquet",
        n_workers: int = 1,
        execution_mode: str = "experiment",
        force_recompute: bool = False,
    ) -> Dict[str, Any]:
        """:func:`batch_extract_features_v2` with the catalog's ``features_v2`` folder as
        the default output folder."""
        return batch_extract_features_v2(
            experiments,
            feature_config,
            output_dir=output_dir if output_dir is not None else self.features_v2,
            save_format=save_format,
            n_workers=n_workers,
            execution_mode=execution_mode,
            force_recompute=force_recompute,
        )
