//! `transient.cycles` and `transient.peak_current` for one step, bit-exact with
//! the Python predecessor (spec §3.1, §3.4).
//!
//! Values are computed in f64 and rounded to the nearest f32 at the end (the
//! predecessor stores them in a float32 array). `cycles` returns the values found (the
//! predecessor's per-step form); its batch form NaN-padded them to `n_cycles`.

use oect_plugin_api::Choice;

use crate::peaks::find_peaks;
use crate::stats::{linspace_indices, percentile_linear, round_f32};

/// How one value per cycle is picked from a step (named as in the predecessor's configs).
#[derive(Choice, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CycleMethod {
    /// Signed current at the peaks of |I| (falls back to `FixedInterval` when
    /// no peak is found or the distance is invalid).
    #[default]
    PeakDetection,
    /// Evenly spaced samples of the signed current.
    FixedInterval,
    /// Evenly spaced samples among those whose |I| is in the top `n/len` fraction.
    Percentile,
}

/// Prominence condition for `PeakDetection`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prominence {
    /// 10 % of the 75th percentile of |I| (the predecessor's `prominence=None`).
    Adaptive,
    /// Inclusive lower bound.
    Min(f64),
    /// Inclusive `[min, max]`; `None` leaves that side unbounded.
    Range(Option<f64>, Option<f64>),
}

/// Parameters of `transient.cycles`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CyclesParams {
    /// Length of the returned row.
    pub n_cycles: usize,
    pub method: CycleMethod,
    /// Minimal distance between peaks in samples (`PeakDetection` only).
    pub min_distance: f64,
    pub prominence: Prominence,
}

impl Default for CyclesParams {
    /// The predecessor's defaults.
    fn default() -> Self {
        Self {
            n_cycles: 100,
            method: CycleMethod::default(),
            min_distance: 10.0,
            prominence: Prominence::Adaptive,
        }
    }
}

/// One row of `transient.cycles`: at most `p.n_cycles` values, f32-rounded (fewer when the
/// step yields fewer).
///
/// Errors are the cases where the predecessor raised for the whole call:
/// `PeakDetection` with `Adaptive` prominence on an empty step, `Percentile`
/// on an empty step or with `n_cycles > current.len()`.
pub fn cycles(current: &[f64], p: &CyclesParams) -> Result<Vec<f64>, String> {
    let n = p.n_cycles;
    let picked = match p.method {
        CycleMethod::FixedInterval => fixed_interval(current, n),
        CycleMethod::PeakDetection => peak_detection(current, p)?,
        CycleMethod::Percentile => percentile_select(current, n)?,
    };
    Ok(picked.into_iter().take(n).map(round_f32).collect())
}

/// `transient.peak_current`: `max |I|` (or `max I`), f32-rounded; NaN if any
/// sample is NaN (numpy's `max` propagates it). An empty step is an error.
pub fn peak_current(current: &[f64], use_abs: bool) -> Result<f64, String> {
    let mut values = current.iter().map(|&v| if use_abs { v.abs() } else { v });
    let first = values
        .next()
        .ok_or_else(|| "peak_current of an empty step".to_string())?;
    let max = values.try_fold(first, |m, v| {
        if v.is_nan() {
            None
        } else {
            Some(if v > m { v } else { m })
        }
    });
    Ok(match max {
        Some(m) => round_f32(m),
        None => f64::NAN,
    })
}

/// Evenly spaced samples; a step shorter than `n` is returned whole.
fn fixed_interval(current: &[f64], n: usize) -> Vec<f64> {
    if current.len() < n {
        return current.to_vec();
    }
    linspace_indices(current.len(), n)
        .into_iter()
        .map(|i| current[i])
        .collect()
}

fn peak_detection(current: &[f64], p: &CyclesParams) -> Result<Vec<f64>, String> {
    let abs: Vec<f64> = current.iter().map(|v| v.abs()).collect();
    let bounds = match p.prominence {
        Prominence::Adaptive => {
            let p75 =
                percentile_linear(&abs, 75.0).map_err(|e| format!("adaptive prominence: {e}"))?;
            (Some(p75 * 0.1), None)
        }
        Prominence::Min(v) => (Some(v), None),
        Prominence::Range(lo, hi) => (lo, hi),
    };
    // An invalid distance or no peak at all falls back to evenly spaced samples.
    let peaks = match find_peaks(&abs, Some(p.min_distance), bounds) {
        Ok(peaks) if !peaks.is_empty() => peaks,
        _ => return Ok(fixed_interval(current, p.n_cycles)),
    };
    if peaks.len() <= p.n_cycles {
        return Ok(peaks.into_iter().map(|i| current[i]).collect());
    }
    // Keep the n largest |I|, back in time order. Stable sort by |I| with
    // position as the implicit tie-break: among equal magnitudes the later
    // peaks survive (numpy's unstable argsort leaves this unspecified).
    let mut order = peaks;
    order.sort_by(|&a, &b| abs[a].total_cmp(&abs[b]));
    let mut top = order.split_off(order.len() - p.n_cycles);
    top.sort_unstable();
    Ok(top.into_iter().map(|i| current[i]).collect())
}

