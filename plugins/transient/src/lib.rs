//! oect plugin: features of transient pulse-train steps.
//!
//! | extractor | per step |
//! |---|---|
//! | `transient.peak_current` | max \|I\| (or max I) |
//! | `transient.cycles` | one current value per cycle found, `[n_cycles]` (at most `n_cycles`) |
//! | `transient.decay_time` | time constant of a single-exponential fit over a window |
//! | `transient.tau_on_off` | per cycle `[tau_on, tau_off]` (AutoTau), `[n_cycles, 2]` |
//!
//! `peak_current`, `cycles` and `decay_time` with `method: linear` or
//! `solver: compat` equal the predecessor's values (`specs/algorithms_transfer_transient.md`
//! §3; results rounded to f32 like its float32 arrays). The default exponential
//! solver is scale-aware and recovers the true time constant where the predecessor's
//! optimiser stopped early. `tau_on_off` defaults to the robust AutoTau solver;
//! `solver: compat` reproduces the predecessor (autotau 0.6.0) for historical comparison.
//!
//! `peak_current` and `cycles` read only the drain current, so the host does not decode
//! the time channel for them.

pub mod autotau;
pub mod cycles;
pub mod decay;
pub mod peaks;
pub mod stats;
pub mod trf;

#[cfg(test)]
mod golden_tests;

use oect_plugin_api::ndarray::Array2;
use oect_plugin_api::{
    export_plugin, extractor, Choice, Context, Current, NumberOrRange, Params, StepFailure,
    Transient,
};

use cycles::{CycleMethod, CyclesParams, Prominence};
use decay::DecayMethod;

/// Which fitting engine `decay_time` and `tau_on_off` use.
#[derive(Choice, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Solver {
    /// Scale-aware fits (variable projection) that recover the true time constants at
    /// any current scale; full f64 output.
    #[default]
    Robust,
    /// The predecessor's optimiser reproduced literally (scipy TRF; for AutoTau,
    /// autotau 0.6.0 semantics), for comparison with historical values; f32 output.
    Compat,
}

/// The choice called `name`, as a config gives it (for tests of the choice names).
#[cfg(test)]
pub(crate) fn choice<T: oect_plugin_api::ParamValue>(name: &str) -> Result<T, String> {
    T::from_json(&oect_plugin_api::__private::serde_json::Value::from(name))
}

#[derive(Params)]
pub struct PeakCurrent {
    /// take the maximum of |I| rather than of I
    #[param(default = true)]
    use_abs: bool,
}

/// largest |drain current| of the step (largest signed current with use_abs: false)
#[extractor(name = "transient.peak_current", unit = "A",
    example("the on-current of a negative pulse", i = [2e-6, -6.25e-3, 2e-6], output = 6.25e-3,
            tolerance = 1e-6),
    example("signed", i = [2e-6, -6.25e-3, 2e-6], params(use_abs = false), output = 2e-6, tolerance = 1e-6))]
fn peak_current(step: Current, p: &PeakCurrent) -> Result<f64, String> {
    cycles::peak_current(step.i, p.use_abs)
}

#[derive(Params)]
pub struct Cycles {
    /// most values per step (a step gives one per cycle found)
    #[param(default = 100)]
    n_cycles: usize,
    /// peaks of |I| (falls back to fixed_interval when none are found), evenly spaced samples, or samples above a percentile
    #[param(default)]
    method: CycleMethod,
    /// minimal distance between peaks, in samples
    #[param(default = 10.0)]
    min_distance: f64,
    /// minimal peak prominence, or [min, max]; default 10 % of the 75th percentile of |I|
    prominence: Option<NumberOrRange>,
}

/// signed current at each cycle's peak of |I| (or at evenly spaced samples)
// As many values as cycles were found (at most n_cycles): the predecessor's per-step form,
// so that `c[:, -1]` is a step's last real cycle.
#[extractor(name = "transient.cycles", unit = "A", shape = ["n_cycles"],
    example("three evenly spaced samples", i = [1e-3, 0.0, 2e-3, 0.0, 3e-3],
            params(n_cycles = 3, method = CycleMethod::FixedInterval), output = [1e-3, 2e-3, 3e-3],
            tolerance = 1e-6))]
fn cycles(step: Current, p: &Cycles) -> Result<Vec<f64>, String> {
    let prominence = match p.prominence {
        None => Prominence::Adaptive,
        Some(NumberOrRange::Number(x)) => Prominence::Min(x),
        Some(NumberOrRange::Range(lo, hi)) => Prominence::Range(lo, hi),
    };
    let params = CyclesParams {
        n_cycles: p.n_cycles,
        method: p.method,
        min_distance: p.min_distance,
        prominence,
    };
    cycles::cycles(step.i, &params)
}

