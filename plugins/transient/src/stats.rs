//! Small numeric helpers that reproduce numpy's exact floating-point behaviour.
//!
//! The transient extractors must match the Python predecessor bit for bit, so
//! these helpers follow numpy's operation order rather than the "obvious"
//! mathematical formula (see `specs/algorithms_transfer_transient.md` §3.1.2, §3.2).

/// Rounds to the nearest `f32` (ties to even) and widens back, like numpy
/// assigning an f64 into a float32 array (overflow becomes ±inf).
pub fn round_f32(x: f64) -> f64 {
    x as f32 as f64
}

/// `np.percentile(a, q)` with the default "linear" method, bit-exact.
///
/// `q` is in percent; numpy divides it by 100 first (a rounding step of its
/// own, kept here on purpose) and rejects anything outside `[0, 1]` after that
/// division. Any NaN in `a` gives NaN. Errors: empty `a`, `q` out of range.
pub fn percentile_linear(a: &[f64], q: f64) -> Result<f64, String> {
    let qq = q / 100.0;
    if !(0.0..=1.0).contains(&qq) {
        return Err(format!("percentile {q} is outside the range [0, 100]"));
    }
    if a.is_empty() {
        return Err("percentile of an empty array".to_string());
    }
    if a.iter().any(|v| v.is_nan()) {
        return Ok(f64::NAN);
    }
    let m = a.len();
    let vi = (m - 1) as f64 * qq;
    let mut s = a.to_vec();
    let (lo, g) = if vi >= (m - 1) as f64 {
        // numpy clamps to the last element but still runs the lerp with
        // gamma = vi + 1 (its "previous index" is -1), which matters for ±inf.
        (m - 1, vi + 1.0)
    } else {
        let lo = vi.floor();
        (lo as usize, vi - lo)
    };
    let (_, &mut a_lo, rest) = s.select_nth_unstable_by(lo, f64::total_cmp);
    let b_hi = if lo == m - 1 {
        a_lo
    } else {
        // The next order statistic is the minimum of the upper partition.
        rest.iter().copied().fold(f64::INFINITY, f64::min)
    };
    Ok(lerp_numpy(a_lo, b_hi, g))
}

/// numpy's `_lerp`: the two-sided form keeps the result monotone in `g`.
fn lerp_numpy(a: f64, b: f64, g: f64) -> f64 {
    let d = b - a;
    if g >= 0.5 {
        b - d * (1.0 - g)
    } else {
        a + d * g
    }
}

/// Indices of `np.linspace(0, len - 1, n, dtype=int)`.
///
/// numpy computes `floor(k * step)` in f64 with `step = (len-1)/(n-1)` and then
/// sets the last index exactly; exact integer arithmetic can differ by one when
/// the f64 product rounds just below an integer, so the float formula is kept.
/// `len` must be at least 1 when `n > 0` (callers guarantee it).
pub fn linspace_indices(len: usize, n: usize) -> Vec<usize> {
    match n {
        0 => Vec::new(),
        1 => vec![0],
        _ => {
            let last = len.saturating_sub(1);
            let step = last as f64 / (n - 1) as f64;
            let mut idx: Vec<usize> = (0..n - 1)
                .map(|k| (k as f64 * step).floor() as usize)
                .collect();
            idx.push(last);
            idx
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_between_order_statistics() {
        let a = [4.0, 1.0, 3.0, 2.0];
        // (4 - 1) * 0.75 = 2.25: a quarter of the way from 3 to 4.
        assert_eq!(percentile_linear(&a, 75.0), Ok(3.25));
        assert_eq!(percentile_linear(&a, 0.0), Ok(1.0));
        assert_eq!(percentile_linear(&a, 100.0), Ok(4.0));
        assert_eq!(percentile_linear(&a, 50.0), Ok(2.5));
        assert_eq!(percentile_linear(&[7.0], 30.0), Ok(7.0));
        // g >= 0.5 interpolates down from the upper neighbour: 10 - 10 * 0.25.
        assert_eq!(percentile_linear(&[10.0, 0.0], 75.0), Ok(7.5));
        // g < 0.5 interpolates up from the lower one: 10 * 0.33 rounds up.
        assert_eq!(
            percentile_linear(&[0.0, 10.0], 33.0),
            Ok(3.3000000000000003)
        );
        // Repeated values: vi = 3 * 0.6 = 1.8 lies between two 2s.
        assert_eq!(percentile_linear(&[5.0, 2.0, 2.0, 2.0], 60.0), Ok(2.0));
        // vi = 2 * 0.8 = 1.6, g = 0.6 between 0.1 and 0.7: numpy's upper form
        // gives 0.46 where 0.1 + 0.6 * 0.6 would give 0.4600000000000001.
        assert_eq!(percentile_linear(&[0.7, 0.0, 0.1], 80.0), Ok(0.46));
    }

    #[test]
    fn percentile_failures_and_nan() {
        assert!(percentile_linear(&[], 50.0).is_err());
        assert!(percentile_linear(&[1.0], -1e-9).is_err());
        assert!(percentile_linear(&[1.0], 100.000_000_1).is_err());
        assert!(percentile_linear(&[1.0], f64::NAN).is_err());
        assert!(percentile_linear(&[1.0, f64::NAN, 3.0], 10.0)
            .unwrap()
            .is_nan());
    }

    #[test]
    fn linspace_uses_numpy_float_formula() {
        assert!(linspace_indices(10, 0).is_empty());
        assert_eq!(linspace_indices(10, 1), vec![0]);
        assert_eq!(linspace_indices(5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(linspace_indices(11, 3), vec![0, 5, 10]);
        assert_eq!(linspace_indices(1, 3), vec![0, 0, 0]);
        assert_eq!(linspace_indices(10, 4), vec![0, 3, 6, 9]);
        // 11 * (30 / 22) = 14.999999999999998 in f64: numpy floors to 14,
        // exact integer arithmetic would give 15.
        assert_eq!(linspace_indices(31, 23)[11], 14);
    }

    #[test]
    fn f32_rounding_is_nearest_even_and_saturates_to_inf() {
        assert_eq!(round_f32(0.1), 0.100_000_001_490_116_12);
        assert_eq!(round_f32(1e39), f64::INFINITY);
        assert_eq!(round_f32(-1e39), f64::NEG_INFINITY);
        assert!(round_f32(f64::NAN).is_nan());
        // 1 + 2^-24 is halfway between 1 and 1 + 2^-23: ties to even (1).
        assert_eq!(round_f32(1.0 + 2f64.powi(-24)), 1.0);
    }
}
