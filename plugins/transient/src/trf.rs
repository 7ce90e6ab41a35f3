//! Bounded nonlinear least squares by the Trust Region Reflective (TRF) method.
//!
//! This reproduces the iteration of scipy's
//! `least_squares(method='trf', jac='2-point', x_scale=1, loss='linear', tr_solver='exact')`
//! step by step, because the predecessor's fitted features (`transient.decay_time`,
//! AutoTau in compat mode) are defined by *where that optimiser stops*, not by the
//! least-squares optimum: with µA-scale data its absolute `gtol` test and its scale-blind
//! start point stop it far from the optimum, and only the same arithmetic stops at the
//! same place. The behaviour follows the written description in
//! `specs/algorithms_transfer_transient.md` §3.5.4 and `specs/algorithm_autotau.md` §3.3.
//!
//! The solver is dense and meant for a handful of parameters (at most [`MAX_PARAMS`]);
//! the residual count `m` is arbitrary.

use std::cmp::Ordering;
use std::fmt;

/// Largest supported parameter count; small fixed-size arrays keep the inner loop free of
/// allocations (AutoTau's compat mode runs this solver hundreds of thousands of times).
pub const MAX_PARAMS: usize = 8;

/// `sqrt(f64::EPSILON)`, the relative forward-difference step scipy uses for `'2-point'`.
const SQRT_EPS: f64 = 1.490_116_119_384_765_6e-8;

/// Relative distance from a bound below which scipy moves the start point inside.
const START_RSTEP: f64 = 1e-10;

/// Iteration limits of the trust-region subproblem (scipy's `solve_lsq_trust_region`).
const SUBPROBLEM_RTOL: f64 = 0.01;
const SUBPROBLEM_MAX_ITER: usize = 10;

/// Sweep limit of the one-sided Jacobi SVD; n ≤ 8 converges in well under ten sweeps.
const JACOBI_MAX_SWEEPS: usize = 60;

type Vn = [f64; MAX_PARAMS];

/// Tolerances and evaluation budget (scipy's `ftol`, `xtol`, `gtol`, `max_nfev`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrfOptions {
    pub ftol: f64,
    pub xtol: f64,
    pub gtol: f64,
    /// Budget of residual evaluations; Jacobian evaluations are not counted (as in scipy).
    pub max_nfev: usize,
}

impl TrfOptions {
    /// scipy's default tolerances (1e-8 each) with the given evaluation budget.
    pub fn with_max_nfev(max_nfev: usize) -> Self {
        Self {
            ftol: 1e-8,
            xtol: 1e-8,
            gtol: 1e-8,
            max_nfev,
        }
    }
}

/// A converged solution.
#[derive(Debug, Clone, PartialEq)]
pub struct TrfResult {
    pub x: Vec<f64>,
    /// scipy's termination status: 1 gtol, 2 ftol, 3 xtol, 4 ftol and xtol.
    pub status: i32,
    /// Residual evaluations used, including the one at the start point.
    pub nfev: usize,
    /// `0.5 * Σ r²` at `x`.
    pub cost: f64,
}

/// Why no solution was returned. Each variant corresponds to an exception in scipy
/// (`ValueError`, `LinAlgError` or the `RuntimeError` of `curve_fit` on status 0).
#[derive(Debug, Clone, PartialEq)]
pub enum TrfError {
    /// Inconsistent dimensions, bounds with `lb >= ub`, or unusable options.
    InvalidInput(String),
    /// `x0` lies outside the bounds.
    InfeasibleStart,
    /// The residuals at the (strictly feasible) start point are not all finite.
    NonFiniteInitialResiduals,
    /// A finite-difference Jacobian contained NaN or infinity (scipy's SVD fails).
    NonFiniteJacobian,
    /// The trust-region geometry degenerated (scipy raises inside its step selection).
    Degenerate(&'static str),
    /// `max_nfev` residual evaluations were used without meeting a tolerance (status 0).
    MaxNfevExhausted { nfev: usize, x: Vec<f64> },
}

impl fmt::Display for TrfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrfError::InvalidInput(msg) => write!(f, "invalid least-squares input: {msg}"),
            TrfError::InfeasibleStart => f.write_str("start point lies outside the bounds"),
            TrfError::NonFiniteInitialResiduals => {
                f.write_str("residuals are not finite at the start point")
            }
            TrfError::NonFiniteJacobian => f.write_str("finite-difference Jacobian is not finite"),
            TrfError::Degenerate(what) => write!(f, "degenerate trust-region step: {what}"),
            TrfError::MaxNfevExhausted { nfev, .. } => {
                write!(f, "no convergence within {nfev} residual evaluations")
            }
        }
    }
}

