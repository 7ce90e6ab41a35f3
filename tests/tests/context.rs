//! What an extractor learns about its step from the file: the recorded instrument
//! settings, the step's time and loop iteration, and the experiment's device metadata,
//! through the context fixture plugin, on generated files and on the lab-layout files
//! written by the predecessor's generator (`host/tests/data`).

use std::path::{Path, PathBuf};

use oect_e2e::{attrs, float_column, generate, library, parquet_files, run_config, scratch, show};

const CONFIG: &str = "features:
  - {name: tr, extractor: fixture.transfer_settings, input: transfer}
  - {name: ts, extractor: fixture.transient_settings, input: transient}
  - {name: timing, extractor: fixture.transfer_timing, input: transfer}
  - {name: width, extractor: fixture.attribute, input: transfer, params: {name: channel_width_um}}
  - {name: ohms, extractor: fixture.attribute, input: transfer}
";

/// Runs [`CONFIG`] with the context fixture over `input` in both modes (the tables must
/// be identical) and returns the output file.
fn run_context_config(dir: &Path, input: &Path) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let fixture = library("context_fixture");
    std::fs::copy(&fixture, plugins.join(fixture.file_name().unwrap())).unwrap();
    let config = dir.join("context.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut tables = Vec::new();
    for mode in ["step", "experiment"] {
        let out = dir.join(format!("out-{mode}"));
        let o = run_config(
            input,
            config.to_str().unwrap(),
            &out,
            &[
                "--plugin-dir",
                plugins.to_str().unwrap(),
                "--mode",
                mode,
                "--json",
            ],
        );
        // Steps without a recorded setting have no result, which is not a failure.
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let files = parquet_files(&out);
        assert_eq!(files.len(), 1);
        tables.push(oect_e2e::read_table(&files[0]));
    }
    assert_eq!(tables[0], tables[1]);
    parquet_files(&dir.join("out-step")).remove(0)
}

fn column(file: &Path, name: &str) -> Vec<f64> {
    float_column(file, name)
}

/// Checks the recorded settings every generated-layout file shares: 0.1 V drain, a
/// −0.6 → 0.6 V sweep in 10 mV steps, pulses between −0.3 and 0.6 V every 0.25 s.
fn assert_settings(file: &Path, n_transfer: usize, n_transient: usize) {
    for (k, want) in [0.1, -0.6, 0.6, 0.01].into_iter().enumerate() {
        let values = column(file, &format!("tr_{k}"));
        assert_eq!(values.len(), n_transfer.max(n_transient));
        for v in &values[..n_transfer] {
            assert!((v - want).abs() < 1e-12, "tr_{k}: {values:?}");
        }
    }
    for (k, want) in [0.1, -0.3, 0.6, 0.25].into_iter().enumerate() {
        let values = column(file, &format!("ts_{k}"));
        for v in &values[..n_transient] {
            assert!((v - want).abs() < 1e-12, "ts_{k}: {values:?}");
        }
        // rows past the last transient step (the final transfer) are NaN
        assert!(
            values[n_transient..].iter().all(|v| v.is_nan()),
            "ts_{k}: {values:?}"
        );
    }
}

/// Loop iterations 1, 2, … and increasing start times; the final transfer after the loop
/// has no iteration, so no result.
fn assert_timing(file: &Path, loop_steps: usize) {
    let iterations = column(file, "timing_0");
    let starts = column(file, "timing_1");
    let expected: Vec<f64> = (1..=loop_steps).map(|k| k as f64).collect();
    assert_eq!(&iterations[..loop_steps], &expected[..]);
    assert!(iterations[loop_steps].is_nan() && starts[loop_steps].is_nan());
    // 2025-08-15 (the generators' test date) on the instrument's clock
    assert!(
        starts[..loop_steps]
            .iter()
            .all(|t| (1.755e9..1.756e9).contains(t)),
        "{starts:?}"
    );
    assert!(
        starts[..loop_steps].windows(2).all(|w| w[0] < w[1]),
        "{starts:?}"
    );
    let a = attrs(file);
    assert_eq!(a["feature_errors"]["timing"], 0);
    assert_eq!(a["feature_no_fit"]["timing"], 1);
    assert_eq!(a["feature_failures"]["timing"]["no_result"], 1);
}

#[test]
fn extractors_read_the_recorded_settings_of_generated_files() {
    let dir = scratch("context-generated");
    let data = dir.join("data");
    let files = generate(
        &data,
        &[
            "--steps",
            "3",
            "--ragged",
            "--final-transfer",
            "--seed",
            "5",
        ],
    );
    assert_eq!(files.len(), 1);
    // Device metadata the instrument may record (here added to the file): channel width.
    let file = hdf5::File::open_rw(&files[0]).unwrap();
    file.new_attr::<f64>()
        .create("channel_width_um")
        .unwrap()
        .write_scalar(&4000.0)
        .unwrap();
    drop(file);

    let out = run_context_config(&dir, &data);
    assert_settings(&out, 4, 3);
    assert_timing(&out, 3);
    assert!(column(&out, "width").iter().all(|w| *w == 4000.0));
    assert!(column(&out, "ohms").iter().all(|w| *w == 100.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn extractors_read_the_recorded_settings_of_lab_layout_files() {
    let dir = scratch("context-lab");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../host/tests/data/#SYN0001-1-synthetic-test_20250815134211_1e4d4a3e.h5");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(&fixture, data.join(fixture.file_name().unwrap())).unwrap();

    let out = run_context_config(&dir, &data);
    assert_settings(&out, 4, 3);
    assert_timing(&out, 3);
    // The lab's files record no channel width: no result, and no failure.
    assert!(column(&out, "width").iter().all(|w| w.is_nan()));
    assert_eq!(attrs(&out)["feature_no_fit"]["width"], 4);
    assert!(column(&out, "ohms").iter().all(|w| *w == 100.0));
    std::fs::remove_dir_all(&dir).unwrap();
}
