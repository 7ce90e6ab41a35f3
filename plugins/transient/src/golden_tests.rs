//! Golden-vector tests against the Python predecessor
//! (`shared/golden/transfer_transient/ts_*.json`, tolerances from spec §5).
//!
//! Every transient case and every result of `transient.cycles`,
//! `transient.peak_current` and `transient.decay_time` is checked; multi-step
//! cases run each step through the single-step functions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::cycles::{cycles, peak_current, CycleMethod, CyclesParams, Prominence};
use crate::decay::{decay_time, DecayMethod};
use crate::peaks::find_peaks;
use crate::stats::percentile_linear;
use crate::{choice, Solver};

/// `OECT_SHARED_DIR`, else the first ancestor of this crate holding `shared/golden`; the
/// crate's other unit tests use it too.
pub(crate) fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OECT_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|a| a.join("shared/golden").is_dir())
        .map(|a| a.join("shared"))
        .unwrap_or_else(|| {
            panic!(
                "golden data not found: set OECT_SHARED_DIR or place `shared/golden` in an \
                 ancestor of {}",
                env!("CARGO_MANIFEST_DIR")
            )
        })
}

struct Case {
    name: String,
    json: Value,
}

impl Case {
    fn steps(&self) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.json["input"]["steps"]
            .as_array()
            .expect("input.steps")
            .iter()
            .map(|s| (floats(&s["continuous_time"]), floats(&s["drain_current"])))
            .collect()
    }

    fn results<'a>(&'a self, extractor: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.json["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter(move |r| r["extractor"] == extractor)
    }

    fn step_internals(&self, step: usize) -> &Value {
        &self.json["internals"]["per_step"][step]
    }
}

