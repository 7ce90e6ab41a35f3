//! `transient.decay_time` for one step (spec §3.5): the time constant of a
//! single exponential `|I| ≈ A·exp(-(t - t₀)/τ)` fitted to a fractional window
//! of the step.
//!
//! Both methods share the predecessor's window: with `N = len(t)`, samples
//! `[trunc(N·r0), trunc(N·r1))` (Python slice semantics, so negative bounds
//! count from the end and `r1 ≤ r0` gives an empty window), then only samples
//! with `|I| > 0` and finite `t`, `|I|` are kept; fewer than 3 → NaN.

use oect_plugin_api::{Choice, StepFailure};

use crate::stats::round_f32;
use crate::trf::{least_squares, TrfOptions};
use crate::Solver;

/// The predecessor's `curve_fit(..., maxfev=1000)`.
const COMPAT_MAX_NFEV: usize = 1000;
/// Least share of the window's variance the fitted exponential must explain: below it the
/// window is not one decay (a pulse train, noise, a step).
const MIN_R_SQUARED: f64 = 0.9;
/// Largest standard error of the fitted rate relative to the rate: beyond it the window
/// cannot tell this τ from a much longer one (the rate is not three standard errors from 0).
const MAX_RELATIVE_ERROR: f64 = 1.0 / 3.0;

/// Which model is fitted. (The predecessor turned an unknown method into a NaN per step;
/// it is a load-time error here.)
#[derive(Choice, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecayMethod {
    /// Least-squares fit of `A·exp(-x/τ)` to `|I|`.
    #[default]
    Exponential,
    /// Least-squares line through `ln|I|`; `τ = -1/slope`.
    Linear,
}

/// What `transient.decay_time` reports for one step: with `solver: compat`, the
/// predecessor's value whatever it is ([`decay_time`]); otherwise a time constant that the
/// window supports, or "no result" (a [`StepFailure`] of kind `NoResult`, its message
/// starting with `no fit: `) that says why there is none:
/// fewer than 3 usable samples, a current that grows or stays constant, a decay faster than
/// the sampling, a fit that explains less than 90 % of the window's variance (the step is a
/// pulse train or noise, not one decay), or a τ whose standard error exceeds a third of it
/// (the window cannot resolve it).
pub fn extract(
    t: &[f64],
    i: &[f64],
    fit_range: (f64, f64),
    method: DecayMethod,
    solver: Solver,
) -> Result<f64, StepFailure> {
    if solver == Solver::Compat {
        return Ok(decay_time(t, i, fit_range, method, solver));
    }
    let no_fit = |why: String| StepFailure::no_result(format!("no fit: {why}"));
    let Some((tw, yw)) = fit_window(t, i, fit_range) else {
        return Err(no_fit(format!(
            "fewer than 3 usable samples (finite, |I| > 0) in the window {fit_range:?} of the step"
        )));
    };
    let fit = match method {
        DecayMethod::Linear => linear_fit(&tw, &yw),
        DecayMethod::Exponential => robust_fit(&tw, &yw),
    };
    let tau = match method {
        DecayMethod::Linear => round_f32(fit.tau),
        DecayMethod::Exponential => fit.tau,
    };
    if tau.is_nan() {
        return Err(no_fit(
            "the window cannot be fitted (all sample times equal, or a decay faster than the sampling)"
                .into(),
        ));
    }
    if tau.is_infinite() || tau == 0.0 {
        return Err(no_fit("the current does not decay over the window".into()));
    }
    if fit.r_squared.is_nan() || fit.r_squared < MIN_R_SQUARED {
        return Err(no_fit(format!(
            "a single exponential explains only R² = {:.3} of the window (τ would be {tau:.3e} s); \
             the step is not one decay (a pulse train? set fit_range to one transition)",
            fit.r_squared
        )));
    }
    if tau < 0.0 {
        return Err(no_fit(format!(
            "|I| grows over the window (best fit τ = {tau:.3e} s); a decay time needs a decaying current"
        )));
    }
    if fit.relative_error.is_nan() || fit.relative_error > MAX_RELATIVE_ERROR {
        return Err(no_fit(format!(
            "τ = {tau:.3e} s is not resolved by the window (standard error {:.0} % of it)",
            100.0 * fit.relative_error
        )));
    }
    Ok(tau)
}

