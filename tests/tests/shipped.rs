//! Every shipped config on data shaped like the lab's files (a loop of transfer + transient
//! steps and a final transfer, ragged sweeps and cycle counts, 100 cycles at 1 kHz, noise),
//! each column checked against the generator's ground truth or a per-step reference
//! computed here, independently of the expression evaluator.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use oect_e2e::{attrs, float_column, generate, oect, parquet_files, run_config, scratch, show};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

fn batch(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    reader.map(|b| b.unwrap()).next().unwrap()
}

/// A nested list column of depth 1 (`None`: null row).
fn lists(path: &Path, name: &str) -> Vec<Option<Vec<f64>>> {
    let b = batch(path);
    let col = b.column_by_name(name).unwrap().as_list::<i32>();
    (0..col.len())
        .map(|r| {
            (!col.is_null(r)).then(|| col.value(r).as_primitive::<Float64Type>().values().to_vec())
        })
        .collect()
}

/// A nested list column of `[a, b]` pairs per row.
fn pairs(path: &Path, name: &str) -> Vec<Option<Vec<[f64; 2]>>> {
    let b = batch(path);
    let col = b.column_by_name(name).unwrap().as_list::<i32>();
    (0..col.len())
        .map(|r| {
            (!col.is_null(r)).then(|| {
                let cycles = col.value(r);
                let cycles = cycles.as_list::<i32>();
                (0..cycles.len())
                    .map(|c| {
                        let v = cycles.value(c);
                        let v = v.as_primitive::<Float64Type>().values();
                        [v[0], v[1]]
                    })
                    .collect()
            })
        })
        .collect()
}

fn ints(path: &Path, name: &str) -> Vec<Option<i64>> {
    let b = batch(path);
    let col = b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
    (0..col.len())
        .map(|r| (!col.is_null(r)).then(|| col.value(r)))
        .collect()
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// numpy's population std (ddof = 0).
fn std(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}

fn nanmean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.filter(|x| !x.is_nan()).collect();
    mean(&v)
}

fn nanstd(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.filter(|x| !x.is_nan()).collect();
    std(&v)
}

fn all_close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(*g, *w, rel) || (g.is_nan() && w.is_nan()),
            "{what} row {k}: {g} vs reference {w}\n{got:?}"
        );
    }
}

fn finite(what: &str, v: &[f64]) {
    assert!(
        v.iter().all(|x| x.is_finite()),
        "{what}: not all finite: {v:?}"
    );
}

struct Data {
    dir: PathBuf,
    data: PathBuf,
    truth: Value,
}

