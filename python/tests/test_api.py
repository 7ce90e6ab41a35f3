"""oect.run, oect.read and friends, on real-shaped generated data, every shipped config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import oect
from conftest import STEPS

SHIPPED = [
    "v2_transfer_basic",
    "v2_transfer_basic_derived",
    "v2_quick_analysis",
    "v2_ml_ready",
    "v2_mixed",
    "v2_transient_cycles",
    "transient_tau",
]


def test_configs_lists_the_shipped_configs():
    found = oect.configs()
    assert sorted(found) == sorted(SHIPPED)
    assert all(summary for summary in found.values())


@pytest.fixture(scope="module")
def outputs(data, tmp_path_factory):
    """Every shipped config run over the same two experiments into one folder."""
    out = tmp_path_factory.mktemp("features")
    summaries = {c: oect.run(data, c, out, workers=2, progress=False) for c in SHIPPED}
    return out, summaries


@pytest.mark.parametrize("config", SHIPPED)
def test_every_shipped_config_runs_and_reads_back(outputs, config):
    out, summaries = outputs
    summary = summaries[config]
    assert [o.status for o in summary.experiments] == ["written", "written"], str(summary)
    assert all(o.output.is_file() and o.rows >= STEPS for o in summary.experiments)
    assert summary.mode == "step" and summary.workers == 2 and summary.tasks > 0

    df = oect.read(out, config=config)
    assert list(df.columns[:2]) == ["chip_id", "device_id"]
    assert len(df) == sum(o.rows for o in summary.experiments)
    assert set(df["chip_id"]) == {"#20250101001"}
    assert sorted(set(df["device_id"])) == ["1", "2"]
    assert df.attrs["config_name"] == config
    assert len(df.attrs["experiments"]) == 2
    assert {e["device_id"] for e in df.attrs["experiments"]} == {"1", "2"}
    assert isinstance(df.attrs["units"], dict)
    # The same rows as the files themselves.
    one = pd.concat([pq.read_table(o.output).to_pandas() for o in summary.experiments])
    assert list(df["step_index"]) == list(one["step_index"])


def truths(df):
    """(rows of one experiment, its generator's ground truth) per experiment of ``df``."""
    for exp in df.attrs["experiments"]:
        truth = json.loads(Path(exp["source_file"] + ".truth.json").read_text())
        yield df[df["device_id"] == exp["device_id"]], truth


def test_transfer_values_match_the_ground_truth(outputs):
    out, _ = outputs
    df = oect.read(out, "v2_transfer_basic")
    for rows, truth in truths(df):
        # The loop's transfer steps and the final one.
        assert len(rows) == len(truth["transfer"]) == STEPS + 1
        np.testing.assert_allclose(
            rows["gm_max_forward"], [t["gm_max_forward_S"] for t in truth["transfer"]], rtol=0.05
        )
        np.testing.assert_allclose(
            rows["absI_max"], [t["ion_A"] for t in truth["transfer"]], rtol=0.05
        )
        # Inside the swept Vg range, V (inputs are rounded through float32, as before).
        assert rows["Von_forward"].between(-0.6 - 1e-6, 0.6 + 1e-6).all()


def test_tau_values_match_the_ground_truth(outputs):
    out, _ = outputs
    df = oect.read(out, "transient_tau")
    for rows, truth in truths(df):
        assert len(rows) == len(truth["transient"]) == STEPS
        np.testing.assert_allclose(
            rows["tau_on_mean"], [t["tau_on_s"] for t in truth["transient"]], rtol=0.05
        )
        np.testing.assert_allclose(
            rows["tau_off_mean"], [t["tau_off_s"] for t in truth["transient"]], rtol=0.05
        )


def test_units_come_with_the_table(outputs):
    out, _ = outputs
    units = oect.read(out, "v2_transfer_basic").attrs["units"]
    assert units["gm_max_forward"] == "S" and units["Von_forward"] == "V"
    assert units["absI_max"] == "A" and units["elapsed_s"] == "s"
    assert oect.read(out, "transient_tau").attrs["units"]["tau_on_mean"] == "s"


def test_read_of_one_file_has_its_metadata(outputs):
    out, summaries = outputs
    first = summaries["v2_mixed"].experiments[0]
    df = oect.read(first.output)
    assert len(df) == first.rows
    assert df.attrs["config_name"] == "v2_mixed"
    assert df.attrs["chip_id"] == "#20250101001"
    assert df.attrs["source_file"] == str(first.input)
    assert df.attrs["device_id"] == df["device_id"].iloc[0]


def test_read_refuses_to_mix_configs(outputs):
    out, _ = outputs
    with pytest.raises(ValueError, match="several configs.*transient_tau.*v2_transfer_basic"):
        oect.read(out)
    with pytest.raises(ValueError, match="no outputs of config 'nope'"):
        oect.read(out, config="nope")


def test_read_polars(outputs):
    pl = pytest.importorskip("polars", reason="needs polars (pip install oect[polars])")
    out, _ = outputs
    df = oect.read_polars(out, "v2_quick_analysis")
    assert isinstance(df, pl.DataFrame)
    assert df.columns[:2] == ["chip_id", "device_id"]
    assert df.height == len(oect.read(out, "v2_quick_analysis"))


def test_both_modes_and_worker_counts_give_the_same_table(data, tmp_path):
    tables = []
    for mode, workers in [("step", 1), ("step", 2), ("experiment", 1)]:
        out = tmp_path / f"{mode}{workers}"
        summary = oect.run(data, "v2_mixed", out, mode=mode, workers=workers, progress=False)
        assert summary.mode == mode and summary.workers == workers
        assert [o.status for o in summary.experiments] == ["written", "written"]
        tables.append(oect.read(out))
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t, tables[0])


