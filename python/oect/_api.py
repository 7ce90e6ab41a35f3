"""``oect.run``, ``oect.generate``, ``oect.configs``, ``oect.plugins``: each runs the
executable's command of the same name and returns what it reports."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _process
from ._progress import ProgressArg, handler

PathLike = Union[str, "os.PathLike[str]"]
Inputs = Union[PathLike, Iterable[PathLike]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one input file of a run (an entry of ``oect run --json``)."""

    #: ``written``, ``skipped`` (an up-to-date output exists), ``failed`` or
    #: ``interrupted``.
    status: str
    input: Path
    #: The Parquet file (written or up to date), else None.
    output: Optional[Path] = None
    rows: Optional[int] = None
    #: Wall time from opening the file to writing its table, s (written files only).
    seconds: Optional[float] = None
    #: Cells that are NaN because their step failed, steps with no result ("no fit: …"),
    #: and values that are NaN/±inf (written and up-to-date files).
    step_errors: int = 0
    no_fit_steps: int = 0
    nonfinite_steps: int = 0
    #: The steps without a value: ``{"feature", "step", "kind", "message"}`` each
    #: (``kind``: ``invalid_input``, ``no_result``, ``panic``, ``timeout``, ...).
    errors: List[dict] = field(default_factory=list)
    #: Why a failed file was not written.
    reason: Optional[str] = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "Outcome":
        output = doc.get("output")
        return cls(
            status=doc["status"],
            input=Path(doc["input"]),
            output=Path(output) if output else None,
            rows=doc.get("rows"),
            seconds=doc.get("seconds"),
            step_errors=doc.get("step_errors", 0),
            no_fit_steps=doc.get("no_fit_steps", 0),
            nonfinite_steps=doc.get("nonfinite_steps", 0),
            errors=list(doc.get("errors", [])),
            reason=doc.get("reason"),
        )


@dataclass(frozen=True)
class Summary:
    """The result of :func:`run`: what ``oect run --json`` reports, as an object."""

    mode: str
    workers: int
    #: One per input file, in input order.
    experiments: List[Outcome]
    #: Extractor tasks run (feature x chunk of steps).
    tasks: int
    #: Wall time of the run, s.
    seconds: float
    #: Seconds spent reading, extracting and writing, summed over threads.
    time_split: Dict[str, float]
    #: The run was stopped (SIGTERM) before every experiment was done.
    interrupted: bool
    #: The executable's exit status: 0 all written or up to date without failed steps,
    #: 1 an experiment or a step failed, 130 stopped.
    exit_code: int

    @property
    def ok(self) -> bool:
        """True when every experiment was written or up to date, without a failed step."""
        return self.exit_code == 0

    def _with(self, status: str) -> List[Outcome]:
        return [o for o in self.experiments if o.status == status]

    @property
    def written(self) -> List[Outcome]:
        return self._with("written")

    @property
    def skipped(self) -> List[Outcome]:
        return self._with("skipped")

    @property
    def failed(self) -> List[Outcome]:
        return self._with("failed")

    @property
    def outputs(self) -> List[Path]:
        """The Parquet files of the written and up-to-date experiments."""
        return [o.output for o in self.experiments if o.output is not None]

    def __str__(self) -> str:
        steps = sum(o.step_errors for o in self.experiments)
        return (
            f"{_count(len(self.experiments), 'experiment')}: {len(self.written)} written, "
            f"{len(self.skipped)} skipped (up to date), {len(self.failed)} failed; "
            f"{steps} failed steps; {self.seconds:.2f} s ({self.mode} mode, "
            f"{_count(self.workers, 'worker')})"
        )


