//! pandas, pyarrow, DuckDB and polars read one config's outputs of a folder holding two
//! configs and two tests of one device as one table (`tests/python/read_outputs.py`).
//!
//! Needs a Python with those four packages: `.ci/run` makes a venv and runs this test
//! with `OECT_TEST_PYTHON` set to it (`cargo test -p oect-e2e --test python -- --ignored`).
//! Without the variable the test fails instead of passing silently.

use std::path::Path;
use std::process::Command;

use oect_e2e::{generate, run_config, scratch, show};

#[test]
#[ignore = "needs OECT_TEST_PYTHON: a python with pandas, pyarrow, duckdb and polars (.ci/run sets it)"]
fn dataframe_libraries_read_one_configs_outputs_as_one_table() {
    let python = std::env::var("OECT_TEST_PYTHON")
        .expect("OECT_TEST_PYTHON must name a python with pandas, pyarrow, duckdb and polars");
    let dir = scratch("python");
    let data = dir.join("data");
    // Day 1 and day 2 of one device: same chip and device, two test ids; ragged, with a
    // final transfer, 20 cycles per step.
    for (seed, steps) in [("1", "3"), ("2", "4")] {
        generate(
            &data,
            &[
                "--steps",
                steps,
                "--ragged",
                "--final-transfer",
                "--cycles",
                "20",
                "--seed",
                seed,
            ],
        );
    }
    let out = dir.join("out");
    for config in ["v2_transfer_basic", "transient_tau"] {
        let o = run_config(&data, config, &out, &[]);
        assert_eq!(o.status.code(), Some(0), "{config}: {}", show(&o));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_outputs.py");
    for (config, rows, column, unit) in [
        ("v2_transfer_basic", "9", "gm_max_forward", "S"),
        ("transient_tau", "7", "tau_on_mean", "s"),
    ] {
        let o = Command::new(&python)
            .arg(&script)
            .args([out.to_str().unwrap(), config, rows, "2", column, unit])
            .output()
            .expect("run python");
        assert!(o.status.success(), "{config}: {}", show(&o));
        eprint!("{}", String::from_utf8_lossy(&o.stdout));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
