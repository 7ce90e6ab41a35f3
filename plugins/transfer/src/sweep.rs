//! Transfer-sweep analysis for one step, reproducing the predecessor's `BatchTransfer`.
//!
//! The predecessor stacked the sweeps into a `float32` array before computing, so
//! every value it reports is computed from f32-rounded inputs. We keep that rounding
//! (it changes results by at most ~6e-8 relative, far below measurement noise) so
//! that features match historical data exactly. Unlike the predecessor, each step is
//! analysed on its own points, so sweeps of different lengths in one experiment work.

/// Which part of the sweep a feature looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The whole sweep.
    Raw,
    /// Samples `0..=tp`, with `tp = (n - 1) / 2` (the turning point is in forward).
    Forward,
    /// Samples `tp + 1..n`.
    Reverse,
}

/// Device polarity; only changes which extremum of the log-slope `Von` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    N,
    P,
}

/// A value and the sample it was found at (`(0, 0)` for an empty segment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Located {
    pub value: f64,
    pub vg: f64,
    pub id: f64,
}

const EMPTY: Located = Located {
    value: 0.0,
    vg: 0.0,
    id: 0.0,
};

/// One transfer sweep with inputs rounded through f32.
#[derive(Debug, Clone)]
pub struct Sweep {
    vg: Vec<f64>,
    id: Vec<f64>,
}

impl Sweep {
    /// Validates and rounds a sweep. Fails on empty or mismatched input and on values
    /// that are not finite after f32 rounding (the predecessor rejected those too).
    pub fn new(vg: &[f64], id: &[f64]) -> Result<Sweep, String> {
        if vg.len() != id.len() {
            return Err(format!(
                "Vg has {} points but Id has {}",
                vg.len(),
                id.len()
            ));
        }
        if vg.is_empty() {
            return Err("the sweep has no points".to_string());
        }
        let round = |x: &f64| *x as f32 as f64;
        let vg: Vec<f64> = vg.iter().map(round).collect();
        let id: Vec<f64> = id.iter().map(round).collect();
        if let Some(i) = (0..vg.len()).find(|&i| !vg[i].is_finite() || !id[i].is_finite()) {
            return Err(format!(
                "point {i} is not finite in single precision (Vg = {}, Id = {})",
                vg[i], id[i]
            ));
        }
        Ok(Sweep { vg, id })
    }

    fn range(&self, segment: Segment) -> std::ops::Range<usize> {
        let n = self.vg.len();
        let tp = (n - 1) / 2;
        match segment {
            Segment::Raw => 0..n,
            Segment::Forward => 0..tp + 1,
            Segment::Reverse => tp + 1..n,
        }
    }

    /// Maximum of |dId/dVg| and where it occurs (`transfer.gm_max`).
    pub fn abs_gm_max(&self, segment: Segment) -> Located {
        let r = self.range(segment);
        let (vg, id) = (&self.vg[r.clone()], &self.id[r]);
        if vg.is_empty() {
            return EMPTY;
        }
        let gm = derivative(id, vg);
        let k = first_extremum(gm.iter().map(|g| g.abs()), |a, b| a > b);
        Located {
            value: gm[k].abs(),
            vg: vg[k],
            id: id[k],
        }
    }

    /// Gate voltage of the steepest rise of log10|Id| (N) or steepest fall (P).
    pub fn von(&self, segment: Segment, device: DeviceType) -> Located {
        let r = self.range(segment);
        let (vg, id) = (&self.vg[r.clone()], &self.id[r]);
        if vg.is_empty() {
            return EMPTY;
        }
        let log_id: Vec<f64> = id.iter().map(|i| i.abs().max(1e-12).log10()).collect();
        let slope = derivative(&log_id, vg);
        let k = match device {
            DeviceType::N => first_extremum(slope.iter().copied(), |a, b| a > b),
            DeviceType::P => first_extremum(slope.iter().copied(), |a, b| a < b),
        };
        Located {
            value: vg[k],
            vg: vg[k],
            id: id[k],
        }
    }