impl std::error::Error for TrfError {}

/// Minimises `0.5 * Σ r_i(x)²` subject to `lb <= x <= ub`.
///
/// `residuals(x, out)` writes the `m` residuals at `x` into `out`. Infinite bounds are
/// allowed. The start point is moved strictly inside the bounds first (components within
/// `1e-10·max(1, |bound|)` of a bound), as scipy does.
pub fn least_squares<F>(
    mut residuals: F,
    m: usize,
    x0: &[f64],
    lb: &[f64],
    ub: &[f64],
    opts: &TrfOptions,
) -> Result<TrfResult, TrfError>
where
    F: FnMut(&[f64], &mut [f64]),
{
    let n = x0.len();
    validate(m, x0, lb, ub, opts)?;
    let mut lo = [0.0; MAX_PARAMS];
    let mut hi = [0.0; MAX_PARAMS];
    lo[..n].copy_from_slice(lb);
    hi[..n].copy_from_slice(ub);
    let mut solver = Solver {
        n,
        m,
        lb: lo,
        ub: hi,
        all_unbounded: lb
            .iter()
            .zip(ub)
            .all(|(l, u)| *l == f64::NEG_INFINITY && *u == f64::INFINITY),
        jac: vec![0.0; m * n],
        jac_h: vec![0.0; m * n],
        aug: vec![0.0; (m + n) * n],
        f_probe: vec![0.0; m],
        mv_a: vec![0.0; m],
        mv_b: vec![0.0; m],
    };

    let mut x = [0.0; MAX_PARAMS];
    x[..n].copy_from_slice(x0);
    make_strictly_feasible(&mut x[..n], &solver.lb[..n], &solver.ub[..n], START_RSTEP);

    let mut f = vec![0.0; m];
    residuals(&x[..n], &mut f);
    let mut nfev = 1usize;
    if !f.iter().all(|v| v.is_finite()) {
        return Err(TrfError::NonFiniteInitialResiduals);
    }
    solver.jacobian(&mut residuals, &x, &f)?;
    let mut cost = 0.5 * dot(&f, &f);
    let mut g = solver.gradient(&f);

    let (v0, _) = solver.scaling_vector(&x, &g);
    let mut delta = norm_n(&std::array::from_fn(|j| x[j] / v0[j].sqrt()), n);
    if delta == 0.0 {
        delta = 1.0;
    }

    let mut alpha = 0.0;
    let mut status: Option<i32> = None;
    let mut f_new = vec![0.0; m];
    loop {
        let (v, dv) = solver.scaling_vector(&x, &g);
        let g_norm = (0..n).fold(0.0_f64, |acc, j| nan_max(acc, (g[j] * v[j]).abs()));
        if g_norm < opts.gtol {
            status = Some(1);
        }
        if status.is_some() || nfev == opts.max_nfev {
            break;
        }

        let d: Vn = std::array::from_fn(|j| v[j].sqrt());
        let diag_h: Vn = std::array::from_fn(|j| g[j] * dv[j]);
        let g_h: Vn = std::array::from_fn(|j| d[j] * g[j]);
        let svd = solver.augmented_svd(&d, &diag_h, &f);
        let theta = py_max(0.995, 1.0 - g_norm);

        let mut actual_reduction = -1.0;
        let mut x_new = x;
        let mut cost_new = cost;
        while actual_reduction <= 0.0 && nfev < opts.max_nfev {
            let p_h = solve_trust_region(n, m, &svd, delta, &mut alpha);
            let p: Vn = std::array::from_fn(|j| d[j] * p_h[j]);
            let sel = solver.select_step(&x, &diag_h, &g_h, p, p_h, &d, delta, theta)?;

            for j in 0..n {
                x_new[j] = x[j] + sel.step[j];
            }
            make_strictly_feasible(&mut x_new[..n], &solver.lb[..n], &solver.ub[..n], 0.0);
            residuals(&x_new[..n], &mut f_new);
            nfev += 1;

            let step_h_norm = norm_n(&sel.step_h, n);
            if !f_new.iter().all(|v| v.is_finite()) {
                delta = 0.25 * step_h_norm;
                continue;
            }
            cost_new = 0.5 * dot(&f_new, &f_new);
            actual_reduction = cost - cost_new;
            let (delta_new, ratio) = update_radius(
                delta,
                actual_reduction,
                sel.predicted_reduction,
                step_h_norm,
                step_h_norm > 0.95 * delta,
            );
            status = check_termination(
                actual_reduction,
                cost,
                norm_n(&sel.step, n),
                norm_n(&x, n),
                ratio,
                opts,
            );
            if status.is_some() {
                break;
            }
            alpha *= delta / delta_new;
            delta = delta_new;
        }

        if actual_reduction > 0.0 {
            x = x_new;
            std::mem::swap(&mut f, &mut f_new);
            cost = cost_new;
            solver.jacobian(&mut residuals, &x, &f)?;
            g = solver.gradient(&f);
        }
    }

    match status {
        Some(status) => Ok(TrfResult {
            x: x[..n].to_vec(),
            status,
            nfev,
            cost,
        }),
        None => Err(TrfError::MaxNfevExhausted {
            nfev,
            x: x[..n].to_vec(),
        }),
    }
}

