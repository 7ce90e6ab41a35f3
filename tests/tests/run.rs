//! `oect run` end to end on generated experiment files.

use std::path::PathBuf;

use oect_e2e::{
    attrs, float_column, generate, library, oect, parquet_files, read_table, run_config, scratch,
    show,
};

#[test]
fn basic_config_writes_one_file_per_experiment_then_skips_then_forces() {
    let dir = scratch("basic");
    let data = dir.join("data");
    let out = dir.join("out");
    let files = generate(
        &data,
        &[
            "--experiments",
            "3",
            "--steps",
            "12",
            "--transfer-only",
            "--points",
            "182",
        ],
    );
    assert_eq!(files.len(), 3);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            data.to_str().unwrap(),
            "-c",
            "v2_transfer_basic",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = oect(&args);
        assert!(o.status.success(), "{}", show(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };

    let first = run(&[]);
    let written: Vec<&serde_json::Value> = first["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "written")
        .collect();
    assert_eq!(written.len(), 3, "{first}");
    let outputs = parquet_files(&out);
    assert_eq!(outputs.len(), 3);
    let (names, first_values) = read_table(&outputs[0]);
    assert_eq!(
        names,
        [
            "chip_id",
            "device_id",
            "test_id",
            "step_index",
            "loop_iteration",
            "start_time",
            "elapsed_s",
            "gm_max_forward",
            "gm_max_reverse",
            "Von_forward",
            "Von_reverse",
            "absI_max"
        ]
    );
    let gm = float_column(&outputs[0], "gm_max_forward");
    assert_eq!(gm.len(), 12);
    assert!(gm.iter().all(|g| g.is_finite() && *g > 0.0), "{gm:?}");
    let a = attrs(&outputs[0]);
    assert_eq!(a["config_name"], "v2_transfer_basic");
    assert_eq!(a["feature_errors"]["gm_max_forward"], 0);
    assert!(a["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "oect-transfer"));
    assert_eq!(outputs[0].parent().unwrap(), out.join("v2_transfer_basic"));
    assert!(outputs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("SYN0001-1-test_"));

    let second = run(&[]);
    assert!(
        second["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "skipped"),
        "{second}"
    );
    assert_eq!(
        parquet_files(&out),
        outputs,
        "skipping must not touch the files"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100)); // a new timestamp in the name
    let third = run(&["--force"]);
    assert!(
        third["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "written"),
        "{third}"
    );
    let replaced = parquet_files(&out);
    assert_eq!(
        replaced.len(),
        3,
        "no duplicates after --force: {replaced:?}"
    );
    assert_ne!(replaced, outputs);
    assert_eq!(read_table(&replaced[0]).1, first_values);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn modes_and_worker_counts_give_identical_values() {
    let dir = scratch("modes");
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            "2",
            "--steps",
            "700",
            "--transfer-only",
            "--ragged",
            "--points",
            "120",
        ],
    );
    let mut tables = Vec::new();
    for (mode, workers) in [
        ("step", "1"),
        ("step", "2"),
        ("experiment", "1"),
        ("experiment", "2"),
    ] {
        let out = dir.join(format!("out-{mode}-{workers}"));
        let o = run_config(
            &data,
            "v2_transfer_basic",
            &out,
            &["--mode", mode, "-j", workers, "--in-flight", "1"],
        );
        assert!(o.status.success(), "{}", show(&o));
        let files = parquet_files(&out);
        assert_eq!(files.len(), 2);
        tables.push(files.iter().map(|f| read_table(f)).collect::<Vec<_>>());
    }
    for t in &tables[1..] {
        assert_eq!(t, &tables[0]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scratch folder with the faulty fixture plugin in `plugins/`, six transfer steps in
/// `data/` and `config` in `config.yaml`: (folder, data, plugins, config file).
fn with_faulty_fixture(name: &str, config: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let fixture = library("faulty_fixture");
    std::fs::copy(&fixture, plugins.join(fixture.file_name().unwrap())).unwrap();
    generate(&data, &["--steps", "6", "--transfer-only"]);
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    (dir, data, plugins, path)
}

#[test]
fn a_panicking_extractor_costs_one_cell_not_the_run() {
    let (dir, data, plugins, config) = with_faulty_fixture(
        "panic",
        "features:\n  - {name: boom, extractor: fixture.panic_at, input: transfer, params: {at: 3}}\n  - {name: gm, extractor: transfer.gm_max, input: transfer}\n  - {name: boom2, extractor: fixture.double, input: boom}\n",
    );
    let out = dir.join("out");
    for mode in ["step", "experiment"] {
        let o = run_config(
            &data,
            config.to_str().unwrap(),
            &out,
            &[
                "--plugin-dir",
                plugins.to_str().unwrap(),
                "--mode",
                mode,
                "--force",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("1 written")
                && stdout.contains("2 failed steps (1 input failed, 1 panic)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("feature 'boom', step 3: panic: fixture panic at step 3"),
            "{stdout}"
        );
        let files = parquet_files(&out);
        assert_eq!(files.len(), 1);
        let boom = float_column(&files[0], "boom");
        assert!(boom[3].is_nan());
        assert!(boom
            .iter()
            .enumerate()
            .all(|(i, v)| i == 3 || v.is_finite()));
        let boom2 = float_column(&files[0], "boom2");
        assert!(boom2[3].is_nan());
        assert_eq!(boom2[0], 2.0 * boom[0]);
        assert!(float_column(&files[0], "gm").iter().all(|v| v.is_finite()));
        let a = attrs(&files[0]);
        assert_eq!(a["feature_errors"]["boom"], 1);
        assert_eq!(a["feature_errors"]["boom2"], 1);
        assert_eq!(a["feature_errors"]["gm"], 0);
        assert_eq!(a["feature_failures"]["boom"]["panic"], 1);
        assert_eq!(a["feature_failures"]["boom2"]["input_failed"], 1);
        assert_eq!(a["feature_failures"]["gm"], serde_json::json!({}));
        let first = &a["errors"][0];
        assert_eq!(
            (&first["feature"], &first["kind"]),
            (&"boom".into(), &"panic".into())
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_file_fails_alone() {
    let dir = scratch("badfile");
    let data = dir.join("data");
    generate(
        &data,
        &["--experiments", "2", "--steps", "4", "--transfer-only"],
    );
    std::fs::write(data.join("broken.h5"), b"this is not HDF5").unwrap();
    let out = dir.join("out");
    let o = run_config(&data, "v2_quick_analysis", &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("2 written") && stdout.contains("1 failed"),
        "{stdout}"
    );
    // The failure is named on stderr, the summary stays on stdout.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("FAILED ") && stderr.contains("broken.h5"),
        "{stderr}"
    );
    assert_eq!(parquet_files(&out).len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_errors_stop_before_any_work() {
    let dir = scratch("badconfig");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    let config = dir.join("typo.yaml");
    std::fs::write(
        &config,
        "features:\n  - {name: g, extractor: transfer.gm_max, input: transfer, params: {direction: sideways}}\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = run_config(&data, config.to_str().unwrap(), &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("feature 'g'") && stderr.contains("direction"),
        "{stderr}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hanging_step_is_abandoned_and_infinities_are_counted() {
    let (dir, data, plugins, config) = with_faulty_fixture(
        "timeout",
        "features:\n  - {name: sleepy, extractor: fixture.sleepy, input: transfer, params: {hang_at: 2, inf_at: 4}}\n  - {name: gm, extractor: transfer.gm_max, input: transfer}\n",
    );
    let out = dir.join("out");
    let start = std::time::Instant::now();
    let o = run_config(
        &data,
        config.to_str().unwrap(),
        &out,
        &[
            "--plugin-dir",
            plugins.to_str().unwrap(),
            "--step-timeout",
            "0.5",
        ],
    );
    assert!(
        start.elapsed().as_secs() < 25,
        "the hanging step was waited for"
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("1 failed steps (1 timeout), 0 steps without a fit, 1 values with NaN/inf"),
        "{stdout}"
    );
    assert!(
        stdout.contains("step 2") && stdout.contains("no answer within 0.5 s (--step-timeout)"),
        "{stdout}"
    );
    let files = parquet_files(&out);
    let sleepy = float_column(&files[0], "sleepy");
    assert!(sleepy[2].is_nan());
    assert_eq!(sleepy[4], f64::INFINITY);
    assert!(sleepy[5].is_finite());
    let a = attrs(&files[0]);
    assert_eq!(a["feature_errors"]["sleepy"], 1);
    assert_eq!(a["feature_failures"]["sleepy"]["timeout"], 1);
    assert_eq!(a["feature_nonfinite"]["sleepy"], 1);
    assert_eq!(a["feature_errors"]["gm"], 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_generates_runs_and_prints_its_table() {
    let dir = scratch("demo");
    let o = oect(&["demo", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("3 experiments: 3 written") && stdout.contains("gm_max_forward (S)"),
        "{stdout}"
    );
    for chip in ["#SYN0001-1", "#SYN0002-2", "#SYN0003-3"] {
        assert!(stdout.contains(&format!("{chip}          200")), "{stdout}");
    }
    let files = parquet_files(&dir.join("features"));
    assert_eq!(files.len(), 3);
    assert_eq!(float_column(&files[0], "absI_max").len(), 200);
    std::fs::remove_dir_all(&dir).unwrap();
}
