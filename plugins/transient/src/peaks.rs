//! `scipy.signal.find_peaks` restricted to the `distance` and `prominence`
//! conditions, with scipy 1.17's exact semantics (spec §3.3).
//!
//! Tie-break rule for equal peaks: wherever scipy orders peaks with numpy's
//! unstable `argsort` (the distance filter visits peaks by decreasing height),
//! this port uses a *stable* ascending sort by `(height, position)` and walks
//! it from the end, so among peaks of equal height the **later** one is
//! visited first and wins. numpy's own order for ties is unspecified and
//! machine-dependent; this rule agreed with it on every golden case.

use std::cmp::Ordering;

/// Positions of the peaks of `x`, in increasing order, that survive the
/// `distance` filter and then the prominence condition.
///
/// * `distance`: minimal horizontal distance between peaks in samples; it is
///   rounded up (`2.5` → 3). `None` disables the filter. Values below 1 are an
///   error, as in scipy. NaN or `+inf` disable the filter: that is what the
///   reference does on x86-64, where the C cast of `ceil(NaN)` or `ceil(inf)`
///   to an integer yields `i64::MIN`.
/// * `prominence`: `(min, max)`, both inclusive, `None` meaning unbounded.
///   A NaN bound keeps nothing (every comparison with it is false).
///   `(None, None)` applies no prominence condition at all.
///
/// Peaks are local maxima including flat plateaus (the left-middle sample of
/// a plateau is reported); the first and last samples are never peaks and
/// NaN never starts or ends one.
pub fn find_peaks(
    x: &[f64],
    distance: Option<f64>,
    prominence: (Option<f64>, Option<f64>),
) -> Result<Vec<usize>, String> {
    if let Some(d) = distance {
        if d < 1.0 {
            return Err(format!("peak distance must be at least 1, got {d}"));
        }
    }
    let mut peaks = local_maxima(x);
    if let Some(d) = distance.filter(|d| d.is_finite()) {
        // Finite and >= 1 here; absurdly large values saturate, keeping one peak.
        peaks = select_by_distance(x, &peaks, d.ceil() as usize);
    }
    let (pmin, pmax) = prominence;
    if pmin.is_none() && pmax.is_none() {
        return Ok(peaks);
    }
    let left = reach_minima(x.iter().copied());
    let mut right = reach_minima(x.iter().rev().copied());
    right.reverse();
    peaks.retain(|&p| {
        let prom = x[p] - left[p].max(right[p]);
        pmin.is_none_or(|lo| lo <= prom) && pmax.is_none_or(|hi| prom <= hi)
    });
    Ok(peaks)
}

/// Local maxima (scipy `_local_maxima_1d`): a sample, or the left-middle of a
/// plateau, strictly higher than both neighbouring different samples.
fn local_maxima(x: &[f64]) -> Vec<usize> {
    let mut peaks = Vec::new();
    let i_max = x.len().saturating_sub(1);
    let mut i = 1;
    while i < i_max {
        if x[i - 1] < x[i] {
            let mut ahead = i + 1;
            while ahead < i_max && x[ahead] == x[i] {
                ahead += 1;
            }
            if x[ahead] < x[i] {
                peaks.push((i + ahead - 1) / 2);
                i = ahead;
            }
        }
        i += 1;
    }
    peaks
}

/// scipy `_select_by_peak_distance`: visit peaks by decreasing height and
/// drop every neighbour closer than `dist` samples. Already dropped peaks do
/// not get a turn. Ties: see the module documentation (later index first).
fn select_by_distance(x: &[f64], peaks: &[usize], dist: usize) -> Vec<usize> {
    let n = peaks.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Stable sort: equal heights stay in position order, so walking from the
    // end visits the later of two equal peaks first.
    order.sort_by(|&a, &b| {
        x[peaks[a]]
            .partial_cmp(&x[peaks[b]])
            .unwrap_or(Ordering::Equal)
    });
    let mut keep = vec![true; n];
    for &j in order.iter().rev() {
        if !keep[j] {
            continue;
        }
        for k in (0..j).rev() {
            if peaks[j] - peaks[k] >= dist {
                break;
            }
            keep[k] = false;
        }
        for k in j + 1..n {
            if peaks[k] - peaks[j] >= dist {
                break;
            }
            keep[k] = false;
        }
    }
    peaks
        .iter()
        .zip(keep)
        .filter_map(|(&p, k)| k.then_some(p))
        .collect()
}

