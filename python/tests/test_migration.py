"""The predecessor's migration guide (v1.0 -> v2.0, step-level parallel), "new code" user
snippet, run with only its import line changed (its comments left out)."""

import runpy
import textwrap
from pathlib import Path

import pytest

import oect
from oect.compat import UnifiedExperimentManager

NEW_CODE = textwrap.dedent(
    """
    from oect.compat import UnifiedExperimentManager

    manager = UnifiedExperimentManager('catalog_config.yaml')
    experiments = manager.search(chip_id="#20250804008")

    result = manager.batch_extract_features_v2(
        experiments=experiments,
        feature_config='v2_transfer_basic',
        execution_mode='step',
        n_workers=47
    )
    """
)

# The predecessor's catalog config layout (its defaults).
CATALOG = textwrap.dedent(
    """
    roots:
      raw_data: data/raw
      features: data/features
      features_v2: data/features_v2
    database:
      path: data/catalog.db
    discovery:
      recursive: true
    """
)


@pytest.fixture
def catalog(tmp_path):
    raw = tmp_path / "data" / "raw"
    # Three devices of the guide's chip, one device of another chip.
    oect.generate(
        raw / "a",
        experiments=3,
        steps=20,
        ragged=True,
        final_transfer=True,
        transfer_only=True,
        chip="#20250804008",
    )
    oect.generate(raw / "b", experiments=1, steps=5, transfer_only=True, chip="#20250804009")
    (tmp_path / "catalog_config.yaml").write_text(CATALOG)
    return tmp_path


def test_the_new_code_snippet_runs_unchanged(catalog, monkeypatch):
    monkeypatch.chdir(catalog)
    script = catalog / "user_code.py"
    script.write_text(NEW_CODE)
    user = runpy.run_path(str(script))
    result, experiments = user["result"], user["experiments"]
    assert sorted(e.device_id for e in experiments) == ["1", "2", "3"]
    assert {e.chip_id for e in experiments} == {"#20250804008"}
    assert result["successful"] == [e.id for e in experiments]
    assert result["failed"] == [] and result["skipped"] == []
    df = oect.read(catalog / "data" / "features_v2", "v2_transfer_basic")
    assert sorted(df["device_id"].unique()) == ["1", "2", "3"]
    assert len(df) == 3 * 21
    assert df["gm_max_forward"].gt(0).all()


def test_search_filters_by_the_files_attributes(catalog):
    manager = UnifiedExperimentManager(catalog / "catalog_config.yaml")
    every = manager.search()
    assert len(every) == 4 and [e.id for e in every] == [1, 2, 3, 4]
    [other] = manager.search(chip_id="#20250804009")
    assert other.device_id == "1" and other.transfer_steps == 5 and other.transient_steps == 0
    assert Path(other.file_path).is_file() and other.test_id.startswith("test_")
    assert [e.device_id for e in manager.search(chip_id="#20250804008", device_id=2)] == ["2"]
    assert len(manager.search(text_search="20250804")) == 4
    assert manager.search(chip_id="#nope") == []
    with pytest.raises(TypeError, match="unsupported search filters: colour"):
        manager.search(colour="red")


def test_an_unreadable_file_is_left_out_with_a_warning(catalog):
    (catalog / "data" / "raw" / "junk.h5").write_bytes(b"junk")
    manager = UnifiedExperimentManager(catalog / "catalog_config.yaml")
    with pytest.warns(UserWarning, match="junk.h5"):
        assert len(manager.search()) == 4


def test_a_missing_catalog_config_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="catalog config"):
        UnifiedExperimentManager(tmp_path / "catalog_config.yaml")