/// A fitted τ and how well the window supports it.
struct Fit {
    tau: f64,
    /// Share of the window's variance the model explains.
    r_squared: f64,
    /// Standard error of the fitted rate `1/τ`, relative to it (NaN when τ is not finite).
    relative_error: f64,
}

/// Decay time constant of one step, in the unit of `t`, as fitted, without checking that
/// it is physical (that is [`extract`]'s job); NaN where no value
/// can be given (window with fewer than 3 usable samples, `t` and `i` of
/// different lengths, non-finite `fit_range`).
///
/// * `Linear` (both solvers): closed-form OLS slope of `ln|I|` against
///   `t - t[0]`, `τ = -1/slope`, f32-rounded; no sign guard (rising data give
///   τ < 0, a zero slope ±inf); all-equal times → NaN.
/// * `Exponential` + `Robust`: minimises `Σ (A·e^{-x/τ} − |I|)²` over all
///   `A` and `τ` (either sign, so a growing window gives τ < 0 like `Linear`),
///   with `A` eliminated in closed form (variable projection): only a 1-D
///   problem in the rate `k = 1/τ` remains. To be independent of the current
///   and time scales it works on `|I| / max|I|` and on `x` mapped onto
///   `[0, 1]` (this changes A but not τ). For each sign of `k`, `|k|` is
///   bracketed on a grid (0 and octaves from 1/1024 to 40 per shortest sample
///   interval, in window units), every sign change of the exact derivative is
///   refined by safeguarded Newton (analytic second derivative, bisection
///   fallback), and the stationary point with the smallest residual wins.
///   Stationary points closer together than one grid octave may be missed.
///   Results: `+inf` when the best fit is a constant (`k = 0`), NaN when the
///   best rate lies beyond the grid (faster than the sampling can resolve) or
///   all times are equal. Output is full f64. There is no offset term: on
///   `A·e^{-x/τ} + C` it returns the best offset-free fit, not the τ of the
///   exponential part.
/// * `Exponential` + `Compat`: the predecessor literally (spec §3.5.3–3.5.4):
///   scipy's TRF from `p0 = (|I|[0], (t_last − t_first)/2)`, and its
///   half-life estimate when the fit raises; f32-rounded.
pub fn decay_time(
    t: &[f64],
    i: &[f64],
    fit_range: (f64, f64),
    method: DecayMethod,
    solver: Solver,
) -> f64 {
    let Some((tw, yw)) = fit_window(t, i, fit_range) else {
        return f64::NAN;
    };
    match (method, solver) {
        (DecayMethod::Linear, _) => round_f32(linear_fit(&tw, &yw).tau),
        (DecayMethod::Exponential, Solver::Robust) => robust_fit(&tw, &yw).tau,
        (DecayMethod::Exponential, Solver::Compat) => round_f32(compat_tau(&tw, &yw)),
    }
}

/// The predecessor's window and sample filter; `None` below 3 samples.
fn fit_window(t: &[f64], i: &[f64], (r0, r1): (f64, f64)) -> Option<(Vec<f64>, Vec<f64>)> {
    if t.len() != i.len() {
        return None;
    }
    let n = t.len();
    let start = py_slice_index(n as f64 * r0, n)?;
    let end = py_slice_index(n as f64 * r1, n)?;
    if end <= start {
        return None;
    }
    let (tw, yw): (Vec<f64>, Vec<f64>) = t[start..end]
        .iter()
        .zip(&i[start..end])
        .map(|(&tv, &iv)| (tv, iv.abs()))
        .filter(|&(tv, yv)| yv > 0.0 && yv.is_finite() && tv.is_finite())
        .unzip();
    (tw.len() >= 3).then_some((tw, yw))
}

/// `int(v)` used as a Python slice bound on a sequence of length `n`.
/// `int()` of NaN or inf raises in Python, hence `None`.
fn py_slice_index(v: f64, n: usize) -> Option<usize> {
    if !v.is_finite() {
        return None;
    }
    let v = v.trunc();
    let n_f = n as f64;
    Some(if v < 0.0 {
        (v + n_f).max(0.0) as usize
    } else {
        v.min(n_f) as usize
    })
}

