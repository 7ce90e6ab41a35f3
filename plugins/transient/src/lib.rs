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

pub mod autotau;
pub mod cycles;
pub mod decay;
pub mod peaks;
pub mod stats;
pub mod trf;

#[cfg(test)]
mod golden_tests;

use oect_plugin_api::{
    export_plugin, register_extractor, Dim, ExtractorSpec, FeatureValue, InputKind, ParamKind,
    ParamSpec, Params, StepExtractor, StepInput,
};

use cycles::{CyclesParams, Prominence};
use decay::DecayMethod;

/// Which fitting engine `decay_time` and `tau_on_off` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Solver {
    /// Scale-aware fits (variable projection) that recover the true time constants at
    /// any current scale; full f64 output.
    #[default]
    Robust,
    /// The predecessor's optimiser reproduced literally (scipy TRF; for AutoTau,
    /// autotau 0.6.0 semantics), for comparison with historical values; f32 output.
    Compat,
}

fn solver(p: &Params) -> Result<Solver, String> {
    Ok(match p.str("solver")? {
        "compat" => Solver::Compat,
        _ => Solver::Robust,
    })
}

const TIME: &str = "continuous_time";
const CURRENT: &str = "drain_current";

struct PeakCurrent {
    use_abs: bool,
}

impl StepExtractor for PeakCurrent {
    fn output_shape(&self) -> Vec<Dim> {
        vec![]
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        cycles::peak_current(input.require(CURRENT)?, self.use_abs).map(FeatureValue::scalar)
    }
}

register_extractor!(ExtractorSpec {
    name: "transient.peak_current",
    input: InputKind::Transient,
    description: "largest |drain current| of the step (largest signed current with use_abs: false)",
    unit: "A",
    params: &[ParamSpec {
        name: "use_abs",
        kind: ParamKind::Bool,
        default: "true",
        doc: "take the maximum of |I| rather than of I",
    }],
    create: |p| {
        Ok(Box::new(PeakCurrent {
            use_abs: p.bool("use_abs")?,
        }))
    },
});

struct Cycles(CyclesParams);

impl StepExtractor for Cycles {
    fn output_shape(&self) -> Vec<Dim> {
        // As many values as cycles were found (at most n_cycles): the predecessor's
        // per-step form, so that `c[:, -1]` is a step's last real cycle.
        vec![Dim::Dyn("n_cycles".into())]
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        cycles::cycles(input.require(CURRENT)?, &self.0).map(FeatureValue::vector)
    }
}

fn cycles_params(p: &Params) -> Result<CyclesParams, String> {
    use oect_plugin_api::serde_json::Value;
    let prominence = match p.value("prominence") {
        None | Some(Value::Null) => Prominence::Adaptive,
        Some(Value::Array(a)) => Prominence::Range(a[0].as_f64(), a[1].as_f64()),
        Some(v) => Prominence::Min(v.as_f64().ok_or("prominence must be a number")?),
    };
    let min_distance = p.f64("min_distance")?;
    if min_distance.is_nan() {
        return Err("parameter 'min_distance': must be a number".into());
    }
    Ok(CyclesParams {
        n_cycles: p.usize("n_cycles")?,
        method: p.str("method")?.parse()?,
        min_distance,
        prominence,
    })
}

register_extractor!(ExtractorSpec {
    name: "transient.cycles",
    input: InputKind::Transient,
    description: "signed current at each cycle's peak of |I| (or at evenly spaced samples)",
    unit: "A",
    params: &[
        ParamSpec {
            name: "n_cycles",
            kind: ParamKind::Count,
            default: "100",
            doc: "most values per step (a step gives one per cycle found)",
        },
        ParamSpec {
            name: "method",
            kind: ParamKind::Choice(&["peak_detection", "fixed_interval", "percentile"]),
            default: "\"peak_detection\"",
            doc: "peaks of |I| (falls back to fixed_interval when none are found), evenly spaced samples, or samples above a percentile",
        },
        ParamSpec {
            name: "min_distance",
            kind: ParamKind::Float,
            default: "10",
            doc: "minimal distance between peaks, in samples",
        },
        ParamSpec {
            name: "prominence",
            kind: ParamKind::FloatOrRange,
            default: "null",
            doc: "minimal peak prominence, or [min, max]; default 10 % of the 75th percentile of |I|",
        },
    ],
    create: |p| Ok(Box::new(Cycles(cycles_params(p)?))),
});

struct DecayTime {
    fit_range: (f64, f64),
    method: DecayMethod,
    solver: Solver,
}

impl StepExtractor for DecayTime {
    fn output_shape(&self) -> Vec<Dim> {
        vec![]
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        let t = input.require(TIME)?;
        let i = input.require(CURRENT)?;
        decay::extract(t, i, self.fit_range, self.method, self.solver).map(FeatureValue::scalar)
    }
}

