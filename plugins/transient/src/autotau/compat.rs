//! Literal reproduction of autotau 0.6.0 (`TauFitter`, `AutoTauFitter`,
//! `CyclesAutoTauFitter.fit_all_cycles`), `specs/algorithm_autotau.md` §3–§5 and §7.
//!
//! Every quirk is kept on purpose, because this mode exists to compare with features
//! computed by the predecessor: the start point (1, 1, 1) regardless of the data's scale,
//! linear resampling to `points_after_interp` points before the fit but R² on the raw
//! samples, window sizes stored as `w·dt` (applied windows hold one sample more than the
//! searched ones), the exclusive start range, Python's float modulo for the phase,
//! inclusive time masks evaluated with the same floating-point operations, strict `>`
//! selection (first maximum wins), refits aligned to the cycle start, and numpy's
//! pairwise summation in R².
//!
//! Deliberate differences, all on paths where the predecessor produced no usable output:
//! * a cycle whose windows hold fewer than 3 samples yields a NaN row instead of
//!   vanishing;
//! * a per-cycle fit that fails (scipy's `RuntimeError` after `max_nfev`, or non-finite
//!   data) aborted the whole step in Python; here that transition is NaN and counts as
//!   below the threshold, so the cycle is searched again like any poor fit;
//! * a refit whose search found no window for a transition that scored R² < 0 crashed in
//!   Python; here the original fit is kept.

use super::{num_cycles, AutoTauParams, CycleFit};
use crate::trf::{least_squares, TrfError, TrfOptions};
use std::ops::Range;

/// `curve_fit(maxfev=100_000)` as TauFitter calls it.
const MAX_NFEV: usize = 100_000;
/// Number of model parameters (A, tau, C), used in the adjusted R².
const N_PARAMS: usize = 3;
/// A refit needs at least this many samples in the cycle (`CyclesAutoTauFitter`).
const MIN_REFIT_SAMPLES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Model {
    /// `A (1 - exp(-t/tau)) + C`.
    Rise,
    /// `A exp(-t/tau) + C`.
    Decay,
}

impl Model {
    #[inline]
    fn eval(self, a: f64, e: f64, c: f64) -> f64 {
        match self {
            Model::Rise => a * (1.0 - e) + c,
            Model::Decay => a * e + c,
        }
    }
}

/// One TauFitter result: `popt = [A, tau, C]` and R² on the original samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct WindowFit {
    pub popt: [f64; 3],
    pub r2: f64,
    pub r2_adj: f64,
}

/// How a single fit failed, mirroring the Python exception classes because the search
/// treats them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FitFailure {
    /// `RuntimeError`: TRF used up `max_nfev` (TauFitter catches it; R² stays None).
    NotConverged,
    /// `ValueError` and friends (non-finite data, failed SVD): not caught by TauFitter.
    Invalid,
}

/// Options of a single-window fit.
#[derive(Debug, Clone, Copy)]
pub(super) struct FitOptions {
    pub normalize: bool,
    pub interp: bool,
    pub points_after_interp: usize,
}

impl FitOptions {
    fn from_params(p: &AutoTauParams) -> Self {
        Self {
            normalize: p.normalize,
            interp: p.interp,
            points_after_interp: p.points_after_interp,
        }
    }
}

/// TauFitter's `fit_tau_on` / `fit_tau_off` on the samples `(t, y)` (§3.2).
pub(super) fn fit_window(
    t: &[f64],
    y: &[f64],
    model: Model,
    opts: FitOptions,
) -> Result<WindowFit, FitFailure> {
    let t0 = t[0];
    let tw: Vec<f64> = t.iter().map(|v| v - t0).collect();
    let y = if opts.normalize {
        normalize(y)
    } else {
        y.to_vec()
    };
    let resampled = opts.interp.then(|| {
        let td = linspace(tw[tw.len() - 1], opts.points_after_interp);
        let yd = interp(&td, &tw, &y);
        (td, yd)
    });
    let (td, yd) = match &resampled {
        Some((td, yd)) => (td.as_slice(), yd.as_slice()),
        None => (tw.as_slice(), y.as_slice()),
    };
    // curve_fit(check_finite=True) rejects non-finite data with a ValueError.
    if !td.iter().chain(yd).all(|v| v.is_finite()) {
        return Err(FitFailure::Invalid);
    }
    let popt = curve_fit(td, yd, model)?;
    let (r2, r2_adj) = r_squared(&tw, &y, popt, model);
    Ok(WindowFit { popt, r2, r2_adj })
}

