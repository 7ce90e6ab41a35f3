"""The predecessor's batch_extract_features_v2 over oect."""

from pathlib import Path

import pytest

import oect
from oect.compat import Experiment, batch_extract_features_v2


@pytest.mark.parametrize("mode", ["step", "experiment"])
def test_every_experiment_is_successful_and_a_rerun_skips_them(data, tmp_path, mode):
    files = sorted(str(f) for f in Path(data).glob("*.h5"))
    result = oect.batch_extract_features_v2(
        files, "v2_transfer_basic", output_dir=tmp_path, n_workers=2, execution_mode=mode
    )
    assert result["successful"] == files
    assert result["failed"] == [] and result["skipped"] == []
    assert sorted(result["timings"]) == files
    assert all(ms > 0 for ms in result["timings"].values())
    assert result["total_time_ms"] > 0 and result["total_tasks"] > 0
    assert sorted(result["outputs"]) == files
    assert all(tmp_path in Path(p).parents for p in result["outputs"].values())
    df = oect.read(tmp_path, "v2_transfer_basic")
    assert len(df) == 2 * 13

    again = batch_extract_features_v2(files, "v2_transfer_basic", output_dir=tmp_path)
    assert again["skipped"] == files and again["successful"] == []
    forced = batch_extract_features_v2(
        files, "v2_transfer_basic", output_dir=tmp_path, force_recompute=True
    )
    assert forced["successful"] == files


def test_experiment_objects_are_known_by_their_id(data, tmp_path):
    files = sorted(Path(data).glob("*.h5"))
    exps = [
        Experiment(id=10 + k, file_path=str(f), chip_id="c", device_id=str(k))
        for k, f in enumerate(files)
    ]
    result = batch_extract_features_v2(exps, "v2_quick_analysis", output_dir=tmp_path)
    assert result["successful"] == [10, 11]


def test_a_broken_file_is_failed_with_its_reason(data, tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\0" * 64)
    good = sorted(str(f) for f in Path(data).glob("*.h5"))
    result = batch_extract_features_v2(
        good + [str(broken)], "v2_quick_analysis", output_dir=tmp_path / "out"
    )
    assert result["successful"] == good
    [(exp_id, error)] = result["failed"]
    assert exp_id == str(broken) and "not a readable HDF5 file" in error


def test_save_format_none_keeps_no_files(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = sorted(str(f) for f in Path(data).glob("*.h5"))
    result = batch_extract_features_v2(files, "v2_quick_analysis", save_format="none")
    assert result["successful"] == files and result["outputs"] == {}
    assert list(tmp_path.iterdir()) == []


def test_the_default_output_folder_is_the_predecessors(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = sorted(str(f) for f in Path(data).glob("*.h5"))
    batch_extract_features_v2(files, "v2_quick_analysis")
    assert len(list((tmp_path / "data" / "features_v2").rglob("*.parquet"))) == 2


def test_bad_arguments_are_refused_as_before(data, tmp_path):
    with pytest.raises(ValueError, match="unknown execution_mode: 'fast'"):
        batch_extract_features_v2([], "v2_quick_analysis", execution_mode="fast")
    with pytest.raises(ValueError, match="unknown save_format"):
        batch_extract_features_v2([], "v2_quick_analysis", save_format="csv")
    with pytest.raises(TypeError, match="file_path"):
        batch_extract_features_v2([object()], "v2_quick_analysis")