register_extractor!(ExtractorSpec {
    name: "transient.decay_time",
    input: InputKind::Transient,
    description: "time constant of I0·exp(-t/tau) fitted to |I| over a fraction of the step (\"no fit: …\" when the window is not one resolvable decay; solver compat: the predecessor's value)",
    unit: "s",
    params: &[
        ParamSpec {
            name: "fit_range",
            kind: ParamKind::FloatPair,
            default: "[0.1, 0.9]",
            doc: "start and end of the fitted window as fractions of the step",
        },
        ParamSpec {
            name: "method",
            kind: ParamKind::Choice(&["exponential", "linear"]),
            default: "\"exponential\"",
            doc: "nonlinear fit, or a straight line through ln|I|",
        },
        ParamSpec {
            name: "solver",
            kind: ParamKind::Choice(&["robust", "compat"]),
            default: "\"robust\"",
            doc: "robust: scale-aware fit; compat: the predecessor's optimiser, for comparison with historical values",
        },
    ],
    create: |p| {
        Ok(Box::new(DecayTime {
            fit_range: p.pair("fit_range")?,
            method: p.str("method")?.parse()?,
            solver: solver(p)?,
        }))
    },
});

struct TauOnOff {
    params: autotau::AutoTauParams,
    /// Explicit period / sample rate; otherwise the step's own, from the file.
    period: Option<f64>,
    sample_rate: Option<f64>,
}

impl StepExtractor for TauOnOff {
    fn output_shape(&self) -> Vec<Dim> {
        vec![Dim::Dyn("n_cycles".into()), Dim::Fixed(2)]
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        let t = input.require(TIME)?;
        let i = input.require(CURRENT)?;
        let ctx = &input.context;
        let period = self.period.or(ctx.period.into_option()).ok_or(
            "the step's pulse period is unknown (not in the file's step parameters or workflow); set param `period`",
        )?;
        let sample_rate = self.sample_rate.or(ctx.sample_rate.into_option()).ok_or(
            "the step's sample rate is unknown (not in the file's step parameters or workflow); set param `sample_rate`",
        )?;
        let params = autotau::AutoTauParams {
            period,
            sample_rate,
            ..self.params.clone()
        };
        let fits = autotau::fit_cycles(t, i, &params)?;
        // The predecessor stored float32; keep that for compat so values compare exactly.
        let store = |x: f64| match params.solver {
            Solver::Compat => stats::round_f32(x),
            Solver::Robust => x,
        };
        let data = fits
            .iter()
            .flat_map(|f| [store(f.tau_on), store(f.tau_off)])
            .collect();
        FeatureValue::array(vec![fits.len() as u64, 2], data)
    }
}

const fn param(
    name: &'static str,
    kind: ParamKind,
    default: &'static str,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        default,
        doc,
    }
}

register_extractor!(ExtractorSpec {
    name: "transient.tau_on_off",
    input: InputKind::Transient,
    description: "per cycle [tau_on, tau_off]: time constants of the rising and falling transitions (AutoTau)",
    unit: "s",
    params: &[
        param("period", ParamKind::Float, "null", "pulse period in s; default: from the file's step parameters or workflow"),
        param("sample_rate", ParamKind::Float, "null", "samples per s; default: from the file's step parameters or workflow"),
        param("window_scalar_min", ParamKind::Float, "0.1", "smallest fit window, as a fraction of the period"),
        param("window_scalar_max", ParamKind::Float, "0.375", "largest fit window, as a fraction of the period"),
        param("window_points_step", ParamKind::Count, "5", "window length increment, in samples"),
        param("window_start_idx_step", ParamKind::Count, "1", "window start increment, in samples"),
        param("normalize", ParamKind::Bool, "false", "compat only: min-max normalise each window"),
        param("interp", ParamKind::Bool, "true", "compat only: resample each window before fitting"),
        param("points_after_interp", ParamKind::Count, "100", "compat only: points after resampling"),
        param("r_squared_threshold", ParamKind::Float, "0.99", "a cycle fitted worse than this (plain R²) is searched again"),
        param("solver", ParamKind::Choice(&["robust", "compat"]), "\"robust\"", "robust: scale-aware fits; compat: the predecessor's (autotau 0.6.0) results"),
        param("use_parallel", ParamKind::Bool, "false", "accepted for compatibility; the host's worker pool parallelises steps"),
        param("max_workers", ParamKind::Count, "4", "accepted for compatibility; ignored"),
        param("show_progress", ParamKind::Bool, "false", "accepted for compatibility; ignored"),
    ],
    create: |p| {
        let params = autotau::AutoTauParams {
            window_scalar_min: p.f64("window_scalar_min")?,
            window_scalar_max: p.f64("window_scalar_max")?,
            window_points_step: p.usize("window_points_step")?,
            window_start_idx_step: p.usize("window_start_idx_step")?,
            normalize: p.bool("normalize")?,
            interp: p.bool("interp")?,
            points_after_interp: p.usize("points_after_interp")?,
            r_squared_threshold: p.f64("r_squared_threshold")?,
            solver: solver(p)?,
            ..autotau::AutoTauParams::default()
        };
        let positive = |name: &str| -> Result<Option<f64>, String> {
            match p.opt_f64(name)? {
                Some(x) if !(x > 0.0 && x.is_finite()) => {
                    Err(format!("parameter '{name}': must be a positive number, got {x}"))
                }
                v => Ok(v),
            }
        };
        Ok(Box::new(TauOnOff {
            params,
            period: positive("period")?,
            sample_rate: positive("sample_rate")?,
        }))
    },
});

export_plugin!();
