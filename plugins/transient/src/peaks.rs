//! `scipy.signal.find_peaks` restricted to the `distance` and `prominence`
//! conditions, with scipy 1.17's exact semantics (spec §3.3).
//!
//! Tie-break rule for equal peaks: wherever scipy orders peaks with numpy's
//! unstable `argsort` (the distance filter visits peaks by decreasing height),
//! this port uses a *stable* ascending sort by `(height, position)` and walks
//! it from the end, so among peaks of equal height the **later** one is
//! visited first and wins. numpy's own order for ties is unspecified and
//! machine-dependent; this rule agreed with it on every golden case.

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
    match (pmin, pmax) {
        (None, None) => return Ok(peaks),
        // Only a lower bound: most scans can stop early (see `min_prominence`).
        (Some(lo), None) => {
            if let Some(kept) = min_prominence(x, &peaks, lo) {
                return Ok(kept);
            }
        }
        _ => {}
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

/// The peaks whose prominence is at least `lo`, by scipy's own scans from each peak (outward
/// until a strictly higher sample or NaN), each stopped as soon as its running minimum is deep
/// enough. `x[p] - m >= lo` only gets truer as `m` falls, so a stopped scan gives the same
/// answer as the full one, for the side whose minimum decides too. `None` when the scans
/// would cost more than a few passes over `x` (long monotone stretches); the caller then uses
/// the linear-time minima instead.
fn min_prominence(x: &[f64], peaks: &[usize], lo: f64) -> Option<Vec<usize>> {
    let mut budget = 4 * x.len() + 64;
    let mut deep_enough = |p: usize, side: &mut dyn Iterator<Item = f64>| -> Option<bool> {
        let mut min = x[p];
        for v in side {
            budget = budget.checked_sub(1)?;
            // A strictly higher sample or NaN ends the scan.
            if v.partial_cmp(&x[p])
                .is_none_or(|o| o == std::cmp::Ordering::Greater)
            {
                break;
            }
            min = min.min(v);
            if x[p] - min >= lo {
                return Some(true);
            }
        }
        Some(x[p] - min >= lo)
    };
    let mut kept = Vec::new();
    for &p in peaks {
        if deep_enough(p, &mut x[..p].iter().rev().copied())?
            && deep_enough(p, &mut x[p + 1..].iter().copied())?
        {
            kept.push(p);
        }
    }
    Some(kept)
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
    // Ascending by (height, position): walking from the end visits the later of two equal
    // peaks first. Keys make this an unstable sort of unique integers, the fastest kind.
    let mut order: Vec<(u64, usize)> = peaks
        .iter()
        .enumerate()
        .map(|(j, &p)| (height_key(x[p]), j))
        .collect();
    order.sort_unstable();
    let mut keep = vec![true; n];
    for &(_, j) in order.iter().rev() {
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

/// An integer with the order of the (never NaN) peak heights, where -0 equals +0 as in
/// the float comparison.
fn height_key(v: f64) -> u64 {
    let bits = (v + 0.0).to_bits(); // -0.0 + 0.0 is +0.0
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
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

    #[test]
    fn early_stopping_scans_keep_the_same_peaks() {
        // Plateaus, repeats, a NaN, an infinity, and a long monotone ramp that exhausts the
        // scan budget (so the linear-time fallback is exercised too).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise: Vec<f64> = (0..2000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state % 17) as f64).sqrt()
            })
            .collect();
        noise[700] = f64::NAN;
        noise[40] = f64::INFINITY;
        let ramp: Vec<f64> = (0..4000).flat_map(|i| [i as f64, i as f64 - 0.5]).collect();
        for x in [noise, ramp] {
            let peaks = local_maxima(&x);
            for lo in [-1.0, 0.0, 0.3, 1.0, 2.5, 4.0, f64::INFINITY, f64::NAN] {
                let literal: Vec<usize> = peaks
                    .iter()
                    .copied()
                    .filter(|&p| lo <= scan_prominence(&x, p))
                    .collect();
                assert_eq!(
                    find_peaks(&x, None, (Some(lo), None)).unwrap(),
                    literal,
                    "lo = {lo}"
                );
                if let Some(early) = min_prominence(&x, &peaks, lo) {
                    assert_eq!(early, literal, "lo = {lo}");
                }
            }
        }
        let ramp: Vec<f64> = (0..4000).flat_map(|i| [i as f64, i as f64 - 0.5]).collect();
        let peaks = local_maxima(&ramp);
        assert!(
            min_prominence(&ramp, &peaks, 1e9).is_none(),
            "budget must run out"
        );
    }

    #[test]
    fn height_keys_order_like_the_floats() {
        let v = [
            f64::NEG_INFINITY,
            -2.0,
            -0.0,
            0.0,
            1e-300,
            1.0,
            f64::INFINITY,
        ];
        for a in v {
            for b in v {
                assert_eq!(
                    height_key(a).cmp(&height_key(b)),
                    a.partial_cmp(&b).unwrap(),
                    "{a} {b}"
                );
            }
        }
    }
}