/// `-1 / slope` of the least-squares line through `(t - t[0], ln y)`.
fn linear_fit(tw: &[f64], yw: &[f64]) -> Fit {
    let m = tw.len() as f64;
    let x: Vec<f64> = tw.iter().map(|&v| v - tw[0]).collect();
    let z: Vec<f64> = yw.iter().map(|v| v.ln()).collect();
    let x_mean = x.iter().sum::<f64>() / m;
    let z_mean = z.iter().sum::<f64>() / m;
    let (sxz, sxx, szz) = x
        .iter()
        .zip(&z)
        .fold((0.0, 0.0, 0.0), |(sxz, sxx, szz), (&xv, &zv)| {
            let (dx, dz) = (xv - x_mean, zv - z_mean);
            (sxz + dx * dz, sxx + dx * dx, szz + dz * dz)
        });
    if sxx == 0.0 {
        // numpy.polyfit raises on a rank-deficient design (all times equal).
        return Fit {
            tau: f64::NAN,
            r_squared: f64::NAN,
            relative_error: f64::NAN,
        };
    }
    let slope = sxz / sxx;
    let residual = (szz - slope * sxz).max(0.0);
    let se = (residual / (m - 2.0).max(1.0) / sxx).sqrt();
    Fit {
        tau: -1.0 / slope,
        r_squared: if szz > 0.0 {
            sxz * sxz / (sxx * szz)
        } else {
            f64::NAN
        },
        relative_error: se / slope.abs(),
    }
}

/// Lower end of the rate grid in window units (τ = 1024 window spans).
const RATE_GRID_LO: f64 = 1.0 / 1024.0;
/// Upper end of the rate grid, per shortest sample interval: `e^-40 ≈ 4e-18`,
/// beyond which the other samples cannot influence an f64 least-squares fit.
const RATE_GRID_HI_PER_SAMPLE: f64 = 40.0;
/// The grid doubles the rate, so its exponentials are the previous ones
/// squared; recomputing them exactly every this many octaves bounds the
/// accumulated rounding to ~2^15 ulp (1e-11 relative, ample for bracketing)
/// while saving most `exp` calls.
const GRID_EXACT_EVERY: usize = 16;
/// Independent partial sums per accumulator: pairs map onto SSE2 registers
/// and all of them still fit in registers (4 lanes spill and run slower).
const LANES: usize = 2;

/// Sums over the normalised window at rate `k`, with `e = exp(-k·u)`, `u ∈ [0, 1]`.
#[derive(Clone, Copy, Default)]
struct ProjSums {
    ye: f64,
    ee: f64,
    yue: f64,
    uee: f64,
    yuue: f64,
    uuee: f64,
}

/// `exp(-k·u)` for all `u` into `e`. Arguments below -746 underflow to 0
/// anyway; short-cutting them avoids libm's slow underflow path.
fn fill_exp(w: &[f64], k: f64, e: &mut [f64]) {
    for (ev, &u) in e.iter_mut().zip(w) {
        let arg = -k * u;
        *ev = if arg < -746.0 { 0.0 } else { arg.exp() };
    }
}

impl ProjSums {
    /// Sums at rate `k`; `scratch` receives the exponentials.
    fn at(w: &[f64], y: &[f64], k: f64, scratch: &mut [f64]) -> Self {
        fill_exp(w, k, scratch);
        Self::accumulate::<true>(w, y, scratch)
    }

