//! Template oect plugin: two transfer-sweep features, written the way a lab writes its
//! own. Copy the crate, rename it and its namespace, and replace the physics.
//!
//! | extractor | per step | unit |
//! |---|---|---|
//! | `example.subthreshold_swing` | steepest subthreshold swing of the forward half | mV/dec |
//! | `example.on_off_ratio` | max \|Id\| / min \|Id\| of the whole sweep | 1 |
//!
//! Both read the channels `Vg` (V) and `Id` (A) of a transfer step. Like the built-in
//! `transfer.*` extractors, the forward half is samples `0..=(n − 1) / 2` (the first
//! half including the turning point), not a search for the turning point.

use oect_plugin_api::{
    export_plugin, register_extractor, Dim, ExtractorSpec, FeatureValue, InputKind, ParamKind,
    ParamSpec, Params, StepExtractor, StepInput,
};

/// Which way the current grows with the gate voltage.
#[derive(Debug, Clone, Copy)]
enum Device {
    /// log10|Id| rises as Vg rises.
    N,
    /// log10|Id| rises as Vg falls.
    P,
}

/// Subthreshold swing SS = dVg / dlog10|Id|, in mV per decade of current.
///
/// SS is taken where the current rises fastest: log10|Id| is fitted against Vg by
/// least squares over every run of `window` consecutive samples of the forward half,
/// and the steepest fit wins. Fitting a short window rather than differencing
/// neighbours keeps measurement noise from producing a spuriously small swing; fitting
/// log10|Id| against Vg (not the reverse) puts the noise on the fitted variable, since
/// the applied Vg is the exact one.
///
/// Samples with |Id| at or below `noise_floor` are left out: there log10|Id| follows
/// the instrument's noise, whose jumps would pass for an extremely steep swing.
struct SubthresholdSwing {
    window: usize,
    device: Device,
    noise_floor: f64,
}

/// Vg must vary by more than this across a window (V) for its slope to mean anything;
/// a flat or stuck gate would otherwise give an absurdly steep fit.
const MIN_VG_SPAN: f64 = 1e-6;

impl StepExtractor for SubthresholdSwing {
    fn output_shape(&self) -> Vec<Dim> {
        vec![]
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        let (vg, id) = sweep(input)?;
        let forward = vg.len().div_ceil(2);
        if forward < self.window {
            return Err(format!(
                "the forward half has {forward} points, fewer than window_points = {}",
                self.window
            ));
        }
        // NaN marks samples to leave out; `slope` skips windows that hold one.
        let log_id: Vec<f64> = id[..forward]
            .iter()
            .map(|i| match i.abs() {
                a if a > self.noise_floor => a.log10(),
                _ => f64::NAN,
            })
            .collect();
        let sign = match self.device {
            Device::N => 1.0,
            Device::P => -1.0,
        };
        let steepest = vg[..forward]
            .windows(self.window)
            .zip(log_id.windows(self.window))
            .filter_map(|(x, y)| slope(x, y))
            .map(|decades_per_volt| sign * decades_per_volt)
            .filter(|s| *s > 0.0)
            .reduce(f64::max);
        match steepest {
            Some(decades_per_volt) => Ok(FeatureValue::scalar(1000.0 / decades_per_volt)),
            None => Err(format!(
                "no window of {} samples above noise_floor in the forward half has |Id| \
                 growing with {} Vg",
                self.window,
                match self.device {
                    Device::N => "rising",
                    Device::P => "falling",
                }
            )),
        }
    }
}

/// Least-squares slope of `y` against `x`; `None` when a value is not finite or `x`
/// hardly varies.
fn slope(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if hi - lo <= MIN_VG_SPAN {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    Some(sxy / sxx)
}

/// On/off ratio: the largest |Id| of the sweep over the smallest, with the smallest
/// floored at `min_current` so that a zero or sub-noise reading gives a finite ratio.
/// Non-finite samples are ignored.
struct OnOffRatio {
    min_current: f64,
}

impl StepExtractor for OnOffRatio {
    fn output_shape(&self) -> Vec<Dim> {
        vec![]
    }

    fn extract_step(&self, input: &StepInput<'_>) -> Result<FeatureValue, String> {
        let (_, id) = sweep(input)?;
        let mut magnitudes = id.iter().filter(|i| i.is_finite()).map(|i| i.abs());
        let first = magnitudes
            .next()
            .ok_or("the sweep has no finite Id value")?;
        let (min, max) = magnitudes.fold((first, first), |(lo, hi), a| (lo.min(a), hi.max(a)));
        Ok(FeatureValue::scalar(max / min.max(self.min_current)))
    }
}

/// The step's `Vg` and `Id`, which must be equally long.
fn sweep<'a>(input: &StepInput<'a>) -> Result<(&'a [f64], &'a [f64]), String> {
    let (vg, id) = (input.require("Vg")?, input.require("Id")?);
    if vg.len() != id.len() {
        return Err(format!(
            "Vg has {} points but Id has {}",
            vg.len(),
            id.len()
        ));
    }
    Ok((vg, id))
}

fn swing(p: &Params) -> Result<Box<dyn StepExtractor>, String> {
    let window = p.usize("window_points")?;
    if window < 2 {
        return Err(format!(
            "parameter 'window_points' must be at least 2, got {window}"
        ));
    }
    let device = match p.str("device_type")? {
        "P" => Device::P,
        _ => Device::N,
    };
    let noise_floor = positive_current(p, "noise_floor")?;
    Ok(Box::new(SubthresholdSwing {
        window,
        device,
        noise_floor,
    }))
}

fn on_off(p: &Params) -> Result<Box<dyn StepExtractor>, String> {
    let min_current = positive_current(p, "min_current")?;
    Ok(Box::new(OnOffRatio { min_current }))
}

fn positive_current(p: &Params, name: &str) -> Result<f64, String> {
    let value = p.f64(name)?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!(
            "parameter '{name}' must be a positive current in A, got {value}"
        ))
    }
}

register_extractor!(ExtractorSpec {
    name: "example.subthreshold_swing",
    input: InputKind::Transfer,
    description: "subthreshold swing dVg/dlog10|Id| where |Id| rises fastest in the forward half",
    unit: "mV/dec",
    params: &[
        ParamSpec {
            name: "window_points",
            kind: ParamKind::Count,
            default: "5",
            doc: "samples per least-squares fit of log10|Id| against Vg (at least 2)",
        },
        ParamSpec {
            name: "device_type",
            kind: ParamKind::Choice(&["N", "P"]),
            default: "\"N\"",
            doc: "N: |Id| grows with rising Vg; P: with falling Vg",
        },
        ParamSpec {
            name: "noise_floor",
            kind: ParamKind::Float,
            default: "1e-10",
            doc: "samples with |Id| at or below this (A) are ignored; ~100x the noise amplitude",
        },
    ],
    create: swing,
});

register_extractor!(ExtractorSpec {
    name: "example.on_off_ratio",
    input: InputKind::Transfer,
    description: "max |Id| / min |Id| over the whole sweep",
    unit: "",
    params: &[ParamSpec {
        name: "min_current",
        kind: ParamKind::Float,
        default: "1e-12",
        doc: "floor for min |Id| in A, so that a zero reading gives a finite ratio",
    }],
    create: on_off,
});

export_plugin!();