fn validate(
    m: usize,
    x0: &[f64],
    lb: &[f64],
    ub: &[f64],
    opts: &TrfOptions,
) -> Result<(), TrfError> {
    let n = x0.len();
    let invalid = |msg: &str| Err(TrfError::InvalidInput(msg.to_owned()));
    if n == 0 || n > MAX_PARAMS {
        return invalid("parameter count must be between 1 and MAX_PARAMS");
    }
    if m == 0 {
        return invalid("at least one residual is required");
    }
    if lb.len() != n || ub.len() != n {
        return invalid("bounds must have one entry per parameter");
    }
    // Not "Less" also rejects NaN bounds.
    if lb
        .iter()
        .zip(ub)
        .any(|(l, u)| l.partial_cmp(u) != Some(Ordering::Less))
    {
        return invalid("each lower bound must be strictly less than its upper bound");
    }
    let tols = [opts.ftol, opts.xtol, opts.gtol];
    if tols.iter().any(|t| t.is_nan() || *t < 0.0) || tols.iter().all(|t| *t < f64::EPSILON) {
        return invalid("tolerances must be non-negative and not all below machine epsilon");
    }
    if opts.max_nfev == 0 {
        return invalid("max_nfev must be at least 1");
    }
    // NaN start components fail this test as well, like scipy's `in_bounds`.
    if !x0
        .iter()
        .zip(lb.iter().zip(ub))
        .all(|(x, (l, u))| x >= l && x <= u)
    {
        return Err(TrfError::InfeasibleStart);
    }
    Ok(())
}

/// Thin SVD of the augmented matrix `[J·diag(d); diag(sqrt(diag_h))]`, with singular
/// values in descending order, `V` stored by columns and `uf = Uᵀ [f; 0]`.
struct AugmentedSvd {
    s: Vn,
    v: [Vn; MAX_PARAMS],
    uf: Vn,
}

/// The candidate step chosen by the reflective step selection.
struct Step {
    step: Vn,
    step_h: Vn,
    predicted_reduction: f64,
}

/// Per-call state: problem shape, bounds and reusable buffers.
struct Solver {
    n: usize,
    m: usize,
    lb: Vn,
    ub: Vn,
    all_unbounded: bool,
    /// Jacobian, column-major (`jac[j*m + i] = ∂r_i/∂x_j`).
    jac: Vec<f64>,
    /// `J·diag(d)` of the current outer iteration, column-major.
    jac_h: Vec<f64>,
    /// Augmented matrix, column-major with `m + n` rows; overwritten by the QR.
    aug: Vec<f64>,
    f_probe: Vec<f64>,
    mv_a: Vec<f64>,
    mv_b: Vec<f64>,
}