    /// The sums for the exponentials `e`; the second-order ones (only needed
    /// by Newton) are left at 0 unless `SECOND_ORDER`.
    fn accumulate<const SECOND_ORDER: bool>(w: &[f64], y: &[f64], e: &[f64]) -> Self {
        let mut acc = [[0.0; LANES]; 6];
        let body = w.len() / LANES * LANES;
        let chunks = w[..body]
            .chunks_exact(LANES)
            .zip(y[..body].chunks_exact(LANES))
            .zip(e[..body].chunks_exact(LANES));
        for ((wc, yc), ec) in chunks {
            for (lane, ((&u, &y), &e)) in wc.iter().zip(yc).zip(ec).enumerate() {
                let ye = y * e;
                let ee = e * e;
                acc[0][lane] += ye;
                acc[1][lane] += ee;
                acc[2][lane] += u * ye;
                acc[3][lane] += u * ee;
                if SECOND_ORDER {
                    acc[4][lane] += u * u * ye;
                    acc[5][lane] += u * u * ee;
                }
            }
        }
        let mut total = acc.map(|lanes| lanes.iter().sum::<f64>());
        for ((&u, &y), &e) in w[body..].iter().zip(&y[body..]).zip(&e[body..]) {
            let (ye, ee) = (y * e, e * e);
            total[0] += ye;
            total[1] += ee;
            total[2] += u * ye;
            total[3] += u * ee;
            if SECOND_ORDER {
                total[4] += u * u * ye;
                total[5] += u * u * ee;
            }
        }
        let [ye, ee, yue, uee, yuue, uuee] = total;
        Self {
            ye,
            ee,
            yue,
            uee,
            yuue,
            uuee,
        }
    }

    /// Explained sum of squares `(Σye)²/Σe²`: the residual is `Σy² − this`.
    fn explained(&self) -> f64 {
        self.ye * self.ye / self.ee
    }

    /// Has the sign of d(explained)/dk (the positive factor 2·Σye/(Σe²)² dropped).
    fn slope(&self) -> f64 {
        self.ye * self.uee - self.ee * self.yue
    }

    /// d(slope)/dk.
    fn slope_derivative(&self) -> f64 {
        self.yue * self.uee - 2.0 * self.ye * self.uuee + self.ee * self.yuue
    }
}

/// Variable-projection fit of `A·exp(-x/τ)`; see [`decay_time`].
fn robust_fit(tw: &[f64], yw: &[f64]) -> Fit {
    let unfit = |tau: f64| Fit {
        tau,
        r_squared: f64::NAN,
        relative_error: f64::NAN,
    };
    let x: Vec<f64> = tw.iter().map(|&v| v - tw[0]).collect();
    let (x_min, x_max) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = x_max - x_min;
    if !(span > 0.0 && span.is_finite()) {
        return unfit(f64::NAN);
    }
    let y_max = yw.iter().fold(0.0_f64, |m, &v| m.max(v));
    let y: Vec<f64> = yw.iter().map(|&v| v / y_max).collect();
    // A decay is measured from the earliest x and a growth from the latest:
    // then every exponential is ≤ 1 (no overflow) and one equals 1 (Σe² ≥ 1).
    // Moving the origin only rescales A, which is solved for anyway.
    let from_start: Vec<f64> = x.iter().map(|&v| (v - x_min) / span).collect();
    let from_end: Vec<f64> = x.iter().map(|&v| (x_max - v) / span).collect();
    let decay = best_rate(&from_start, &y);
    let growth = best_rate(&from_end, &y);
    let (best, sign, w) = if growth.explained > decay.explained {
        (growth, -1.0, &from_end)
    } else {
        (decay, 1.0, &from_start)
    };
    let k = match best.rate {
        None => return unfit(f64::NAN),
        Some(k) if k > 0.0 => k,
        Some(_) => return unfit(f64::INFINITY),
    };
    // Quality at the optimum: share of variance explained, and the rate's standard error
    // from the Gauss-Newton covariance of (A, k).
    let m = y.len() as f64;
    let mut scratch = vec![0.0; y.len()];
    let sums = ProjSums::at(w, &y, k, &mut scratch);
    let yy: f64 = y.iter().map(|v| v * v).sum();
    let mean = y.iter().sum::<f64>() / m;
    let tss: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
    let rss = (yy - sums.explained()).max(0.0);
    let a = sums.ye / sums.ee;
    let det = a * a * (sums.ee * sums.uuee - sums.uee * sums.uee);
    let var_k = rss / (m - 2.0).max(1.0) * sums.ee / det;
    Fit {
        tau: sign * span / k,
        r_squared: if tss > 0.0 { 1.0 - rss / tss } else { f64::NAN },
        relative_error: if det > 0.0 {
            var_k.max(0.0).sqrt() / k
        } else {
            f64::INFINITY
        },
    }
}

