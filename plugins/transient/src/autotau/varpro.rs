//! Single-window exponential fits by variable projection (the robust solver's engine).
//!
//! Both models are `y = a + b·e^{-t/τ}` (rise: `b = -A < 0`, decay: `b = A > 0`). For a
//! fixed τ the best `a, b` are an ordinary linear regression of `y` on `e^{-t/τ}`, so the
//! residual sum of squares is a function of τ alone,
//! `RSS(τ) = TSS - cov(y, e)² / var(e)`, which is minimised over `u = ln τ` with
//! analytic first and second derivatives (Newton from a starting τ, or safeguarded
//! Newton inside a bracket found by a scan).
//! Consequences, each deliberate:
//! * no start point in signal units and no `x_scale`: the fit is invariant to the
//!   signal's offset and scale, so pA, µA and mA currents behave identically (the
//!   predecessor's TRF from (1, 1, 1) degenerates at µA scale);
//! * τ is confined to `[τ_LO_SAMPLES · dt, τ_HI_SPANS · span]`; a minimum on either end
//!   means the window holds no resolvable exponential (a step or a straight line), and
//!   the fit is reported as failed instead of returning τ → ∞ silently;
//! * the sign of `b` must match the model (A ≥ 0, as the predecessor's bounds require);
//!   otherwise the best constrained fit is a constant and the fit fails.

/// Lower end of the τ range, in sample steps: faster transitions are indistinguishable
/// from a step between two samples.
pub(super) const TAU_LO_SAMPLES: f64 = 0.25;
/// Upper end of the τ range, in window spans: slower transitions are indistinguishable
/// from a straight line over the window.
pub(super) const TAU_HI_SPANS: f64 = 10.0;
/// Fewest samples for a fit: 3 parameters plus one degree of freedom for the adjusted R².
pub(super) const MIN_POINTS: usize = 5;

/// Convergence tolerance on `ln τ` (relative precision of τ).
const U_TOL: f64 = 1e-10;
const MAX_NEWTON: usize = 100;
/// Samples count as equally spaced if each lies within this fraction of a step of the
/// ideal grid.
const UNIFORM_TOL: f64 = 1e-6;
/// Unguarded Newton iterations tried from a starting τ before falling back to a bracket.
const MAX_FAST_NEWTON: usize = 12;
/// Largest Newton step in `ln τ` on the unguarded path.
const FAST_NEWTON_MAX_STEP: f64 = 0.5;
/// Relative increase of the objective tolerated on the unguarded path (rounding).
const FAST_NEWTON_SLACK: f64 = 1e-12;
/// Grid used when there is no usable starting τ.
const SCAN_POINTS: usize = 40;
/// First bracketing step around a starting τ, in `ln τ`.
const BRACKET_STEP: f64 = 0.2;
/// Minima closer than this (in `ln τ`) to a range end count as lying on it.
const EDGE_TOL: f64 = 1e-6;

/// Which transition a window is fitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `y = A(1 - e^{-t/τ}) + C`, A ≥ 0.
    Rise,
    /// `y = A e^{-t/τ} + C`, A ≥ 0.
    Decay,
}

impl Shape {
    /// Whether the regression slope on `e^{-t/τ}` has this shape's sign.
    fn accepts(self, slope: f64) -> bool {
        match self {
            Shape::Rise => slope < 0.0,
            Shape::Decay => slope > 0.0,
        }
    }
}

/// A successful fit, judged on the window's own samples. The fitted curve is
/// `intercept + slope · e^{-(t - t_first)/τ}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ExpFit {
    pub tau: f64,
    pub intercept: f64,
    pub slope: f64,
    pub r2: f64,
    pub r2_adj: f64,
    /// Residual and total sums of squares (the search scores windows with them).
    pub rss: f64,
    pub tss: f64,
}

