//! The robust AutoTau solver (default).
//!
//! Same outer structure and parameters as the predecessor (search two periods for the
//! best rise and decay windows, apply them to every cycle at the same phase, search a
//! cycle again when its R² is below the threshold), with these changes, each removing a
//! bias or a failure of the reference:
//! * every fit is a variable-projection fit ([`varpro`]): scale-free, bracketed τ, no
//!   start point in signal units;
//! * windows are fitted on their raw samples; the `interp`, `points_after_interp` and
//!   `normalize` options are ignored (resampling made the reference prefer low-amplitude
//!   tail windows, and normalising does not change a scale-free fit);
//! * an applied window holds exactly the `w` samples that were searched (the reference
//!   stored `w·dt` and so applied `w + 1`, often the first sample of the next edge), and
//!   is located by sample index with half-sample tolerance instead of exact float
//!   comparisons;
//! * the window that ends on the last sample is a candidate too (the reference's start
//!   range was exclusive), windows have at least [`varpro::MIN_POINTS`] samples;
//! * windows are ranked by explained variance per unit residual variance,
//!   `F = (TSS - RSS) / max(RSS / (n - 3), floor)`, instead of adjusted R². Adjusted R²
//!   favours short windows with a high share of explained variance; F favours the window
//!   that captures the most transition energy without crossing the next edge, which is
//!   the least noisy estimate of τ. `floor` is a resolution limit (1e-9 of the signal's
//!   standard deviation, squared) so that rounding residuals of noise-free data cannot
//!   decide the ranking;
//! * the search runs on the mean of all cycles (folded by period) when the sampling is
//!   uniform with a whole number of samples per period, not on the first two periods
//!   only, and the chosen window's start is then moved onto the edge by a change-point
//!   test ([`refine_edge`]); with noise, every variance-based score prefers windows that
//!   start a few samples early, which biased τ upwards by 10–20 % at 5 % noise;
//! * the refit search of a cycle covers windows *starting* in that cycle, allowed to run
//!   into the next one (the reference cut the search at the period end, so a transition
//!   late in the period could not be refitted whole);
//! * a refit replaces a failed fit, but a poor fit only if the refit passes the threshold
//!   itself. The reference replaced on any R² improvement; with noise every cycle is
//!   below the threshold, and the best-R² window of a single noisy cycle is biased in
//!   the way described above.
//!
//! Searching thousands of windows with a full nonlinear fit each is what made the
//! reference slow. Here the search costs a few vectorisable passes: for one τ on a
//! log-spaced grid, `Σ y_{s+k} q^k` (q = e^{-dt/τ}) for every window start s follows
//! from one backward recursion over the samples, and the variable-projection RSS of every
//! window follows in O(1) from it and prefix sums. A coarse grid over the whole τ range
//! finds each window's minimum approximately (parabolic interpolation in ln τ); a fine
//! grid around the best τ re-scores the promising windows precisely; the best few get an
//! exact fit, and the winner is polished by coordinate ascent on the exact score before
//! its start is moved onto the edge. A normal step (a few thousand windows) costs a few
//! milliseconds; a step whose every cycle is searched again (pure noise) about 0.1 s.

use super::varpro::{self, ExpFit, Shape, MIN_POINTS, TAU_HI_SPANS, TAU_LO_SAMPLES};
use super::{num_cycles, AutoTauParams, CycleFit};

/// Ratio between neighbouring τ of the coarse grid.
const COARSE_RATIO: f64 = 1.25;
/// Half-width (in ln τ) and point count of the fine grid around the best coarse τ.
const FINE_HALF_WIDTH: f64 = 0.15;
const FINE_POINTS: usize = 31;
/// Windows whose coarse score is within this factor of the best are re-scored finely.
const FINE_FRACTION: f64 = 1e-2;
/// At most this many of them (the best by coarse score): bounds the cost on noise, where
/// all windows score alike.
const FINE_MAX_WINDOWS: usize = 512;
/// Number of finely ranked windows that get an exact fit.
const EXACT_CANDIDATES: usize = 3;
/// Bound on the coordinate-ascent moves that polish the chosen window.
const MAX_POLISH_STEPS: usize = 200;
/// Largest number of leading samples the edge refinement may cut from a window (and at
/// most a quarter of it).
const MAX_EDGE_SHIFT: usize = 8;
/// Largest relative deviation of `period · sample_rate` from a whole number for which
/// cycles are folded sample by sample.
const FOLD_TOL: f64 = 1e-6;
/// Relative resolution below which residuals are treated as rounding noise.
const FLOOR_REL: f64 = 1e-9;