impl Solver {
    /// Forward-difference Jacobian with scipy's step rule: `h = √ε·sign(x)·max(1, |x|)`
    /// (sign +1 for x = 0), reversed or shortened only if it would leave the bounds, and
    /// divided by the representable step `(x + h) - x`.
    fn jacobian<F: FnMut(&[f64], &mut [f64])>(
        &mut self,
        residuals: &mut F,
        x: &Vn,
        f: &[f64],
    ) -> Result<(), TrfError> {
        let (n, m) = (self.n, self.m);
        for j in 0..n {
            let xj = x[j];
            let sign = if xj >= 0.0 { 1.0 } else { -1.0 };
            let mut h = SQRT_EPS * sign * f64::max(1.0, xj.abs());
            if !self.all_unbounded {
                let lower_dist = xj - self.lb[j];
                let upper_dist = self.ub[j] - xj;
                let probe = xj + h;
                let violated = probe < self.lb[j] || probe > self.ub[j];
                let fitting = h.abs() <= f64::max(lower_dist, upper_dist);
                if violated && fitting {
                    h = -h;
                } else if !fitting {
                    h = if upper_dist >= lower_dist {
                        upper_dist
                    } else {
                        -lower_dist
                    };
                }
            }
            let mut xp = *x;
            xp[j] = xj + h;
            let dx = xp[j] - xj;
            residuals(&xp[..n], &mut self.f_probe);
            let col = &mut self.jac[j * m..(j + 1) * m];
            for ((c, fp), f0) in col.iter_mut().zip(&self.f_probe).zip(f) {
                *c = (fp - f0) / dx;
            }
        }
        if self.jac.iter().all(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(TrfError::NonFiniteJacobian)
        }
    }

    fn gradient(&self, f: &[f64]) -> Vn {
        let m = self.m;
        std::array::from_fn(|j| {
            if j < self.n {
                dot(&self.jac[j * m..(j + 1) * m], f)
            } else {
                0.0
            }
        })
    }

    /// Coleman–Li scaling: distance to the bound the gradient pushes towards, 1 if that
    /// bound is infinite. `dv` is its derivative sign (0 where `v` is constant).
    fn scaling_vector(&self, x: &Vn, g: &Vn) -> (Vn, Vn) {
        let mut v = [1.0; MAX_PARAMS];
        let mut dv = [0.0; MAX_PARAMS];
        for j in 0..self.n {
            if g[j] < 0.0 && self.ub[j].is_finite() {
                v[j] = self.ub[j] - x[j];
                dv[j] = -1.0;
            }
            if g[j] > 0.0 && self.lb[j].is_finite() {
                v[j] = x[j] - self.lb[j];
                dv[j] = 1.0;
            }
        }
        (v, dv)
    }