/// Fits `shape` to the samples `(t, y)` (t increasing; only differences matter).
/// `guess` is a starting τ, e.g. from a neighbouring window; without one (or if it is
/// unusable) the τ range is scanned. Returns `None` if the window cannot hold the model:
/// too few or non-finite samples, a constant window, a minimum on the edge of the τ
/// range, or a best fit with the wrong direction.
pub(super) fn fit(t: &[f64], y: &[f64], shape: Shape, guess: Option<f64>) -> Option<ExpFit> {
    let n = t.len();
    if n < MIN_POINTS || y.len() != n || !y.iter().all(|v| v.is_finite()) {
        return None;
    }
    let t0 = t[0];
    let span = t[n - 1] - t0;
    if span.is_nan() || span <= 0.0 {
        return None;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let tw: Vec<f64> = t.iter().map(|v| v - t0).collect();
    let step = span / (n - 1) as f64;
    let uniform = tw
        .iter()
        .enumerate()
        .all(|(k, v)| (v - k as f64 * step).abs() <= UNIFORM_TOL * step);
    let prob = Problem {
        t: tw,
        y: y.iter().map(|v| v - mean).collect(),
        step: uniform.then_some(step),
    };
    let tss: f64 = prob.y.iter().map(|v| v * v).sum();
    if !(tss > 0.0 && tss.is_finite()) {
        return None;
    }
    let u_lo = (TAU_LO_SAMPLES * step).ln();
    let u_hi = (TAU_HI_SPANS * span).ln();

    let u0 = guess
        .filter(|g| g.is_finite() && *g > 0.0)
        .map(|g| g.ln().clamp(u_lo, u_hi));
    let u = match u0.and_then(|u0| prob.newton_from(u0, u_lo, u_hi, shape)) {
        Some(u) => u,
        None => {
            let start = u0
                .and_then(|u0| prob.bracket_from(u0, u_lo, u_hi, shape))
                .or_else(|| prob.bracket_by_scan(u_lo, u_hi, shape))?;
            prob.refine(start)
        }
    };
    if u - u_lo < EDGE_TOL || u_hi - u < EDGE_TOL {
        return None;
    }
    prob.finish(u, shape, tss, mean)
}

/// Three abscissae `lo < mid < hi` (in `ln τ`) with `RSS(mid)` below both ends.
#[derive(Debug, Clone, Copy)]
struct Bracket {
    lo: f64,
    mid: f64,
    hi: f64,
}

/// `RSS - TSS` (the negated explained sum of squares) and its derivatives with respect
/// to `u = ln τ`, and the regression slope.
#[derive(Debug, Clone, Copy)]
struct Eval {
    f: f64,
    d1: f64,
    d2: f64,
    slope: f64,
}

/// Window samples with time measured from the first sample and the mean removed.
struct Problem {
    t: Vec<f64>,
    y: Vec<f64>,
    /// The sampling step if the samples are equally spaced; `e^{-t/τ}` is then a
    /// geometric sequence and needs one `exp` per evaluation instead of one per sample.
    step: Option<f64>,
}

impl Problem {
    /// Unconstrained variable-projection objective at `u` and its first two derivatives.
    fn eval(&self, u: f64) -> Eval {
        let tau = u.exp();
        let n = self.t.len() as f64;
        let mut s = [0.0; 10];
        let ratio = self.step.map(|h| (-h / tau).exp());
        let mut geometric = 1.0;
        for (tk, yk) in self.t.iter().zip(&self.y) {
            let x = tk / tau;
            let e = match ratio {
                Some(r) => {
                    let e = geometric;
                    geometric *= r;
                    e
                }
                None => (-x).exp(),
            };
            let d = e * x; // de/du
            let h = d * (x - 1.0); // d²e/du²
            s[0] += e;
            s[1] += e * e;
            s[2] += yk * e;
            s[3] += d;
            s[4] += e * d;
            s[5] += yk * d;
            s[6] += d * d;
            s[7] += e * h;
            s[8] += h;
            s[9] += yk * h;
        }
        let [se, see, c, sd, sed, c1, sdd, seh, sh, c2] = s;
        // Because y is centred, cov(y, e) = Σ y e and its derivatives need no centring.
        let v = see - se * se / n;
        let v1 = 2.0 * (sed - se * sd / n);
        let v2 = 2.0 * ((sdd - sd * sd / n) + (seh - se * sh / n));
        if v.is_nan() || v <= 0.0 {
            return Eval {
                f: 0.0,
                d1: 0.0,
                d2: 0.0,
                slope: 0.0,
            };
        }
        // RSS = TSS - Q with Q = c²/v.
        let q = c * c / v;
        let q1 = (2.0 * c * c1 * v - c * c * v1) / (v * v);
        let q2 =
            (2.0 * c1 * c1 + 2.0 * c * c2) / v - 4.0 * c * c1 * v1 / (v * v) - c * c * v2 / (v * v)
                + 2.0 * c * c * v1 * v1 / (v * v * v);
        Eval {
            f: -q,
            d1: -q1,
            d2: -q2,
            slope: c / v,
        }
    }

    /// Plain Newton iterations from a good starting point (the usual case: a neighbouring
    /// window or cycle). `None` as soon as anything is unusual (wrong direction,
    /// non-positive curvature, no descent, leaving the range); the caller then brackets.
    fn newton_from(&self, u0: f64, u_lo: f64, u_hi: f64, shape: Shape) -> Option<f64> {
        let mut u = u0;
        let mut e = self.eval(u);
        for _ in 0..MAX_FAST_NEWTON {
            if !shape.accepts(e.slope) || e.d2.is_nan() || e.d2 <= 0.0 {
                return None;
            }
            let delta = (-e.d1 / e.d2).clamp(-FAST_NEWTON_MAX_STEP, FAST_NEWTON_MAX_STEP);
            let next = u + delta;
            if next <= u_lo || next >= u_hi {
                return None;
            }
            let e_next = self.eval(next);
            if e_next.f > e.f + FAST_NEWTON_SLACK * e.f.abs() {
                return None;
            }
            (u, e) = (next, e_next);
            if delta.abs() < U_TOL {
                return shape.accepts(e.slope).then_some(u);
            }
        }
        None
    }

    /// Walks downhill from `u0` with growing steps until RSS rises again. `None` if the
    /// start has the wrong direction or the descent runs into the end of the range.
    fn bracket_from(&self, u0: f64, u_lo: f64, u_hi: f64, shape: Shape) -> Option<Bracket> {
        let e0 = self.eval(u0);
        if !shape.accepts(e0.slope) {
            return None;
        }
        let left = (u0 - BRACKET_STEP).max(u_lo);
        let right = (u0 + BRACKET_STEP).min(u_hi);
        let (fl, fr) = (self.eval(left).f, self.eval(right).f);
        if e0.f <= fl && e0.f <= fr && left < u0 && u0 < right {
            return Some(Bracket {
                lo: left,
                mid: u0,
                hi: right,
            });
        }
        let dir = if fl < fr { -1.0 } else { 1.0 };
        let (mut prev, mut cur, mut f_cur) = if dir < 0.0 {
            (u0, left, fl)
        } else {
            (u0, right, fr)
        };
        let mut step = BRACKET_STEP;
        loop {
            if cur <= u_lo || cur >= u_hi {
                return None;
            }
            step *= 2.0;
            let next = (cur + dir * step).clamp(u_lo, u_hi);
            let f_next = self.eval(next).f;
            if f_next > f_cur {
                let (lo, hi) = if dir < 0.0 {
                    (next, prev)
                } else {
                    (prev, next)
                };
                return Some(Bracket { lo, mid: cur, hi });
            }
            (prev, cur, f_cur) = (cur, next, f_next);
        }
    }

    /// Lowest RSS of the right direction on a log-spaced grid, with its neighbours.
    fn bracket_by_scan(&self, u_lo: f64, u_hi: f64, shape: Shape) -> Option<Bracket> {
        let h = (u_hi - u_lo) / (SCAN_POINTS - 1) as f64;
        let grid = |i: usize| u_lo + i as f64 * h;
        let best = (0..SCAN_POINTS)
            .map(|i| (i, self.eval(grid(i))))
            .filter(|(_, e)| shape.accepts(e.slope))
            .min_by(|a, b| a.1.f.total_cmp(&b.1.f))?
            .0;
        if best == 0 || best == SCAN_POINTS - 1 {
            return None;
        }
        Some(Bracket {
            lo: grid(best - 1),
            mid: grid(best),
            hi: grid(best + 1),
        })
    }

    /// Newton's method on `dRSS/du`, falling back to bisection whenever the Newton step
    /// leaves the current bracket or the curvature is not positive.
    fn refine(&self, b: Bracket) -> f64 {
        let (mut lo, mut hi) = (b.lo, b.hi);
        let mut u = b.mid;
        for _ in 0..MAX_NEWTON {
            let e = self.eval(u);
            if e.d1 > 0.0 {
                hi = u;
            } else {
                lo = u;
            }
            let newton = u - e.d1 / e.d2;
            let next = if e.d2 > 0.0 && newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            let done = (next - u).abs() < U_TOL || hi - lo < U_TOL;
            u = next;
            if done {
                break;
            }
        }
        u
    }

    /// Linear coefficients at `u`, then RSS recomputed from the residuals (exact even
    /// when RSS is many orders below TSS) and the R² statistics.
    fn finish(&self, u: f64, shape: Shape, tss: f64, y_mean: f64) -> Option<ExpFit> {
        let tau = u.exp();
        let n = self.t.len();
        let e: Vec<f64> = self.t.iter().map(|tk| (-tk / tau).exp()).collect();
        let e_mean = e.iter().sum::<f64>() / n as f64;
        let (mut c, mut v) = (0.0, 0.0);
        for (ek, yk) in e.iter().zip(&self.y) {
            c += yk * (ek - e_mean);
            v += (ek - e_mean) * (ek - e_mean);
        }
        if v.is_nan() || v <= 0.0 {
            return None;
        }
        let slope = c / v;
        if !shape.accepts(slope) {
            return None;
        }
        let rss: f64 = e
            .iter()
            .zip(&self.y)
            .map(|(ek, yk)| {
                let r = yk - slope * (ek - e_mean);
                r * r
            })
            .sum();
        let r2 = 1.0 - rss / tss;
        let r2_adj = 1.0 - (1.0 - r2) * (n - 1) as f64 / (n - 4) as f64;
        Some(ExpFit {
            tau,
            intercept: y_mean - slope * e_mean,
            slope,
            r2,
            r2_adj,
            rss,
            tss,
        })
    }
}