const SHAPES: [Shape; 2] = [Shape::Rise, Shape::Decay];

pub(super) fn fit_cycles(time: &[f64], signal: &[f64], p: &AutoTauParams) -> Vec<CycleFit> {
    let dt = 1.0 / p.sample_rate;
    let sizes = window_sizes(p, dt);
    let limit = time[0] + 2.0 * p.period;
    let n2 = time.partition_point(|t| *t <= limit);
    // Structure below this level is rounding, not signal (see `FLOOR_REL`).
    let resolution = FLOOR_REL * finite_sd(&signal[..n2]).unwrap_or(0.0);
    let search_params = SearchParams {
        sizes: &sizes,
        sstep: p.window_start_idx_step,
        resolution,
    };
    let best = match fold(time, signal, p.period, dt, n2) {
        Some(template) => search(&time[..n2], &template, n2, &search_params),
        None => search(&time[..n2], &signal[..n2], n2, &search_params),
    };
    // Phase (seconds into the period) of each chosen window.
    let phase = best.map(|b| b.map(|c| ((time[c.start] - time[0]) % p.period, c)));

    (0..num_cycles(time, p.period))
        .map(|i| {
            let cs = time[0] + i as f64 * p.period;
            let mut row = CycleFit::unfitted(i, cs);
            let mut fits = [None, None];
            for (k, shape) in SHAPES.into_iter().enumerate() {
                if let Some((offset, chosen)) = phase[k] {
                    let range = located(time, cs + offset, chosen.len, dt);
                    fits[k] = fit_range(time, signal, range, chosen, shape, resolution);
                }
            }
            let poor = |f: &Option<ExpFit>| {
                f.is_none_or(|f| f.r2.is_nan() || f.r2 < p.r_squared_threshold)
            };
            if fits.iter().any(poor) {
                row.refitted = true;
                let refit = refit_cycle(time, signal, cs, p.period, dt, &search_params);
                for k in 0..2 {
                    if !poor(&fits[k]) {
                        continue;
                    }
                    // A refit replaces a failed fit, or a poor one if it passes the
                    // threshold itself (see the module notes).
                    let accept = |new: &ExpFit| match fits[k] {
                        None => true,
                        Some(old) => new.r2 > old.r2 && new.r2 >= p.r_squared_threshold,
                    };
                    if let Some(new) = refit[k].filter(accept) {
                        fits[k] = Some(new);
                    }
                }
            }
            if let Some(f) = fits[0] {
                (row.tau_on, row.r2_on, row.r2_adj_on) = (f.tau, f.r2, f.r2_adj);
            }
            if let Some(f) = fits[1] {
                (row.tau_off, row.r2_off, row.r2_adj_off) = (f.tau, f.r2, f.r2_adj);
            }
            row
        })
        .collect()
}

/// The mean over all cycles of the record's two-period blocks (`len` samples from each
/// period start), if the sampling is uniform with a whole number of samples per period.
/// Averaging divides the noise by √cycles, so the search sees the corner at the edge
/// (see the module notes) and does not depend on the first two cycles being typical.
/// Non-finite samples are left out of the means.
fn fold(time: &[f64], signal: &[f64], period: f64, dt: f64, len: usize) -> Option<Vec<f64>> {
    let per = (period / dt).round();
    let n = time.len();
    let uniform = ((time[n - 1] - time[0]) / dt - (n - 1) as f64).abs() < 0.5;
    if !uniform || (period / dt - per).abs() > FOLD_TOL * per || per < 1.0 {
        return None;
    }
    let per = per as usize;
    let mut sum = vec![0.0; len];
    let mut count = vec![0usize; len];
    for block in (0..n).step_by(per) {
        for (k, v) in signal[block..n.min(block + len)].iter().enumerate() {
            if v.is_finite() {
                sum[k] += v;
                count[k] += 1;
            }
        }
    }
    Some(
        sum.iter()
            .zip(&count)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::NAN })
            .collect(),
    )
}