/// All transient golden cases listed in `index.json`, parsed once per test run.
fn transient_cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        // Exact golden comparisons need correctly rounded float parsing.
        assert_eq!(
            serde_json::from_str::<f64>("9.99996336759068e-5").unwrap(),
            9.99996336759068e-5,
            "serde_json must be built with the `float_roundtrip` feature"
        );
        let dir = shared_dir().join("golden/transfer_transient");
        let index: Value = read_json(&dir.join("index.json"));
        let cases: Vec<Case> = index["cases"]
            .as_array()
            .expect("index.cases")
            .iter()
            .filter(|c| c["kind"] == "transient")
            .map(|c| {
                let file = c["file"].as_str().expect("case file");
                Case {
                    name: file.trim_end_matches(".json").to_string(),
                    json: read_json(&dir.join(file)),
                }
            })
            .collect();
        assert_eq!(cases.len(), 24, "expected the 24 transient golden cases");
        cases
    })
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// Golden number convention: null = NaN, "inf"/"-inf" strings.
fn num(v: &Value) -> f64 {
    match v {
        Value::Null => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        _ => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

fn flags(r: &Value, key: &str, steps: usize) -> Vec<bool> {
    match r[key].as_array() {
        Some(a) => a.iter().map(|b| b.as_bool().unwrap_or(false)).collect(),
        None => vec![false; steps],
    }
}

fn same_bits(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Distance in f32 units in the last place (both values are f32-representable).
fn f32_ulps(a: f64, b: f64) -> u32 {
    let key = |v: f64| {
        let bits = (v as f32).to_bits() as i64;
        if bits < 0x8000_0000 {
            bits
        } else {
            0x8000_0000 - bits
        }
    };
    (key(a) - key(b)).unsigned_abs() as u32
}

fn cycles_params(p: &Value) -> Result<CyclesParams, String> {
    let d = CyclesParams::default();
    let prominence = match &p["prominence"] {
        Value::Null => Prominence::Adaptive,
        Value::Array(a) => {
            let side = |v: &Value| (!v.is_null()).then(|| num(v));
            Prominence::Range(side(&a[0]), side(&a[1]))
        }
        v => Prominence::Min(num(v)),
    };
    Ok(CyclesParams {
        n_cycles: p["n_cycles"].as_u64().map_or(d.n_cycles, |n| n as usize),
        method: p["method"].as_str().map_or(Ok(d.method), choice)?,
        min_distance: p.get("min_distance").map_or(d.min_distance, num),
        prominence,
    })
}

/// Fails listing every collected mismatch, so one run shows them all.
fn report(failures: &[String], checked: usize) {
    assert!(
        failures.is_empty(),
        "{} of {checked} golden results differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_cycles() {
    let (mut failures, mut checked) = (Vec::new(), 0);
    for case in transient_cases() {
        let steps = case.steps();
        for r in case.results("transient.cycles") {
            checked += 1;
            let what = format!("{} cycles {}", case.name, r["params"]);
            let ours: Result<Vec<Vec<f64>>, String> = cycles_params(&r["params"])
                .and_then(|p| steps.iter().map(|(_, i)| cycles(i, &p)).collect());
            if !r["error"].is_null() {
                if ours.is_ok() {
                    failures.push(format!("{what}: expected an error, got Ok"));
                }
                continue;
            }
            let ours = match ours {
                Ok(rows) => rows,
                Err(e) => {
                    failures.push(format!("{what}: unexpected error {e}"));
                    continue;
                }
            };
            let tie = r["tie_sensitive"].as_bool().unwrap_or(false);
            for (s, (row, gold)) in ours.iter().zip(r["output"].as_array().unwrap()).enumerate() {
                let gold = floats(gold);
                // The predecessor's batch form NaN-pads to n_cycles; ours is the per-step
                // form (the cycles found), so the golden row is ours plus NaN padding.
                if row.len() > gold.len() || gold[row.len()..].iter().any(|v| !v.is_nan()) {
                    failures.push(format!(
                        "{what} step {s}: {} values vs golden {} (with NaN padding)",
                        row.len(),
                        gold.len()
                    ));
                    continue;
                }
                for (k, (&a, &b)) in row.iter().zip(&gold).enumerate() {
                    // Tied |I| may keep either sign; the magnitude is tie-proof.
                    let ok = if tie {
                        same_bits(a.abs(), b.abs())
                    } else {
                        same_bits(a, b)
                    };
                    if !ok {
                        failures.push(format!("{what} step {s} [{k}]: {a:e} vs golden {b:e}"));
                        break;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 24 * 23, "every cycles result visited");
    report(&failures, checked);
}

#[test]
fn golden_unknown_methods_are_rejected() {
    for case in transient_cases() {
        for r in case.results("transient.cycles") {
            if r["params"]["method"] == "no_such_method" {
                assert!(!r["error"].is_null(), "{}", case.name);
                assert!(choice::<CycleMethod>("no_such_method").is_err());
            }
        }
        for r in case.results("transient.decay_time") {
            if r["params"]["method"] == "no_such_method" {
                // The predecessor gives NaN per step; the glue maps the parse error to that.
                assert!(
                    floats(&r["output"]).iter().all(|v| v.is_nan()),
                    "{}",
                    case.name
                );
                assert!(choice::<DecayMethod>("no_such_method").is_err());
            }
        }
    }
}

#[test]
fn golden_peak_current() {
    let (mut failures, mut checked) = (Vec::new(), 0);
    for case in transient_cases() {
        let steps = case.steps();
        for r in case.results("transient.peak_current") {
            checked += 1;
            let use_abs = r["params"]["use_abs"].as_bool().unwrap_or(true);
            let ours: Result<Vec<f64>, String> = steps
                .iter()
                .map(|(_, i)| peak_current(i, use_abs))
                .collect();
            let what = format!("{} peak_current use_abs={use_abs}", case.name);
            match (ours, r["error"].is_null()) {
                (Ok(_), false) => failures.push(format!("{what}: expected an error")),
                (Err(e), true) => failures.push(format!("{what}: unexpected error {e}")),
                (Err(_), false) => {}
                (Ok(v), true) => {
                    let gold = floats(&r["output"]);
                    if v.len() != gold.len() || v.iter().zip(&gold).any(|(&a, &b)| !same_bits(a, b))
                    {
                        failures.push(format!("{what}: {v:?} vs golden {gold:?}"));
                    }
                }
            }
        }
    }
    assert_eq!(checked, 24 * 2);
    report(&failures, checked);
}

/// Runs every decay_time result of `method` through `check(ours, golden,
/// ill_conditioned, window span)`, returning the failure messages.
fn decay_results(
    method: &str,
    solver: Solver,
    check: impl Fn(f64, f64, bool, f64) -> Result<(), String>,
) -> (Vec<String>, usize) {
    let (mut failures, mut checked) = (Vec::new(), 0);
    for case in transient_cases() {
        let steps = case.steps();
        for r in case.results("transient.decay_time") {
            let p = &r["params"];
            if p["method"].as_str().unwrap_or("exponential") != method {
                continue;
            }
            let fit_range = match p["fit_range"].as_array() {
                Some(a) => (num(&a[0]), num(&a[1])),
                None => (0.1, 0.9),
            };
            let m: DecayMethod = choice(method).expect("known method");
            let gold = floats(&r["output"]);
            let ill = flags(r, "ill_conditioned", steps.len());
            for (s, (t, i)) in steps.iter().enumerate() {
                checked += 1;
                let ours = decay_time(t, i, fit_range, m, solver);
                let span = t.last().zip(t.first()).map_or(0.0, |(a, b)| (a - b).abs());
                if let Err(e) = check(ours, gold[s], ill[s], span) {
                    failures.push(format!("{} {p} step {s}: {e}", case.name));
                }
            }
        }
    }
    (failures, checked)
}

/// Ill-conditioned results: TRF stopped somewhere on a flat valley towards
/// τ → ∞. Only the failure mode can be compared: a finite positive τ far
/// longer than the step itself.
fn no_decay_mode(v: f64, span: f64) -> bool {
    v.is_finite() && v > span
}

#[test]
fn golden_decay_linear() {
    let (failures, checked) = decay_results("linear", Solver::Robust, |ours, gold, ill, span| {
        if ill {
            // ln|I| (nearly) constant: the slope is rounding noise (τ ≈ ±1e14).
            let huge = |v: f64| !v.is_nan() && v.abs() > 1e6 * span;
            return if huge(gold) && huge(ours) {
                Ok(())
            } else {
                Err(format!("expected huge |τ|, got {ours:e} (golden {gold:e})"))
            };
        }
        if same_bits(ours, gold) || (ours.is_finite() && f32_ulps(ours, gold) <= 1) {
            Ok(())
        } else {
            Err(format!("{ours:e} vs golden {gold:e}"))
        }
    });
    // Two linear parameter sets per case, 26 steps over the 24 cases.
    assert_eq!(checked, 2 * 26);
    report(&failures, checked);
}

#[test]
fn golden_decay_exponential_compat() {
    let (failures, checked) =
        decay_results("exponential", Solver::Compat, |ours, gold, ill, span| {
            if ill {
                return if no_decay_mode(gold, span) && no_decay_mode(ours, span) {
                    Ok(())
                } else {
                    Err(format!(
                        "expected a finite τ > {span}, got {ours:e} (golden {gold:e})"
                    ))
                };
            }
            let ok = same_bits(ours, gold) || ((ours - gold) / gold).abs() <= 2e-6;
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{ours:e} vs golden {gold:e}, rel {:e}",
                    (ours - gold) / gold
                ))
            }
        });
    // Four exponential parameter sets per case, 26 steps over the 24 cases.
    assert_eq!(checked, 4 * 26);
    report(&failures, checked);
}

/// The robust solver returns NaN exactly where the predecessor has no window
/// to fit, and recovers the true τ of the noise-free synthetic decays.
#[test]
fn golden_decay_robust() {
    let exact_tau = [
        ("ts_decay_clean", 0.05),
        ("ts_decay_negative", 0.05),
        ("ts_decay_picoamp", 0.05),
        // Time runs backwards, so |I| grows along t - t[0]: τ < 0.
        ("ts_decay_time_reversed", -0.05),
        ("ts_decay_3pts", 0.001 / std::f64::consts::LN_2),
        ("ts_decay_4pts", 0.001 / std::f64::consts::LN_2),
    ];
    let mut checked = 0;
    for case in transient_cases() {
        let steps = case.steps();
        for r in case.results("transient.decay_time") {
            let p = &r["params"];
            if p["method"].as_str().unwrap_or("exponential") != "exponential" {
                continue;
            }
            let fit_range = match p["fit_range"].as_array() {
                Some(a) => (num(&a[0]), num(&a[1])),
                None => (0.1, 0.9),
            };
            let gold = floats(&r["output"]);
            for (s, (t, i)) in steps.iter().enumerate() {
                let ours = decay_time(t, i, fit_range, DecayMethod::Exponential, Solver::Robust);
                let path = r["solver_path"][s].as_str().unwrap_or("");
                let what = format!("{} {p} step {s}: robust {ours:e}", case.name);
                if path == "too_few_points" {
                    assert!(ours.is_nan(), "{what}");
                    continue;
                }
                checked += 1;
                assert!(!gold[s].is_nan(), "{what}");
                if case.name == "ts_decay_const_time" {
                    assert!(ours.is_nan(), "{what}: all times equal");
                } else if let Some(&(_, tau)) = exact_tau.iter().find(|(n, _)| *n == case.name) {
                    assert!(((ours - tau) / tau).abs() < 1e-9, "{what}, true {tau}");
                } else {
                    // Every other window has samples at distinct times.
                    assert!(!ours.is_nan(), "{what}");
                }
            }
        }
    }
    assert!(checked > 60, "robust fits checked: {checked}");
}

/// Residual sum of squares of `A·exp(-x/τ)` on a window, with the best `A`.
fn offset_free_rss(tw: &[f64], yw: &[f64], tau: f64) -> f64 {
    let e: Vec<f64> = tw.iter().map(|&t| (-(t - tw[0]) / tau).exp()).collect();
    let a =
        yw.iter().zip(&e).map(|(y, e)| y * e).sum::<f64>() / e.iter().map(|e| e * e).sum::<f64>();
    yw.iter().zip(&e).map(|(y, e)| (a * e - y).powi(2)).sum()
}

/// The golden internals carry a tight-tolerance scipy optimum of the same
/// model on the default and full windows. Robust must land on it, or (where
/// scipy stalled, as at pA scale) on a fit with a clearly smaller residual.
#[test]
fn golden_decay_robust_matches_tight_optimum() {
    let (mut matched, mut better) = (0, 0);
    for case in transient_cases() {
        let steps = case.steps();
        for (s, (t, i)) in steps.iter().enumerate() {
            for (key, range) in [
                ("decay_window_default", (0.1, 0.9)),
                ("decay_window_full", (0.0, 1.0)),
            ] {
                let w = &case.step_internals(s)[key];
                let Some(reference) = w["tight_reference"]["x"].as_array() else {
                    continue;
                };
                let tau_ref = num(&reference[1]);
                let span = t.last().zip(t.first()).map_or(0.0, |(a, b)| (a - b).abs());
                // Optima far beyond the window are the ill-posed τ → ∞ valley.
                if !(tau_ref > 0.0 && tau_ref < 10.0 * span) {
                    continue;
                }
                let ours = decay_time(t, i, range, DecayMethod::Exponential, Solver::Robust);
                if ((ours - tau_ref) / tau_ref).abs() < 1e-5 {
                    matched += 1;
                    continue;
                }
                let (start, end) = (
                    w["start_idx"].as_u64().unwrap() as usize,
                    w["end_idx"].as_u64().unwrap() as usize,
                );
                let (tw, yw): (Vec<f64>, Vec<f64>) = t[start..end]
                    .iter()
                    .zip(&i[start..end])
                    .map(|(&t, &i)| (t, i.abs()))
                    .filter(|&(t, y)| y > 0.0 && y.is_finite() && t.is_finite())
                    .unzip();
                let (rss_ours, rss_ref) = (
                    offset_free_rss(&tw, &yw, ours),
                    offset_free_rss(&tw, &yw, tau_ref),
                );
                assert!(
                    rss_ours < 0.5 * rss_ref,
                    "{} step {s} {key}: robust {ours} (rss {rss_ours:e}) vs tight optimum {tau_ref} (rss {rss_ref:e})",
                    case.name
                );
                better += 1;
            }
        }
    }
    assert!(matched >= 20, "only {matched} tight optima matched");
    assert!(
        better >= 1,
        "the pA case, where scipy stalls, must be beaten"
    );
}

/// The internals record numpy's P75 of |I| and scipy's surviving peaks for
/// the default parameters: check the building blocks directly.
#[test]
fn golden_percentile_and_find_peaks_internals() {
    let mut peaks_checked = 0;
    for case in transient_cases() {
        for (s, (_, i)) in case.steps().iter().enumerate() {
            let pd = &case.step_internals(s)["peak_detection_default"];
            let abs: Vec<f64> = i.iter().map(|v| v.abs()).collect();
            let p75 = percentile_linear(&abs, 75.0);
            if abs.is_empty() {
                assert!(p75.is_err(), "{}", case.name);
                continue;
            }
            let gold = num(&pd["abs_percentile75"]);
            let p75 = p75.unwrap();
            assert!(
                same_bits(p75, gold),
                "{} P75 {p75:e} vs {gold:e}",
                case.name
            );
            let n_max = find_peaks(&abs, None, (None, None)).unwrap().len();
            assert_eq!(
                n_max as u64,
                pd["n_local_maxima"].as_u64().unwrap(),
                "{}",
                case.name
            );
            let peaks = find_peaks(&abs, Some(10.0), (Some(p75 * 0.1), None)).unwrap();
            let gold_peaks: Vec<usize> = pd["peaks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(peaks, gold_peaks, "{} step {s}", case.name);
            peaks_checked += gold_peaks.len();
        }
    }
    assert!(peaks_checked > 300, "peaks compared: {peaks_checked}");
}