/// One real-shaped experiment: 12 loop iterations of transfer + transient and a final
/// transfer; ragged sweeps and cycle counts; 100 cycles at 1 kHz; default noise.
fn real_shaped(name: &str) -> Data {
    let dir = scratch(name);
    let data = dir.join("data");
    let h5 = generate(
        &data,
        &[
            "--ragged",
            "--final-transfer",
            "--steps",
            "12",
            "--seed",
            "21",
        ],
    );
    let truth = std::fs::read(format!("{}.truth.json", h5[0].display())).unwrap();
    let truth: Value = serde_json::from_slice(&truth).unwrap();
    assert_eq!(truth["transfer"].as_array().unwrap().len(), 13);
    let cycles: Vec<u64> = truth["transient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["n_cycles"].as_u64().unwrap())
        .collect();
    assert!(
        cycles.iter().any(|&c| c != cycles[0]),
        "ragged cycle counts: {cycles:?}"
    );
    Data { dir, data, truth }
}

fn run(d: &Data, config: &str) -> PathBuf {
    let out = d.dir.join(format!("out-{config}"));
    let o = run_config(&d.data, config, &out, &[]);
    assert_eq!(o.status.code(), Some(0), "{config}: {}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("0 failed steps, 0 steps without a fit, 0 values with NaN/inf"),
        "{config}: {stdout}"
    );
    let files = parquet_files(&out);
    assert_eq!(files.len(), 1, "{config}");
    files[0].clone()
}

fn truth_of(d: &Data, kind: &str, key: &str) -> Vec<f64> {
    d.truth[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[key].as_f64().unwrap())
        .collect()
}

/// Transfer columns against the ground truth of every sweep.
fn check_transfer(d: &Data, f: &Path, rows: &[usize]) {
    let pick = |v: Vec<f64>| -> Vec<f64> { rows.iter().map(|&r| v[r]).collect() };
    let gm_truth = truth_of(d, "transfer", "gm_max_forward_S");
    let vth = truth_of(d, "transfer", "vth_forward_V");
    let ion = truth_of(d, "transfer", "ion_A");
    let gm = pick(float_column(f, "gm_max_forward"));
    let von = pick(float_column(f, "Von_forward"));
    let imax = pick(float_column(f, "absI_max"));
    for (k, &g) in gm.iter().enumerate() {
        assert!(
            close(g, gm_truth[k], 0.1),
            "gm_max_forward step {k}: {g} vs {}",
            gm_truth[k]
        );
        // The turn-on (steepest log-slope) lies in the sweep and below the threshold. (In
        // the noise floor it can be any noisy sample down to the sweep's start: the
        // predecessor's definition, kept exactly.)
        assert!(
            von[k] >= -0.6 - 1e-6 && von[k] < vth[k],
            "Von_forward step {k}: {} (vth {})",
            von[k],
            vth[k]
        );
        assert!(
            close(imax[k], ion[k], 0.05),
            "absI_max step {k}: {} vs ion {}",
            imax[k],
            ion[k]
        );
    }
}

#[test]
fn transfer_configs_match_the_ground_truth_and_per_step_references() {
    let d = real_shaped("shipped-transfer");
    let all: Vec<usize> = (0..13).collect();
    for config in [
        "v2_transfer_basic",
        "v2_quick_analysis",
        "v2_transfer_basic_derived",
        "v2_ml_ready",
    ] {
        let f = run(&d, config);
        check_transfer(&d, &f, &all);
        assert_eq!(attrs(&f)["units"]["gm_max_forward"], "S", "{config}");
    }
    let gm_truth = truth_of(&d, "transfer", "gm_max_forward_S");
    let vth = truth_of(&d, "transfer", "vth_forward_V");
    let f = run(&d, "v2_ml_ready");
    let fwd = float_column(&f, "gm_max_forward");
    let rev = float_column(&f, "gm_max_reverse");
    for (k, &r) in rev.iter().enumerate() {
        assert!(close(r, gm_truth[k], 0.1), "gm_max_reverse step {k}: {r}");
    }
    let ratio: Vec<f64> = fwd.iter().zip(&rev).map(|(a, b)| a / b).collect();
    all_close("gm_ratio", &float_column(&f, "gm_ratio"), &ratio, 1e-12);
    let von_f = float_column(&f, "Von_forward");
    let von_r = float_column(&f, "Von_reverse");
    let diff: Vec<f64> = von_f.iter().zip(&von_r).map(|(a, b)| a - b).collect();
    all_close("Von_diff", &float_column(&f, "Von_diff"), &diff, 1e-12);
    let (m, s) = (mean(&fwd), std(&fwd));
    let z: Vec<f64> = fwd.iter().map(|g| (g - m) / s).collect();
    all_close(
        "gm_max_forward_norm",
        &float_column(&f, "gm_max_forward_norm"),
        &z,
        1e-9,
    );
    // The coordinates of gm_max: at the threshold, at half the on-current.
    let vg = float_column(&f, "gm_max_forward_Vg");
    let id = float_column(&f, "gm_max_forward_Id");
    let ion = truth_of(&d, "transfer", "ion_A");
    let ioff = truth_of(&d, "transfer", "ioff_A");
    let width = truth_of(&d, "transfer", "width_V");
    for k in 0..13 {
        assert!(
            (vg[k] - vth[k]).abs() < 0.03,
            "gm_max_forward_Vg step {k}: {} vs {}",
            vg[k],
            vth[k]
        );
        // The current there is the model's at that gate voltage (about half the
        // on-current: the steepest point of the sigmoid).
        let model = ioff[k] + ion[k] * 0.5 * (1.0 + (0.5 * (vg[k] - vth[k]) / width[k]).tanh());
        assert!(
            close(id[k], model, 0.05),
            "gm_max_forward_Id step {k}: {} vs model {model}",
            id[k]
        );
    }
    assert_eq!(float_column(&f, "Von_forward_Vg"), von_f);
    finite("Von_forward_Id", &float_column(&f, "Von_forward_Id"));
    let f = run(&d, "v2_transfer_basic_derived");
    let z2 = float_column(&f, "gm_max_forward_normalized");
    all_close("gm_max_forward_normalized", &z2, &z, 1e-9);
    std::fs::remove_dir_all(&d.dir).unwrap();
}

#[test]
fn transient_tau_matches_the_ground_truth_and_the_per_step_numpy_reference() {
    let d = real_shaped("shipped-tau");
    let f = run(&d, "transient_tau");
    let tau = pairs(&f, "tau_cycles");
    let cycles = truth_of(&d, "transient", "n_cycles");
    let (on_truth, off_truth) = (
        truth_of(&d, "transient", "tau_on_s"),
        truth_of(&d, "transient", "tau_off_s"),
    );
    assert_eq!(tau.len(), 12);
    let a = attrs(&f);
    assert_eq!(
        a["features"][0]["components"],
        serde_json::json!(["tau_on", "tau_off"])
    );
    let mut evolution = Vec::new();
    let (mut on_mean, mut off_mean, mut on_std, mut off_std, mut ratio) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, step) in tau.iter().enumerate() {
        let step = step.as_ref().expect("every step fitted");
        // AutoTau counts the whole periods after the first edge: K periods give K - 1.
        assert_eq!(step.len() as f64, cycles[k] - 1.0, "step {k}");
        for (c, [on, off]) in step.iter().enumerate() {
            assert!(
                close(*on, on_truth[k], 0.03),
                "step {k} cycle {c}: tau_on {on} vs {}",
                on_truth[k]
            );
            assert!(
                close(*off, off_truth[k], 0.03),
                "step {k} cycle {c}: tau_off {off}"
            );
        }
        // [np.nanmean(t[:10, 0]) ... np.nanmean(t[-10:, 0]) ...] on the step's own cycles.
        let on: Vec<f64> = step.iter().map(|p| p[0]).collect();
        let off: Vec<f64> = step.iter().map(|p| p[1]).collect();
        let first = nanmean(on[..10].iter().copied());
        let last = nanmean(on[on.len() - 10..].iter().copied());
        evolution.push((first - last) / (first + 1e-10));
        on_mean.push(nanmean(on.iter().copied()));
        off_mean.push(nanmean(off.iter().copied()));
        on_std.push(nanstd(on.iter().copied()));
        off_std.push(nanstd(off.iter().copied()));
        ratio.push(on_mean[k] / (off_mean[k] + 1e-10));
    }
    all_close(
        "tau_on_evolution",
        &float_column(&f, "tau_on_evolution"),
        &evolution,
        1e-9,
    );
    all_close(
        "tau_on_mean",
        &float_column(&f, "tau_on_mean"),
        &on_mean,
        1e-12,
    );
    all_close(
        "tau_off_mean",
        &float_column(&f, "tau_off_mean"),
        &off_mean,
        1e-12,
    );
    all_close("tau_on_std", &float_column(&f, "tau_on_std"), &on_std, 1e-9);
    all_close(
        "tau_off_std",
        &float_column(&f, "tau_off_std"),
        &off_std,
        1e-9,
    );
    all_close(
        "tau_on_off_ratio",
        &float_column(&f, "tau_on_off_ratio"),
        &ratio,
        1e-12,
    );
    // Real cycles only: with constant tau per step, the first and last ten agree closely.
    assert!(evolution.iter().all(|e| e.abs() < 0.02), "{evolution:?}");
    std::fs::remove_dir_all(&d.dir).unwrap();
}