/// Window lengths in samples, as the predecessor computes them, but at least
/// [`MIN_POINTS`].
fn window_sizes(p: &AutoTauParams, dt: f64) -> Vec<usize> {
    let wmin = ((p.window_scalar_min * p.period / dt) as usize).max(MIN_POINTS);
    let wmax = (p.window_scalar_max * p.period / dt) as usize;
    (wmin..=wmax).step_by(p.window_points_step).collect()
}

/// `len` samples starting at the first sample not earlier than `start - dt/2`, cut at the
/// end of the record.
fn located(time: &[f64], start: f64, len: usize, dt: f64) -> std::ops::Range<usize> {
    let lo = time.partition_point(|t| *t < start - 0.5 * dt);
    lo..(lo + len).min(time.len())
}

/// Exact fit on a cycle window, starting from the search's τ. A window cut by the end of
/// the record is still fitted if it keeps at least half its samples; a window whose
/// variation is below the resolution (a flat, noise-free stretch) is not fitted.
fn fit_range(
    time: &[f64],
    signal: &[f64],
    range: std::ops::Range<usize>,
    chosen: Chosen,
    shape: Shape,
    resolution: f64,
) -> Option<ExpFit> {
    let n = range.len();
    if 2 * n < chosen.len {
        return None;
    }
    varpro::fit(
        &time[range.clone()],
        &signal[range],
        shape,
        Some(chosen.fit.tau),
    )
    .filter(|f| f.tss > n as f64 * resolution * resolution)
}

/// Searches windows starting in cycle `cs` (they may run into the next cycle) and fits
/// the best rise and decay windows exactly.
fn refit_cycle(
    time: &[f64],
    signal: &[f64],
    cs: f64,
    period: f64,
    dt: f64,
    sp: &SearchParams,
) -> [Option<ExpFit>; 2] {
    let first = time.partition_point(|t| *t < cs - 0.5 * dt);
    let end_of_cycle = time.partition_point(|t| *t < cs + period - 0.5 * dt);
    let wmax = sp.sizes.last().copied().unwrap_or(0);
    let last = (end_of_cycle + wmax).min(time.len());
    let best = search(
        &time[first..last],
        &signal[first..last],
        end_of_cycle - first,
        sp,
    );
    best.map(|b| b.map(|c| c.fit))
}

/// Standard deviation of the finite samples, if there are any.
fn finite_sd(y: &[f64]) -> Option<f64> {
    let (count, sum) = y
        .iter()
        .filter(|v| v.is_finite())
        .fold((0usize, 0.0), |(c, s), v| (c + 1, s + v));
    if count == 0 {
        return None;
    }
    let mean = sum / count as f64;
    let ss: f64 = y
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| (v - mean) * (v - mean))
        .sum();
    Some((ss / count as f64).sqrt())
}

/// What every search of one record shares.
struct SearchParams<'a> {
    /// Window lengths in samples, ascending.
    sizes: &'a [usize],
    /// Step between window starts, in samples.
    sstep: usize,
    /// Smallest meaningful standard deviation of a window (raw units).
    resolution: f64,
}

/// A window chosen by the search (indices relative to the searched slice).
#[derive(Debug, Clone, Copy)]
struct Chosen {
    start: usize,
    len: usize,
    fit: ExpFit,
}