#[derive(Params)]
pub struct DecayTime {
    /// start and end of the fitted window as fractions of the step
    #[param(default = (0.1, 0.9))]
    fit_range: (f64, f64),
    /// nonlinear fit, or a straight line through ln|I|
    #[param(default)]
    method: DecayMethod,
    /// robust: scale-aware fit; compat: the predecessor's optimiser, for comparison with historical values
    #[param(default)]
    solver: Solver,
}

/// time constant of I0·exp(-t/tau) fitted to |I| over a fraction of the step ("no fit: …" when the window is not one resolvable decay; solver compat: the predecessor's value)
#[extractor(name = "transient.decay_time", unit = "s",
    example("a decay of tau = 10 ms sampled every 5 ms",
            t = [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045],
            i = [1e-3, 6.0653e-4, 3.6788e-4, 2.2313e-4, 1.3534e-4, 8.2085e-5, 4.9787e-5, 3.0197e-5, 1.8316e-5, 1.1109e-5],
            params(fit_range = (0.0, 1.0)), output = 0.01, tolerance = 1e-3))]
fn decay_time(step: Transient, p: &DecayTime) -> Result<f64, StepFailure> {
    decay::extract(step.t, step.i, p.fit_range, p.method, p.solver)
}

#[derive(Params)]
pub struct TauOnOff {
    /// pulse period in s; default: from the file's step parameters or workflow
    #[param(positive)]
    period: Option<f64>,
    /// samples per s; default: from the file's step parameters or workflow
    #[param(positive)]
    sample_rate: Option<f64>,
    /// smallest fit window, as a fraction of the period
    #[param(default = 0.1, min = 0.0)]
    window_scalar_min: f64,
    /// largest fit window, as a fraction of the period
    #[param(default = 0.375, min = 0.0)]
    window_scalar_max: f64,
    /// window length increment, in samples
    #[param(default = 5, min = 1)]
    window_points_step: usize,
    /// window start increment, in samples
    #[param(default = 1, min = 1)]
    window_start_idx_step: usize,
    /// compat only: min-max normalise each window
    #[param(default = false)]
    normalize: bool,
    /// compat only: resample each window before fitting
    #[param(default = true)]
    interp: bool,
    /// compat only: points after resampling
    #[param(default = 100)]
    points_after_interp: usize,
    /// a cycle fitted worse than this (plain R²) is searched again
    #[param(default = 0.99)]
    r_squared_threshold: f64,
    /// robust: scale-aware fits; compat: the predecessor's (autotau 0.6.0) results
    #[param(default)]
    solver: Solver,
    /// accepted for compatibility; the host's worker pool parallelises steps
    #[param(default = false)]
    use_parallel: bool,
    /// accepted for compatibility; ignored
    #[param(default = 4)]
    max_workers: usize,
    /// accepted for compatibility; ignored
    #[param(default = false)]
    show_progress: bool,
}

/// per cycle [tau_on, tau_off]: time constants of the rising and falling transitions (AutoTau)
#[extractor(name = "transient.tau_on_off", unit = "s", shape = ["n_cycles", 2])]
fn tau_on_off(step: Transient, ctx: Context, p: &TauOnOff) -> Result<Array2<f64>, String> {
    let period = p.period.or(ctx.period).ok_or(
        "the step's pulse period is unknown (not in the file's step parameters or workflow); set param `period`",
    )?;
    let sample_rate = p.sample_rate.or(ctx.sample_rate).ok_or(
        "the step's sample rate is unknown (not in the file's step parameters or workflow); set param `sample_rate`",
    )?;
    let params = autotau::AutoTauParams {
        period,
        sample_rate,
        window_scalar_min: p.window_scalar_min,
        window_scalar_max: p.window_scalar_max,
        window_points_step: p.window_points_step,
        window_start_idx_step: p.window_start_idx_step,
        normalize: p.normalize,
        interp: p.interp,
        points_after_interp: p.points_after_interp,
        r_squared_threshold: p.r_squared_threshold,
        solver: p.solver,
    };
    let fits = autotau::fit_cycles(step.t, step.i, &params)?;
    // The predecessor stored float32; keep that for compat so values compare exactly.
    let store = |x: f64| match params.solver {
        Solver::Compat => stats::round_f32(x),
        Solver::Robust => x,
    };
    Ok(Array2::from_shape_fn((fits.len(), 2), |(c, k)| {
        store(if k == 0 {
            fits[c].tau_on
        } else {
            fits[c].tau_off
        })
    }))
}

export_plugin!();