#[test]
fn transient_cycles_statistics_are_per_step_over_the_cycles_found() {
    let d = real_shaped("shipped-cycles");
    let f = run(&d, "v2_transient_cycles");
    let rows = lists(&f, "transient_cycles");
    let top = truth_of(&d, "transient", "i_gate_top_A");
    let cycles = truth_of(&d, "transient", "n_cycles");
    let (mut m, mut s, mut rate) = (Vec::new(), Vec::new(), Vec::new());
    for (k, c) in rows.iter().enumerate() {
        let c = c.as_ref().expect("a value per step");
        // One peak per on-phase; the last one ends at the step's last sample (no peak).
        // (n_cycles: 100 caps the longer steps.)
        assert!(
            c.len() as f64 >= (cycles[k] - 1.0).min(100.0)
                && c.len() as f64 <= cycles[k].min(100.0),
            "step {k}: {} peaks for {} cycles",
            c.len(),
            cycles[k]
        );
        for v in c {
            assert!(
                close(*v, top[k], 0.03),
                "step {k}: peak {v} vs on-level {}",
                top[k]
            );
        }
        m.push(mean(c));
        s.push(std(c));
        rate.push((c[0] - c[c.len() - 1]) / c[0]);
    }
    all_close("cycle_mean", &float_column(&f, "cycle_mean"), &m, 1e-12);
    all_close("cycle_std", &float_column(&f, "cycle_std"), &s, 1e-6);
    all_close(
        "cycle_decay_rate",
        &float_column(&f, "cycle_decay_rate"),
        &rate,
        1e-9,
    );
    std::fs::remove_dir_all(&d.dir).unwrap();
}