fn percentile_select(current: &[f64], n: usize) -> Result<Vec<f64>, String> {
    let len = current.len();
    if len == 0 {
        return Err("percentile method on an empty step".to_string());
    }
    let abs: Vec<f64> = current.iter().map(|v| v.abs()).collect();
    let q = 100.0 * (1.0 - n as f64 / len as f64);
    let threshold = percentile_linear(&abs, q)
        .map_err(|e| format!("percentile method with n_cycles = {n} > {len} samples: {e}"))?;
    let selected: Vec<f64> = current
        .iter()
        .zip(&abs)
        .filter_map(|(&v, &a)| (a >= threshold).then_some(v))
        .collect();
    if selected.len() < n {
        return Ok(selected);
    }
    Ok(linspace_indices(selected.len(), n)
        .into_iter()
        .map(|i| selected[i])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n_cycles: usize, method: CycleMethod) -> CyclesParams {
        CyclesParams {
            n_cycles,
            method,
            min_distance: 1.0,
            prominence: Prominence::Min(0.0),
        }
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn equal_magnitudes_keep_the_later_peaks() {
        let i = [0.0, 1.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0];
        let p = params(2, CycleMethod::PeakDetection);
        assert_eq!(cycles(&i, &p).unwrap(), vec![1.0, -1.0]);
        let p = params(3, CycleMethod::PeakDetection);
        assert_eq!(cycles(&i, &p).unwrap(), vec![-1.0, 1.0, -1.0]);
        // Larger magnitudes win regardless of position; time order is kept.
        let i = [0.0, 3.0, 0.0, -1.0, 0.0, 2.0, 0.0, -1.0, 0.0];
        assert_eq!(
            cycles(&i, &params(2, CycleMethod::PeakDetection)).unwrap(),
            vec![3.0, 2.0]
        );
    }

    #[test]
    fn peak_detection_falls_back_to_fixed_interval() {
        let ramp: Vec<f64> = (0..10).map(f64::from).collect();
        let fixed = cycles(&ramp, &params(4, CycleMethod::FixedInterval)).unwrap();
        assert_eq!(fixed, vec![0.0, 3.0, 6.0, 9.0]);
        // No local maximum in a ramp.
        let p = params(4, CycleMethod::PeakDetection);
        assert_eq!(cycles(&ramp, &p).unwrap(), fixed);
        // A distance below 1 makes find_peaks fail.
        let wave = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let p = CyclesParams {
            min_distance: 0.5,
            ..params(4, CycleMethod::PeakDetection)
        };
        assert_eq!(cycles(&wave, &p).unwrap(), vec![0.0, 1.0, 0.0, 1.0]);
        // NaN makes the adaptive prominence NaN: no peak survives.
        let mut noisy = wave.to_vec();
        noisy[3] = f64::NAN;
        let p = CyclesParams {
            prominence: Prominence::Adaptive,
            ..params(4, CycleMethod::PeakDetection)
        };
        assert!(same(
            &cycles(&noisy, &p).unwrap(),
            &[0.0, f64::NAN, 0.0, 1.0]
        ));
    }

    #[test]
    fn rows_are_f32_and_hold_the_cycles_found() {
        let i = [0.0, 0.1, 0.0];
        let row = cycles(&i, &params(3, CycleMethod::PeakDetection)).unwrap();
        assert!(same(&row, &[0.1_f32 as f64]));
        let row = cycles(&i, &params(5, CycleMethod::FixedInterval)).unwrap();
        assert!(same(&row, &[0.0, 0.1_f32 as f64, 0.0]));
        assert!(cycles(&i, &params(0, CycleMethod::FixedInterval))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn percentile_selects_the_largest_magnitudes() {
        let i = [1.0, -5.0, 2.0, 4.0, -3.0];
        // q = 60: threshold 3.4 keeps -5 and 4 in time order.
        let p = params(2, CycleMethod::Percentile);
        assert_eq!(cycles(&i, &p).unwrap(), vec![-5.0, 4.0]);
        assert!(cycles(&i, &params(6, CycleMethod::Percentile)).is_err());
        assert!(cycles(&[], &params(1, CycleMethod::Percentile)).is_err());
    }

    #[test]
    fn empty_steps() {
        let adaptive = CyclesParams {
            prominence: Prominence::Adaptive,
            ..params(2, CycleMethod::PeakDetection)
        };
        assert!(cycles(&[], &adaptive).is_err());
        let fixed_prominence = params(2, CycleMethod::PeakDetection);
        assert!(cycles(&[], &fixed_prominence).unwrap().is_empty());
        assert!(cycles(&[], &params(2, CycleMethod::FixedInterval))
            .unwrap()
            .is_empty());
        assert!(peak_current(&[], true).is_err());
    }

    #[test]
    fn peak_current_signed_abs_and_nan() {
        let i = [-3.0, 2.0, 1.0];
        assert_eq!(peak_current(&i, true), Ok(3.0));
        assert_eq!(peak_current(&i, false), Ok(2.0));
        assert!(peak_current(&[1.0, f64::NAN, 5.0], true).unwrap().is_nan());
        assert!(peak_current(&[f64::NAN, 1.0], false).unwrap().is_nan());
        assert_eq!(peak_current(&[0.1], true), Ok(0.1_f32 as f64));
    }

    #[test]
    fn method_names() {
        use crate::choice;
        assert_eq!(choice("peak_detection"), Ok(CycleMethod::PeakDetection));
        assert_eq!(choice("fixed_interval"), Ok(CycleMethod::FixedInterval));
        assert_eq!(choice("percentile"), Ok(CycleMethod::Percentile));
        assert!(choice::<CycleMethod>("Percentile").is_err());
    }
}