def _count(n: int, what: str) -> str:
    """`1 experiment`, `2 experiments`: the wording of the command line's summary."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _paths(inputs: Inputs) -> List[str]:
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    paths = [os.fspath(p) for p in inputs]
    if not paths:
        raise ValueError("no inputs: give .h5 files or folders")
    return paths


def inline_config(features: Mapping[str, Any], folder: PathLike) -> Path:
    """Writes a config given as a dict (``{"features": [...]}`` or the mapping form
    ``{name: {extractor | func, input, params}}``) to ``folder`` as JSON. Its name is
    ``inline_<hash8>``, the hash of its content, so two different inline configs never
    share output names (the predecessor called them all ``inline_config``)."""
    text = json.dumps(features, sort_keys=True)
    name = "inline_" + hashlib.sha256(text.encode()).hexdigest()[:8]
    path = Path(folder) / f"{name}.json"
    path.write_text(text)
    return path


def run(
    inputs: Inputs,
    config: Union[str, "os.PathLike[str]", Mapping[str, Any]],
    out: PathLike,
    *,
    mode: str = "step",
    workers: Optional[int] = None,
    force: bool = False,
    plugin_dirs: Sequence[PathLike] = (),
    progress: ProgressArg = True,
) -> Summary:
    """Computes ``config`` over ``inputs`` and writes one Parquet file per experiment
    into ``out``: ``oect run INPUTS -c CONFIG -o OUT``.

    ``inputs`` are ``.h5`` files or folders (searched recursively); ``config`` a shipped
    config's name, a ``.yaml``/``.yml``/``.json`` path, or a dict in the config format.
    ``mode`` is ``"step"`` or ``"experiment"``, ``workers`` the worker threads (default:
    the executable's), ``force`` recomputes up-to-date outputs. ``progress`` shows a bar
    (True), nothing (False), or calls a function with each progress event (a dict, see
    the README's "Progress as JSON lines").

    Returns the :class:`Summary`; failed experiments and steps are reported there, not
    raised. Raises :class:`OectError` when nothing could run (bad config, missing input:
    exit status 2) and KeyboardInterrupt after a Ctrl-C has stopped the run cleanly
    (finished experiments are kept; running it again does the rest).
    """
    with tempfile.TemporaryDirectory(prefix="oect-") as tmp:
        if isinstance(config, Mapping):
            config = inline_config(config, tmp)
        args = ["run", *_paths(inputs), "-c", os.fspath(config), "-o", os.fspath(out)]
        args += ["--mode", mode, "--json", "--progress", "json"]
        if workers is not None:
            args += ["--workers", str(workers)]
        if force:
            args.append("--force")
        for folder in plugin_dirs:
            args += ["--plugin-dir", os.fspath(folder)]
        done = _process.call(args, handler(progress))
    if done.interrupted:
        sys.stderr.write(
            "oect: stopped; finished experiments are kept, nothing partial was written; "
            "run it again to do the rest\n"
        )
        raise KeyboardInterrupt
    done.check(args, ok=(0, 1, _process.INTERRUPTED))
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise _process.OectError(
            f"oect run printed no summary (exit status {done.returncode}): {done.stderr.strip()}",
            done.returncode,
            done.stderr,
        ) from None
    return Summary(
        mode=doc["mode"],
        workers=doc["workers"],
        experiments=[Outcome.from_json(o) for o in doc["experiments"]],
        tasks=doc["tasks"],
        seconds=doc["seconds"],
        time_split=dict(doc["time_split"]),
        interrupted=doc["interrupted"],
        exit_code=done.returncode,
    )


def generate(out: PathLike, experiments: int = 1, steps: int = 5, **options: Any) -> List[Path]:
    """Writes synthetic experiment files in the lab's HDF5 layout (with a
    ``.truth.json`` of the true values beside each) and returns their paths:
    ``oect generate -o OUT --experiments N --steps S [options]``.

    ``options`` are the other options of ``oect generate --help`` with ``_`` for ``-``
    (``ragged=True``, ``final_transfer=True``, ``cycles=100``, ``sample_rate=1000``,
    ``chip="#20250804008"``, ``seed=3``, ...); a False or None option is left out.
    """
    args = ["generate", "-o", os.fspath(out), "--experiments", str(experiments)]
    args += ["--steps", str(steps)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False and value is not None:
            args += [flag, str(value)]
    text = _process.output(args)
    return [Path(line) for line in text.splitlines() if line.strip()]


def configs() -> Dict[str, str]:
    """The shipped configs: name -> one-line summary (``oect configs list``)."""
    found = {}
    for line in _process.output(["configs", "list"]).splitlines():
        name, _, summary = line.strip().partition(" ")
        if name:
            found[name] = summary.strip()
    return found


def plugins(plugin_dirs: Sequence[PathLike] = ()) -> Dict[str, Any]:
    """The plugins found and their extractors (``oect plugins list --json``): a dict with
    ``plugins`` (name, version, api_version, path, extractors), ``extractors`` (name,
    input, description, unit, params, plugin) and ``warnings``."""
    args = ["plugins", "list", "--json"]
    for folder in plugin_dirs:
        args += ["--plugin-dir", os.fspath(folder)]
    return json.loads(_process.output(args))