    /// Householder QR of the augmented matrix, then a one-sided Jacobi SVD of the n×n
    /// triangle; `uf` is formed from `Qᵀ [f; 0]`. Singular-vector signs are arbitrary,
    /// as in LAPACK; they cancel in every later use.
    fn augmented_svd(&mut self, d: &Vn, diag_h: &Vn, f: &[f64]) -> AugmentedSvd {
        let (n, m) = (self.n, self.m);
        let rows = m + n;
        for j in 0..n {
            let src = &self.jac[j * m..(j + 1) * m];
            let dst = &mut self.jac_h[j * m..(j + 1) * m];
            for (o, s) in dst.iter_mut().zip(src) {
                *o = s * d[j];
            }
            let col = &mut self.aug[j * rows..(j + 1) * rows];
            col[..m].copy_from_slice(dst);
            col[m..].fill(0.0);
            col[m + j] = diag_h[j].sqrt();
        }
        let mut qtf: Vec<f64> = Vec::with_capacity(rows);
        qtf.extend_from_slice(f);
        qtf.resize(rows, 0.0);

        let mut r = [[0.0; MAX_PARAMS]; MAX_PARAMS]; // r[col][row]
        for k in 0..n {
            let (done, rest) = self.aug.split_at_mut((k + 1) * rows);
            let col = &mut done[k * rows..];
            let norm = dot(&col[k..], &col[k..]).sqrt();
            if norm > 0.0 {
                let alpha = if col[k] > 0.0 { -norm } else { norm };
                // Householder vector u = col[k..] - alpha e_k, applied as I - 2uuᵀ/(uᵀu),
                // where uᵀu = 2(‖col‖² + ‖col‖·|col_k|).
                let utu = 2.0 * (norm * norm + norm * col[k].abs());
                col[k] -= alpha;
                if utu > 0.0 {
                    let u = &col[k..];
                    for other in rest.chunks_exact_mut(rows) {
                        let s = 2.0 * dot(u, &other[k..]) / utu;
                        for (o, ui) in other[k..].iter_mut().zip(u) {
                            *o -= s * ui;
                        }
                    }
                    let s = 2.0 * dot(u, &qtf[k..]) / utu;
                    for (o, ui) in qtf[k..].iter_mut().zip(u) {
                        *o -= s * ui;
                    }
                }
                r[k][k] = alpha;
            }
            for (j, other) in rest.chunks_exact(rows).enumerate() {
                r[k + 1 + j][k] = other[k];
            }
        }
        // Columns of `a` are rotated until mutually orthogonal: R·V = U·S.
        let mut a = r;
        let mut v = [[0.0; MAX_PARAMS]; MAX_PARAMS];
        for (j, col) in v.iter_mut().enumerate().take(n) {
            col[j] = 1.0;
        }
        for _ in 0..JACOBI_MAX_SWEEPS {
            let mut rotated = false;
            for p in 0..n {
                for q in p + 1..n {
                    let alpha = dot(&a[p][..n], &a[p][..n]);
                    let beta = dot(&a[q][..n], &a[q][..n]);
                    let gamma = dot(&a[p][..n], &a[q][..n]);
                    if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                        continue;
                    }
                    rotated = true;
                    let zeta = (beta - alpha) / (2.0 * gamma);
                    let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                    let c = 1.0 / (1.0 + t * t).sqrt();
                    let s = c * t;
                    rotate_pair(&mut a, p, q, c, s, n);
                    rotate_pair(&mut v, p, q, c, s, n);
                }
            }
            if !rotated {
                break;
            }
        }
        let mut order: [usize; MAX_PARAMS] = std::array::from_fn(|i| i);
        let sv: Vn = std::array::from_fn(|j| if j < n { norm_n(&a[j], n) } else { 0.0 });
        order[..n].sort_by(|&i, &j| sv[j].total_cmp(&sv[i]));
        let mut out = AugmentedSvd {
            s: [0.0; MAX_PARAMS],
            v: [[0.0; MAX_PARAMS]; MAX_PARAMS],
            uf: [0.0; MAX_PARAMS],
        };
        for (k, &j) in order[..n].iter().enumerate() {
            out.s[k] = sv[j];
            out.v[k] = v[j];
            out.uf[k] = if sv[j] > 0.0 {
                dot(&a[j][..n], &qtf[..n]) / sv[j]
            } else {
                0.0
            };
        }
        out
    }

    /// `J_h·s` into `out`.
    fn jh_times(&self, s: &Vn, out: &mut [f64]) {
        let m = self.m;
        out.fill(0.0);
        for (col, sj) in self.jac_h.chunks_exact(m).zip(&s[..self.n]) {
            for (o, c) in out.iter_mut().zip(col) {
                *o += c * sj;
            }
        }
    }

    /// `q(s) = ½(‖J_h s‖² + sᵀ diag(diag_h) s) + g_hᵀ s`.
    fn evaluate_quadratic(&mut self, g_h: &Vn, s: &Vn, diag_h: &Vn) -> f64 {
        let mut js = std::mem::take(&mut self.mv_a);
        self.jh_times(s, &mut js);
        let q = dot(&js, &js) + dot_n(&mul_n(s, diag_h, self.n), s, self.n);
        self.mv_a = js;
        0.5 * q + dot_n(g_h, s, self.n)
    }

    /// Coefficients of `q(s0 + t·s) = a t² + b t + c` (with `s0 = 0` when absent).
    fn quadratic_1d(&mut self, g_h: &Vn, s: &Vn, diag_h: &Vn, s0: Option<&Vn>) -> (f64, f64, f64) {
        let n = self.n;
        let mut v = std::mem::take(&mut self.mv_a);
        self.jh_times(s, &mut v);
        let mut a = dot(&v, &v);
        a += dot_n(&mul_n(s, diag_h, n), s, n);
        a *= 0.5;
        let mut b = dot_n(g_h, s, n);
        let mut c = 0.0;
        if let Some(s0) = s0 {
            let mut u = std::mem::take(&mut self.mv_b);
            self.jh_times(s0, &mut u);
            b += dot(&u, &v);
            c = 0.5 * dot(&u, &u) + dot_n(g_h, s0, n);
            let s0d = mul_n(s0, diag_h, n);
            b += dot_n(&s0d, s, n);
            c += 0.5 * dot_n(&s0d, s0, n);
            self.mv_b = u;
        }
        self.mv_a = v;
        (a, b, c)
    }

    /// Chooses among the (possibly truncated) trust-region step, its reflection off the
    /// first bound it hits, and the constrained Cauchy step, by the quadratic model.
    #[allow(clippy::too_many_arguments)]
    fn select_step(
        &mut self,
        x: &Vn,
        diag_h: &Vn,
        g_h: &Vn,
        mut p: Vn,
        mut p_h: Vn,
        d: &Vn,
        delta: f64,
        theta: f64,
    ) -> Result<Step, TrfError> {
        let n = self.n;
        let x_plus_p: Vn = std::array::from_fn(|j| x[j] + p[j]);
        if (0..n).all(|j| x_plus_p[j] >= self.lb[j] && x_plus_p[j] <= self.ub[j]) {
            let value = self.evaluate_quadratic(g_h, &p_h, diag_h);
            return Ok(Step {
                step: p,
                step_h: p_h,
                predicted_reduction: -value,
            });
        }

        let (p_stride, hits) = self.step_size_to_bound(x, &p);
        let mut r_h = p_h;
        for j in 0..n {
            if hits[j] != 0 {
                r_h[j] = -r_h[j];
            }
        }
        let mut r: Vn = std::array::from_fn(|j| d[j] * r_h[j]);
        for j in 0..n {
            p[j] *= p_stride;
            p_h[j] *= p_stride;
        }
        let x_on_bound: Vn = std::array::from_fn(|j| x[j] + p[j]);

        let (_, to_tr) = intersect_trust_region(&p_h, &r_h, delta, n)?;
        let (to_bound, _) = self.step_size_to_bound(&x_on_bound, &r);
        let r_stride = py_min(to_bound, to_tr);
        let (r_stride_l, r_stride_u) = if r_stride > 0.0 {
            let upper = if r_stride == to_bound {
                theta * to_bound
            } else {
                to_tr
            };
            ((1.0 - theta) * p_stride / r_stride, upper)
        } else {
            (0.0, -1.0)
        };

        let r_value = if r_stride_l <= r_stride_u {
            let (a, b, c) = self.quadratic_1d(g_h, &r_h, diag_h, Some(&p_h));
            let (t, value) = minimize_quadratic_1d(a, b, r_stride_l, r_stride_u, c);
            for j in 0..n {
                r_h[j] = r_h[j] * t + p_h[j];
                r[j] = r_h[j] * d[j];
            }
            value
        } else {
            f64::INFINITY
        };

        for j in 0..n {
            p[j] *= theta;
            p_h[j] *= theta;
        }
        let p_value = self.evaluate_quadratic(g_h, &p_h, diag_h);

        let mut ag_h: Vn = std::array::from_fn(|j| -g_h[j]);
        let mut ag: Vn = std::array::from_fn(|j| d[j] * ag_h[j]);
        let to_tr = delta / norm_n(&ag_h, n);
        let (to_bound, _) = self.step_size_to_bound(x, &ag);
        let ag_limit = if to_bound < to_tr {
            theta * to_bound
        } else {
            to_tr
        };
        let (a, b, _) = self.quadratic_1d(g_h, &ag_h, diag_h, None);
        let (ag_stride, ag_value) = minimize_quadratic_1d(a, b, 0.0, ag_limit, 0.0);
        for j in 0..n {
            ag_h[j] *= ag_stride;
            ag[j] *= ag_stride;
        }

        Ok(if p_value < r_value && p_value < ag_value {
            Step {
                step: p,
                step_h: p_h,
                predicted_reduction: -p_value,
            }
        } else if r_value < p_value && r_value < ag_value {
            Step {
                step: r,
                step_h: r_h,
                predicted_reduction: -r_value,
            }
        } else {
            Step {
                step: ag,
                step_h: ag_h,
                predicted_reduction: -ag_value,
            }
        })
    }

    /// Largest `t` with `x + t·s` inside the bounds, and which components reach a bound
    /// at that `t` (their direction sign; 0 elsewhere).
    fn step_size_to_bound(&self, x: &Vn, s: &Vn) -> (f64, [i8; MAX_PARAMS]) {
        let n = self.n;
        let mut steps = [f64::INFINITY; MAX_PARAMS];
        for j in 0..n {
            if s[j] != 0.0 {
                steps[j] = nan_max((self.lb[j] - x[j]) / s[j], (self.ub[j] - x[j]) / s[j]);
            }
        }
        let min_step = steps[..n].iter().copied().fold(f64::INFINITY, nan_min);
        let mut hits = [0i8; MAX_PARAMS];
        for j in 0..n {
            if steps[j] == min_step {
                hits[j] = if s[j] > 0.0 {
                    1
                } else if s[j] < 0.0 {
                    -1
                } else {
                    0
                };
            }
        }
        (min_step, hits)
    }
}

