//! Transient features end to end: AutoTau against the generator's ground truth, and
//! every shipped config in both modes.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use oect_e2e::{
    float_column, generate, oect, parquet_files, read_table, run_config, scratch, show,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Per step, per cycle `[tau_on, tau_off]` from a nested list column.
fn tau_column(path: &Path, name: &str) -> Vec<Vec<[f64; 2]>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut steps = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name(name).unwrap().as_list::<i32>();
        for row in 0..col.len() {
            let cycles = col.value(row);
            let cycles = cycles.as_list::<i32>();
            steps.push(
                (0..cycles.len())
                    .map(|c| {
                        let pair = cycles.value(c);
                        let v = pair.as_primitive::<Float64Type>().values();
                        [v[0], v[1]]
                    })
                    .collect(),
            );
        }
    }
    steps
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A transient-only experiment and its ground truth.
fn generate_with_truth(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--transient-only"];
    all.extend_from_slice(args);
    let h5 = generate(dir, &all).remove(0);
    let truth = std::fs::read(format!("{}.truth.json", h5.display())).unwrap();
    serde_json::from_slice(&truth).unwrap()
}

#[test]
fn robust_autotau_recovers_the_generated_time_constants() {
    let dir = scratch("autotau-truth");
    let config = dir.join("tau.yaml");
    std::fs::write(
        &config,
        "features:\n  - {name: tau, extractor: transient.tau_on_off, input: transient}\n",
    )
    .unwrap();
    let cases = [
        ("N", "1e-6", "0", 0.01),
        ("N", "1e-3", "0", 0.01),
        ("P", "1e-6", "0", 0.01),
        ("P", "1e-3", "0", 0.01),
        ("N", "1e-6", "0.01", 0.03),
        ("N", "1e-3", "0.01", 0.03),
        ("P", "1e-6", "0.01", 0.03),
        ("P", "1e-3", "0.01", 0.03),
    ];
    for (k, (device, ion, noise, tolerance)) in cases.iter().enumerate() {
        let case = format!("{device} ion={ion} noise={noise}");
        let data = dir.join(format!("data{k}"));
        let truth = generate_with_truth(
            &data,
            &[
                "--steps",
                "3",
                "--cycles",
                "20",
                "--device-type",
                device,
                "--ion",
                ion,
                "--noise-abs",
                "0",
                "--noise-rel",
                noise,
                "--seed",
                "11",
            ],
        );
        let out = dir.join(format!("out{k}"));
        let o = run_config(&data, config.to_str().unwrap(), &out, &[]);
        assert!(o.status.success(), "{case}: {}", show(&o));
        let steps = tau_column(&parquet_files(&out)[0], "tau");
        let truth_steps = truth["transient"].as_array().unwrap();
        assert_eq!(steps.len(), truth_steps.len(), "{case}");
        for (s, (cycles, t)) in steps.iter().zip(truth_steps).enumerate() {
            // AutoTau's tau_on is the rising signal. A P-type device's current is
            // negative, so its turn-on (|Id| rising) is a falling signal: tau_off.
            let (on, off) = if *device == "N" { (0, 1) } else { (1, 0) };
            let got_on = median(cycles.iter().map(|c| c[on]).collect());
            let got_off = median(cycles.iter().map(|c| c[off]).collect());
            let want_on = t["tau_on_s"].as_f64().unwrap();
            let want_off = t["tau_off_s"].as_f64().unwrap();
            for (what, got, want) in [("tau_on", got_on, want_on), ("tau_off", got_off, want_off)] {
                let err = (got / want - 1.0).abs();
                assert!(
                    err < *tolerance,
                    "{case}, step {s}: {what} {got} vs truth {want} ({:.2} %)",
                    100.0 * err
                );
            }
            assert_eq!(cycles.len(), 19, "{case}: 20 periods give 19 whole cycles");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_shipped_config_runs_in_both_modes_with_identical_tables() {
    let dir = scratch("configs");
    let data = dir.join("data");
    generate(
        &data,
        &[
            "--experiments",
            "2",
            "--steps",
            "4",
            "--cycles",
            "12",
            "--seed",
            "5",
        ],
    );
    let listing = oect(&["configs", "list"]);
    let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    for name in &names {
        let mut tables = Vec::new();
        for mode in ["step", "experiment"] {
            let out = dir.join(format!("{name}-{mode}"));
            let o = run_config(&data, name, &out, &["--mode", mode, "-j", "2"]);
            assert!(o.status.success(), "{name} {mode}: {}", show(&o));
            let files = parquet_files(&out);
            assert_eq!(files.len(), 2, "{name} {mode}");
            tables.push(files.iter().map(|f| read_table(f)).collect::<Vec<_>>());
        }
        assert_eq!(
            tables[0], tables[1],
            "{name}: step and experiment mode differ"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One file with 3 transient steps and 4 transfer steps (a final sweep, like the lab's real
/// files), in `dir/data`.
fn final_transfer_data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    generate(
        &data,
        &["--steps", "3", "--cycles", "8", "--final-transfer"],
    );
    data
}

#[test]
fn transfer_and_transient_features_with_different_chunk_counts() {
    // 4 transfer and 3 transient steps: the two sources are cut into different numbers of
    // chunks, and a finished chunk of one must not be matched against the other's tasks.
    let dir = scratch("chunk-counts");
    let data = final_transfer_data(&dir);
    let config = dir.join("both.yaml");
    std::fs::write(
        &config,
        "version: v2\ndata_type: both\nfeatures:\n\
         - {name: absI_max, extractor: transfer.absI_max, input: transfer}\n\
         - {name: peak, extractor: transient.peak_current, input: transient}\n",
    )
    .unwrap();
    let mut tables = Vec::new();
    for (mode, jobs) in [("step", "1"), ("step", "2"), ("experiment", "1")] {
        let out = dir.join(format!("out-{mode}-{jobs}"));
        let o = run_config(
            &data,
            config.to_str().unwrap(),
            &out,
            &["--mode", mode, "-j", jobs],
        );
        assert!(o.status.success(), "{mode} -j{jobs}: {}", show(&o));
        let files = parquet_files(&out);
        assert_eq!(files.len(), 1);
        tables.push(read_table(&files[0]));
    }
    assert_eq!(tables[0], tables[1]);
    assert_eq!(tables[0], tables[2]);
    let peak = float_column(&parquet_files(&dir.join("out-step-1"))[0], "peak");
    assert_eq!(peak.len(), 4);
    assert!(
        peak[..3].iter().all(|v| v.is_finite()) && peak[3].is_nan(),
        "{peak:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cross_kind_expression_pairs_the_steps_of_each_loop_iteration() {
    let dir = scratch("mismatch");
    let data = final_transfer_data(&dir);
    let out = dir.join("out");
    let o = run_config(&data, "v2_mixed", &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // 4 transfer and 3 transient steps: the final transfer's row has no transient step.
    let files = parquet_files(&out);
    let ratio = float_column(&files[0], "gm_to_peak_ratio");
    let gm = float_column(&files[0], "gm_max_forward");
    let peak = float_column(&files[0], "transient_peak");
    assert_eq!(ratio.len(), 4);
    for k in 0..3 {
        assert_eq!(ratio[k], gm[k] / peak[k], "row {k}");
    }
    assert!(ratio[3].is_nan() && peak[3].is_nan() && gm[3].is_finite());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsafe_func_strings_are_refused_before_any_work() {
    let dir = scratch("unsafe-func");
    let data = dir.join("data");
    generate(&data, &["--steps", "2", "--transfer-only"]);
    for func in [
        "lambda x: __import__('os').system('touch pwned')",
        "lambda x: x.__class__",
        "lambda x: os.system(x)",
        "lambda x: np.foo(x)",
    ] {
        let config = dir.join("evil.yaml");
        std::fs::write(
            &config,
            format!(
                "features:\n  - {{name: g, extractor: transfer.gm_max, input: transfer}}\n  - {{name: evil, func: \"{func}\", input: g}}\n"
            ),
        )
        .unwrap();
        let out = dir.join("out");
        let o = run_config(&data, config.to_str().unwrap(), &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{func}: {}", show(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("feature 'evil'") && stderr.contains('^'),
            "{func}: {stderr}"
        );
        assert!(!out.exists(), "{func}: nothing may be written");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