/// Best non-negative rate found by [`best_rate`].
struct RateFit {
    /// `None`: the fit keeps improving up to the top of the grid.
    rate: Option<f64>,
    explained: f64,
}

/// Maximises the explained sum of squares over rates `k ≥ 0` for
/// `y ≈ A·exp(-k·w)`, `w ∈ [0, 1]`.
fn best_rate(w: &[f64], y: &[f64]) -> RateFit {
    let dw_min = w
        .iter()
        .filter(|&&v| v > 0.0)
        .fold(1.0_f64, |m, &v| m.min(v));
    let k_hi = RATE_GRID_HI_PER_SAMPLE / dw_min;
    let mut grid = vec![0.0];
    let mut k = RATE_GRID_LO;
    loop {
        grid.push(k);
        if k >= k_hi {
            break;
        }
        k *= 2.0;
    }
    let mut e = vec![1.0; w.len()];
    let sums: Vec<ProjSums> = grid
        .iter()
        .enumerate()
        .map(|(j, &k)| {
            if j > 0 && (j - 1) % GRID_EXACT_EVERY == 0 {
                fill_exp(w, k, &mut e);
            } else if j > 0 {
                for ev in e.iter_mut() {
                    *ev *= *ev;
                }
            }
            ProjSums::accumulate::<false>(w, y, &e)
        })
        .collect();

    // Candidates: k = 0 (no decay), each interior local maximum, and the top
    // of the grid (unresolved).
    let mut best = RateFit {
        rate: Some(0.0),
        explained: sums[0].explained(),
    };
    for j in 0..grid.len() - 1 {
        if sums[j].slope() > 0.0 && sums[j + 1].slope() <= 0.0 {
            let k = refine_rate(w, y, (grid[j], sums[j]), (grid[j + 1], sums[j + 1]), &mut e);
            let explained = ProjSums::at(w, y, k, &mut e).explained();
            if explained > best.explained {
                best = RateFit {
                    rate: Some(k),
                    explained,
                };
            }
        }
    }
    let top = sums[grid.len() - 1].explained();
    if top > best.explained {
        best = RateFit {
            rate: None,
            explained: top,
        };
    }
    best
}

/// Root of the projected gradient inside `[lo, hi]` (positive at `lo`,
/// non-positive at `hi`): Newton steps from the regula-falsi point, replaced
/// by bisection whenever they would leave the bracket.
fn refine_rate(
    w: &[f64],
    y: &[f64],
    lo: (f64, ProjSums),
    hi: (f64, ProjSums),
    scratch: &mut [f64],
) -> f64 {
    let (mut a, mut b) = (lo.0, hi.0);
    let (ga, gb) = (lo.1.slope(), hi.1.slope());
    let mut k = a + (b - a) * (ga / (ga - gb));
    if !(k > a && k < b) {
        k = 0.5 * (a + b);
    }
    for _ in 0..100 {
        let s = ProjSums::at(w, y, k, scratch);
        let g = s.slope();
        if g == 0.0 {
            return k;
        }
        if g > 0.0 {
            a = k;
        } else {
            b = k;
        }
        let newton = k - g / s.slope_derivative();
        let next = if newton > a && newton < b {
            newton
        } else {
            0.5 * (a + b)
        };
        // Newton converges quadratically: once a step is below 1e-12 the
        // remaining error is rounding noise.
        if (next - k).abs() <= 1e-12 * next.abs() || next <= a || next >= b {
            return next;
        }
        k = next;
    }
    k
}

/// The predecessor's answer when `curve_fit` raised: the time at which |I|
/// comes closest to half its first value, divided by ln 2.
fn half_life_tau(tw: &[f64], yw: &[f64]) -> f64 {
    let half = yw[0] / 2.0;
    let k = yw
        .iter()
        .enumerate()
        .fold((0, f64::INFINITY), |(bk, bd), (k, &v)| {
            let d = (v - half).abs();
            if d < bd {
                (k, d)
            } else {
                (bk, bd)
            }
        })
        .0;
    (tw[k] - tw[0]) / std::f64::consts::LN_2
}

