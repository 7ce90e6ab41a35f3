//! What a researcher finds in an output folder: one file per experiment and config, never
//! overwritten by another experiment or config; honest counts and exit codes on every
//! run; problems found before any work; `status` and `collect` by metadata.

use std::path::{Path, PathBuf};

use oect_e2e::{attrs, generate, library, oect, parquet_files, run_config, scratch, show};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Two tests of one device (day 1 and day 2): same chip and device, different test ids.
fn two_days(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let data = dir.join("data");
    let mut files = generate(&data, &["--steps", "3", "--transfer-only", "--seed", "1"]);
    files.extend(generate(
        &data,
        &["--steps", "4", "--transfer-only", "--seed", "2"],
    ));
    assert_eq!(files.len(), 2);
    (data, files)
}

#[test]
fn two_tests_of_one_device_keep_their_own_outputs_across_runs() {
    let dir = scratch("two-days");
    let (data, files) = two_days(&dir);
    let out = dir.join("out");
    // Each day in its own run into the same folder: neither replaces the other.
    for f in &files {
        let o = run_config(f, "v2_quick_analysis", &out, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    }
    let outputs = parquet_files(&out);
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    let mut tests: Vec<String> = outputs
        .iter()
        .map(|f| attrs(f)["test_id"].as_str().unwrap().to_string())
        .collect();
    tests.sort();
    tests.dedup();
    assert_eq!(tests.len(), 2);
    for f in &outputs {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('#'), "{name} starts a shell comment");
        assert!(name.starts_with("SYN0001-1-test_"), "{name}");
        assert_eq!(attrs(f)["chip_id"], "#SYN0001", "the exact chip id is kept");
        assert_eq!(f.parent().unwrap(), out.join("v2_quick_analysis"));
    }
    // Both in one run, then again: up to date.
    let o = run_config(&data, "v2_quick_analysis", &out, &[]);
    assert!(
        stdout(&o).contains("0 written, 2 skipped (up to date)"),
        "{}",
        show(&o)
    );
    assert_eq!(parquet_files(&out), outputs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_configs_with_the_same_name_never_share_or_delete_outputs() {
    let dir = scratch("same-stem");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (ca, cb) = (a.join("basic.yaml"), b.join("basic.yaml"));
    std::fs::write(
        &ca,
        "features:\n  - {name: gm, extractor: transfer.gm_max, input: transfer}\n",
    )
    .unwrap();
    std::fs::write(
        &cb,
        "features:\n  - {name: imax, extractor: transfer.absI_max, input: transfer}\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = run_config(&data, ca.to_str().unwrap(), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let first = parquet_files(&out);
    let o = run_config(&data, cb.to_str().unwrap(), &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let (ia, ib) = (ca.canonicalize().unwrap(), cb.canonicalize().unwrap());
    assert!(
        stderr.contains(&ia.display().to_string()) && stderr.contains(&ib.display().to_string()),
        "{stderr}"
    );
    assert_eq!(parquet_files(&out), first, "nothing deleted or added");
    // Another output folder works; and the same config from another working path is the
    // same config.
    let o = run_config(&data, cb.to_str().unwrap(), &dir.join("out-b"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let relative = Path::new("../a/basic.yaml");
    let o = std::process::Command::new(oect_e2e::oect_bin())
        .current_dir(dir.join("b"))
        .args([
            "run",
            data.to_str().unwrap(),
            "-c",
            relative.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .env_remove("OECT_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("1 skipped (up to date)"),
        "{}",
        show(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn clashing_column_names_are_config_errors_naming_both_features() {
    let dir = scratch("clash");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    for (config, needles) in [
        (
            "features:\n  - {name: step_index, extractor: transfer.gm_max, input: transfer}\n",
            vec!["feature 'step_index'"],
        ),
        (
            "features:\n  - {name: gm, extractor: transfer.gm_max, input: transfer, params: {direction: both}}\n  - {name: gm_0, extractor: transfer.absI_max, input: transfer}\n",
            vec!["column 'gm_0' of feature 'gm'", "feature 'gm_0'"],
        ),
    ] {
        let path = dir.join("clash.yaml");
        std::fs::write(&path, config).unwrap();
        let out = dir.join("out");
        let o = run_config(&data, path.to_str().unwrap(), &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        for n in needles {
            assert!(stderr.contains(n), "{n}: {stderr}");
        }
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_output_folder_that_cannot_be_created_stops_the_run_before_any_work() {
    let dir = scratch("fail-fast");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let out = blocker.join("out");
    let o = run_config(&data, "v2_quick_analysis", &out, &["--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("cannot create output folder") && stderr.contains("a-file"),
        "{stderr}"
    );
    assert!(o.stdout.is_empty(), "no summary: nothing ran");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A folder with the faulty fixture plugin and a config whose feature `boom` fails at
/// step 2 and whose derived feature `twice` depends on it.
fn failing_setup(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let fixture = library("faulty_fixture");
    std::fs::copy(&fixture, plugins.join(fixture.file_name().unwrap())).unwrap();
    generate(&data, &["--steps", "5", "--transfer-only"]);
    let config = dir.join("fails.yaml");
    std::fs::write(
        &config,
        "features:\n  - {name: boom, extractor: fixture.panic_at, input: transfer, params: {at: 2}}\n  - {name: twice, func: 'lambda b: 2 * b', input: boom}\n  - {name: z, func: 'lambda b: b - b.mean()', input: boom}\n",
    )
    .unwrap();
    (dir, data, plugins, config)
}

#[test]
fn failed_steps_are_counted_with_derived_features_on_every_run_and_in_status() {
    let (dir, data, plugins, config) = failing_setup("honest-counts");
    let out = dir.join("out");
    let args = ["--plugin-dir", plugins.to_str().unwrap()];
    let o = run_config(&data, config.to_str().unwrap(), &out, &args);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    // boom, twice and z fail at step 2; z's other steps are NaN (numpy's mean of a NaN).
    // The failed steps are counted by kind: boom panicked, its derived features lack it.
    assert!(
        stdout(&o).contains(
            "3 failed steps (2 input failed, 1 panic), 0 steps without a fit, 4 values with NaN/inf"
        ),
        "{}",
        show(&o)
    );
    let a = attrs(&parquet_files(&out)[0]);
    assert_eq!(a["feature_errors"]["twice"], 1);
    assert_eq!(
        a["feature_failures"]["boom"],
        serde_json::json!({"panic": 1})
    );
    assert_eq!(
        a["feature_failures"]["z"],
        serde_json::json!({"input_failed": 1})
    );
    let boom = a["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["feature"] == "boom");
    assert_eq!(boom.unwrap()["kind"], "panic", "{a}");
    assert_eq!(a["feature_nonfinite"]["z"], 4);
    // The rerun finds the file up to date and still reports its failed steps, exit 1.
    let mut json = args.to_vec();
    json.push("--json");
    let o = run_config(&data, config.to_str().unwrap(), &out, &json);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &summary["experiments"][0];
    assert_eq!(e["status"], "skipped", "{summary}");
    assert_eq!(e["step_errors"], 3, "{summary}");
    assert_eq!(
        e["failed_by_kind"],
        serde_json::json!({"input_failed": 2, "panic": 1}),
        "{summary}"
    );
    // status says so too, and exits 1.
    let o = oect(&[
        "status",
        data.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stdout(&o).contains("1 experiment: 0 done, 1 done with failed steps, 0 missing, 0 failed"),
        "{}",
        show(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_fit_steps_are_counted_apart_and_do_not_fail_the_run() {
    let dir = scratch("no-fit");
    let data = dir.join("data");
    generate(
        &data,
        &["--steps", "3", "--transient-only", "--cycles", "20"],
    );
    let config = dir.join("decay.yaml");
    // One exponential over a whole pulse train describes nothing: no fit on every step.
    std::fs::write(
        &config,
        "features:\n  - {name: decay, extractor: transient.decay_time, input: transient}\n  - {name: peak, extractor: transient.peak_current, input: transient}\n  - {name: per_peak, func: 'lambda d, p: d / p', input: [decay, peak]}\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = run_config(&data, config.to_str().unwrap(), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        stdout(&o).contains("0 failed steps, 6 steps without a fit"),
        "{}",
        show(&o)
    );
    assert!(stdout(&o).contains("no fit: "), "{}", show(&o));
    let a = attrs(&parquet_files(&out)[0]);
    assert_eq!(a["feature_no_fit"]["decay"], 3);
    assert_eq!(a["feature_no_fit"]["per_peak"], 3);
    assert_eq!(a["feature_errors"]["decay"], 0);
    assert!(a["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("no fit: "));
    // The kind, not the message, makes it a no-fit step, for derived features too.
    for e in a["errors"].as_array().unwrap() {
        assert_eq!(e["kind"], "no_result", "{e}");
    }
    assert_eq!(
        a["feature_failures"]["per_peak"],
        serde_json::json!({"no_result": 3})
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_rebuilt_plugin_with_the_same_version_is_recomputed() {
    let dir = scratch("plugin-hash");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lib = library("oect_transfer");
    let copy = plugins.join(lib.file_name().unwrap());
    std::fs::copy(&lib, &copy).unwrap();
    let config = dir.join("gm.yaml");
    std::fs::write(
        &config,
        "features:\n  - {name: gm, extractor: transfer.gm_max, input: transfer}\n",
    )
    .unwrap();
    let out = dir.join("out");
    let args = ["--plugin-dir", plugins.to_str().unwrap()];
    let run = |expect: &str| {
        let o = run_config(&data, config.to_str().unwrap(), &out, &args);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        assert!(stdout(&o).contains(expect), "{expect}: {}", show(&o));
        parquet_files(&out)
    };
    let first = run("1 written");
    let before = attrs(&first[0]);
    let sha = before["plugins"][0]["library_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sha.len(), 64);
    assert_eq!(
        run("1 skipped (up to date)"),
        first,
        "nothing changed: skipped"
    );
    // A different library with the same plugin name and version (what a rebuild with a
    // changed body gives): bytes appended to an ELF file change its content, not its code.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.extend_from_slice(b"rebuilt");
    std::fs::write(&copy, bytes).unwrap();
    let second = run("1 written");
    assert_eq!(second.len(), 1, "the older output is replaced");
    let a = attrs(&second[0]);
    assert_ne!(a["plugins"][0]["library_sha256"], sha.as_str());
    assert_eq!(a["plugins"][0]["version"], before["plugins"][0]["version"]);
    assert_eq!(a["oect_version"], env!("CARGO_PKG_VERSION"));
    run("1 skipped (up to date)");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn collect_selects_by_metadata_reports_what_it_skips_and_keeps_provenance() {
    let dir = scratch("collect");
    let (data, _) = two_days(&dir);
    let out = dir.join("out");
    for c in ["v2_quick_analysis", "v2_transfer_basic"] {
        let o = run_config(&data, c, &out, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    }
    // A config named like a shipped one's substring, and a hidden file, in the folder.
    let my = dir.join("my-v2_quick_analysis.yaml");
    std::fs::write(
        &my,
        "features:\n  - {name: gm, extractor: transfer.gm_max, input: transfer}\n",
    )
    .unwrap();
    let o = run_config(&data, my.to_str().unwrap(), &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let folder = out.join("v2_quick_analysis");
    let one = parquet_files(&folder)[0].clone();
    std::fs::copy(&one, folder.join(".hidden.parquet")).unwrap();
    // An output of another config moved into this folder is not merged.
    let foreign = parquet_files(&out.join("v2_transfer_basic"))[0].clone();
    std::fs::copy(&foreign, folder.join("moved-here.parquet")).unwrap();
    let merged = dir.join("merged.parquet");
    let o = oect(&[
        "collect",
        out.to_str().unwrap(),
        "-c",
        "v2_quick_analysis",
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let text = stdout(&o);
    assert!(text.contains("2 experiments, 7 rows"), "{text}");
    assert!(text.contains(".hidden.parquet: hidden file"), "{text}");
    assert!(
        text.contains(
            "moved-here.parquet: an output of another config (builtin:v2_transfer_basic)"
        ),
        "{text}"
    );
    let a = attrs(&merged);
    let experiments = a["experiments"].as_array().unwrap();
    assert_eq!(experiments.len(), 2);
    for e in experiments {
        assert_eq!(e["chip_id"], "#SYN0001");
        assert!(e["source_file"].as_str().unwrap().ends_with(".h5"));
        assert_eq!(e["config_identity"], "builtin:v2_quick_analysis");
    }
    assert_ne!(experiments[0]["test_id"], experiments[1]["test_id"]);
    assert_eq!(a["units"]["gm_max_forward"], "S");
    std::fs::remove_dir_all(&dir).unwrap();
}
