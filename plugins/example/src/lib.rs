//! Template oect plugin: two transfer-sweep features. Copy the crate, rename it and its
//! namespace, and replace the physics.

use oect_plugin_api::{export_plugin, extractor, Choice, Params, Transfer};

/// Which way |Id| grows with Vg: N rising, P falling.
#[derive(Choice, Clone, Copy, Default)]
enum Device {
    #[default]
    #[choice("N")]
    N,
    #[choice("P")]
    P,
}

#[derive(Params)]
struct Swing {
    /// samples per least-squares fit of log10|Id| against Vg (at least 2)
    #[param(default = 5, min = 2)]
    window_points: usize,
    /// N: |Id| grows with rising Vg; P: with falling Vg
    #[param(default)]
    device_type: Device,
    /// samples with |Id| at or below this (A) are ignored; ~100x the noise amplitude
    #[param(default = 1e-10, positive)]
    noise_floor: f64,
}

/// subthreshold swing dVg/dlog10|Id| where |Id| rises fastest in the forward half
///
/// log10|Id| is fitted against Vg (the exact, applied variable) over every window of the
/// forward half (samples `0..=(n − 1) / 2`) and the steepest fit wins; a window, not
/// neighbours, so that noise cannot fake a small swing. |Id| ≤ `noise_floor` is noise.
#[extractor(name = "example.subthreshold_swing", unit = "mV/dec",
    example("a decade per 100 mV", vg = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.5, 0.4],
            id = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-4, 1e-5], output = 100.0,
            tolerance = 1e-6))]
fn subthreshold_swing(step: Transfer, p: &Swing) -> Result<f64, String> {
    let (n, forward) = (p.window_points, step.vg.len().div_ceil(2));
    if forward < n {
        return Err(format!("the forward half has {forward} < {n} points"));
    }
    let (sign, rising) = match p.device_type {
        Device::N => (1.0, "rising"),
        Device::P => (-1.0, "falling"),
    };
    // NaN marks samples to leave out; `slope` skips windows that hold one.
    let log_id: Vec<f64> = step.id[..forward]
        .iter()
        .map(|i| {
            Some(i.abs())
                .filter(|a| *a > p.noise_floor)
                .map_or(f64::NAN, f64::log10)
        })
        .collect();
    step.vg[..forward]
        .windows(n)
        .zip(log_id.windows(n))
        .filter_map(|(x, y)| slope(x, y).map(|decades_per_volt| sign * decades_per_volt))
        .filter(|s| *s > 0.0)
        .reduce(f64::max)
        .map(|decades_per_volt| 1000.0 / decades_per_volt)
        .ok_or(format!(
            "no window of {n} samples above noise_floor has |Id| growing with {rising} Vg"
        ))
}

/// Least-squares slope of `y` against `x`; `None` for non-finite values or a stuck gate.
fn slope(x: &[f64], y: &[f64]) -> Option<f64> {
    let max = x.iter().copied().fold(f64::NAN, f64::max);
    let min = x.iter().copied().fold(f64::NAN, f64::min);
    if x.iter().chain(y).any(|v| !v.is_finite()) || max - min <= 1e-6 {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    Some(sxy / sxx)
}

#[derive(Params)]
struct OnOff {
    /// floor for min |Id| in A, so that a zero reading gives a finite ratio
    #[param(default = 1e-12, positive)]
    min_current: f64,
}

/// max |Id| / min |Id| over the whole sweep
///
/// Non-finite samples are ignored.
#[extractor(name = "example.on_off_ratio", unit = "",
    example("1 nA off, 1 mA on", vg = [-0.6, 0.0, 0.6, 0.0, -0.6],
            id = [1e-9, 1e-6, 1e-3, 1e-6, 1e-9], output = 1e6))]
fn on_off_ratio(step: Transfer, p: &OnOff) -> Result<f64, &'static str> {
    let abs = || step.id.iter().filter(|i| i.is_finite()).map(|i| i.abs());
    let max = abs()
        .reduce(f64::max)
        .ok_or("the sweep has no finite Id value")?;
    Ok(max / abs().fold(f64::INFINITY, f64::min).max(p.min_current))
}

export_plugin!();