/// `curve_fit(model, td, yd, maxfev=100000, bounds=([0, 0, -inf], [inf, inf, inf]))`,
/// whose start point is `_initialize_feasible` = (1, 1, 1).
fn curve_fit(td: &[f64], yd: &[f64], model: Model) -> Result<[f64; 3], FitFailure> {
    let mut cache = ExpCache::new(td.len());
    let residuals = |p: &[f64], out: &mut [f64]| {
        let e = cache.get(p[1], td);
        for ((o, ek), yk) in out.iter_mut().zip(e).zip(yd) {
            *o = model.eval(p[0], *ek, p[2]) - yk;
        }
    };
    let res = least_squares(
        residuals,
        td.len(),
        &[1.0, 1.0, 1.0],
        &[0.0, 0.0, f64::NEG_INFINITY],
        &[f64::INFINITY; 3],
        &TrfOptions::with_max_nfev(MAX_NFEV),
    );
    match res {
        Ok(r) => Ok([r.x[0], r.x[1], r.x[2]]),
        Err(TrfError::MaxNfevExhausted { .. }) => Err(FitFailure::NotConverged),
        Err(_) => Err(FitFailure::Invalid),
    }
}

/// `exp(-t/tau)` for the last two distinct `tau` values. The finite-difference Jacobian
/// perturbs A and C with tau unchanged, so this halves the number of `exp` calls without
/// changing a single bit of the result.
struct ExpCache {
    taus: [u64; 2],
    vals: [Vec<f64>; 2],
    filled: [bool; 2],
    next: usize,
}

impl ExpCache {
    fn new(len: usize) -> Self {
        Self {
            taus: [0; 2],
            vals: [Vec::with_capacity(len), Vec::with_capacity(len)],
            filled: [false; 2],
            next: 0,
        }
    }

    fn get(&mut self, tau: f64, t: &[f64]) -> &[f64] {
        let key = tau.to_bits();
        if let Some(slot) = (0..2).find(|&s| self.filled[s] && self.taus[s] == key) {
            return &self.vals[slot];
        }
        let slot = self.next;
        self.next = 1 - slot;
        self.taus[slot] = key;
        self.filled[slot] = true;
        let v = &mut self.vals[slot];
        v.clear();
        v.extend(t.iter().map(|tk| (-tk / tau).exp()));
        v
    }
}

/// `TauFitter.normalize_signal`: min-max scaling, zeros when the range is ≤ 1e-10
/// (including NaN ranges, as numpy's NaN-propagating min/max make the test false).
fn normalize(y: &[f64]) -> Vec<f64> {
    let nan_fold = |f: fn(f64, f64) -> f64| {
        move |acc: f64, v: &f64| {
            if acc.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                f(acc, *v)
            }
        }
    };
    let lo = y[1..].iter().fold(y[0], nan_fold(f64::min));
    let hi = y[1..].iter().fold(y[0], nan_fold(f64::max));
    let range = hi - lo;
    if range > 1e-10 {
        y.iter().map(|v| (v - lo) / range).collect()
    } else {
        vec![0.0; y.len()]
    }
}

/// `np.linspace(0, stop, num)`: `i * (stop / (num - 1))`, last point forced to `stop`.
pub(super) fn linspace(stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let step = stop / div;
    let mut out: Vec<f64> = if step == 0.0 {
        (0..num).map(|i| i as f64 / div * stop).collect()
    } else {
        (0..num).map(|i| i as f64 * step + 0.0).collect()
    };
    out[num - 1] = stop;
    out
}

/// `np.interp(x, xp, fp)` for increasing `xp`, including its exact-hit and NaN-retry rules.
pub(super) fn interp(x: &[f64], xp: &[f64], fp: &[f64]) -> Vec<f64> {
    let last = xp.len() - 1;
    x.iter()
        .map(|&xv| {
            if xv.is_nan() {
                return xv;
            }
            if xv < xp[0] {
                return fp[0];
            }
            let j = xp.partition_point(|v| *v <= xv) - 1;
            if j >= last || xp[j] == xv {
                return fp[j.min(last)];
            }
            let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
            let v = slope * (xv - xp[j]) + fp[j];
            if !v.is_nan() {
                return v;
            }
            let v = slope * (xv - xp[j + 1]) + fp[j + 1];
            if v.is_nan() && fp[j] == fp[j + 1] {
                fp[j]
            } else {
                v
            }
        })
        .collect()
}