def test_a_second_run_skips_and_force_recomputes(data, tmp_path):
    first = oect.run(data, "v2_quick_analysis", tmp_path, progress=False)
    again = oect.run(data, "v2_quick_analysis", tmp_path, progress=False)
    assert [o.status for o in again.experiments] == ["skipped", "skipped"]
    assert again.outputs == first.outputs
    forced = oect.run(data, "v2_quick_analysis", tmp_path, force=True, progress=False)
    assert [o.status for o in forced.experiments] == ["written", "written"]


def test_progress_events_reach_a_callback(data, tmp_path):
    events = []
    oect.run(data, "v2_quick_analysis", tmp_path, progress=events.append)
    # `steps` events (steps computed so far, of those known) come between the others.
    steps = [e for e in events if e["event"] == "steps"]
    assert steps and all(0 <= e["done"] <= e["total"] for e in steps), steps
    assert steps[-1]["done"] == steps[-1]["total"]
    events = [e for e in events if e["event"] != "steps"]
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "experiment", "experiment", "finish"]
    assert events[0]["experiments"] == 2
    assert [e["done"] for e in events[1:3]] == [1, 2]
    assert {e["status"] for e in events[1:3]} == {"written"}
    assert events[-1]["done"] == events[-1]["total"] == 2


@pytest.mark.parametrize("tqdm", ["tqdm", "no tqdm"])
def test_progress_bar_is_drawn_on_stderr(data, tmp_path, capfd, monkeypatch, tqdm):
    if tqdm == "tqdm":
        pytest.importorskip("tqdm", reason="needs tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    oect.run(data, "v2_quick_analysis", tmp_path, progress=True)
    err = capfd.readouterr().err
    assert "2/2" in err and "experiment" in err, err


def test_an_inline_config(data, tmp_path):
    config = {
        "features": [
            {
                "name": "gm",
                "extractor": "transfer.gm_max",
                "input": "transfer",
                "params": {"direction": "forward"},
            },
            {"name": "gm_double", "func": "lambda g: 2 * g", "input": "gm"},
        ]
    }
    summary = oect.run(data, config, tmp_path, progress=False)
    assert summary.ok
    df = oect.read(tmp_path)
    assert df.attrs["config_name"].startswith("inline_")
    assert np.allclose(df["gm_double"], 2 * df["gm"])


def test_a_bad_config_is_an_error_naming_it(data, tmp_path):
    with pytest.raises(oect.OectError, match="no_such_config") as e:
        oect.run(data, "no_such_config", tmp_path, progress=False)
    assert e.value.returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  - name: x\n    extractor: transfer.nope\n    input: transfer\n")
    with pytest.raises(oect.OectError, match="transfer.nope"):
        oect.run(data, bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_broken_file_fails_alone(data, tmp_path):
    batch = tmp_path / "batch"
    batch.mkdir()
    for f in Path(data).glob("*.h5"):
        (batch / f.name).symlink_to(f)
    (batch / "broken.h5").write_bytes(b"not an HDF5 file")
    summary = oect.run(batch, "v2_quick_analysis", tmp_path / "out", progress=False)
    assert summary.exit_code == 1 and not summary.ok
    assert len(summary.written) == 2
    [failed] = summary.failed
    assert failed.input.name == "broken.h5" and "not a readable HDF5 file" in failed.reason


def test_generate_returns_the_files(tmp_path):
    files = oect.generate(tmp_path, experiments=2, steps=3, transfer_only=True, chip="#C9")
    assert len(files) == 2 and all(f.suffix == ".h5" and f.is_file() for f in files)
    assert all(f.name.startswith("#C9-") for f in files)


def test_the_child_gets_this_interpreter_as_oect_python(tmp_path):
    """OECT_PYTHON (the interpreter of Python plugins) is this venv's python unless set."""
    fake = tmp_path / "fake-oect"
    fake.write_text('#!/bin/sh\necho "py $OECT_PYTHON"\n')
    fake.chmod(0o755)
    code = "import oect, json; print(json.dumps(oect.configs()))"
    env = dict(os.environ, OECT_BIN=str(fake))
    env.pop("OECT_PYTHON", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout) == {"py": sys.executable}, out.stderr
    env["OECT_PYTHON"] = "/opt/other/python3"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout) == {"py": "/opt/other/python3"}, out.stderr