    /// Largest |Id| of the whole sweep (`transfer.absI_max`).
    pub fn abs_i_max(&self) -> f64 {
        let k = first_extremum(self.id.iter().map(|i| i.abs()), |a, b| a > b);
        self.id[k].abs()
    }
}

/// Index of the first element that no later element beats under `better`; NaN elements
/// (derivatives over a zero gate-voltage step) are skipped unless all are NaN.
fn first_extremum(values: impl Iterator<Item = f64>, better: impl Fn(f64, f64) -> bool) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| better(v, b)) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// The predecessor's derivative: one-sided slopes at the ends, the mean of the two
/// adjacent slopes inside, in its operation order so results are bit-identical. Where
/// two neighbouring samples have the same gate voltage (|dVg| < 1e-12: the turning point
/// measured twice, which a shortened sweep puts inside one half) the predecessor divided
/// by 1e-12 and reported a transconductance of ~1e6 S; here that slope does not exist:
/// an inner point takes its other slope, and a point with none is NaN (never an extremum).
fn derivative(f: &[f64], x: &[f64]) -> Vec<f64> {
    let n = f.len();
    if n < 2 {
        return vec![0.0; n];
    }
    let slope = |i: usize| {
        let dx = x[i + 1] - x[i];
        if dx.abs() < 1e-12 {
            f64::NAN
        } else {
            (f[i + 1] - f[i]) / dx
        }
    };
    let mut d = Vec::with_capacity(n);
    d.push(slope(0));
    let mut left = slope(0);
    for i in 1..n - 1 {
        let right = slope(i);
        d.push(match (left.is_nan(), right.is_nan()) {
            (false, false) => (left + right) / 2.0,
            (true, _) => right,
            (false, true) => left,
        });
        left = right;
    }
    d.push(slope(n - 2));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_puts_turning_point_in_forward() {
        let s = Sweep::new(&[0.0, 1.0, 2.0, 1.0, 0.0], &[1.0, 2.0, 3.0, 2.0, 1.0]).unwrap();
        assert_eq!(s.range(Segment::Forward), 0..3);
        assert_eq!(s.range(Segment::Reverse), 3..5);
        let one = Sweep::new(&[0.5], &[1.0]).unwrap();
        assert_eq!(one.abs_gm_max(Segment::Reverse), EMPTY);
        assert_eq!(one.abs_gm_max(Segment::Forward).vg, 0.5);
    }

    #[test]
    fn a_zero_gate_step_has_no_slope() {
        let d = derivative(&[0.0, 1.0, 3.0], &[0.0, -1e-13, 1.0]);
        assert!(d[0].is_nan());
        assert_eq!(d[1], 2.0 / (1.0 + 1e-13));
        assert_eq!(d[2], 2.0 / (1.0 + 1e-13));
        // A shortened sweep whose reverse half starts with the turning point measured
        // twice: the transconductance is that of the real slopes, not dI / 1e-12.
        let s = Sweep::new(
            &[0.0, 0.1, 0.2, 0.3, 0.3, 0.2],
            &[1.0, 2.0, 4.0, 8.0, 8.5, 4.0],
        )
        .unwrap();
        let gm = s.abs_gm_max(Segment::Reverse);
        assert!(gm.value < 100.0, "{gm:?}");
    }

    #[test]
    fn rejects_what_single_precision_cannot_hold() {
        assert!(Sweep::new(&[0.0], &[1e39])
            .unwrap_err()
            .contains("not finite"));
        assert!(Sweep::new(&[], &[]).is_err());
        assert!(Sweep::new(&[0.0, 1.0], &[1.0]).is_err());
        assert!(Sweep::new(&[0.0, f64::NAN], &[1.0, 2.0]).is_err());
    }
}