/// Applies the plane rotation `(c, s)` to columns `p < q`.
fn rotate_pair(cols: &mut [Vn; MAX_PARAMS], p: usize, q: usize, c: f64, s: f64, n: usize) {
    let (head, tail) = cols.split_at_mut(q);
    for (xp, xq) in head[p][..n].iter_mut().zip(&mut tail[0][..n]) {
        let (ap, aq) = (*xp, *xq);
        *xp = c * ap - s * aq;
        *xq = s * ap + c * aq;
    }
}

/// Moré–Hebden solution of `min ‖J_aug p + f_aug‖` subject to `‖p‖ <= Δ` from the SVD.
/// `alpha` carries the Levenberg–Marquardt parameter between calls, as scipy does.
fn solve_trust_region(n: usize, m: usize, svd: &AugmentedSvd, delta: f64, alpha: &mut f64) -> Vn {
    let s = &svd.s;
    let suf: Vn = std::array::from_fn(|j| s[j] * svd.uf[j]);
    let full_rank = m >= n && s[n - 1] > f64::EPSILON * m as f64 * s[0];
    let combine = |coef: &Vn| -> Vn {
        let mut p = [0.0; MAX_PARAMS];
        for (k, vk) in svd.v[..n].iter().enumerate() {
            for j in 0..n {
                p[j] -= vk[j] * coef[k];
            }
        }
        p
    };

    if full_rank {
        let gn: Vn = std::array::from_fn(|j| if j < n { svd.uf[j] / s[j] } else { 0.0 });
        let p = combine(&gn);
        if norm_n(&p, n) <= delta {
            *alpha = 0.0;
            return p;
        }
    }

    let phi_and_derivative = |a: f64| -> (f64, f64) {
        let mut sq = 0.0;
        let mut deriv = 0.0;
        for j in 0..n {
            let denom = s[j] * s[j] + a;
            let q = suf[j] / denom;
            sq += q * q;
            deriv += suf[j] * suf[j] / denom.powf(3.0);
        }
        let p_norm = sq.sqrt();
        (p_norm - delta, -deriv / p_norm)
    };

    let mut alpha_upper = norm_n(&suf, n) / delta;
    let mut alpha_lower = if full_rank {
        let (phi, phi_prime) = phi_and_derivative(0.0);
        -phi / phi_prime
    } else {
        0.0
    };
    let restart = |lo: f64, up: f64| py_max(0.001 * up, (lo * up).sqrt());
    let mut a = if !full_rank && *alpha == 0.0 {
        restart(alpha_lower, alpha_upper)
    } else {
        *alpha
    };
    for _ in 0..SUBPROBLEM_MAX_ITER {
        if a < alpha_lower || a > alpha_upper {
            a = restart(alpha_lower, alpha_upper);
        }
        let (phi, phi_prime) = phi_and_derivative(a);
        if phi < 0.0 {
            alpha_upper = a;
        }
        let ratio = phi / phi_prime;
        alpha_lower = py_max(alpha_lower, a - ratio);
        a -= (phi + delta) * ratio / delta;
        if phi.abs() < SUBPROBLEM_RTOL * delta {
            break;
        }
    }
    let coef: Vn = std::array::from_fn(|j| {
        if j < n {
            suf[j] / (s[j] * s[j] + a)
        } else {
            0.0
        }
    });
    let mut p = combine(&coef);
    let scale = delta / norm_n(&p, n);
    for v in &mut p[..n] {
        *v *= scale;
    }
    *alpha = a;
    p
}