/// Best rise and decay windows among those whose start is below `start_limit` (and that
/// fit inside `y`). The grids treat the samples as equally spaced; the exact fits use
/// the true times.
fn search(t: &[f64], y: &[f64], start_limit: usize, sp: &SearchParams) -> [Option<Chosen>; 2] {
    let Some(set) = WindowSet::new(y, start_limit, sp) else {
        return [None, None];
    };
    let coarse = set.grid_minima(&set.coarse_taus(), &(0..set.list.len()).collect::<Vec<_>>());
    SHAPES.map(|shape| {
        let k = shape_index(shape);
        let scores: Vec<f64> = coarse
            .iter()
            .enumerate()
            .map(|(i, m)| set.score(i, m[k]))
            .collect();
        let (top, top_score) = argmax(&scores)?;
        let centre = coarse[top][k]?.tau.ln();
        let fine_taus: Vec<f64> = (0..FINE_POINTS)
            .map(|j| {
                let x = j as f64 / (FINE_POINTS - 1) as f64;
                (centre - FINE_HALF_WIDTH + 2.0 * FINE_HALF_WIDTH * x).exp()
            })
            .collect();
        let mut subset: Vec<usize> = (0..scores.len())
            .filter(|&i| scores[i] >= FINE_FRACTION * top_score)
            .collect();
        if subset.len() > FINE_MAX_WINDOWS {
            subset.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            subset.truncate(FINE_MAX_WINDOWS);
            subset.sort_unstable();
        }
        let fine = set.grid_minima(&fine_taus, &subset);
        let mut ranked: Vec<(usize, f64, f64)> = subset
            .iter()
            .zip(&fine)
            .filter_map(|(&i, m)| m[k].map(|est| (i, set.score(i, Some(est)), est.tau)))
            .filter(|(_, s, _)| *s > 0.0)
            .collect();
        if ranked.is_empty() {
            // No interior minimum on the fine grid: fall back to the coarse winner.
            ranked.push((top, top_score, coarse[top][k]?.tau));
        }
        // Stable sort: among equal scores the earlier window (size, then start) wins.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut best: Option<(f64, Chosen)> = None;
        for &(i, _, tau_samples) in ranked.iter().take(EXACT_CANDIDATES) {
            let (start, len) = set.list[i];
            let step = (t[start + len - 1] - t[start]) / (len - 1) as f64;
            if let Some((score, c)) = set.exact(t, y, i, shape, tau_samples * step) {
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, c));
                }
            }
        }
        best.map(|b| {
            let polished = set.polish(t, y, shape, sp.sstep, b);
            refine_edge(t, y, shape, polished, sp.resolution)
        })
    })
}

/// Moves the start of a chosen window onto the edge.
///
/// With noise, every variance-based window score rewards a window that starts a few
/// samples before the edge: the plateau samples add explained variance and their misfit
/// drowns in the noise (with fast transitions this happens even without noise, as a
/// longer τ absorbs the flat sample). Both bias τ upwards. The remedy tests the window
/// for a change point: a constant over its first `j` samples followed by the exponential
/// over the rest, against the exponential over the whole window, by BIC (residuals below
/// the resolution count as the resolution, so rounding cannot justify a change point).
/// The end of the window stays where it is.
fn refine_edge(t: &[f64], y: &[f64], shape: Shape, c: Chosen, resolution: f64) -> Chosen {
    let (s, w) = (c.start, c.len);
    let n = w as f64;
    let floor = n * resolution * resolution;
    let bic = |rss: f64, params: f64| n * (rss.max(floor) / n).ln() + params * n.ln();
    let mut best = (bic(c.fit.rss, 3.0), c);
    for j in 1..=(w / 4).min(MAX_EDGE_SHIFT) {
        let head = &y[s..s + j];
        let mean = head.iter().sum::<f64>() / j as f64;
        let rss_head: f64 = head.iter().map(|v| (v - mean) * (v - mean)).sum();
        let Some(fit) = varpro::fit(&t[s + j..s + w], &y[s + j..s + w], shape, Some(c.fit.tau))
        else {
            continue;
        };
        // Change point and plateau level are the two extra parameters.
        let score = bic(rss_head + fit.rss, 5.0);
        if score < best.0 {
            let moved = Chosen {
                start: s + j,
                len: w - j,
                fit,
            };
            best = (score, moved);
        }
    }
    best.1
}

fn shape_index(shape: Shape) -> usize {
    match shape {
        Shape::Rise => 0,
        Shape::Decay => 1,
    }
}

/// First index of the largest positive value.
fn argmax(v: &[f64]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &s) in v.iter().enumerate() {
        if s > best.map_or(0.0, |b| b.1) {
            best = Some((i, s));
        }
    }
    best
}

/// The candidate windows of one length: `list[first..end]`, ordered by start.
#[derive(Debug, Clone, Copy)]
struct Group {
    len: usize,
    first: usize,
    end: usize,
}

/// Parabolic estimate of a window's minimum RSS over a τ grid (standardised units;
/// τ in samples).
#[derive(Debug, Clone, Copy)]
struct Estimate {
    rss: f64,
    tau: f64,
}

