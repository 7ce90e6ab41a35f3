//! Expected values are written out by hand (or as the arithmetic numpy
//! performs), never computed with the code under test.

use ndarray::{arr0, array, ArrayD, ArrayViewD, Axis, IxDyn};

use super::eval::Evaluated;
use super::{Cell, Column, Expr, ExprError, OutCell};

const NAN: f64 = f64::NAN;

fn compile(src: &str, inputs: &[&str], params: &[(&str, f64)]) -> Expr {
    Expr::compile(src, inputs, params).unwrap_or_else(|e| panic!("{src}: {e}"))
}

/// Evaluates as numpy would on whole arrays: inputs with one common step axis become
/// per-step columns (one row per step) and the per-step result is stacked; other inputs
/// (a 0-d array, different lengths) are one step holding the whole array. A failed step is
/// an error.
fn eval(expr: &Expr, inputs: &[&ArrayD<f64>]) -> Result<ArrayD<f64>, String> {
    let rows = inputs.first().map(|a| a.shape().first().copied());
    let per_step = inputs
        .iter()
        .all(|a| a.ndim() > 0 && Some(a.shape().first().copied()) == rows);
    let columns: Vec<Column<'_>> = inputs
        .iter()
        .map(|a| {
            if per_step {
                Column {
                    rank: a.ndim() - 1,
                    cells: a
                        .outer_iter()
                        .map(|row: ArrayViewD<'_, f64>| Cell::Value(row))
                        .collect(),
                }
            } else {
                Column {
                    rank: a.ndim(),
                    cells: vec![Cell::Value(a.view())],
                }
            }
        })
        .collect();
    let cells = match expr.root.evaluate(&columns)? {
        Evaluated::Steps(cells) => cells,
        Evaluated::Whole(a) => return Ok(a),
    };
    let mut rows = Vec::new();
    for c in cells {
        match c {
            OutCell::Value(v) => rows.push(v),
            OutCell::Failed(m) => return Err(m.to_string()),
            OutCell::Absent => return Err("absent row".into()),
        }
    }
    if !per_step {
        return Ok(rows.remove(0));
    }
    let views: Vec<ArrayViewD<'_, f64>> = rows.iter().map(|r| r.view()).collect();
    ndarray::stack(Axis(0), &views).map_err(|e| e.to_string())
}

fn run(src: &str, names: &[&str], params: &[(&str, f64)], inputs: &[&ArrayD<f64>]) -> ArrayD<f64> {
    eval(&compile(src, names, params), inputs).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn run_err(src: &str, names: &[&str], inputs: &[&ArrayD<f64>]) -> String {
    match eval(&compile(src, names, &[]), inputs) {
        Ok(v) => panic!("{src}: expected a runtime error, got {v}"),
        Err(e) => e,
    }
}

fn reject(src: &str, inputs: &[&str], params: &[(&str, f64)]) -> ExprError {
    match Expr::compile(src, inputs, params) {
        Ok(_) => panic!("{src}: compiled but should not"),
        Err(e) => e,
    }
}

/// Asserts the error points at byte `pos` and its message contains `needle`.
fn assert_rejected(src: &str, inputs: &[&str], pos: usize, needle: &str) {
    let e = reject(src, inputs, &[]);
    assert_eq!(e.pos, pos, "{src}: {e}");
    assert!(
        e.message.contains(needle),
        "{src}: {:?} lacks {needle:?}",
        e.message
    );
}

fn arr(values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap()
}

fn nd(shape: &[usize], values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap()
}

/// Same shape; each element equal within 1e-12 relative, NaN matching NaN.
fn assert_close(actual: &ArrayD<f64>, expected: &ArrayD<f64>) {
    assert_eq!(actual.shape(), expected.shape(), "{actual} vs {expected}");
    for (a, e) in actual.iter().zip(expected) {
        let same =
            (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= 1e-12 * e.abs().max(1.0);
        assert!(same, "{actual} vs {expected}");
    }
}

// ---- every lambda the project ships ----

#[test]
fn zscore_of_gm_column() {
    // mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, population std sqrt(32/8) = 2
    let gm = arr(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    let out = run(
        "lambda gm: (gm - gm.mean()) / gm.std()",
        &["gm_max_forward"],
        &[],
        &[&gm],
    );
    assert_close(&out, &arr(&[-1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 1.0, 2.0]));
}

#[test]
fn zscore_of_decay_column_and_nan_propagation() {
    let src = "lambda decay: (decay - decay.mean()) / decay.std()";
    // mean 2, std sqrt((1 + 1) / 2) = 1
    let out = run(src, &["transient_decay"], &[], &[&arr(&[1.0, 3.0])]);
    assert_close(&out, &arr(&[-1.0, 1.0]));
    // mean() and std() propagate NaN, so one failed fit poisons the column
    let out = run(src, &["transient_decay"], &[], &[&arr(&[1.0, NAN, 3.0])]);
    assert_close(&out, &arr(&[NAN, NAN, NAN]));
}

#[test]
fn ratio_and_difference_of_two_inputs() {
    let fwd = arr(&[1.0, 2.0, 3.0, 0.0]);
    let rev = arr(&[2.0, 4.0, 0.0, 0.0]);
    let names = ["gm_max_forward", "gm_max_reverse"];
    let out = run("lambda fwd, rev: fwd / rev", &names, &[], &[&fwd, &rev]);
    assert_close(&out, &arr(&[0.5, 0.5, f64::INFINITY, NAN]));

    let von_f = arr(&[0.1, 0.2]);
    let von_r = arr(&[0.3, -0.1]);
    let out = run(
        "lambda fwd, rev: fwd - rev",
        &["Von_forward", "Von_reverse"],
        &[],
        &[&von_f, &von_r],
    );
    assert_close(&out, &arr(&[0.1 - 0.3, 0.2 + 0.1]));
}

#[test]
fn legacy_dict_lambda_binds_by_name() {
    let src = "lambda inputs: inputs['gm_max_forward'] / inputs['gm_max_reverse']";
    let fwd = arr(&[3.0, 8.0]);
    let rev = arr(&[2.0, 4.0]);
    let out = run(
        src,
        &["gm_max_forward", "gm_max_reverse"],
        &[],
        &[&fwd, &rev],
    );
    assert_close(&out, &arr(&[1.5, 2.0]));
    // binding is by name, not position
    let out = run(
        src,
        &["gm_max_reverse", "gm_max_forward"],
        &[],
        &[&rev, &fwd],
    );
    assert_close(&out, &arr(&[1.5, 2.0]));
}

#[test]
fn gm_to_peak_ratio() {
    let gm = arr(&[1e-3, 4e-3]);
    let peak = arr(&[2e-3, 1e-3]);
    let out = run(
        "lambda gm, peak: gm / peak",
        &["gm_max_forward", "transient_peak"],
        &[],
        &[&gm, &peak],
    );
    assert_close(&out, &arr(&[0.5, 4.0]));
}

#[test]
fn cycle_statistics_over_axis_1() {
    let c = nd(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 9.0]);
    let names = ["transient_cycles"];
    let mean = run("lambda c: np.mean(c, axis=1)", &names, &[], &[&c]);
    assert_close(&mean, &arr(&[2.0, 6.0]));
    // row 0: deviations -1, 0, 1 -> var 2/3; row 1: -2, -1, 3 -> var 14/3
    let std = run("lambda c: np.std(c, axis=1)", &names, &[], &[&c]);
    assert_close(&std, &arr(&[(2.0f64 / 3.0).sqrt(), (14.0f64 / 3.0).sqrt()]));
    let decay = run(
        "lambda c: (c[:, 0] - c[:, -1]) / c[:, 0]",
        &names,
        &[],
        &[&c],
    );
    assert_close(&decay, &arr(&[(1.0 - 3.0) / 1.0, (4.0 - 9.0) / 4.0]));
}

/// (2 steps, 3 cycles, [tau_on, tau_off]) with NaN holes, like a
/// NaN-padded `transient.tau_on_off` column.
fn small_tau() -> ArrayD<f64> {
    #[rustfmt::skip]
    let values = [
        1.0, 10.0,   3.0, NAN,    NAN, 30.0,
        2.0, 20.0,   4.0, 40.0,   6.0, 60.0,
    ];
    nd(&[2, 3, 2], &values)
}

#[test]
fn tau_means_and_stds_skip_nan() {
    let tau = small_tau();
    let names = ["tau_cycles"];
    let f = |src: &str| run(src, &names, &[], &[&tau]);
    // on: [1, 3, -] and [2, 4, 6]; off: [10, -, 30] and [20, 40, 60]
    assert_close(
        &f("lambda tau: np.nanmean(tau[:, :, 0], axis=1)"),
        &arr(&[2.0, 4.0]),
    );
    assert_close(
        &f("lambda tau: np.nanmean(tau[:, :, 1], axis=1)"),
        &arr(&[20.0, 40.0]),
    );
    assert_close(
        &f("lambda tau: np.nanstd(tau[:, :, 0], axis=1)"),
        &arr(&[1.0, (8.0f64 / 3.0).sqrt()]),
    );
    assert_close(
        &f("lambda tau: np.nanstd(tau[:, :, 1], axis=1)"),
        &arr(&[10.0, (800.0f64 / 3.0).sqrt()]),
    );
    assert_close(
        &f("lambda tau: np.nanmean(tau[:, :, 0], axis=1) / (np.nanmean(tau[:, :, 1], axis=1) + 1e-10)"),
        &arr(&[2.0 / (20.0 + 1e-10), 4.0 / (40.0 + 1e-10)]),
    );
}

const TAU_EVOLUTION: &str = "lambda tau: (np.nanmean(tau[:, :10, 0], axis=1) - np.nanmean(tau[:, -10:, 0], axis=1)) / (np.nanmean(tau[:, :10, 0], axis=1) + 1e-10)";

#[test]
fn tau_evolution_first_versus_last_ten_cycles() {
    // step 0: tau_on of cycle k is k + 1; step 1: 2 (k + 1), cycle 0 missing
    let mut values = Vec::new();
    for step in 0..2 {
        for k in 0..12 {
            let on = if step == 1 && k == 0 {
                NAN
            } else {
                (step + 1) as f64 * (k + 1) as f64
            };
            values.extend([on, 100.0 + k as f64]);
        }
    }
    let tau = nd(&[2, 12, 2], &values);
    // step 0: first ten 1..=10 (mean 5.5), last ten 3..=12 (mean 7.5)
    // step 1: first ten 4, 6, .., 20 (mean 12), last ten 6, 8, .., 24 (mean 15)
    let out = run(TAU_EVOLUTION, &["tau_cycles"], &[], &[&tau]);
    let expected = arr(&[(5.5 - 7.5) / (5.5 + 1e-10), (12.0 - 15.0) / (12.0 + 1e-10)]);
    assert_close(&out, &expected);
}

#[test]
fn tau_evolution_with_fewer_than_ten_cycles_clamps_slices() {
    // :10 and -10: both cover all three cycles, so the difference is zero
    let out = run(TAU_EVOLUTION, &["tau_cycles"], &[], &[&small_tau()]);
    assert_close(&out, &arr(&[0.0, 0.0]));
}

// ---- numpy semantics of the reductions ----

#[test]
fn nan_functions_ignore_nan_and_handle_all_nan_slices() {
    let x = nd(&[3, 3], &[1.0, NAN, 3.0, NAN, NAN, NAN, -2.0, 5.0, 0.5]);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(
        &f("lambda x: np.nanmean(x, axis=1)"),
        &arr(&[2.0, NAN, 3.5 / 3.0]),
    );
    assert_close(&f("lambda x: np.nansum(x, axis=1)"), &arr(&[4.0, 0.0, 3.5]));
    assert_close(
        &f("lambda x: np.nanmin(x, axis=1)"),
        &arr(&[1.0, NAN, -2.0]),
    );
    assert_close(&f("lambda x: np.nanmax(x, axis=1)"), &arr(&[3.0, NAN, 5.0]));
    // row 2: mean 7/6, squared deviations (19/6)^2 + (23/6)^2 + (4/6)^2 = 906/36
    assert_close(
        &f("lambda x: np.nanstd(x, axis=1)"),
        &arr(&[1.0, NAN, (906.0f64 / 36.0 / 3.0).sqrt()]),
    );
    // one value per column 0 and 2 ... ddof=1 divides by count - 1
    assert_close(
        &f("lambda x: np.nanstd(x, axis=0, ddof=1)"),
        &arr(&[(4.5f64).sqrt(), NAN, (3.125f64).sqrt()]),
    );
    // whole-array forms
    assert_close(
        &f("lambda x: np.nanmean(x)"),
        &arr0((1.0 + 3.0 - 2.0 + 5.0 + 0.5) / 5.0).into_dyn(),
    );
    assert_close(&f("lambda x: np.nansum(x[1])"), &arr0(0.0).into_dyn());
    assert_close(&f("lambda x: np.nanmax(x[1])"), &arr0(NAN).into_dyn());
}

#[test]
fn plain_reductions_propagate_nan() {
    let x = arr(&[1.0, NAN, 3.0]);
    for src in [
        "lambda x: x.mean()",
        "lambda x: x.std()",
        "lambda x: x.sum()",
        "lambda x: x.min()",
        "lambda x: x.max()",
        "lambda x: np.min(x)",
    ] {
        assert_close(&run(src, &["x"], &[], &[&x]), &arr0(NAN).into_dyn());
    }
}

#[test]
fn methods_and_options() {
    let x = nd(&[2, 3], &[3.0, 1.0, 2.0, 6.0, 5.0, 4.0]);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(&f("lambda x: x.mean(axis=0)"), &arr(&[4.5, 3.0, 3.0]));
    assert_close(&f("lambda x: x.sum(1)"), &arr(&[6.0, 15.0]));
    assert_close(&f("lambda x: x.min()"), &arr0(1.0).into_dyn());
    assert_close(&f("lambda x: x.max(axis=-1)"), &arr(&[3.0, 6.0]));
    assert_close(&f("lambda x: np.max(x, 0)"), &arr(&[6.0, 5.0, 4.0]));
    // sample std of 3, 1, 2, 6, 5, 4: mean 3.5, squared deviations sum 17.5
    assert_close(
        &f("lambda x: x.std(ddof=1)"),
        &arr0((17.5f64 / 5.0).sqrt()).into_dyn(),
    );
    assert_close(&f("lambda x: np.std(x, ddof=1, axis=1)"), &arr(&[1.0, 1.0]));
    assert_close(&f("lambda x: np.sum(x, axis=-2)"), &arr(&[9.0, 6.0, 6.0]));
}

#[test]
fn empty_reductions() {
    let x = arr(&[1.0, 2.0]);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(&f("lambda x: x[:0].mean()"), &arr0(NAN).into_dyn());
    assert_close(&f("lambda x: x[:0].sum()"), &arr0(0.0).into_dyn());
    assert_close(&f("lambda x: np.nanmean(x[:0])"), &arr0(NAN).into_dyn());
    assert_close(&f("lambda x: np.nansum(x[:0])"), &arr0(0.0).into_dyn());
    let e = run_err("lambda x: x[:0].min()", &["x"], &[&x]);
    assert_eq!(
        e,
        "zero-size array to reduction operation minimum which has no identity"
    );
    let e = run_err("lambda x: np.nanmax(x[2:])", &["x"], &[&x]);
    assert!(e.contains("zero-size array"), "{e}");
}

#[test]
fn std_with_more_ddof_than_values() {
    // numpy: std divides by max(n - ddof, 0) (0/0 = NaN, x/0 = inf); nanstd gives NaN
    let one = arr(&[5.0]);
    let two = arr(&[1.0, 3.0]);
    assert_close(
        &run("lambda x: x.std(ddof=1)", &["x"], &[], &[&one]),
        &arr0(NAN).into_dyn(),
    );
    assert_close(
        &run("lambda x: x.std(ddof=3)", &["x"], &[], &[&two]),
        &arr0(f64::INFINITY).into_dyn(),
    );
    assert_close(
        &run("lambda x: np.nanstd(x, ddof=2)", &["x"], &[], &[&two]),
        &arr0(NAN).into_dyn(),
    );
}

#[test]
fn sums_are_pairwise_like_numpy() {
    // nine values: numpy sums eight running partial sums, combines them as a
    // tree, then adds the ninth; a running sum loses every 1e-16 against 1.0
    let mut a = vec![1e-16; 9];
    a[0] = 1.0;
    let r = &a;
    let expected = (((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))) + r[8];
    let naive = a.iter().fold(0.0, |s, v| s + v);
    assert_ne!(expected, naive, "values must tell the two orders apart");
    let out = run("lambda x: x.sum()", &["x"], &[], &[&arr(&a)]);
    assert_eq!(out, arr0(expected).into_dyn());
    // a million 0.1s: a running sum drifts by ~1e-6, pairwise stays ~1e-10 close
    let many = arr(&vec![0.1; 1_000_000]);
    let total = run("lambda x: x.sum()", &["x"], &[], &[&many])[[]];
    assert!((total - 100_000.0).abs() < 1e-8, "{total}");
}

#[test]
fn axis_out_of_bounds_is_a_runtime_error() {
    let x = nd(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let e = run_err("lambda x: np.mean(x, axis=2)", &["x"], &[&x]);
    assert_eq!(e, "axis 2 is out of bounds for array of dimension 2");
    let e = run_err("lambda x: x.sum(axis=-3)", &["x"], &[&x]);
    assert_eq!(e, "axis -3 is out of bounds for array of dimension 2");
}

// ---- indexing ----

#[test]
fn integer_and_slice_indexing_follow_python() {
    let x = arr(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(&f("lambda x: x[-1]"), &arr0(5.0).into_dyn());
    assert_close(&f("lambda x: x[0]"), &arr0(0.0).into_dyn());
    assert_close(&f("lambda x: x[-3:]"), &arr(&[3.0, 4.0, 5.0]));
    assert_close(&f("lambda x: x[:-4]"), &arr(&[0.0, 1.0]));
    assert_close(
        &f("lambda x: x[::-1]"),
        &arr(&[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]),
    );
    assert_close(&f("lambda x: x[5:1:-2]"), &arr(&[5.0, 3.0]));
    assert_close(&f("lambda x: x[1::2]"), &arr(&[1.0, 3.0, 5.0]));
    assert_close(&f("lambda x: x[-2::-3]"), &arr(&[4.0, 1.0]));
    assert_close(&f("lambda x: x[100:]"), &arr(&[]));
    assert_close(&f("lambda x: x[-100:2]"), &arr(&[0.0, 1.0]));
    assert_close(&f("lambda x: x[4:1]"), &arr(&[]));
    assert_close(
        &f("lambda x: x[10:-10:-1]"),
        &arr(&[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]),
    );
    assert_close(&f("lambda x: x[0:6:4]"), &arr(&[0.0, 4.0]));
}

#[test]
fn multi_axis_indexing() {
    // x[i, j, k] = 100 i + 10 j + k, shape (2, 3, 2)
    let values: Vec<f64> = (0..2)
        .flat_map(|i| (0..3).flat_map(move |j| (0..2).map(move |k| (100 * i + 10 * j + k) as f64)))
        .collect();
    let x = nd(&[2, 3, 2], &values);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(
        &f("lambda x: x[:, :, 0]"),
        &nd(&[2, 3], &[0.0, 10.0, 20.0, 100.0, 110.0, 120.0]),
    );
    assert_close(
        &f("lambda x: x[:, -1]"),
        &nd(&[2, 2], &[20.0, 21.0, 120.0, 121.0]),
    );
    assert_close(
        &f("lambda x: x[1]"),
        &nd(&[3, 2], &[100.0, 101.0, 110.0, 111.0, 120.0, 121.0]),
    );
    assert_close(&f("lambda x: x[-1, 1:, 1]"), &arr(&[111.0, 121.0]));
    assert_close(
        &f("lambda x: x[0, ::-1, :]"),
        &nd(&[3, 2], &[20.0, 21.0, 10.0, 11.0, 0.0, 1.0]),
    );
    assert_close(&f("lambda x: x[1, 2, 1]"), &arr0(121.0).into_dyn());
    // chained subscripts and indexing a computed value
    assert_close(&f("lambda x: (x * 2)[0][1]"), &arr(&[20.0, 22.0]));
    // trailing comma is Python's one-element tuple: same as x[0]
    assert_close(&f("lambda x: x[0,][2, 0]"), &arr0(20.0).into_dyn());
}

#[test]
fn index_errors_are_runtime_errors() {
    let x = nd(&[2, 3], &[0.0; 6]);
    let e = run_err("lambda x: x[:, 3]", &["x"], &[&x]);
    assert_eq!(e, "index 3 is out of bounds for axis 1 with size 3");
    let e = run_err("lambda x: x[-3]", &["x"], &[&x]);
    assert_eq!(e, "index -3 is out of bounds for axis 0 with size 2");
    let e = run_err("lambda x: x[0, 0, 0]", &["x"], &[&x]);
    assert_eq!(
        e,
        "too many indices for array: array is 2-dimensional, but 3 were indexed"
    );
    let e = run_err("lambda x: x.mean()[0]", &["x"], &[&x]);
    assert_eq!(
        e,
        "too many indices for array: array is 0-dimensional, but 1 were indexed"
    );
}

// ---- arithmetic, broadcasting, constants ----

#[test]
fn operator_precedence_follows_python() {
    let x = arr(&[2.0]);
    let f = |src: &str| run(src, &["x"], &[], &[&x])[[0]];
    assert_eq!(f("lambda x: -x**2"), -4.0);
    assert_eq!(f("lambda x: x**-1"), 0.5);
    assert_eq!(f("lambda x: x**3**2"), 512.0);
    assert_eq!(f("lambda x: 1 - x - 3"), -4.0);
    assert_eq!(f("lambda x: 8 / x / 2"), 2.0);
    assert_eq!(f("lambda x: 1 + x * 3"), 7.0);
    assert_eq!(f("lambda x: (1 + x) * 3"), 9.0);
    assert_eq!(f("lambda x: +x - -x"), 4.0);
    assert_eq!(f("lambda x: x * .5 + 1e-1 + 2. + 1E1"), 13.1);
    assert_eq!(f("lambda x: 1 + x > 2"), 1.0);
    assert_eq!(f("lambda x: np.pi * 0 + np.e * 0 + x"), 2.0);
}

#[test]
fn comparisons_yield_one_or_zero() {
    let x = arr(&[1.0, 2.0, NAN]);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(&f("lambda x: x < 2"), &arr(&[1.0, 0.0, 0.0]));
    assert_close(&f("lambda x: x <= 2"), &arr(&[1.0, 1.0, 0.0]));
    assert_close(&f("lambda x: x > 1"), &arr(&[0.0, 1.0, 0.0]));
    assert_close(&f("lambda x: x >= 1"), &arr(&[1.0, 1.0, 0.0]));
    assert_close(&f("lambda x: x == 2"), &arr(&[0.0, 1.0, 0.0]));
    // NaN is unequal to everything, itself included
    assert_close(&f("lambda x: x != x"), &arr(&[0.0, 0.0, 1.0]));
}

#[test]
fn elementwise_functions() {
    let x = arr(&[-1.0, 0.0, 100.0]);
    let f = |src: &str| run(src, &["x"], &[], &[&x]);
    assert_close(&f("lambda x: np.abs(x)"), &arr(&[1.0, 0.0, 100.0]));
    assert_close(&f("lambda x: abs(x) + 1"), &arr(&[2.0, 1.0, 101.0]));
    assert_close(
        &f("lambda x: numpy.log10(x)"),
        &arr(&[NAN, f64::NEG_INFINITY, 2.0]),
    );
    assert_close(&f("lambda x: np.sqrt(x)"), &arr(&[NAN, 0.0, 10.0]));
    assert_close(&f("lambda x: np.exp(x * 0)"), &arr(&[1.0, 1.0, 1.0]));
    assert_close(
        &f("lambda x: np.log(np.exp(x / 100))"),
        &arr(&[-0.01, 0.0, 1.0]),
    );
}

#[test]
fn broadcasting_follows_numpy() {
    let m = nd(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let row = arr(&[10.0, 20.0, 30.0]);
    let out = run("lambda m, r: m + r", &["m", "r"], &[], &[&m, &row]);
    assert_close(&out, &nd(&[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]));

    let col = nd(&[2, 1], &[1.0, 2.0]);
    let out = run("lambda c, r: c * r", &["c", "r"], &[], &[&col, &row]);
    assert_close(&out, &nd(&[2, 3], &[10.0, 20.0, 30.0, 20.0, 40.0, 60.0]));

    let cube = nd(&[2, 1, 1], &[1.0, 2.0]);
    let out = run("lambda c, r: c - r", &["c", "r"], &[], &[&cube, &row]);
    assert_eq!(out.shape(), &[2, 1, 3]);
    assert_close(
        &out,
        &nd(&[2, 1, 3], &[-9.0, -19.0, -29.0, -8.0, -18.0, -28.0]),
    );

    // a length-1 axis stretches to length 0
    let empty = arr(&[]);
    let one = arr(&[7.0]);
    let out = run("lambda a, b: a + b", &["a", "b"], &[], &[&empty, &one]);
    assert_eq!(out.shape(), &[0]);

    // scalars broadcast everywhere; a scalar result is 0-d
    let out = run("lambda m: m.sum() / 2", &["m"], &[], &[&m]);
    assert_eq!(out, arr0(10.5).into_dyn());

    let four = arr(&[1.0, 2.0, 3.0, 4.0]);
    let e = eval(
        &compile("lambda a, b: a + b", &["a", "b"], &[]),
        &[&row, &four],
    )
    .unwrap_err();
    assert_eq!(
        e,
        "operands could not be broadcast together with shapes (3,) (4,)"
    );
    // Inputs with one value per step broadcast within each step (numpy on the whole
    // arrays would refuse (2, 3) against (2,)): each row of m divided by its step's value.
    let out = run(
        "lambda a, b: a / b",
        &["a", "b"],
        &[],
        &[&m, &nd(&[2], &[1.0, 2.0])],
    );
    assert_close(&out, &nd(&[2, 3], &[1.0, 2.0, 3.0, 2.0, 2.5, 3.0]));
}

// ---- params and defaults ----

#[test]
fn params_bind_by_name_after_inputs() {
    let x = arr(&[1.0, 2.0]);
    let out = run(
        "lambda x, scale: x * scale",
        &["x"],
        &[("scale", 2.0)],
        &[&x],
    );
    assert_close(&out, &arr(&[2.0, 4.0]));
    // defaults, overridden by a param
    assert_close(
        &run("lambda x, k=2: x ** k", &["x"], &[], &[&x]),
        &arr(&[1.0, 4.0]),
    );
    assert_close(
        &run("lambda x, k=2: x ** k", &["x"], &[("k", 3.0)], &[&x]),
        &arr(&[1.0, 8.0]),
    );
    assert_close(
        &run("lambda x, k=-2 * 0.5: x * k", &["x"], &[], &[&x]),
        &arr(&[-1.0, -2.0]),
    );
    // params order does not matter; an argument may take a later input position
    let out = run(
        "lambda x, a, b: x * a + b",
        &["x"],
        &[("b", 1.0), ("a", 10.0)],
        &[&x],
    );
    assert_close(&out, &arr(&[11.0, 21.0]));
    // params may give indices and axes
    let m = nd(&[2, 2], &[1.0, 2.0, 3.0, 5.0]);
    let out = run(
        "lambda m, ax, col: np.mean(m, axis=ax)[col]",
        &["m"],
        &[("ax", 0.0), ("col", -1.0)],
        &[&m],
    );
    assert_close(&out, &arr0(3.5).into_dyn());
}

#[test]
fn param_and_argument_mismatches_are_rejected() {
    let e = reject("lambda x, k: x * k", &["x"], &[]);
    assert_eq!(e.pos, 10);
    assert!(e.message.contains("argument `k` has no value"), "{e}");

    let e = reject("lambda x: x", &["x"], &[("scale", 2.0)]);
    assert_eq!(e.pos, 8);
    assert!(e.message.contains("param `scale` is not taken"), "{e}");

    // a param may not replace an input-bound argument
    let e = reject("lambda x: x", &["x"], &[("x", 2.0)]);
    assert!(e.message.contains("param `x` is not taken"), "{e}");

    let e = reject("lambda x: x", &["a", "b"], &[]);
    assert_eq!(
        (e.pos, e.message.as_str()),
        (
            8,
            "the lambda takes 1 argument(s) but the feature has 2 input(s)"
        )
    );

    let e = reject("lambda x, k=x: x * k", &["x"], &[]);
    assert_eq!(e.pos, 12);
    assert!(e.message.contains("unknown name `x`"), "{e}");
    let e = reject("lambda x, k=np.mean(1): x * k", &["x"], &[]);
    assert_eq!(e.pos, 12);
    assert!(
        e.message.contains("a default value must be a constant"),
        "{e}"
    );
    let e = reject("lambda x: x[1 + x]", &["x"], &[]);
    assert_eq!(e.pos, 12);
    assert!(e.message.contains("an index must be a constant"), "{e}");

    // defaults cannot see the other arguments, as in Python
    let e = reject("lambda x, a=1, b=a: x", &["x"], &[]);
    assert_eq!(e.pos, 17);
    assert!(e.message.contains("unknown name `a`"), "{e}");

    let e = reject("lambda x, k=1.5: x[k]", &["x"], &[]);
    assert_eq!(e.pos, 19);
    assert!(
        e.message.contains("an index must be an integer, got 1.5"),
        "{e}"
    );

    let e = reject("lambda inputs: inputs['a']", &["a"], &[("p", 1.0)]);
    assert!(e.message.contains("param `p` is not taken"), "{e}");
}

// ---- function-name forms ----

#[test]
fn numpy_and_builtin_function_names() {
    let x = nd(&[2, 2], &[-1.0, 2.0, -3.0, 6.0]);
    let f = |src: &str, params: &[(&str, f64)]| run(src, &["x"], params, &[&x]);
    assert_close(&f("np.abs", &[]), &nd(&[2, 2], &[1.0, 2.0, 3.0, 6.0]));
    assert_close(&f("abs", &[]), &nd(&[2, 2], &[1.0, 2.0, 3.0, 6.0]));
    assert_close(&f("np.mean", &[]), &arr0(1.0).into_dyn());
    assert_close(&f("numpy.mean", &[("axis", 1.0)]), &arr(&[0.5, 1.5]));
    // sample std along rows: |a - b| / sqrt(2)
    assert_close(
        &f(" np.std ", &[("axis", -1.0), ("ddof", 1.0)]),
        &arr(&[3.0 / 2f64.sqrt(), 9.0 / 2f64.sqrt()]),
    );
    let exp = run("np.exp", &["x"], &[], &[&arr(&[0.0])]);
    assert_close(&exp, &arr(&[1.0]));
}

#[test]
fn function_name_forms_reject_what_python_would() {
    let e = reject("np.abs", &["x"], &[("k", 1.0)]);
    assert_eq!(e.message, "`np.abs` takes no param `k`");
    let e = reject("np.mean", &["x"], &[("ddof", 1.0)]);
    assert_eq!(e.message, "`np.mean` takes no param `ddof`");
    let e = reject("np.mean", &["x"], &[("axis", 0.5)]);
    assert!(e.message.contains("`axis` must be an integer"), "{e}");
    let e = reject("np.mean", &["a", "b"], &[]);
    assert_eq!(
        e.message,
        "`np.mean` takes one input, but the feature has 2"
    );
    assert_rejected("np.foo", &["x"], 3, "unknown numpy function `np.foo`");
    assert_rejected("os.system", &["x"], 0, "func must be");
    assert_rejected("eval", &["x"], 0, "unknown function `eval`");
    assert_rejected("np.abs(x)", &["x"], 0, "func must be");
    assert_rejected("__import__('os').system('x')", &["x"], 0, "func must be");
}

// ---- rejection of everything else, with positions ----

#[test]
fn code_execution_attempts_are_rejected_with_positions() {
    assert_rejected(
        "lambda x: __import__('os').system('x')",
        &["x"],
        10,
        "unknown function `__import__`",
    );
    assert_rejected(
        "lambda x: x.__class__",
        &["x"],
        12,
        "attribute `.__class__` is not allowed",
    );
    assert_rejected(
        "lambda x: os.system(x)",
        &["x"],
        10,
        "unknown name `os`; the lambda's arguments are: x",
    );
    assert_rejected(
        "lambda x: np.foo(x)",
        &["x"],
        13,
        "unknown numpy function `np.foo`",
    );
    assert_rejected(
        "lambda x: numpy.foo(x)",
        &["x"],
        16,
        "unknown numpy function `numpy.foo`",
    );
    assert_rejected("lambda x: eval('1')", &["x"], 10, "unknown function `eval`");
    assert_rejected(
        "lambda x: x.mean().__class__",
        &["x"],
        19,
        "attribute `.__class__` is not allowed",
    );
    assert_rejected(
        "lambda x: x.tolist()",
        &["x"],
        12,
        "attribute `.tolist` is not allowed",
    );
    assert_rejected(
        "lambda x: np.linalg.norm(x)",
        &["x"],
        13,
        "unknown numpy name `np.linalg`",
    );
    assert_rejected(
        "lambda x: (lambda: 1)()",
        &["x"],
        11,
        "a lambda is only allowed as the whole func",
    );
    assert_rejected(
        "lambda x: x; import os",
        &["x"],
        11,
        "unexpected character `;`",
    );
    assert_rejected(
        "lambda x: 'rm -rf'",
        &["x"],
        10,
        "strings are only allowed as input names",
    );
    assert_rejected(
        "lambda x: getattr(x, 'a')",
        &["x"],
        10,
        "unknown function `getattr`",
    );
    assert_rejected("lambda x: x(1)", &["x"], 10, "`x` is not a function");
    assert_rejected("lambda x: x[0](1)", &["x"], 10, "only `np.<function>(...)`");
}

#[test]
fn syntax_errors_point_at_the_problem() {
    let x = &["x"];
    assert_rejected(
        "lambda x: x +",
        x,
        13,
        "expected a number, a name or `(`, found end of input",
    );
    assert_rejected("lambda x: (x", x, 12, "expected `)`");
    assert_rejected(
        "lambda x x",
        x,
        9,
        "expected `:` after the lambda arguments, found `x`",
    );
    assert_rejected("lambda x: x x", x, 12, "expected end of input, found `x`");
    assert_rejected("lambda x: x if x else 1", x, 12, "`if` is not supported");
    assert_rejected("lambda x: x and 1", x, 12, "`and` is not supported");
    assert_rejected("lambda x: not x", x, 10, "`not` is not supported");
    assert_rejected("lambda x: x // 2", x, 12, "operator `//` is not supported");
    assert_rejected("lambda x: x % 2", x, 12, "operator `%` is not supported");
    assert_rejected("lambda x: 1 < x < 2", x, 16, "chained comparisons");
    assert_rejected("lambda x: (x, x)", x, 12, "tuples are not supported");
    assert_rejected("lambda x, x: x", x, 10, "duplicate argument `x`");
    assert_rejected(
        "lambda x=1, y: x",
        x,
        12,
        "without a default follows one with a default",
    );
    assert_rejected("lambda *a: a", x, 7, "*args and **kwargs are not supported");
    assert_rejected("lambda x: 1e", x, 10, "invalid number literal");
    assert_rejected("lambda x: 2j", x, 10, "invalid number literal");
    assert_rejected("lambda x: 1.2.3", x, 10, "invalid number literal");
    assert_rejected("lambda x: 'abc", x, 10, "unterminated string");
    assert_rejected(
        "lambda x: x['a\\n']",
        x,
        14,
        "escape sequences are not supported",
    );
    assert_rejected(
        "lambda x: x[]",
        x,
        12,
        "expected a number, a name or `(`, found `]`",
    );
    assert_rejected(
        "lambda x: x.",
        x,
        12,
        "expected an attribute name, found end of input",
    );
    assert_rejected(
        "lambda x: np.mean(axis=1, x)",
        x,
        26,
        "positional argument follows keyword argument",
    );
    assert_rejected("", x, 0, "found end of input");
    assert_rejected("lambda x: x × 2", x, 12, "unexpected character `×`");
}

#[test]
fn misuse_of_allowed_names_is_rejected() {
    let x = &["x"];
    assert_rejected("lambda x: x.mean", x, 12, "method `.mean` must be called");
    assert_rejected("lambda x: np.mean", x, 13, "`np.mean` must be called");
    assert_rejected(
        "lambda x: np",
        x,
        10,
        "`np` can only be used as `np.<function>(...)`",
    );
    assert_rejected("lambda x: abs", x, 10, "`abs` must be called");
    assert_rejected(
        "lambda x: y",
        x,
        10,
        "unknown name `y`; the lambda's arguments are: x",
    );
    assert_rejected(
        "lambda x: np.abs(x, x)",
        x,
        20,
        "`np.abs` takes exactly one array argument",
    );
    assert_rejected(
        "lambda x: abs()",
        x,
        13,
        "`abs` takes exactly one array argument",
    );
    assert_rejected(
        "lambda x: np.mean()",
        x,
        17,
        "`np.mean` needs an array argument",
    );
    assert_rejected(
        "lambda x: np.mean(x, dtype=1)",
        x,
        21,
        "takes no argument `dtype` (allowed: axis)",
    );
    assert_rejected(
        "lambda x: np.mean(x, ddof=1)",
        x,
        21,
        "takes no argument `ddof`",
    );
    assert_rejected(
        "lambda x: np.std(x, keepdims=1)",
        x,
        20,
        "(allowed: axis, ddof)",
    );
    assert_rejected(
        "lambda x: np.std(x, 1, axis=0)",
        x,
        23,
        "`axis` given twice",
    );
    assert_rejected(
        "lambda x: np.std(x, 1, 0)",
        x,
        23,
        "at most one positional option",
    );
    assert_rejected("lambda x: x.sum(x)", x, 16, "`axis` must be a constant");
    assert_rejected(
        "lambda x: x.sum(1.5)",
        x,
        16,
        "`axis` must be an integer, got 1.5",
    );
    assert_rejected("lambda x: x[x]", x, 12, "an index must be a constant");
    assert_rejected("lambda x: x[1:2:0]", x, 16, "slice step cannot be zero");
    assert_rejected(
        "lambda x: x[:1e300]",
        x,
        13,
        "a slice bound must be an integer",
    );
}

#[test]
fn legacy_dict_form_checks_names() {
    let names = &["gm_max_forward", "gm_max_reverse"];
    assert_rejected(
        "lambda inputs: inputs['gm_max_fwd'] / inputs['gm_max_reverse']",
        names,
        22,
        "unknown input 'gm_max_fwd'; the feature's inputs are: gm_max_forward, gm_max_reverse",
    );
    assert_rejected(
        "lambda inputs: inputs['gm_max_forward'] + inputs",
        names,
        42,
        "`inputs` holds the inputs by name",
    );
    assert_rejected(
        "lambda d: d['gm_max_forward', 0]",
        names,
        11,
        "must be subscripted with one input name",
    );
    // string subscripts need the single-argument form
    assert_rejected(
        "lambda a, b: a['x']",
        names,
        15,
        "strings are only allowed as input names",
    );
    // a single non-dict argument with one input is an ordinary lambda
    let x = arr(&[4.0]);
    assert_close(
        &run("lambda inputs: inputs / 2", &["x"], &[], &[&x]),
        &arr(&[2.0]),
    );
    // and the dict form works for a single input too
    assert_close(
        &run("lambda inputs: inputs['x'][0]", &["x"], &[], &[&x]),
        &arr0(4.0).into_dyn(),
    );
}

#[test]
fn lambda_arguments_shadow_builtin_names() {
    // as in Python, an argument named `abs` or `np` hides the builtin
    let x = arr(&[-3.0]);
    assert_close(
        &run("lambda abs: abs * 2", &["x"], &[], &[&x]),
        &arr(&[-6.0]),
    );
    assert_rejected("lambda abs: abs(1)", &["x"], 12, "`abs` is not a function");
    assert_rejected(
        "lambda np: np.mean(np)",
        &["x"],
        19,
        "`axis` must be a constant",
    );
}

#[test]
fn eval_checks_the_number_of_inputs() {
    let expr = compile("lambda a, b: a + b", &["a", "b"], &[]);
    let a = arr(&[1.0]);
    let one = Column {
        rank: 0,
        cells: a.outer_iter().map(Cell::Value).collect(),
    };
    let e = expr.eval_steps(&[one]).unwrap_err();
    assert_eq!(e, "expected 2 input column(s), got 1");
}

#[test]
fn display_shows_the_line_with_a_caret() {
    let e = reject("lambda x: np.foo(x)", &["x"], &[]);
    assert_eq!(
        e.to_string(),
        "unknown numpy function `np.foo`\n    lambda x: np.foo(x)\n                 ^"
    );
    let e = reject("lambda x:\n\tx +", &["x"], &[]);
    assert_eq!(
        e.to_string(),
        "expected a number, a name or `(`, found end of input\n    \tx +\n    \t   ^"
    );
    let e = reject("lambda x: x × y", &["x"], &[]);
    assert_eq!(
        e.to_string(),
        format!("{}\n    lambda x: x × y\n                ^", e.message)
    );
}

// ---- robustness ----

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = 100_000;
    for src in [
        format!("lambda x: {}x{}", "(".repeat(deep), ")".repeat(deep)),
        format!("lambda x: {}x", "-".repeat(deep)),
        format!("lambda x: {}x", "x + ".repeat(deep)),
        format!("lambda x: x{}", "[0]".repeat(deep)),
        format!("lambda x: {}x{}", "abs(".repeat(deep), ")".repeat(deep)),
        format!("lambda x: x{}", " ** x".repeat(deep)),
    ] {
        let e = reject(&src, &["x"], &[]);
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
    }
    // moderate nesting is fine
    let src = format!("lambda x: {}x{}", "(".repeat(50), " + 1)".repeat(50));
    assert_close(&run(&src, &["x"], &[], &[&arr(&[0.0])]), &arr(&[50.0]));
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Compiles `src` (must not panic); when it compiles, evaluates it on
/// arrays of a few shapes (must not panic either) and formats any error.
fn exercise(src: &str, rng: &mut Rng) -> bool {
    let shapes: [&[usize]; 4] = [&[], &[3], &[2, 4], &[2, 0, 3]];
    let inputs = ["x", "y"];
    let params = [("k", 2.0)];
    match Expr::compile(src, &inputs, &params[..rng.below(2)]) {
        Ok(expr) => {
            for shape in shapes {
                let len = shape.iter().product();
                let values: Vec<f64> = (0..len)
                    .map(|i| if i % 5 == 3 { NAN } else { i as f64 - 2.0 })
                    .collect();
                let a = nd(shape, &values);
                let _ = eval(&expr, &[&a, &a]);
            }
            true
        }
        Err(e) => {
            assert!(e.pos <= src.len(), "{src}: pos {} beyond end", e.pos);
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "lambda",
    "lambda x, y:",
    "lambda x, y, k:",
    " ",
    "x",
    "y",
    "k",
    "inputs",
    "np",
    "numpy",
    ".",
    "mean",
    "std",
    "nanmean",
    "nanstd",
    "sum",
    "min",
    "nanmax",
    "abs",
    "log",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    "+",
    "-",
    "*",
    "**",
    "/",
    "<",
    "<=",
    "==",
    "!=",
    "=",
    "axis",
    "ddof",
    "'x'",
    "\"y\"",
    "'",
    "0",
    "1",
    "-1",
    "2.5",
    "1e-10",
    ".5",
    "1e",
    "__class__",
    "__import__",
    "os",
    "eval",
    ";",
    "é",
    "\\",
    "#",
    "//",
    "!",
    "%",
    "...",
    "if",
    "lambda",
    "\n",
    "\t",
    "x[:, 0]",
    "x[:, -1]",
    "[::-1]",
    "np.mean(x, axis=1)",
    "x.std()",
    "inputs['x']",
];

#[test]
fn random_token_soups_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let n = 1 + rng.below(24);
        let src: String = (0..n).map(|_| rng.pick(FRAGMENTS)).collect();
        exercise(&src, &mut rng);
    }
}

#[test]
fn random_mutations_of_shipped_lambdas_never_panic() {
    let shipped = [
        "lambda gm: (gm - gm.mean()) / gm.std()",
        "lambda inputs: inputs['x'] / inputs['y']",
        "lambda c: (c[:, 0] - c[:, -1]) / c[:, 0]",
        TAU_EVOLUTION,
    ];
    let alphabet: Vec<char> = "()[]:,.+-*/<=>!'\"xyk0123456789e_ ;@é".chars().collect();
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let mut chars: Vec<char> = shipped[rng.below(shipped.len())].chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(chars.len() + 1);
            let c = alphabet[rng.below(alphabet.len())];
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = c,
                _ => chars.insert(at, c),
            }
        }
        let src: String = chars.into_iter().collect();
        exercise(&src, &mut rng);
    }
}

/// A random expression inside the language, over `x`, `y` and param `k`.
fn gen_expr(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 {
        return rng
            .pick(&["x", "y", "k", "2", "0.5", "1e-3", "np.nan", "-1"])
            .to_owned();
    }
    let a = gen_expr(rng, depth - 1);
    match rng.below(8) {
        0 => format!(
            "({a} {} {})",
            rng.pick(&["+", "-", "*", "/", "**", "<", ">=", "!="]),
            gen_expr(rng, depth - 1)
        ),
        1 => format!("-{a}"),
        2 => format!(
            "np.{}({a})",
            rng.pick(&["abs", "log", "log10", "exp", "sqrt"])
        ),
        3 => format!(
            "np.{}({a}, axis={})",
            rng.pick(&[
                "mean", "std", "sum", "min", "max", "nanmean", "nanstd", "nansum", "nanmin",
                "nanmax"
            ]),
            rng.below(5) as isize - 2
        ),
        4 => format!(
            "({a}).{}()",
            rng.pick(&["mean", "std", "sum", "min", "max"])
        ),
        5 => format!(
            "({a})[{}]",
            rng.pick(&["0", "-1", ":", "::-1", "1:", ":, 0", ":, -2:", "0, 1", ":0", "5"])
        ),
        6 => format!("np.std({a}, ddof={})", rng.below(3)),
        _ => format!("abs({a})"),
    }
}

#[test]
fn random_valid_expressions_compile_and_never_panic() {
    let mut rng = Rng(7);
    let mut evaluated_ok = 0;
    for _ in 0..3_000 {
        let depth = 1 + rng.below(4);
        let src = format!("lambda x, y, k=3: {}", gen_expr(&mut rng, depth));
        assert!(exercise(&src, &mut rng), "{src} should compile");
        let expr = compile(&src, &["x", "y"], &[]);
        let a = nd(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        if eval(&expr, &[&a, &a]).is_ok() {
            evaluated_ok += 1;
        }
    }
    // the generator is not vacuous: many expressions also evaluate cleanly
    assert!(evaluated_ok > 1_000, "{evaluated_ok}");
}

#[test]
fn inputs_are_not_modified_and_results_are_owned() {
    let x = arr(&[1.0, 2.0, 3.0]);
    let out = run("lambda x: x[::-1]", &["x"], &[], &[&x]);
    assert_eq!(out, array![3.0, 2.0, 1.0].into_dyn());
    assert_eq!(x, array![1.0, 2.0, 3.0].into_dyn());
    // a bare input round-trips unchanged
    assert_eq!(run("lambda x: x", &["x"], &[], &[&x]), x);
}

// ---- per-step semantics on ragged columns ----

fn ragged(steps: &[ArrayD<f64>]) -> Vec<Cell<'_>> {
    steps.iter().map(|a| Cell::Value(a.view())).collect()
}

fn values(cells: Vec<OutCell>) -> Vec<f64> {
    cells
        .into_iter()
        .map(|c| match c {
            OutCell::Value(a) => {
                assert_eq!(a.ndim(), 0, "{a}");
                a.iter().copied().next().unwrap()
            }
            OutCell::Failed(m) => panic!("failed: {m}"),
            OutCell::Absent => f64::NAN,
        })
        .collect()
}

/// Per-cycle `[tau_on, tau_off]` of `n` cycles: tau_on = base + cycle.
fn tau_step(n: usize, base: f64) -> ArrayD<f64> {
    let v: Vec<f64> = (0..n).flat_map(|c| [base + c as f64, 0.5]).collect();
    nd(&[n, 2], &v)
}

#[test]
fn slices_and_reductions_apply_to_each_steps_own_cycles() {
    // 12, 15 and 3 cycles: padding to 15 would put NaN into the first step's last ten.
    let steps = [tau_step(12, 100.0), tau_step(15, 200.0), tau_step(3, 300.0)];
    let src = "lambda tau: (np.nanmean(tau[:, :10, 0], axis=1) - np.nanmean(tau[:, -10:, 0], axis=1)) / (np.nanmean(tau[:, :10, 0], axis=1) + 1e-10)";
    let expr = compile(src, &["tau"], &[]);
    let got = values(
        expr.eval_steps(&[Column {
            rank: 2,
            cells: ragged(&steps),
        }])
        .unwrap(),
    );
    // [np.nanmean(t[:10, 0]) - np.nanmean(t[-10:, 0]) ...] for each step t.
    let reference = |n: usize, base: f64| {
        let on: Vec<f64> = (0..n).map(|c| base + c as f64).collect();
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let first = mean(&on[..n.min(10)]);
        let last = mean(&on[n.saturating_sub(10)..]);
        (first - last) / (first + 1e-10)
    };
    for (g, want) in got.iter().zip([
        reference(12, 100.0),
        reference(15, 200.0),
        reference(3, 300.0),
    ]) {
        assert!((g - want).abs() < 1e-12, "{got:?}");
    }
    // The last cycle of each step, not padding.
    let last = compile("lambda tau: tau[:, -1, 0]", &["tau"], &[]);
    let got = values(
        last.eval_steps(&[Column {
            rank: 2,
            cells: ragged(&steps),
        }])
        .unwrap(),
    );
    assert_eq!(got, vec![111.0, 214.0, 302.0]);
}

#[test]
fn absent_rows_are_padding_and_failed_rows_are_nan() {
    let a = [arr0(1.0).into_dyn(), arr0(3.0).into_dyn()];
    fn column(cells: Vec<Cell<'_>>) -> Column<'_> {
        Column { rank: 0, cells }
    }
    let cells = vec![
        Cell::Value(a[0].view()),
        Cell::Absent,
        Cell::Value(a[1].view()),
    ];
    // An absent row stays absent and is not seen by the mean.
    let z = compile("lambda x: x - x.mean()", &["x"], &[]);
    let out = z.eval_steps(&[column(cells.clone())]).unwrap();
    assert_eq!(out[1], OutCell::Absent);
    assert_eq!(out[0], OutCell::Value(arr0(-1.0).into_dyn()));
    // A failed row is NaN to numpy's reductions and fails itself.
    let cells = vec![
        Cell::Value(a[0].view()),
        Cell::Failed("input 'x' failed at this step".to_string().into()),
        Cell::Value(a[1].view()),
    ];
    let out = z.eval_steps(&[column(cells.clone())]).unwrap();
    assert!(matches!(&out[1], OutCell::Failed(m) if m.message.contains("failed")));
    assert!(matches!(&out[0], OutCell::Value(v) if v.iter().all(|x| x.is_nan())));
    let nan_mean = compile("lambda x: x - np.nanmean(x)", &["x"], &[]);
    let out = nan_mean.eval_steps(&[column(cells)]).unwrap();
    assert_eq!(out[2], OutCell::Value(arr0(1.0).into_dyn()));
}

#[test]
fn a_reduction_across_ragged_steps_uses_the_steps_that_have_each_position() {
    let steps = [arr(&[1.0, 2.0, 3.0]), arr(&[5.0])];
    let expr = compile("lambda c: c - np.mean(c, axis=0)", &["c"], &[]);
    // Mean over steps per position: [3, 2, 3]; each step minus its own length's prefix.
    let out = expr
        .eval_steps(&[Column {
            rank: 1,
            cells: ragged(&steps),
        }])
        .unwrap();
    assert_eq!(out[0], OutCell::Value(arr(&[-2.0, 0.0, 0.0])));
    // numpy: shape (1,) minus shape (3,) broadcasts to (3,).
    assert_eq!(out[1], OutCell::Value(arr(&[2.0, 3.0, 2.0])));
    // Indexing across steps needs equal shapes, and says so.
    let across = compile("lambda c: c[0] + c[:, 0]", &["c"], &[]);
    let e = across
        .eval_steps(&[Column {
            rank: 1,
            cells: ragged(&steps),
        }])
        .unwrap_err();
    assert!(e.contains("same shape"), "{e}");
}

#[test]
fn an_index_past_a_steps_end_fails_that_step_only() {
    let steps = [arr(&[1.0, 2.0, 3.0]), arr(&[])];
    let expr = compile("lambda c: c[:, -1]", &["c"], &[]);
    let out = expr
        .eval_steps(&[Column {
            rank: 1,
            cells: ragged(&steps),
        }])
        .unwrap();
    assert_eq!(out[0], OutCell::Value(arr0(3.0).into_dyn()));
    assert!(matches!(&out[1], OutCell::Failed(m) if m.message.contains("out of bounds")));
}

#[test]
fn static_shapes_decide_the_layout_and_catch_errors_before_any_data() {
    use super::Extent::{Dyn, Fixed};
    let shape = |src: &str, inputs: &[Vec<super::Extent>]| {
        let names: Vec<String> = (0..inputs.len()).map(|i| format!("x{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        compile(src, &names, &[]).per_step_shape(inputs)
    };
    let tau = vec![Dyn, Fixed(2)];
    assert_eq!(
        shape("lambda t: t[:, :, 0]", std::slice::from_ref(&tau)),
        Ok(vec![Dyn])
    );
    assert_eq!(
        shape(
            "lambda t: np.nanmean(t[:, :, 1], axis=1)",
            std::slice::from_ref(&tau)
        ),
        Ok(vec![])
    );
    assert_eq!(
        shape("lambda t: t[:, -10:]", std::slice::from_ref(&tau)),
        Ok(vec![Dyn, Fixed(2)])
    );
    assert_eq!(
        shape("lambda g: (g - g.mean()) / g.std()", &[vec![]]),
        Ok(vec![])
    );
    let e = shape("lambda t: t[:, :, 2]", std::slice::from_ref(&tau)).unwrap_err();
    assert!(e.contains("out of bounds"), "{e}");
    let e = shape("lambda t: np.mean(t, axis=3)", std::slice::from_ref(&tau)).unwrap_err();
    assert!(e.contains("axis 3"), "{e}");
    let e = shape("lambda g: g.mean()", &[vec![]]).unwrap_err();
    assert!(e.contains("whole experiment"), "{e}");
    let e = shape("lambda a, b: a + b", &[vec![Fixed(2)], vec![Fixed(3)]]).unwrap_err();
    assert!(e.contains("broadcast"), "{e}");
}