/// Both roots `t` of `‖x + t·s‖ = Δ`, ascending (cancellation-free form).
fn intersect_trust_region(x: &Vn, s: &Vn, delta: f64, n: usize) -> Result<(f64, f64), TrfError> {
    let a = dot_n(s, s, n);
    if a == 0.0 {
        return Err(TrfError::Degenerate("reflected direction is zero"));
    }
    let b = dot_n(x, s, n);
    let c = dot_n(x, x, n) - delta * delta;
    if c > 0.0 {
        return Err(TrfError::Degenerate("step lies outside the trust region"));
    }
    let disc = (b * b - a * c).sqrt();
    let q = -(b + disc.copysign(b));
    let t1 = q / a;
    let t2 = c / q;
    Ok(if t1 < t2 { (t1, t2) } else { (t2, t1) })
}

/// Minimum of `t·(a t + b) + c` over `[lo, hi]`: both ends and an interior vertex are
/// candidates, the first minimum wins (a NaN value counts as the minimum, like `argmin`).
fn minimize_quadratic_1d(a: f64, b: f64, lo: f64, hi: f64, c: f64) -> (f64, f64) {
    let mut cand = [lo, hi, 0.0];
    let mut count = 2;
    if a != 0.0 {
        let extremum = -0.5 * b / a;
        if lo < extremum && extremum < hi {
            cand[2] = extremum;
            count = 3;
        }
    }
    let mut best = (cand[0], cand[0] * (a * cand[0] + b) + c);
    for &t in &cand[1..count] {
        let y = t * (a * t + b) + c;
        if best.1.is_nan() {
            break;
        }
        if y.is_nan() || y < best.1 {
            best = (t, y);
        }
    }
    best
}