#[test]
fn mixed_config_pairs_steps_by_loop_iteration_and_reports_physical_decay_times() {
    let d = real_shaped("shipped-mixed");
    let f = run(&d, "v2_mixed");
    // 12 iterations pair a transfer and a transient step; the final transfer is alone.
    assert_eq!(
        ints(&f, "transfer_step"),
        (0..13).map(Some).collect::<Vec<_>>()
    );
    let mut transient: Vec<Option<i64>> = (0..12).map(Some).collect();
    transient.push(None);
    assert_eq!(ints(&f, "transient_step"), transient);
    let mut iterations: Vec<Option<i64>> = (1..13).map(Some).collect();
    iterations.push(None);
    assert_eq!(ints(&f, "loop_iteration"), iterations);
    let loop_rows: Vec<usize> = (0..12).collect();
    check_transfer(&d, &f, &(0..13).collect::<Vec<_>>());

    let top = truth_of(&d, "transient", "i_gate_top_A");
    let off_truth = truth_of(&d, "transient", "tau_off_s");
    let peak = float_column(&f, "transient_peak");
    let decay = float_column(&f, "transient_decay");
    let gm = float_column(&f, "gm_max_forward");
    let ratio = float_column(&f, "gm_to_peak_ratio");
    for &k in &loop_rows {
        assert!(
            close(peak[k], top[k].abs(), 0.03),
            "transient_peak step {k}"
        );
        // The decay time constant after turn-off: positive, the generator's tau_off.
        assert!(
            close(decay[k], off_truth[k], 0.03),
            "transient_decay step {k}: {} vs {}",
            decay[k],
            off_truth[k]
        );
        assert!(
            close(ratio[k], gm[k] / peak[k], 1e-12),
            "gm_to_peak_ratio row {k}"
        );
    }
    assert!(peak[12].is_nan() && decay[12].is_nan() && ratio[12].is_nan());
    // The z-score is over the transient steps (the final row's gap is not part of it).
    let d12: Vec<f64> = decay[..12].to_vec();
    let (m, s) = (mean(&d12), std(&d12));
    let z: Vec<f64> = d12.iter().map(|x| (x - m) / s).collect();
    all_close(
        "decay_normalized",
        &float_column(&f, "decay_normalized")[..12],
        &z,
        1e-9,
    );
    let a = attrs(&f);
    assert_eq!(a["alignment"], "loop_iteration");
    assert_eq!(a["units"]["transient_decay"], "s");
    assert_eq!(a["units"]["gm_to_peak_ratio"], "1/V");
    std::fs::remove_dir_all(&d.dir).unwrap();
}

#[test]
fn every_shipped_config_is_covered_here() {
    let listing = oect(&["configs", "list"]);
    let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let covered = [
        "v2_transfer_basic",
        "v2_transfer_basic_derived",
        "v2_quick_analysis",
        "v2_ml_ready",
        "v2_mixed",
        "v2_transient_cycles",
        "transient_tau",
    ];
    let mut names = names;
    names.sort();
    let mut covered: Vec<String> = covered.iter().map(|s| s.to_string()).collect();
    covered.sort();
    assert_eq!(
        names, covered,
        "a shipped config without a test on real-shaped data"
    );
}
