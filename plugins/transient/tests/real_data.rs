//! The one public real transient recording from the lab's instrument
//! (`shared/data/real/durian-leader_autotau/transient.csv`: 32 610 samples at 1 kHz,
//! 0.2 s period, off ≈ +2.4 µA, on ≈ −6.26 mA) through every transient extractor,
//! as one step.

use std::path::PathBuf;

use oect_plugin_api::testkit::{self, Step};
use oect_plugin_api::{FailureKind, FeatureValue};
use oect_transient as _; // links the plugin's extractor registrations

fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OECT_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("golden").is_dir())
        .expect("shared/ not found above the crate; set OECT_SHARED_DIR")
}

fn recording() -> (Vec<f64>, Vec<f64>) {
    let path = shared_dir().join("data/real/durian-leader_autotau/transient.csv");
    let text = std::fs::read_to_string(&path).expect("real transient CSV");
    let mut t = Vec::new();
    let mut i = Vec::new();
    for line in text.lines().skip(1) {
        let (a, b) = line.split_once(',').expect("Time,Id row");
        t.push(a.trim().parse::<f64>().unwrap());
        i.push(b.trim().parse::<f64>().unwrap());
    }
    (t, i)
}

fn run(extractor: &str, params: serde_json::Value) -> FeatureValue {
    let (t, i) = recording();
    // The instrument's settings for this file: 100 ms off + 100 ms on, 1 ms sampling.
    let step = Step::transient(&t, &i).with_sampling(0.2, 1000.0);
    let ex = testkit::create(extractor, &params).unwrap();
    ex.run(&step)
        .unwrap_or_else(|e| panic!("{extractor}: {}", e.message))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn the_real_recording_runs_through_every_transient_extractor() {
    let (t, i) = recording();
    assert_eq!(t.len(), 32_610);

    // Peak current: the on-state current, about 6.3 mA.
    let peak = run("transient.peak_current", serde_json::json!({})).data[0];
    assert!((6.0e-3..6.6e-3).contains(&peak), "peak {peak}");
    let min = i.iter().fold(f64::INFINITY, |m, v| m.min(*v));
    assert_eq!(
        peak,
        (min.abs() as f32) as f64,
        "the largest |I| is the on-current"
    );

    // Cycles: 100 peaks of |I| found, each an on-state (negative) current.
    let cycles = run("transient.cycles", serde_json::json!({"n_cycles": 100})).data;
    assert_eq!(cycles.len(), 100);
    assert!(
        cycles.iter().all(|c| (-6.6e-3..-5.5e-3).contains(c)),
        "{cycles:?}"
    );

    // AutoTau: one row per whole period, 163 of them, all fitted.
    let tau = run("transient.tau_on_off", serde_json::json!({}));
    assert_eq!(tau.shape.as_slice(), &[163, 2]);
    let rising: Vec<f64> = tau.data.iter().step_by(2).copied().collect();
    let falling: Vec<f64> = tau.data.iter().skip(1).step_by(2).copied().collect();
    assert!(tau.data.iter().all(|x| x.is_finite()), "every cycle fits");
    // The on-current is negative, so the signal rises when the device turns off
    // (τ ≈ 1 ms) and falls when it turns on (a fast jump with a slower tail, τ of a
    // few ms; the robust fit settles on the tail).
    let (r, f) = (median(rising), median(falling));
    assert!((0.5e-3..2.0e-3).contains(&r), "turn-off tau {r}");
    assert!((4.0e-3..12.0e-3).contains(&f), "turn-on tau {f}");

    // Decay time over the default window of the whole step: 160 pulse cycles are not one
    // decay, so there is no result ("no fit"), and the predecessor's solver still gives
    // its number for comparison with historical values.
    let step = Step::transient(&t, &i);
    for method in ["linear", "exponential"] {
        let ex = testkit::create(
            "transient.decay_time",
            &serde_json::json!({"method": method}),
        )
        .unwrap();
        let e = ex.run(&step).unwrap_err();
        assert_eq!(e.kind, FailureKind::NoResult, "{method}: {e:?}");
        assert!(e.message.starts_with("no fit: "), "{method}: {e:?}");
    }
    let decay = run(
        "transient.decay_time",
        serde_json::json!({"method": "linear", "solver": "compat"}),
    )
    .data[0];
    assert!(decay.is_finite(), "decay {decay}");
}