/// The candidate windows of one search, with the prefix sums that make each window's
/// variable-projection RSS an O(1) computation per τ.
struct WindowSet {
    /// Standardised samples (zero mean, unit variance over the finite ones; non-finite
    /// samples set to 0, and windows containing them excluded).
    z: Vec<f64>,
    /// `(start, len)` in search order: length ascending, then start ascending.
    list: Vec<(usize, usize)>,
    /// Σ z and the centred sum of squares of each window.
    sum: Vec<f64>,
    tss: Vec<f64>,
    wmax: usize,
    /// The runs of `list` with one length each, in ascending length.
    groups: Vec<Group>,
    /// Squared resolution per sample, in standardised and in raw units: windows whose
    /// variation is below it are no candidates, and it bounds F's residual variance.
    floor_z: f64,
    floor_raw: f64,
}

impl WindowSet {
    fn new(y: &[f64], start_limit: usize, sp: &SearchParams) -> Option<Self> {
        let finite: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.len() < MIN_POINTS {
            return None;
        }
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / finite.len() as f64;
        let sd = var.sqrt();
        if !(sd > 0.0 && sd.is_finite()) {
            return None;
        }
        let resolution = sp.resolution.max(FLOOR_REL * sd);
        let z: Vec<f64> = y
            .iter()
            .map(|v| if v.is_finite() { (v - mean) / sd } else { 0.0 })
            .collect();
        let n = y.len();
        let mut p1 = vec![0.0; n + 1];
        let mut p2 = vec![0.0; n + 1];
        let mut bad = vec![0usize; n + 1];
        for k in 0..n {
            p1[k + 1] = p1[k] + z[k];
            p2[k + 1] = p2[k] + z[k] * z[k];
            bad[k + 1] = bad[k] + usize::from(!y[k].is_finite());
        }
        let mut set = WindowSet {
            z,
            list: Vec::new(),
            sum: Vec::new(),
            tss: Vec::new(),
            wmax: 0,
            groups: Vec::new(),
            floor_z: (resolution / sd) * (resolution / sd),
            floor_raw: resolution * resolution,
        };
        for &w in sp.sizes {
            let first = set.list.len();
            for s in (0..start_limit.min(n)).step_by(sp.sstep) {
                if s + w > n {
                    break;
                }
                if bad[s + w] != bad[s] {
                    continue;
                }
                let sum = p1[s + w] - p1[s];
                let tss = (p2[s + w] - p2[s]) - sum * sum / w as f64;
                if tss > w as f64 * set.floor_z {
                    set.list.push((s, w));
                    set.sum.push(sum);
                    set.tss.push(tss);
                    set.wmax = set.wmax.max(w);
                }
            }
            if set.list.len() > first {
                set.groups.push(Group {
                    len: w,
                    first,
                    end: set.list.len(),
                });
            }
        }
        (!set.list.is_empty()).then_some(set)
    }

    /// Log-spaced τ (in samples) from the fastest to the slowest resolvable transition.
    fn coarse_taus(&self) -> Vec<f64> {
        let lo = TAU_LO_SAMPLES;
        let hi = TAU_HI_SPANS * (self.wmax - 1) as f64;
        let count = ((hi / lo).ln() / COARSE_RATIO.ln()).ceil() as usize + 1;
        (0..count)
            .map(|g| lo * COARSE_RATIO.powi(g as i32))
            .collect()
    }

