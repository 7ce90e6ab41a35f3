"""Tests of the installed wheel: run them with the interpreter of a virtualenv into which
dist/oect-*.whl was installed (`.ci/run` does), never against the source tree."""

import os
import sys
from pathlib import Path

import pytest

import oect

# The shipped data shape: a loop of transfer + transient steps plus a final transfer,
# ragged sweeps and cycle counts, 100 cycles of 0.25 s at 1 kHz, noise (the defaults).
STEPS = 12


@pytest.fixture(scope="session", autouse=True)
def installed_package():
    """Refuse to test anything but an installed oect (a source checkout on sys.path
    would test the wrong files and no executable)."""
    here = Path(oect.__file__).resolve()
    prefix = Path(sys.prefix).resolve()
    if prefix not in here.parents or "OECT_BIN" in os.environ:
        pytest.exit(
            f"oect is imported from {here} (OECT_BIN={os.environ.get('OECT_BIN')}); "
            f"install the wheel into the virtualenv at {prefix} and run from there",
            returncode=2,
        )


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """Two real-shaped experiments of one chip."""
    folder = tmp_path_factory.mktemp("data")
    files = oect.generate(
        folder,
        experiments=2,
        steps=STEPS,
        ragged=True,
        final_transfer=True,
        chip="#20250101001",
        seed=11,
    )
    assert len(files) == 2
    return folder
