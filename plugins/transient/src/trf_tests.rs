use super::*;
use crate::golden_tests::shared_dir;

fn unbounded(n: usize) -> (Vec<f64>, Vec<f64>) {
    (vec![f64::NEG_INFINITY; n], vec![f64::INFINITY; n])
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

/// Runs the compat `decay_time` fit (`I0·exp(-x/tau)`, p0 = [yw0, span/2], bounds [0, ∞)²,
/// max_nfev 1000) on `ts_decay_clean` for the fit range `[r0, r1]`.
fn decay_fit(r0: f64, r1: f64) -> Result<TrfResult, TrfError> {
    let path = shared_dir().join("golden/transfer_transient/ts_decay_clean.json");
    let text = std::fs::read_to_string(&path).expect("read ts_decay_clean.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("parse golden json");
    let step = &json["input"]["steps"][0];
    let vec_of = |key: &str| -> Vec<f64> {
        step[key]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect()
    };
    let (t, i) = (vec_of("continuous_time"), vec_of("drain_current"));
    let n = t.len() as f64;
    let (s, e) = ((n * r0) as usize, (n * r1) as usize);
    let tw = &t[s..e];
    let yw: Vec<f64> = i[s..e].iter().map(|v| v.abs()).collect();
    let x: Vec<f64> = tw.iter().map(|v| v - tw[0]).collect();
    let p0 = [yw[0], (tw[tw.len() - 1] - tw[0]) / 2.0];
    least_squares(
        |p, out| {
            for ((o, xi), yi) in out.iter_mut().zip(&x).zip(&yw) {
                *o = p[0] * (-xi / p[1]).exp() - yi;
            }
        },
        x.len(),
        &p0,
        &[0.0, 0.0],
        &[f64::INFINITY, f64::INFINITY],
        &TrfOptions::with_max_nfev(1000),
    )
}

#[test]
fn decay_time_compat_stops_where_scipy_stops() {
    // Golden internals: default window [0.1, 0.9] stops at gtol after 2 evaluations with
    // tau = 0.2658 s although the data decay with tau = 0.05 s.
    let res = decay_fit(0.1, 0.9).expect("converges");
    assert_eq!((res.status, res.nfev), (1, 2));
    assert!(rel(res.x[0], 8.820_258_917_661_24e-6) < 2e-6, "{:?}", res.x);
    assert!(rel(res.x[1], 0.265_786_771_161_252_3) < 2e-6, "{:?}", res.x);
    assert!(
        rel(res.cost, 2.428_397_473_384_580_4e-9) < 1e-5,
        "{}",
        res.cost
    );

    let res = decay_fit(0.0, 1.0).expect("converges");
    assert_eq!((res.status, res.nfev), (1, 6));
    assert!(rel(res.x[0], 9.987_627_487_422_68e-5) < 2e-6, "{:?}", res.x);
    assert!(
        rel(res.x[1], 0.051_385_095_869_413_33) < 2e-6,
        "{:?}",
        res.x
    );

    let res = decay_fit(0.5, 0.6).expect("converges");
    assert_eq!((res.status, res.nfev), (1, 1));
    assert!(rel(res.x[1], 0.049_500_000_000_000_1) < 2e-6, "{:?}", res.x);
}

#[test]
fn recovers_exact_nonlinear_fit_without_bounds() {
    // y = 2·exp(-0.7 t) + 0.5 sampled exactly: the optimum is the generating parameters.
    let t: Vec<f64> = (0..40).map(|k| k as f64 * 0.1).collect();
    let y: Vec<f64> = t.iter().map(|t| 2.0 * (-0.7 * t).exp() + 0.5).collect();
    let (lb, ub) = unbounded(3);
    let res = least_squares(
        |p, out| {
            for ((o, t), y) in out.iter_mut().zip(&t).zip(&y) {
                *o = p[0] * (-p[1] * t).exp() + p[2] - y;
            }
        },
        t.len(),
        &[1.0, 1.0, 0.0],
        &lb,
        &ub,
        &TrfOptions::with_max_nfev(1000),
    )
    .expect("converges");
    assert!((1..=4).contains(&res.status));
    for (got, want) in res.x.iter().zip([2.0, 0.7, 0.5]) {
        assert!((got - want).abs() < 1e-7, "{:?}", res.x);
    }
    assert!(res.cost < 1e-20);
}

#[test]
fn rosenbrock_converges_to_its_minimum() {
    let (lb, ub) = unbounded(2);
    let res = least_squares(
        |p, out| {
            out[0] = 10.0 * (p[1] - p[0] * p[0]);
            out[1] = 1.0 - p[0];
        },
        2,
        &[-1.2, 1.0],
        &lb,
        &ub,
        &TrfOptions::with_max_nfev(1000),
    )
    .expect("converges");
    assert!(
        (res.x[0] - 1.0).abs() < 1e-6 && (res.x[1] - 1.0).abs() < 1e-6,
        "{:?}",
        res.x
    );
}

#[test]
fn active_bounds_are_approached_from_inside() {
    // Unconstrained minimum (-1, 3) lies outside x0 >= 0 and x1 <= 2: the solution is on
    // the corner (0, 2), reached from the strictly feasible side.
    let res = least_squares(
        |p, out| {
            out[0] = p[0] + 1.0;
            out[1] = p[1] - 3.0;
        },
        2,
        &[1.0, 1.0],
        &[0.0, f64::NEG_INFINITY],
        &[f64::INFINITY, 2.0],
        &TrfOptions::with_max_nfev(1000),
    )
    .expect("converges");
    assert!(res.x[0] > 0.0 && res.x[0] < 1e-6, "{:?}", res.x);
    assert!(res.x[1] < 2.0 && res.x[1] > 2.0 - 1e-6, "{:?}", res.x);
}

#[test]
fn start_on_a_bound_is_moved_inside() {
    // With x0 on the lower bound the first evaluation is already strictly inside (1e-10).
    // The initial radius ‖x0/√v‖ is then 1e-10 too, so the first step only doubles x and
    // the ftol test stops there: scipy 1.17 returns x = 2e-10, status 2, nfev 2.
    let mut first = None;
    let res = least_squares(
        |p, out| {
            first.get_or_insert(p[0]);
            out[0] = p[0] - 5.0;
        },
        1,
        &[0.0],
        &[0.0],
        &[f64::INFINITY],
        &TrfOptions::with_max_nfev(100),
    )
    .expect("converges");
    assert_eq!(first, Some(1e-10));
    assert_eq!((res.status, res.nfev), (2, 2));
    assert!(rel(res.x[0], 2e-10) < 1e-12, "{:?}", res.x);
}

#[test]
fn failures_are_reported_as_errors() {
    let opts = TrfOptions::with_max_nfev(100);
    let resid = |p: &[f64], out: &mut [f64]| out[0] = p[0] - 1.0;
    assert_eq!(
        least_squares(resid, 1, &[-1.0], &[0.0], &[1.0], &opts),
        Err(TrfError::InfeasibleStart)
    );
    assert_eq!(
        least_squares(resid, 1, &[f64::NAN], &[0.0], &[1.0], &opts),
        Err(TrfError::InfeasibleStart)
    );
    assert!(matches!(
        least_squares(resid, 1, &[0.5], &[1.0], &[1.0], &opts),
        Err(TrfError::InvalidInput(_))
    ));
    assert!(matches!(
        least_squares(resid, 1, &[0.5], &[0.0, 0.0], &[1.0, 1.0], &opts),
        Err(TrfError::InvalidInput(_))
    ));
    assert!(matches!(
        least_squares(resid, 0, &[0.5], &[0.0], &[1.0], &opts),
        Err(TrfError::InvalidInput(_))
    ));
    assert_eq!(
        least_squares(|_, out| out[0] = f64::NAN, 1, &[0.5], &[0.0], &[1.0], &opts),
        Err(TrfError::NonFiniteInitialResiduals)
    );
    // Residual finite at x0 but not at the difference probe.
    assert_eq!(
        least_squares(
            |p, out| out[0] = if p[0] == 0.5 { 1.0 } else { f64::INFINITY },
            1,
            &[0.5],
            &[0.0],
            &[1.0],
            &opts
        ),
        Err(TrfError::NonFiniteJacobian)
    );
}

#[test]
fn exhausted_budget_is_status_zero_error() {
    let (lb, ub) = unbounded(2);
    let err = least_squares(
        |p, out| {
            out[0] = 10.0 * (p[1] - p[0] * p[0]);
            out[1] = 1.0 - p[0];
        },
        2,
        &[-1.2, 1.0],
        &lb,
        &ub,
        &TrfOptions::with_max_nfev(3),
    )
    .expect_err("three evaluations cannot solve Rosenbrock");
    match err {
        TrfError::MaxNfevExhausted { nfev, x } => {
            assert_eq!(nfev, 3);
            assert_eq!(x.len(), 2);
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn next_toward_steps_one_ulp() {
    assert_eq!(next_toward(0.0, 1.0), f64::from_bits(1));
    assert_eq!(next_toward(1.0, 2.0), 1.0 + f64::EPSILON);
    assert_eq!(next_toward(1.0, 0.0), 1.0 - f64::EPSILON / 2.0);
    assert_eq!(next_toward(-1.0, 0.0), -1.0 + f64::EPSILON / 2.0);
}