/// scipy's `update_tr_radius`: returns the new radius and the reduction ratio.
fn update_radius(
    delta: f64,
    actual: f64,
    predicted: f64,
    step_norm: f64,
    bound_hit: bool,
) -> (f64, f64) {
    let ratio = if predicted > 0.0 {
        actual / predicted
    } else if predicted == actual && actual == 0.0 {
        1.0
    } else {
        0.0
    };
    let new_delta = if ratio < 0.25 {
        0.25 * step_norm
    } else if ratio > 0.75 && bound_hit {
        delta * 2.0
    } else {
        delta
    };
    (new_delta, ratio)
}

fn check_termination(
    d_cost: f64,
    cost: f64,
    dx_norm: f64,
    x_norm: f64,
    ratio: f64,
    opts: &TrfOptions,
) -> Option<i32> {
    let ftol_ok = d_cost < opts.ftol * cost && ratio > 0.25;
    let xtol_ok = dx_norm < opts.xtol * (opts.xtol + x_norm);
    match (ftol_ok, xtol_ok) {
        (true, true) => Some(4),
        (true, false) => Some(2),
        (false, true) => Some(3),
        (false, false) => None,
    }
}

/// Moves components that sit on (or within `rstep·max(1, |bound|)` of) a bound strictly
/// inside; with `rstep == 0` to the adjacent representable number.
fn make_strictly_feasible(x: &mut [f64], lb: &[f64], ub: &[f64], rstep: f64) {
    for ((xj, &l), &u) in x.iter_mut().zip(lb).zip(ub) {
        let active = if rstep == 0.0 {
            if *xj >= u {
                1
            } else if *xj <= l {
                -1
            } else {
                0
            }
        } else {
            let lower_dist = *xj - l;
            let upper_dist = u - *xj;
            let lower_thr = rstep * f64::max(1.0, l.abs());
            let upper_thr = rstep * f64::max(1.0, u.abs());
            if u.is_finite() && upper_dist <= f64::min(lower_dist, upper_thr) {
                1
            } else if l.is_finite() && lower_dist <= f64::min(upper_dist, lower_thr) {
                -1
            } else {
                0
            }
        };
        match (active, rstep == 0.0) {
            (-1, true) => *xj = next_toward(l, u),
            (1, true) => *xj = next_toward(u, l),
            (-1, false) => *xj = l + rstep * f64::max(1.0, l.abs()),
            (1, false) => *xj = u - rstep * f64::max(1.0, u.abs()),
            _ => {}
        }
        if *xj < l || *xj > u {
            *xj = 0.5 * (l + u);
        }
    }
}

/// C's `nextafter(from, toward)` for finite `from` and `from != toward`.
fn next_toward(from: f64, toward: f64) -> f64 {
    if from.is_nan() || toward.is_nan() || from == toward {
        return from;
    }
    if from == 0.0 {
        let tiny = f64::from_bits(1);
        return if toward > 0.0 { tiny } else { -tiny };
    }
    let bits = from.to_bits();
    let away_from_zero = (toward > from) == (from > 0.0);
    f64::from_bits(if away_from_zero { bits + 1 } else { bits - 1 })
}

/// Python's built-in `max(a, b)`/`min(a, b)`: the first argument unless the second
/// compares strictly greater/smaller (so NaN handling depends on the order).
fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

/// NaN-propagating max/min, as numpy's `maximum`/`min` on arrays.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Dot product with four interleaved accumulators: BLAS `ddot` does not sum sequentially
/// either, and breaking the dependency chain makes the m-long products several times
/// faster.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn dot_n(a: &Vn, b: &Vn, n: usize) -> f64 {
    dot(&a[..n], &b[..n])
}

fn norm_n(a: &Vn, n: usize) -> f64 {
    dot_n(a, a, n).sqrt()
}

fn mul_n(a: &Vn, b: &Vn, n: usize) -> Vn {
    std::array::from_fn(|j| if j < n { a[j] * b[j] } else { 0.0 })
}

#[cfg(test)]
#[path = "trf_tests.rs"]
mod tests;