/// `curve_fit(I0·exp(-x/τ), p0, bounds = ([0, 0], [inf, inf]), maxfev = 1000)`
/// as the predecessor calls it, falling back to [`half_life_tau`] wherever
/// scipy raises (infeasible start, non-finite residuals or Jacobian, budget
/// exhausted).
fn compat_tau(tw: &[f64], yw: &[f64]) -> f64 {
    let x: Vec<f64> = tw.iter().map(|&v| v - tw[0]).collect();
    let p0 = [yw[0], (tw[tw.len() - 1] - tw[0]) / 2.0];
    // Same operation order as the Python model: I0 * exp((-x) / tau) - y.
    let residuals = |p: &[f64], out: &mut [f64]| {
        for ((o, &xv), &yv) in out.iter_mut().zip(&x).zip(yw) {
            *o = p[0] * (-xv / p[1]).exp() - yv;
        }
    };
    let bounds_lo = [0.0, 0.0];
    let bounds_hi = [f64::INFINITY, f64::INFINITY];
    let opts = TrfOptions::with_max_nfev(COMPAT_MAX_NFEV);
    match least_squares(residuals, x.len(), &p0, &bounds_lo, &bounds_hi, &opts) {
        Ok(fit) => fit.x[1],
        Err(_) => half_life_tau(tw, yw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DT: f64 = 1e-3;

    /// 2,000 samples at 1 kHz starting at t = 12.5 s, current `f(t - 12.5)`.
    fn step(f: impl Fn(f64) -> f64) -> (Vec<f64>, Vec<f64>) {
        let t: Vec<f64> = (0..2000).map(|k| 12.5 + k as f64 * DT).collect();
        let i = t.iter().map(|&v| f(v - 12.5)).collect();
        (t, i)
    }

    fn robust(t: &[f64], i: &[f64], range: (f64, f64)) -> f64 {
        decay_time(t, i, range, DecayMethod::Exponential, Solver::Robust)
    }

    /// Deterministic noise in [-1, 1).
    fn noise(len: usize) -> Vec<f64> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    #[test]
    fn robust_recovers_clean_decays_at_any_scale() {
        for tau in [0.002, 0.05, 0.3, 2.0, 20.0] {
            for amp in [3e-12, 3e-6, -2e-3] {
                let (t, i) = step(|x| amp * (-x / tau).exp());
                for range in [(0.1, 0.9), (0.0, 1.0), (0.5, 0.6)] {
                    let got = robust(&t, &i, range);
                    assert!(
                        ((got - tau) / tau).abs() < 1e-9,
                        "tau {tau} amp {amp} {range:?}: {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn robust_tolerates_noise() {
        let tau = 0.12;
        let n = noise(2000);
        let (t, mut i) = step(|x| 1e-4 * (-x / tau).exp());
        for (v, e) in i.iter_mut().zip(&n) {
            *v *= 1.0 + 0.01 * e;
        }
        let got = robust(&t, &i, (0.0, 1.0));
        assert!(((got - tau) / tau).abs() < 0.01, "{got}");
    }

    #[test]
    fn robust_fits_growth_as_negative_tau() {
        let (t, i) = step(|x| 2e-6 * (x / 0.4).exp());
        let got = robust(&t, &i, (0.1, 0.9));
        assert!(((got + 0.4) / 0.4).abs() < 1e-9, "{got}");
        // A decay along the samples on a time axis that runs backwards is a
        // growth in t - t[0].
        let (t, i) = step(|x| 2e-6 * (-x / 0.4).exp());
        let t_rev: Vec<f64> = t.iter().map(|v| 25.0 - v).collect();
        let got = robust(&t_rev, &i, (0.0, 1.0));
        assert!(((got + 0.4) / 0.4).abs() < 1e-9, "{got}");
    }

    /// With an offset the model is wrong; robust must still return the exact
    /// least-squares optimum of the offset-free model, which is not the τ of
    /// the exponential part.
    #[test]
    fn robust_with_offset_is_the_offset_free_optimum() {
        let (t, i) = step(|x| 8e-5 * (-x / 0.08).exp() + 2e-5);
        let got = robust(&t, &i, (0.1, 0.9));
        let (s, e) = (200, 1800);
        let rss = |tau: f64| {
            let w: Vec<f64> = t[s..e].iter().map(|&v| (-(v - t[s]) / tau).exp()).collect();
            let y = &i[s..e];
            let a = y.iter().zip(&w).map(|(y, w)| y * w).sum::<f64>()
                / w.iter().map(|w| w * w).sum::<f64>();
            y.iter()
                .zip(&w)
                .map(|(y, w)| (a * w - y).powi(2))
                .sum::<f64>()
        };
        for factor in [1.0 - 1e-4, 1.0 + 1e-4, 0.5, 2.0] {
            assert!(rss(got) < rss(got * factor), "not a minimum at {got}");
        }
        assert!(got > 0.2, "offset inflates the offset-free τ: {got}");
    }

    #[test]
    fn robust_degenerate_windows() {
        // Constant current: the best fit is a constant, τ = ∞.
        let (t, i) = step(|_| 3e-5);
        assert_eq!(robust(&t, &i, (0.1, 0.9)), f64::INFINITY);
        // All times equal: nothing to fit.
        let t_const = vec![1.0; 200];
        let (_, i) = step(|x| 1e-4 * (-x / 0.05).exp());
        assert!(robust(&t_const, &i[..200], (0.0, 1.0)).is_nan());
        // A decay of 30 decades per sample is beyond what f64 least squares
        // can resolve.
        let t = [0.0, 1.0, 2.0, 3.0];
        let i = [1.0, 1e-30, 1e-60, 1e-90];
        assert!(robust(&t, &i, (0.0, 1.0)).is_nan());
        // Resolvable: a factor of 2 per sample (τ = 1/ln 2).
        let i = [8.0, 4.0, 2.0, 1.0];
        let got = robust(&t, &i, (0.0, 1.0));
        assert!((got * std::f64::consts::LN_2 - 1.0).abs() < 1e-12, "{got}");
    }

    #[test]
    fn window_follows_python_slicing() {
        let (t, i) = step(|x| 1e-4 * (-x / 0.05).exp() * (1.0 + 0.3 * (x * 40.0).sin()));
        let lin = |r| decay_time(&t, &i, r, DecayMethod::Linear, Solver::Compat);
        // int(2000 * -0.5) = -1000 counts from the end: the same as 0.5.
        assert_eq!(lin((-0.5, 1.0)).to_bits(), lin((0.5, 1.0)).to_bits());
        // Bounds beyond the end are clamped.
        assert_eq!(lin((0.5, 7.0)).to_bits(), lin((0.5, 1.0)).to_bits());
        assert!(lin((0.9, 0.1)).is_nan());
        assert!(lin((f64::NAN, 1.0)).is_nan());
        assert!(lin((0.0, f64::INFINITY)).is_nan());
        // 3 usable samples are enough, 2 are not (2000 * 0.0015 = 3).
        assert!(!lin((0.0, 0.0015)).is_nan());
        assert!(lin((0.0, 0.001)).is_nan());
        // Mismatched lengths cannot be fitted.
        assert!(decay_time(&t[1..], &i, (0.0, 1.0), DecayMethod::Linear, Solver::Compat).is_nan());
    }

    #[test]
    fn window_drops_zero_and_non_finite_samples() {
        let (t, mut i) = step(|x| 1e-4 * (-x / 0.05).exp());
        let clean = robust(&t, &i, (0.0, 1.0));
        i[10] = 0.0;
        i[11] = f64::NAN;
        i[12] = f64::INFINITY;
        let mut t = t;
        t[13] = f64::NAN;
        assert!((robust(&t, &i, (0.0, 1.0)) - clean).abs() < 1e-12 * clean);
    }

    #[test]
    fn linear_has_no_sign_guard() {
        let (t, i) = step(|x| 1e-6 * (x / 0.25).exp());
        let got = decay_time(&t, &i, (0.0, 1.0), DecayMethod::Linear, Solver::Robust);
        assert_eq!(got, round_f32(-0.25));
        let t_const = vec![2.0; 100];
        let got = decay_time(
            &t_const,
            &i[..100],
            (0.0, 1.0),
            DecayMethod::Linear,
            Solver::Robust,
        );
        assert!(got.is_nan());
    }

    #[test]
    fn compat_falls_back_to_half_life() {
        // A decreasing time axis makes the start guess τ < 0 infeasible.
        let (t, i) = step(|x| 1e-4 * (-x / 0.05).exp());
        let t_rev: Vec<f64> = t.iter().map(|v| 25.0 - v).collect();
        let got = decay_time(
            &t_rev,
            &i,
            (0.0, 1.0),
            DecayMethod::Exponential,
            Solver::Compat,
        );
        // |I| halves after 35 samples (0.05·ln 2 = 34.66 ms), measured backwards.
        assert_eq!(got, round_f32(-0.035 / std::f64::consts::LN_2));
    }

    fn checked(
        t: &[f64],
        i: &[f64],
        range: (f64, f64),
        method: DecayMethod,
    ) -> Result<f64, StepFailure> {
        extract(t, i, range, method, Solver::Robust)
    }

    #[test]
    fn a_clean_or_noisy_decay_is_reported() {
        let tau = 0.12;
        let n = noise(2000);
        let (t, mut i) = step(|x| 1e-4 * (-x / tau).exp());
        for (v, e) in i.iter_mut().zip(&n) {
            *v *= 1.0 + 0.01 * e;
        }
        for method in [DecayMethod::Exponential, DecayMethod::Linear] {
            let got = checked(&t, &i, (0.0, 1.0), method).unwrap();
            assert!(((got - tau) / tau).abs() < 0.02, "{method:?}: {got}");
        }
    }

    #[test]
    fn non_physical_fits_are_no_fit_with_a_reason() {
        let no_fit = |r: Result<f64, StepFailure>, needle: &str| {
            let e = r.unwrap_err();
            assert_eq!(e.kind, oect_plugin_api::FailureKind::NoResult, "{e:?}");
            let e = e.message.as_str();
            assert!(e.starts_with(NO_FIT_PREFIX) && e.contains(needle), "{e}");
        };
        // A growing current: the fit's τ < 0.
        let (t, i) = step(|x| 2e-6 * (x / 0.4).exp());
        no_fit(
            checked(&t, &i, (0.1, 0.9), DecayMethod::Exponential),
            "grows",
        );
        no_fit(checked(&t, &i, (0.1, 0.9), DecayMethod::Linear), "grows");
        // A constant current.
        let (t, i) = step(|_| 3e-5);
        no_fit(
            checked(&t, &i, (0.1, 0.9), DecayMethod::Exponential),
            "does not decay",
        );
        // A pulse train (8 cycles of a square wave with 3 ms edges): no single decay.
        let (t, i) = step(|x| {
            let phase = (x / 0.25).fract();
            if phase < 0.5 {
                1e-6 + 5e-4 * (-(phase * 0.25) / 0.003).exp()
            } else {
                5e-4 * (1.0 - (-((phase - 0.5) * 0.25) / 0.008).exp())
            }
        });
        no_fit(checked(&t, &i, (0.1, 0.9), DecayMethod::Exponential), "R²");
        // Pure noise around a level: whatever τ fits is not resolved.
        let n = noise(2000);
        let (t, _) = step(|_| 0.0);
        let i: Vec<f64> = n.iter().map(|e| 1e-4 * (1.0 + 0.2 * e)).collect();
        assert!(checked(&t, &i, (0.1, 0.9), DecayMethod::Exponential).is_err());
        // Too few samples.
        no_fit(
            checked(&t, &i, (0.9, 0.9005), DecayMethod::Exponential),
            "fewer than 3",
        );
        // The predecessor's solver keeps its values, physical or not.
        let (t, i) = step(|x| 2e-6 * (x / 0.4).exp());
        let compat = extract(&t, &i, (0.1, 0.9), DecayMethod::Linear, Solver::Compat).unwrap();
        assert_eq!(compat, round_f32(-0.4));
    }

    const NO_FIT_PREFIX: &str = "no fit: ";

    #[test]
    fn method_names() {
        use crate::choice;
        assert_eq!(choice("linear"), Ok(DecayMethod::Linear));
        assert_eq!(choice("exponential"), Ok(DecayMethod::Exponential));
        assert!(choice::<DecayMethod>("Linear").is_err());
    }
}