/// For every sample `i` of the sequence, the minimum over the samples that
/// scipy's prominence scan from `i` visits: back to (excluding) the nearest
/// earlier sample that is strictly higher or NaN.
///
/// scipy walks outward from each peak, O(len · peaks); a monotonic stack
/// gives the same minima for all samples in O(len). Each stack entry holds a
/// value and the minimum of the run it dominates.
fn reach_minima(x: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.size_hint().0);
    let mut stack: Vec<(f64, f64)> = Vec::new();
    for v in x {
        if v.is_nan() {
            // NaN stops every scan that reaches it.
            stack.clear();
            out.push(f64::NAN);
            continue;
        }
        let mut run_min = v;
        while let Some(&(top, top_min)) = stack.last() {
            if top > v {
                break;
            }
            run_min = run_min.min(top_min);
            stack.pop();
        }
        stack.push((v, run_min));
        out.push(run_min);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scipy's literal O(len · peaks) prominence scan, to cross-check the stack.
    fn scan_prominence(x: &[f64], p: usize) -> f64 {
        let mut lmin = x[p];
        let mut i = p as isize;
        while i >= 0 && x[i as usize] <= x[p] {
            lmin = lmin.min(x[i as usize]);
            i -= 1;
        }
        let mut rmin = x[p];
        let mut i = p;
        while i < x.len() && x[i] <= x[p] {
            rmin = rmin.min(x[i]);
            i += 1;
        }
        x[p] - lmin.max(rmin)
    }

    #[test]
    fn plateaus_edges_and_short_inputs() {
        assert!(local_maxima(&[]).is_empty());
        assert!(local_maxima(&[1.0]).is_empty());
        assert!(local_maxima(&[0.0, 1.0]).is_empty());
        assert_eq!(local_maxima(&[0.0, 1.0, 0.0]), vec![1]);
        // Even plateau: left-middle; odd plateau: middle.
        assert_eq!(local_maxima(&[0.0, 2.0, 2.0, 0.0]), vec![1]);
        assert_eq!(local_maxima(&[0.0, 2.0, 2.0, 2.0, 0.0]), vec![2]);
        // Plateau touching an end, or followed by a higher value: no peak.
        assert!(local_maxima(&[2.0, 2.0, 0.0]).is_empty());
        assert!(local_maxima(&[0.0, 2.0, 2.0]).is_empty());
        assert_eq!(local_maxima(&[0.0, 2.0, 2.0, 3.0, 1.0]), vec![3]);
        // NaN neither starts nor ends a peak.
        assert!(local_maxima(&[0.0, f64::NAN, 0.0]).is_empty());
        assert!(local_maxima(&[0.0, 1.0, f64::NAN, 0.0]).is_empty());
        assert_eq!(local_maxima(&[f64::NAN, 1.0, 0.0, 1.0, 0.0]), vec![3]);
    }

    #[test]
    fn distance_filter_keeps_highest_and_rounds_up() {
        let x = [0.0, 1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 1.5, 0.0];
        let no_prom = (None, None);
        assert_eq!(
            find_peaks(&x, Some(1.0), no_prom).unwrap(),
            vec![1, 3, 5, 7]
        );
        assert_eq!(
            find_peaks(&x, Some(2.0), no_prom).unwrap(),
            vec![1, 3, 5, 7]
        );
        // 2.5 -> 3: 3 removes 1 and 5; 7 is 4 away from 3 and survives.
        assert_eq!(find_peaks(&x, Some(2.5), no_prom).unwrap(), vec![3, 7]);
        assert_eq!(find_peaks(&x, Some(5.0), no_prom).unwrap(), vec![3]);
        // A discarded peak (5) does not get to remove its own neighbour (7).
        assert_eq!(find_peaks(&x, Some(4.0), no_prom).unwrap(), vec![3, 7]);
        assert!(find_peaks(&x, Some(0.5), no_prom).is_err());
        assert!(find_peaks(&x, Some(f64::NEG_INFINITY), no_prom).is_err());
        assert_eq!(
            find_peaks(&x, Some(f64::NAN), no_prom).unwrap(),
            vec![1, 3, 5, 7]
        );
        assert_eq!(find_peaks(&x, None, no_prom).unwrap(), vec![1, 3, 5, 7]);
    }

    #[test]
    fn equal_peaks_later_index_wins() {
        let x = [0.0, 2.0, 0.0, 2.0, 0.0, 2.0, 0.0];
        assert_eq!(find_peaks(&x, Some(3.0), (None, None)).unwrap(), vec![1, 5]);
        let x = [0.0, 2.0, 0.0, 2.0, 0.0];
        assert_eq!(find_peaks(&x, Some(3.0), (None, None)).unwrap(), vec![3]);
    }

    #[test]
    fn prominence_bounds_are_inclusive() {
        // Prominences: peak 1 -> 0.75 (right base 0.25), peak 3 -> 2 (the
        // whole signal, higher base 1 on the right), peak 5 -> 0.5.
        let x = [0.0, 1.0, 0.25, 3.0, 1.5, 2.0, 1.0];
        let all = find_peaks(&x, None, (Some(0.0), None)).unwrap();
        assert_eq!(all, vec![1, 3, 5]);
        assert_eq!(
            find_peaks(&x, None, (Some(0.75), None)).unwrap(),
            vec![1, 3]
        );
        assert_eq!(find_peaks(&x, None, (Some(2.0), None)).unwrap(), vec![3]);
        assert_eq!(
            find_peaks(&x, None, (Some(0.5), Some(0.75))).unwrap(),
            vec![1, 5]
        );
        assert_eq!(find_peaks(&x, None, (None, Some(0.5))).unwrap(), vec![5]);
        assert!(find_peaks(&x, None, (Some(f64::NAN), None))
            .unwrap()
            .is_empty());
        assert!(find_peaks(&x, None, (Some(2.5), None)).unwrap().is_empty());
    }

    #[test]
    fn stack_minima_equal_literal_scan() {
        // Deterministic pseudo-random signal with plateaus, repeats and a NaN.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut x: Vec<f64> = (0..3000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state % 23) as f64).sqrt()
            })
            .collect();
        x[1500] = f64::NAN;
        x[10] = f64::INFINITY;
        let left = reach_minima(x.iter().copied());
        let mut right = reach_minima(x.iter().rev().copied());
        right.reverse();
        let peaks = local_maxima(&x);
        assert!(peaks.len() > 500);
        for p in peaks {
            let fast = x[p] - left[p].max(right[p]);
            let slow = scan_prominence(&x, p);
            assert!(fast == slow || (fast.is_nan() && slow.is_nan()), "peak {p}");
        }
    }
}