/// numpy's pairwise summation (`np.sum` of a contiguous float64 array), bit for bit:
/// plain loop below 8 elements, 8 interleaved accumulators up to 128, halving above.
pub(super) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, v| acc + v)
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for chunk in a[8..full].chunks_exact(8) {
            for (acc, v) in r.iter_mut().zip(chunk) {
                *acc += v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &a[full..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// `TauFitter.compute_r_squared`, with numpy's summation and IEEE corner cases
/// (TSS = 0 gives -inf or NaN; n = 4 divides by zero; n = 3 inflates R²_adj).
pub(super) fn r_squared(tw: &[f64], y: &[f64], popt: [f64; 3], model: Model) -> (f64, f64) {
    let n = y.len();
    let [a, tau, c] = popt;
    let sq_res: Vec<f64> = tw
        .iter()
        .zip(y)
        .map(|(t, yk)| {
            let d = yk - model.eval(a, (-t / tau).exp(), c);
            d * d
        })
        .collect();
    let mean = pairwise_sum(y) / n as f64;
    let sq_dev: Vec<f64> = y.iter().map(|yk| (yk - mean) * (yk - mean)).collect();
    let rss = pairwise_sum(&sq_res);
    let tss = pairwise_sum(&sq_dev);
    let r2 = 1.0 - rss / tss;
    let dof = n as f64 - N_PARAMS as f64 - 1.0;
    let r2_adj = 1.0 - (1.0 - r2) * (n as f64 - 1.0) / dof;
    (r2, r2_adj)
}

/// Best window of one transition kind found by a search (the `best_tau_*` dict).
#[derive(Debug, Clone, Copy)]
pub(super) struct Best {
    pub r2_adj: f64,
    /// `w * sample_step` (0 if nothing was found).
    pub size: f64,
    /// Time of the window's first sample (the literal 0 if nothing was found).
    pub start_time: f64,
    pub fit: Option<WindowFit>,
}

impl Best {
    fn none() -> Self {
        Self {
            r2_adj: 0.0,
            size: 0.0,
            start_time: 0.0,
            fit: None,
        }
    }
}

/// `AutoTauFitter.fit_tau_on_and_off` on `(time, signal)` (§4), 0.6.0 failure handling:
/// a fit that did not converge scores 0, any other failure skips the whole window.
pub(super) fn search(time: &[f64], signal: &[f64], p: &AutoTauParams) -> (Best, Best) {
    let sample_step = 1.0 / p.sample_rate;
    let opts = FitOptions::from_params(p);
    let wmin = ((p.window_scalar_min * p.period / sample_step) as usize).max(3);
    let wmax = (p.window_scalar_max * p.period / sample_step) as usize;
    let n = time.len();
    let (mut on, mut off) = (Best::none(), Best::none());
    for w in (wmin..=wmax).step_by(p.window_points_step) {
        for s in (0..n.saturating_sub(w)).step_by(p.window_start_idx_step) {
            let (t, y) = (&time[s..s + w], &signal[s..s + w]);
            let (rise, decay) = match (
                fit_window(t, y, Model::Rise, opts),
                fit_window(t, y, Model::Decay, opts),
            ) {
                (Err(FitFailure::Invalid), _) | (_, Err(FitFailure::Invalid)) => continue,
                (rise, decay) => (rise.ok(), decay.ok()),
            };
            for (best, fit) in [(&mut on, rise), (&mut off, decay)] {
                let score = fit.map_or(0.0, |f| f.r2_adj);
                if score > best.r2_adj {
                    *best = Best {
                        r2_adj: score,
                        size: w as f64 * sample_step,
                        start_time: t[0],
                        fit,
                    };
                }
            }
        }
    }
    (on, off)
}

/// Phase offsets and sizes (seconds) applied to every cycle (`find_best_windows`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Windows {
    pub on_offset: f64,
    pub off_offset: f64,
    pub on_size: f64,
    pub off_size: f64,
}

/// Searches the first two periods and folds the winners into one period (§5.1).
pub(super) fn find_windows(time: &[f64], signal: &[f64], p: &AutoTauParams) -> Windows {
    let limit = time[0] + 2.0 * p.period;
    let n2 = time.partition_point(|t| *t <= limit);
    let (on, off) = search(&time[..n2], &signal[..n2], p);
    Windows {
        on_offset: py_mod(on.start_time - time[0], p.period),
        off_offset: py_mod(off.start_time - time[0], p.period),
        on_size: on.size,
        off_size: off.size,
    }
}

/// Python's float `%`: the result takes the sign of the divisor.
fn py_mod(x: f64, m: f64) -> f64 {
    let r = x % m;
    if r != 0.0 && (r < 0.0) != (m < 0.0) {
        r + m
    } else {
        r
    }
}

/// Indices with `start <= time <= end` (time is increasing).
fn inclusive_range(time: &[f64], start: f64, end: f64) -> Range<usize> {
    let lo = time.partition_point(|t| *t < start);
    let hi = time.partition_point(|t| *t <= end).max(lo);
    lo..hi
}

/// The on and off sample ranges of cycle `i`, by the predecessor's float arithmetic.
pub(super) fn cycle_ranges(
    time: &[f64],
    period: f64,
    w: &Windows,
    i: usize,
) -> (Range<usize>, Range<usize>) {
    let cs = time[0] + i as f64 * period;
    let on_start = cs + w.on_offset;
    let off_start = cs + w.off_offset;
    (
        inclusive_range(time, on_start, on_start + w.on_size),
        inclusive_range(time, off_start, off_start + w.off_size),
    )
}

pub(super) fn fit_cycles(time: &[f64], signal: &[f64], p: &AutoTauParams) -> Vec<CycleFit> {
    let windows = find_windows(time, signal, p);
    fit_all(time, signal, p, &windows)
}

/// `fit_all_cycles` with the given windows (§5.2–§5.4).
pub(super) fn fit_all(
    time: &[f64],
    signal: &[f64],
    p: &AutoTauParams,
    w: &Windows,
) -> Vec<CycleFit> {
    let opts = FitOptions::from_params(p);
    (0..num_cycles(time, p.period))
        .map(|i| {
            let (on_range, off_range) = cycle_ranges(time, p.period, w, i);
            let cs = time[0] + i as f64 * p.period;
            let mut fit = CycleFit::unfitted(i, cs);
            if on_range.len() < 3 || off_range.len() < 3 {
                return fit;
            }
            let on = fit_window(
                &time[on_range.clone()],
                &signal[on_range],
                Model::Rise,
                opts,
            )
            .ok();
            let off = fit_window(
                &time[off_range.clone()],
                &signal[off_range],
                Model::Decay,
                opts,
            )
            .ok();
            let (on, off, refitted) = refit_if_poor(time, signal, p, cs, on, off);
            fit.refitted = refitted;
            if let Some(f) = on {
                (fit.tau_on, fit.r2_on, fit.r2_adj_on) = (f.popt[1], f.r2, f.r2_adj);
            }
            if let Some(f) = off {
                (fit.tau_off, fit.r2_off, fit.r2_adj_off) = (f.popt[1], f.r2, f.r2_adj);
            }
            fit
        })
        .collect()
}

/// The refit rule (§5.4): a transition below the threshold (NaN never is; a failed fit
/// is) is replaced by the best window of a search over the cycle if that scores a
/// strictly higher plain R².
fn refit_if_poor(
    time: &[f64],
    signal: &[f64],
    p: &AutoTauParams,
    cs: f64,
    on: Option<WindowFit>,
    off: Option<WindowFit>,
) -> (Option<WindowFit>, Option<WindowFit>, bool) {
    let thr = p.r_squared_threshold;
    let poor = |f: &Option<WindowFit>| f.as_ref().is_none_or(|f| f.r2 < thr);
    let (redo_on, redo_off) = (poor(&on), poor(&off));
    if !(redo_on || redo_off) {
        return (on, off, false);
    }
    let start = if time[0] > cs { time[0] } else { cs };
    let last = time[time.len() - 1];
    let end = if last < cs + p.period {
        last
    } else {
        cs + p.period
    };
    let range = inclusive_range(time, start, end);
    if range.len() < MIN_REFIT_SAMPLES {
        return (on, off, true);
    }
    let (best_on, best_off) = search(&time[range.clone()], &signal[range], p);
    let pick = |old: Option<WindowFit>, redo: bool, best: Best| -> Option<WindowFit> {
        let old_r2 = old.map_or(f64::NEG_INFINITY, |f| f.r2);
        match best.fit {
            Some(new) if redo && new.r2 > old_r2 => Some(new),
            _ => old,
        }
    };
    (
        pick(on, redo_on, best_on),
        pick(off, redo_off, best_off),
        true,
    )
}
