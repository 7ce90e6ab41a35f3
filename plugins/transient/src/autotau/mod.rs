//! AutoTau: per-cycle rise and decay time constants of a square-wave-driven transient.
//!
//! A transient step is a drain-current trace driven by a periodic square gate voltage.
//! For every full period ("cycle") the feature reports `tau_on`, the time constant of the
//! **rising** transition (`y = A(1 - e^{-t/τ}) + C`), and `tau_off`, the one of the
//! **falling** transition (`y = A e^{-t/τ} + C`). The labels follow the signal's
//! direction, not the gate: AutoTau never sees the gate, so for a device whose current
//! falls when the gate turns on (p-type depletion) the gate-on response is `tau_off`.
//! This is the predecessor's convention (`specs/algorithm_autotau.md` §3.1) and both
//! solvers keep it.
//!
//! Two solvers share the outer structure of the predecessor (find the best rise and decay
//! windows within two periods, shift them by one period per cycle, search a cycle again
//! when its R² is below a threshold):
//! * [`Solver::Robust`] (default): variable projection fits that do not depend on the
//!   signal's scale, scored on the raw samples; see `robust.rs` for each deviation from
//!   the predecessor and why.
//! * [`Solver::Compat`]: a literal reproduction of autotau 0.6.0 (with scipy's TRF through
//!   [`crate::trf`]) for comparison with historical features; see `compat.rs`.
//!
//! Both return exactly one row per cycle index; a cycle that cannot be fitted gets NaN
//! values instead of disappearing (the predecessor dropped such rows, shortening and
//! misaligning the output).

mod compat;
mod robust;
mod varpro;

use std::fmt;

pub use crate::Solver;

/// Parameters of one AutoTau run. `Default` gives the predecessor extractor's search
/// values; `period` and `sample_rate` default to NaN because only the host knows them
/// (from the file's workflow), and [`fit_cycles`] rejects NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoTauParams {
    /// Gate period in seconds.
    pub period: f64,
    /// Samples per second; the search uses `1 / sample_rate` as the sample step.
    pub sample_rate: f64,
    /// Smallest window, as a fraction of the period.
    pub window_scalar_min: f64,
    /// Largest window, as a fraction of the period.
    pub window_scalar_max: f64,
    /// Increment of the window length, in samples.
    pub window_points_step: usize,
    /// Increment of the window start, in samples.
    pub window_start_idx_step: usize,
    /// Compat only: min-max normalise each window before fitting.
    pub normalize: bool,
    /// Compat only: resample each window linearly before fitting.
    pub interp: bool,
    /// Compat only: number of points after resampling.
    pub points_after_interp: usize,
    /// A cycle whose plain R² (rise or decay) is below this is searched again.
    pub r_squared_threshold: f64,
    pub solver: Solver,
}

impl Default for AutoTauParams {
    fn default() -> Self {
        Self {
            period: f64::NAN,
            sample_rate: f64::NAN,
            window_scalar_min: 0.1,
            window_scalar_max: 3.0 / 8.0,
            window_points_step: 5,
            window_start_idx_step: 1,
            normalize: false,
            interp: true,
            points_after_interp: 100,
            r_squared_threshold: 0.99,
            solver: Solver::Robust,
        }
    }
}

impl AutoTauParams {
    /// Extractor defaults for a record with the given period (s) and sample rate (Hz).
    pub fn new(period: f64, sample_rate: f64) -> Self {
        Self {
            period,
            sample_rate,
            ..Self::default()
        }
    }
}

/// Result for one cycle. A transition that could not be fitted has NaN tau and R².
#[derive(Debug, Clone, PartialEq)]
pub struct CycleFit {
    /// 0-based cycle index (the predecessor's `cycle` column is this plus one).
    pub cycle: usize,
    /// `time[0] + cycle * period`.
    pub start_time: f64,
    /// Time constant of the rising transition (s).
    pub tau_on: f64,
    /// Time constant of the falling transition (s).
    pub tau_off: f64,
    pub r2_on: f64,
    pub r2_off: f64,
    pub r2_adj_on: f64,
    pub r2_adj_off: f64,
    /// Whether the cycle failed the R² threshold and was searched again.
    pub refitted: bool,
}

impl CycleFit {
    fn unfitted(cycle: usize, start_time: f64) -> Self {
        Self {
            cycle,
            start_time,
            tau_on: f64::NAN,
            tau_off: f64::NAN,
            r2_on: f64::NAN,
            r2_off: f64::NAN,
            r2_adj_on: f64::NAN,
            r2_adj_off: f64::NAN,
            refitted: false,
        }
    }
}

/// Fits every cycle of one transient step.
///
/// Returns one [`CycleFit`] per cycle index `0..num_cycles`, with
/// `num_cycles = trunc((time[last] - time[0]) / period)` (the predecessor's count, so a
/// record of exactly K periods yields K - 1 cycles). Errors only for unusable input or
/// parameters; bad data (constant, NaN samples, failed fits) give NaN rows.
pub fn fit_cycles(
    time: &[f64],
    signal: &[f64],
    p: &AutoTauParams,
) -> Result<Vec<CycleFit>, String> {
    validate(time, signal, p).map_err(|e| e.to_string())?;
    Ok(match p.solver {
        Solver::Robust => robust::fit_cycles(time, signal, p),
        Solver::Compat => compat::fit_cycles(time, signal, p),
    })
}

/// Number of cycles, computed as the predecessor does.
fn num_cycles(time: &[f64], period: f64) -> usize {
    ((time[time.len() - 1] - time[0]) / period) as usize
}

#[derive(Debug)]
struct InvalidInput(&'static str);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "autotau: {}", self.0)
    }
}

fn validate(time: &[f64], signal: &[f64], p: &AutoTauParams) -> Result<(), InvalidInput> {
    if time.len() != signal.len() {
        return Err(InvalidInput("time and signal have different lengths"));
    }
    if time.len() < 3 {
        return Err(InvalidInput("at least 3 samples are required"));
    }
    if !(p.period.is_finite() && p.period > 0.0) {
        return Err(InvalidInput("period must be a positive finite number"));
    }
    if !(p.sample_rate.is_finite() && p.sample_rate > 0.0) {
        return Err(InvalidInput("sample_rate must be a positive finite number"));
    }
    let (smin, smax) = (p.window_scalar_min, p.window_scalar_max);
    if !(smin.is_finite() && smax.is_finite() && smin >= 0.0 && smin <= smax) {
        return Err(InvalidInput(
            "window scalars must be finite with 0 <= window_scalar_min <= window_scalar_max",
        ));
    }
    if p.window_points_step == 0 || p.window_start_idx_step == 0 {
        return Err(InvalidInput("window steps must be at least 1"));
    }
    if p.interp && p.points_after_interp < 3 {
        return Err(InvalidInput("points_after_interp must be at least 3"));
    }
    if p.r_squared_threshold.is_nan() {
        return Err(InvalidInput("r_squared_threshold must not be NaN"));
    }
    if !time.iter().all(|t| t.is_finite()) || time.windows(2).any(|w| w[1] <= w[0]) {
        return Err(InvalidInput("time must be finite and strictly increasing"));
    }
    // A period shorter than the sampling step would ask for more cycles than samples.
    if num_cycles(time, p.period) > time.len() {
        return Err(InvalidInput("period is shorter than the sampling step"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
