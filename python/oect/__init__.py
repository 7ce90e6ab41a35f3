"""oect: feature extraction for OECT stability tests, from Python.

A thin front over the ``oect`` executable installed with this package (the same engine
as the command line; nothing is computed in Python)::

    import oect
    files = oect.generate("data", experiments=3, steps=200)
    summary = oect.run("data", "v2_transfer_basic", "features")
    df = oect.read("features")              # one row per step, chip_id/device_id first
    df.attrs["units"]                       # column -> unit

``oect.compat`` has the predecessor's ``batch_extract_features_v2`` and
``UnifiedExperimentManager``.
"""

from importlib import metadata as _metadata

from ._api import Outcome, Summary, configs, generate, plugins, run
from ._process import OectError, executable
from ._read import read, read_polars, read_table
from .compat import batch_extract_features_v2

try:
    __version__ = _metadata.version("oect")
except _metadata.PackageNotFoundError:  # imported from a source checkout
    __version__ = "0+unknown"

__all__ = [
    "OectError",
    "Outcome",
    "Summary",
    "batch_extract_features_v2",
    "configs",
    "executable",
    "generate",
    "plugins",
    "read",
    "read_polars",
    "read_table",
    "run",
]