    /// For each window of `subset` and each shape, the minimum of RSS over `taus`
    /// (ascending), refined by a parabola through the neighbouring grid values; `None`
    /// when the minimum lies on the first or last usable τ (no interior minimum) or the
    /// shape never fits. A τ counts for a window only up to `TAU_HI_SPANS` spans.
    fn grid_minima(&self, taus: &[f64], subset: &[usize]) -> Vec<[Option<Estimate>; 2]> {
        let tables = GridTables::new(&self.z, self.wmax, taus);
        let h = if taus.len() > 1 {
            (taus[1] / taus[0]).ln()
        } else {
            0.0
        };
        let mut rise = vec![0.0; taus.len()];
        let mut decay = vec![0.0; taus.len()];
        subset
            .iter()
            .map(|&i| {
                let (s, w) = self.list[i];
                let (sum, tss) = (self.sum[i], self.tss[i]);
                let g_end = tables.usable[w];
                let (head, tail) = (tables.back_at(s), tables.back_at(s + w));
                let c = tables.consts_at(w);
                // Branch-free over contiguous rows, so that it vectorises.
                let rows = head[..g_end]
                    .iter()
                    .zip(&tail[..g_end])
                    .zip(&c.q_pow[..g_end])
                    .zip(&c.e_mean[..g_end])
                    .zip(&c.inv_var[..g_end]);
                for ((r, d), ((((b0, b1), qw), em), iv)) in
                    rise.iter_mut().zip(decay.iter_mut()).zip(rows)
                {
                    let cov = (b0 - qw * b1) - sum * em;
                    let rest = tss - cov * cov * iv;
                    let rss = if rest > 0.0 { rest } else { 0.0 };
                    *r = if cov < 0.0 { rss } else { tss };
                    *d = if cov > 0.0 { rss } else { tss };
                }
                [&rise[..g_end], &decay[..g_end]].map(|v| estimate(v, taus, h, tss))
            })
            .collect()
    }

    /// Ranking score of window `i` from a grid estimate (standardised units).
    fn score(&self, i: usize, est: Option<Estimate>) -> f64 {
        let Some(est) = est else { return 0.0 };
        let (_, w) = self.list[i];
        f_score(self.tss[i], est.rss, w, self.floor_z)
    }

    /// Exact fit and score of window `i`.
    fn exact(
        &self,
        t: &[f64],
        y: &[f64],
        i: usize,
        shape: Shape,
        guess: f64,
    ) -> Option<(f64, Chosen)> {
        let (start, len) = self.list[i];
        let fit = varpro::fit(
            &t[start..start + len],
            &y[start..start + len],
            shape,
            Some(guess),
        )
        .filter(|f| f.tss > len as f64 * self.floor_raw)?;
        Some((self.exact_score(&fit, len), Chosen { start, len, fit }))
    }

    /// Coordinate ascent on the exact score from `best` over neighbouring starts and
    /// lengths. On noise-free data the grid scores of all windows inside a transition
    /// are equal within their interpolation error, so the exact ranking decides, and it
    /// moves the window to start on the edge; on noisy data this usually stops at once.
    fn polish(
        &self,
        t: &[f64],
        y: &[f64],
        shape: Shape,
        sstep: usize,
        best: (f64, Chosen),
    ) -> Chosen {
        let (mut score, mut cur) = best;
        for _ in 0..MAX_POLISH_STEPS {
            let size_pos = self.groups.iter().position(|g| g.len == cur.len);
            let neighbours = [
                cur.start.checked_sub(sstep).map(|s| (s, cur.len)),
                Some((cur.start + sstep, cur.len)),
                size_pos
                    .and_then(|k| self.groups.get(k + 1))
                    .map(|g| (cur.start, g.len)),
                size_pos
                    .and_then(|k| k.checked_sub(1))
                    .map(|k| (cur.start, self.groups[k].len)),
            ];
            let step = neighbours
                .into_iter()
                .flatten()
                .filter_map(|(s, w)| self.index_of(s, w))
                .filter_map(|i| self.exact(t, y, i, shape, cur.fit.tau))
                .filter(|(s, _)| *s > score)
                .fold(None, |acc: Option<(f64, Chosen)>, cand| match acc {
                    Some((s, _)) if cand.0 <= s => acc,
                    _ => Some(cand),
                });
            match step {
                Some(better) => (score, cur) = better,
                None => break,
            }
        }
        cur
    }

    /// Position in `list` of the window `(start, len)`, if it is a candidate.
    fn index_of(&self, start: usize, len: usize) -> Option<usize> {
        let g = self.groups.iter().find(|g| g.len == len)?;
        let slice = &self.list[g.first..g.end];
        slice
            .binary_search_by_key(&start, |&(s, _)| s)
            .ok()
            .map(|k| g.first + k)
    }

    /// Ranking score of an exact fit (raw units).
    fn exact_score(&self, fit: &ExpFit, len: usize) -> f64 {
        f_score(fit.tss, fit.rss, len, self.floor_raw)
    }
}

/// `F = (TSS - RSS) / max(RSS / (n - 3), floor)`.
fn f_score(tss: f64, rss: f64, n: usize, floor: f64) -> f64 {
    (tss - rss) / (rss / (n - 3) as f64).max(floor)
}

