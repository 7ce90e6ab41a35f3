//! The extractors against transfer curves whose answer is known analytically.

use oect_example as _; // links the plugin's extractor registrations
use oect_plugin_api::testkit::{self, Step};
use serde_json::{json, Value};

/// The extractor `name` with `params` on one sweep, through its registration.
fn extract(name: &str, params: Value, vg: &[f64], id: &[f64]) -> Result<f64, String> {
    let extractor = testkit::create(name, &params)?;
    let value = extractor
        .run(&Step::transfer(vg, id))
        .map_err(|f| f.message.into_string())?;
    assert!(value.shape.is_empty(), "a scalar feature");
    Ok(value.data[0])
}

/// Vg −0.6 → 0.6 → −0.6 V in 10 mV steps; `current(vg)` gives Id.
fn sweep(current: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<f64>) {
    let vg: Vec<f64> = (0..=240)
        .map(|i| 0.6 - (0.01 * f64::from(i) - 1.2).abs())
        .collect();
    let id = vg.iter().map(|&v| current(v)).collect();
    (vg, id)
}

/// A transistor whose current turns on as a logistic function of width `w` (V) around
/// 0.1 V, over a 10 pA leakage floor.
fn sigmoid(w: f64, sign: f64) -> impl Fn(f64) -> f64 {
    move |vg| 1e-11 + 1e-3 / (1.0 + (-sign * (vg - 0.1) / w).exp())
}

/// Below threshold Id ∝ exp(Vg / w), i.e. one decade per w·ln 10 volts: the swing
/// of a logistic of width w is w·ln(10)·1000 mV/dec at its steepest.
#[test]
fn swing_of_a_sigmoid_is_its_width_times_ln10() {
    for w in [0.03, 0.05, 0.08] {
        let expected = w * std::f64::consts::LN_10 * 1000.0;
        let (vg, id) = sweep(sigmoid(w, 1.0));
        let got = extract("example.subthreshold_swing", json!({}), &vg, &id).unwrap();
        assert!(
            (got - expected).abs() < 0.03 * expected,
            "w = {w}: {got} mV/dec, expected {expected}"
        );
    }
}

#[test]
fn samples_in_the_noise_are_left_out() {
    // ±1 nA of noise: near its zero crossings log10|Id| jumps by decades per sample,
    // and up to ~100 nA it still bends the slope by more than a few %.
    let noisy = |vg: f64| sigmoid(0.05, 1.0)(vg) + 1e-9 * (vg * 2000.0).sin();
    let (vg, id) = sweep(noisy);
    let expected = 0.05 * std::f64::consts::LN_10 * 1000.0;
    let params = json!({"noise_floor": 1e-7});
    let got = extract("example.subthreshold_swing", params, &vg, &id).unwrap();
    assert!((got - expected).abs() < 0.03 * expected, "{got}");
}

#[test]
fn p_type_swing_needs_device_type_p() {
    let (vg, id) = sweep(sigmoid(0.05, -1.0));
    let expected = 0.05 * std::f64::consts::LN_10 * 1000.0;
    let params = json!({"device_type": "P", "window_points": 7});
    let got = extract("example.subthreshold_swing", params, &vg, &id).unwrap();
    assert!((got - expected).abs() < 0.03 * expected, "{got}");

    let e = extract("example.subthreshold_swing", json!({}), &vg, &id).unwrap_err();
    assert!(e.contains("growing with rising Vg"), "{e}");
}

#[test]
fn swing_uses_only_the_forward_half() {
    // A reverse half twice as steep as the forward one must not change the result.
    let (vg, mut id) = sweep(sigmoid(0.05, 1.0));
    let steep = sigmoid(0.025, 1.0);
    for i in 121..vg.len() {
        id[i] = steep(vg[i]);
    }
    let got = extract("example.subthreshold_swing", json!({}), &vg, &id).unwrap();
    assert!((got - 115.1).abs() < 3.0, "{got}");
}

#[test]
fn swing_rejects_a_window_below_two_naming_the_key() {
    let e = testkit::create("example.subthreshold_swing", &json!({"window_points": 1}))
        .err()
        .unwrap();
    assert_eq!(e, "parameter 'window_points': must be ≥ 2, got 1");
}

#[test]
fn on_off_ratio_is_max_over_floored_min() {
    let vg = [-0.6, 0.0, 0.6, 0.0, -0.6];
    let ratio = |id: &[f64], params| extract("example.on_off_ratio", params, &vg, id).unwrap();
    assert_eq!(ratio(&[1e-9, 1e-6, 1e-3, 1e-6, 1e-9], json!({})), 1e6);
    // Sign does not matter, NaN is ignored, and a zero reading is floored.
    assert_eq!(
        ratio(&[-2e-3, f64::NAN, -1e-8, -1e-4, -1e-5], json!({})),
        2e5
    );
    assert_eq!(ratio(&[0.0, 1e-6, 1e-3, 1e-6, 0.0], json!({})), 1e9);
    assert_eq!(
        ratio(&[0.0, 1e-6, 1e-3, 1e-6, 0.0], json!({"min_current": 1e-9})),
        1e6
    );
    let e = extract("example.on_off_ratio", json!({}), &vg, &[f64::NAN; 5]).unwrap_err();
    assert!(e.contains("no finite Id"), "{e}");
}
