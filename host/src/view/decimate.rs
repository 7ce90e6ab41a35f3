//! Fewer points per line without losing what matters: a plot `w` pixels wide cannot show more
//! than `w` distinct x positions, so each pixel column keeps its lowest and highest point
//! (in x order). A one-step spike among thousands of steps therefore still reaches its full
//! height, which skipping every k-th point would lose.

/// Runs of consecutive finite points of `(x, y)`; a NaN (failed step, no fit) breaks the
/// line instead of being bridged.
pub fn segments(x: &[f64], y: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for (&a, &b) in x.iter().zip(y) {
        if a.is_finite() && b.is_finite() {
            run.push((a, b));
        } else if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// Min/max decimation of one run of points with increasing x over `[x0, x1]` into `buckets`
/// columns: per column its first point, its minimum and maximum (in x order) and its last
/// point, so lines between columns join where the data does. Returns the points unchanged
/// when there are no more than four per column.
pub fn min_max(points: &[(f64, f64)], x0: f64, x1: f64, buckets: usize) -> Vec<(f64, f64)> {
    let buckets = buckets.max(1);
    if points.len() <= 4 * buckets || x1 <= x0 {
        return points.to_vec();
    }
    let column = |x: f64| (((x - x0) / (x1 - x0) * buckets as f64) as usize).min(buckets - 1);
    let mut out = Vec::with_capacity(4 * buckets);
    let mut start = 0;
    while start < points.len() {
        let c = column(points[start].0);
        let mut end = start + 1;
        while end < points.len() && column(points[end].0) == c {
            end += 1;
        }
        let run = &points[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in run.iter().enumerate() {
            if p.1 < run[lo].1 {
                lo = i;
            }
            if p.1 > run[hi].1 {
                hi = i;
            }
        }
        let mut keep = [0, lo.min(hi), lo.max(hi), run.len() - 1];
        keep.sort_unstable();
        let mut last = usize::MAX;
        for k in keep {
            if k != last {
                out.push(run[k]);
                last = k;
            }
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_spike_survives() {
        let n = 100_000;
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                (
                    i as f64,
                    if i == 45_678 {
                        10.0
                    } else {
                        (i as f64).sin() * 0.01
                    },
                )
            })
            .collect();
        let d = min_max(&pts, 0.0, n as f64, 800);
        assert!(d.len() <= 4 * 800, "{} points", d.len());
        assert!(d.contains(&(45_678.0, 10.0)));
        let lowest = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        assert_eq!(d.iter().map(|p| p.1).fold(f64::INFINITY, f64::min), lowest);
        // x order is kept and the ends are the data's ends
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!((d[0], d[d.len() - 1]), (pts[0], pts[n - 1]));
    }

    #[test]
    fn short_runs_are_unchanged_and_nan_breaks_lines() {
        let pts = vec![(0.0, 1.0), (1.0, 2.0)];
        assert_eq!(min_max(&pts, 0.0, 1.0, 10), pts);
        let s = segments(
            &[0.0, 1.0, 2.0, 3.0, 4.0],
            &[1.0, f64::NAN, 2.0, 3.0, f64::INFINITY],
        );
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }
}