/// Per-length constants for every τ of a grid (rows of [`GridTables`]).
struct LenRow<'a> {
    /// `q^w` with `q = e^{-1/τ}` (τ in samples).
    q_pow: &'a [f64],
    /// Mean of `q^k` over the window.
    e_mean: &'a [f64],
    /// `1 / Σ (q^k - mean)²` (0 where `e` is constant).
    inv_var: &'a [f64],
}

/// For every τ of a grid: the backward sums `B(s) = Σ_{j≥s} z_j q^{j-s}` (so that
/// `Σ_{k<w} z_{s+k} q^k = B(s) - q^w B(s+w)`) and the per-length constants, stored with
/// τ as the fastest index so that one window reads contiguous rows.
struct GridTables {
    g: usize,
    back: Vec<f64>,
    q_pow: Vec<f64>,
    e_mean: Vec<f64>,
    inv_var: Vec<f64>,
    /// Per length: how many leading τ are at most `TAU_HI_SPANS` spans.
    usable: Vec<usize>,
}

impl GridTables {
    fn new(z: &[f64], wmax: usize, taus: &[f64]) -> Self {
        let g = taus.len();
        let n = z.len();
        let mut t = GridTables {
            g,
            back: vec![0.0; (n + 1) * g],
            q_pow: vec![0.0; (wmax + 1) * g],
            e_mean: vec![0.0; (wmax + 1) * g],
            inv_var: vec![0.0; (wmax + 1) * g],
            usable: (0..=wmax)
                .map(|w| {
                    let hi = TAU_HI_SPANS * w.saturating_sub(1) as f64;
                    taus.partition_point(|tau| *tau <= hi)
                })
                .collect(),
        };
        for (k, &tau) in taus.iter().enumerate() {
            let q = (-1.0 / tau).exp();
            let mut acc = 0.0;
            for s in (0..n).rev() {
                acc = z[s] + q * acc;
                t.back[s * g + k] = acc;
            }
            let (mut e1, mut e2) = (0.0, 0.0);
            for w in 1..=wmax {
                let e = (-((w - 1) as f64) / tau).exp();
                e1 += e;
                e2 += e * e;
                let wf = w as f64;
                let var = e2 - e1 * e1 / wf;
                t.q_pow[w * g + k] = (-(w as f64) / tau).exp();
                t.e_mean[w * g + k] = e1 / wf;
                t.inv_var[w * g + k] = if var > 0.0 { 1.0 / var } else { 0.0 };
            }
        }
        t
    }

    fn back_at(&self, s: usize) -> &[f64] {
        &self.back[s * self.g..(s + 1) * self.g]
    }

    fn consts_at(&self, w: usize) -> LenRow<'_> {
        let r = w * self.g..(w + 1) * self.g;
        LenRow {
            q_pow: &self.q_pow[r.clone()],
            e_mean: &self.e_mean[r.clone()],
            inv_var: &self.inv_var[r],
        }
    }
}

/// First minimum of one window's RSS over a τ grid, refined by a parabola through its
/// neighbours (in ln τ, spacing `h`); `None` on the grid's ends or if nothing beats a
/// constant fit (`tss`).
fn estimate(rss: &[f64], taus: &[f64], h: f64, tss: f64) -> Option<Estimate> {
    if rss.len() < 3 {
        return None;
    }
    // Written as selects, not branches: on noisy data the position of the running
    // minimum is unpredictable.
    let (mut g, mut b) = (0, rss[0]);
    for (k, &v) in rss.iter().enumerate().skip(1) {
        let lower = v < b;
        g = if lower { k } else { g };
        b = if lower { v } else { b };
    }
    if g == 0 || g + 1 == rss.len() || b >= tss {
        return None;
    }
    let (l, r) = (rss[g - 1], rss[g + 1]);
    let curv = l - 2.0 * b + r;
    let (min, shift) = if curv > 0.0 {
        (
            b - (l - r) * (l - r) / (8.0 * curv),
            h * (l - r) / (2.0 * curv),
        )
    } else {
        (b, 0.0)
    };
    Some(Estimate {
        rss: min.clamp(0.0, b),
        tau: taus[g] * shift.exp(),
    })
}
