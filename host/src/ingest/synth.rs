//! Synthetic experiments behind `oect generate`, filled with a known device model, plus a
//! `<file>.truth.json` sidecar holding the parameters the features should recover.
//!
//! An experiment is built as the instrument would record it (its `test_info.json`, workflow
//! and step data) and then either written as the instrument's export folder, or converted
//! in memory by the converter's own writer ([`super::convert`], [`super::h5`]): so a generated
//! HDF5 file and `oect convert` of the generated export are the same file. Same model and
//! layout as `tools/make_synthetic_h5.py`, but not its random numbers. The work is linear in
//! the number of samples and the transient data is streamed, so memory stays bounded however
//! many steps a file has.

use std::f64::consts::PI;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::convert::file_spec;
use super::csv::StepData;
use super::export::{clean, sanitize, Export, ExportError, Kind, PlannedStep, FINAL_INFO};
use super::h5::{self, TransientSource, FORMAT_VERSION};
use super::json::Json;

const DESCRIPTION: &str = "synthetic";
const TEST_UNIT_ID: &str = "Test Unit A1";
/// `export_time_utc` of generated files (fixed, so that a seed always gives the same file).
const EXPORT_TIME: &str = "2025-08-16T00:00:00.000000+00:00";
const CREATED_AT: &str = "2025-08-15T13:42:11.123456";
/// `CREATED_AT` in microseconds since 1970-01-01: the instrument clock the steps start from.
const CLOCK_START_US: i64 = 1_755_265_331_123_456;

// Model constants: the predecessor script's defaults that `SynthSpec` does not expose.
const DRAIN_MV: i64 = 100;
const TRANSFER_TIME_STEP_MS: i64 = 300;
const WIDTH_V: f64 = 0.07;
const IOFF_A: f64 = 2e-8;
const HYSTERESIS_V: f64 = 0.02;
const VTH_DRIFT_V: f64 = 0.05;
const ION_DECAY: f64 = 0.2;
const STEP_JITTER: f64 = 0.01;
const VG_BOTTOM_MV: i64 = -300;
const VG_TOP_MV: i64 = 600;
const TAU_GROWTH: f64 = 0.5;
const TRANSIMPEDANCE_OHMS: f64 = 100.0;

/// Device polarity: N-type current is positive and rises with Vg, P-type is negative and rises
/// (in magnitude) as Vg falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeviceType {
    N,
    P,
}

/// What to generate. Experiment k (0-based) gets chip `"<chip_prefix><k+1:04>"` and device
/// number `"<k+1>"`: device `k % n + 1` of chip `k / n + 1` with `devices_per_chip = n`, or
/// device `k + 1` of `chip_id` when that is set. The defaults reproduce the predecessor
/// script's `#SYN0001`, device `1`.
#[derive(Debug, Clone, Serialize)]
pub struct SynthSpec {
    pub n_experiments: usize,
    /// Loop iterations; each gives one transfer and/or one transient step.
    pub n_steps: usize,
    /// Points per transfer sweep (forward + reverse); `None` derives them from `vg_step`.
    pub transfer_points: Option<usize>,
    pub vg_start: f64,
    pub vg_end: f64,
    pub vg_step: f64,
    pub n_cycles: usize,
    /// Gate square-wave period, s.
    pub period: f64,
    /// Fraction of the period at the top gate voltage.
    pub duty: f64,
    /// Hz; the instrument's time step is whole milliseconds, so 1000 / rate must be an integer.
    pub sample_rate: f64,
    pub tau_on_ms: f64,
    pub tau_off_ms: f64,
    /// Log-normal per-cycle spread of both taus (0 = constant within a step).
    pub tau_jitter: f64,
    pub device_type: DeviceType,
    /// Vary step lengths: a quarter of the sweeps shortened, cycles ±10 %.
    pub ragged: bool,
    /// One more transfer step after the loop, as in the lab's stability runs.
    pub final_transfer: bool,
    pub transfer: bool,
    pub transient: bool,
    /// On-current scale, A.
    pub ion: f64,
    /// Noise, A rms.
    pub noise_abs: f64,
    /// Noise as a fraction of |Id|, rms.
    pub noise_rel: f64,
    pub seed: u64,
    pub chip_prefix: String,
    /// Every experiment on this chip (devices 1..N), like the devices of one real chip.
    pub chip_id: Option<String>,
    /// Devices measured on each chip: experiment k is device `k % n + 1` of chip `k / n + 1`.
    /// `None`: every experiment on its own chip, device number `k + 1`.
    pub devices_per_chip: Option<usize>,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            n_experiments: 1,
            n_steps: 5,
            transfer_points: None,
            vg_start: -0.6,
            vg_end: 0.6,
            vg_step: 0.01,
            n_cycles: 100,
            period: 0.25,
            duty: 0.5,
            sample_rate: 1000.0,
            tau_on_ms: 8.0,
            tau_off_ms: 3.0,
            tau_jitter: 0.0,
            device_type: DeviceType::N,
            ragged: false,
            final_transfer: false,
            transfer: true,
            transient: true,
            ion: 6e-4,
            noise_abs: 1e-7,
            noise_rel: 0.002,
            seed: 0,
            chip_prefix: "#SYN".to_owned(),
            chip_id: None,
            devices_per_chip: None,
        }
    }
}

/// One written experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub path: PathBuf,
    pub truth_path: PathBuf,
}

/// What `generate` writes per experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Hdf5,
    Export,
}

/// Writes `spec.n_experiments` HDF5 files (and their truth sidecars) into `out_dir`.
pub fn generate(spec: &SynthSpec, out_dir: &Path) -> Result<Vec<Generated>, ExportError> {
    generate_reporting(spec, out_dir, false, &mut |_| {})
}

/// [`generate`], or with `raw_export` the instrument's export folders (and truth sidecars
/// beside them) of the same experiments, seed for seed; `each` is called as every
/// experiment is written, so that a long generation can show its progress.
pub fn generate_reporting(
    spec: &SynthSpec,
    out_dir: &Path,
    raw_export: bool,
    each: &mut dyn FnMut(&Generated),
) -> Result<Vec<Generated>, ExportError> {
    let output = if raw_export {
        Output::Export
    } else {
        Output::Hdf5
    };
    let design = Design::new(spec).map_err(|m| ExportError::new(out_dir, m))?;
    fs::create_dir_all(out_dir)
        .map_err(|e| ExportError::new(out_dir, format!("cannot create directory: {e}")))?;
    (0..spec.n_experiments)
        .map(|k| {
            let written = write_experiment(&design, k, out_dir, output)?;
            each(&written);
            Ok(written)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// randomness

/// xoshiro256++ seeded through SplitMix64, with Box–Muller normals: small, fast, reproducible.
struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut state = seed;
        let s = [(); 4].map(|()| splitmix64(&mut state));
        Self {
            s,
            spare_normal: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = self.s;
        let out = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
        let t = s1 << 17;
        let s2 = s2 ^ s0;
        let s3 = s3 ^ s1;
        let s1 = s1 ^ s2;
        let s0 = s0 ^ s3;
        self.s = [s0, s1, s2 ^ t, s3.rotate_left(45)];
        out
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [lo, hi).
    fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.abs_diff(lo);
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1], so ln is finite
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (2.0 * PI * u2).sin_cos();
        self.spare_normal = Some(r * sin);
        r * cos
    }
}

// ---------------------------------------------------------------------------------------------
// experiment design (shared by all experiments of a spec) and per-step plan

/// The instrument's (Chinese) label of a step kind in `path_readable`.
fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Transfer => "转移特性",
        Kind::Transient => "瞬态特性",
    }
}

/// Everything derived from the spec alone.
struct Design<'a> {
    spec: &'a SynthSpec,
    /// +1 for N, −1 for P.
    sign: f64,
    vth0: f64,
    time_step_ms: i64,
    bottom_ms: i64,
    top_ms: i64,
    period_s: f64,
    pts_per_cycle: usize,
    dt: f64,
    v0_mv: i64,
    v1_mv: i64,
    step_mv: i64,
    /// The full sweep, V (forward then reverse).
    sweep: Vec<f64>,
    /// Step kinds inside one loop iteration.
    inner: Vec<Kind>,
}

/// Python's `int(round(x))`: ties to even.
fn round_int(x: f64) -> i64 {
    x.round_ties_even() as i64
}

impl<'a> Design<'a> {
    fn new(spec: &'a SynthSpec) -> Result<Self, String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if spec.n_steps == 0 {
            return Err("synthetic spec: n_steps must be at least 1".into());
        }
        if spec.devices_per_chip == Some(0) {
            return Err("synthetic spec: devices_per_chip must be at least 1".into());
        }
        if !spec.transfer && !spec.transient {
            return Err("synthetic spec: enable transfer or transient steps (or both)".into());
        }
        if spec.transient {
            let ms = 1000.0 / spec.sample_rate;
            if !positive(ms) || (ms - ms.round()).abs() > 1e-9 || ms.round() < 1.0 {
                return Err(format!(
                    "synthetic spec: sample_rate {} Hz is not 1000/k Hz for a whole k ≥ 1 \
                     (the instrument's time step is whole milliseconds)",
                    spec.sample_rate
                ));
            }
            if spec.n_cycles == 0 || !positive(spec.period) || !(0.0..=1.0).contains(&spec.duty) {
                return Err("synthetic spec: need n_cycles ≥ 1, period > 0, 0 ≤ duty ≤ 1".into());
            }
            if !positive(spec.tau_on_ms)
                || !positive(spec.tau_off_ms)
                || !non_negative(spec.tau_jitter)
            {
                return Err(
                    "synthetic spec: need tau_on_ms > 0, tau_off_ms > 0, tau_jitter ≥ 0".into(),
                );
            }
        }
        if !non_negative(spec.noise_abs) || !non_negative(spec.noise_rel) || !spec.ion.is_finite() {
            return Err(
                "synthetic spec: need noise_abs ≥ 0, noise_rel ≥ 0 and a finite ion".into(),
            );
        }
        let time_step_ms = round_int(1000.0 / spec.sample_rate).max(1);
        let bottom_ms = round_int(spec.period * (1.0 - spec.duty) * 1000.0);
        let top_ms = round_int(spec.period * spec.duty * 1000.0);
        let pts_per_cycle = usize::try_from((bottom_ms + top_ms) / time_step_ms).unwrap_or(0);
        if spec.transient && pts_per_cycle == 0 {
            return Err(format!(
                "synthetic spec: a period of {} s holds no sample at {} Hz",
                spec.period, spec.sample_rate
            ));
        }

        let (v0_mv, v1_mv) = (
            round_int(spec.vg_start * 1000.0),
            round_int(spec.vg_end * 1000.0),
        );
        let (forward_mv, step_mv): (Vec<i64>, i64) = match spec.transfer_points {
            Some(0) => return Err("synthetic spec: transfer_points must be at least 1".into()),
            Some(points) => {
                let n_half = points.div_ceil(2);
                let div = n_half.saturating_sub(1).max(1) as f64;
                let fwd = (0..n_half)
                    .map(|i| {
                        let v = if i + 1 == n_half && n_half > 1 {
                            v1_mv as f64
                        } else {
                            v0_mv as f64 + (v1_mv - v0_mv) as f64 / div * i as f64
                        };
                        round_int(v)
                    })
                    .collect();
                (fwd, round_int((v1_mv - v0_mv).abs() as f64 / div))
            }
            None => {
                let step = round_int(spec.vg_step * 1000.0);
                if step <= 0 {
                    return Err("synthetic spec: vg_step must be at least 1 mV".into());
                }
                let n_half = (v1_mv - v0_mv).abs() / step + 1;
                let dir = (v1_mv - v0_mv).signum();
                ((0..n_half).map(|i| v0_mv + dir * step * i).collect(), step)
            }
        };
        let mut sweep_mv: Vec<i64> = forward_mv
            .iter()
            .chain(forward_mv.iter().rev())
            .copied()
            .collect();
        if spec.transfer_points.is_some_and(|p| p % 2 == 1) {
            sweep_mv.pop();
        }

        let sign = match spec.device_type {
            DeviceType::N => 1.0,
            DeviceType::P => -1.0,
        };
        let inner = [
            (spec.transfer, Kind::Transfer),
            (spec.transient, Kind::Transient),
        ]
        .into_iter()
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect();
        Ok(Self {
            spec,
            sign,
            vth0: if sign > 0.0 { 0.30 } else { 0.20 },
            time_step_ms,
            bottom_ms,
            top_ms,
            period_s: (bottom_ms + top_ms) as f64 / 1000.0,
            pts_per_cycle,
            dt: time_step_ms as f64 / 1000.0,
            v0_mv,
            v1_mv,
            step_mv,
            sweep: sweep_mv.iter().map(|&mv| mv as f64 / 1000.0).collect(),
            inner,
        })
    }

    /// Noise-free drain current (A) at gate voltage `vg` (V).
    fn current(&self, vg: f64, vth: f64, ion: f64, width: f64) -> f64 {
        let x = self.sign * (vg - vth) / width;
        self.sign * (IOFF_A + ion * 0.5 * (1.0 + (0.5 * x).tanh()))
    }

    fn transfer_params(&self, with_instrument_keys: bool) -> TransferParams {
        TransferParams {
            is_sweep: 1,
            time_step: TRANSFER_TIME_STEP_MS,
            source_voltage: 0,
            drain_voltage: DRAIN_MV,
            gate_voltage_start: self.v0_mv,
            gate_voltage_end: self.v1_mv,
            gate_voltage_step: self.step_mv,
            transimpedance_ohms: with_instrument_keys.then_some(TRANSIMPEDANCE_OHMS),
        }
    }

    fn transient_params(&self, with_instrument_keys: bool) -> TransientParams {
        TransientParams {
            time_step: self.time_step_ms,
            source_voltage: 0,
            drain_voltage: DRAIN_MV,
            bottom_time: self.bottom_ms,
            top_time: self.top_ms,
            gate_voltage_bottom: VG_BOTTOM_MV,
            gate_voltage_top: VG_TOP_MV,
            cycles: self.spec.n_cycles,
            transimpedance_ohms: with_instrument_keys.then_some(TRANSIMPEDANCE_OHMS),
            transient_packet_size: with_instrument_keys.then_some(7),
        }
    }
}

/// Kind-specific part of a step plan.
enum StepKind {
    Transfer {
        n_points: usize,
    },
    Transient {
        cycles: usize,
        tau_on: f64,
        tau_off: f64,
        tau_on_cycles: Vec<f64>,
        tau_off_cycles: Vec<f64>,
    },
}

/// One executed step: everything but its noise, which is drawn when the data is written.
struct StepPlan {
    /// Loop iteration (0-based), `None` for the final transfer after the loop.
    iteration: Option<usize>,
    /// 0-based position in the loop body.
    inner_pos: usize,
    vth: f64,
    ion: f64,
    width: f64,
    start_us: i64,
    end_us: i64,
    data_file: String,
    data: StepKind,
    noise_seed: u64,
}

impl StepPlan {
    fn kind(&self) -> Kind {
        match self.data {
            StepKind::Transfer { .. } => Kind::Transfer,
            StepKind::Transient { .. } => Kind::Transient,
        }
    }

    fn n_points(&self, design: &Design) -> usize {
        match self.data {
            StepKind::Transfer { n_points } => n_points,
            StepKind::Transient { cycles, .. } => cycles * design.pts_per_cycle,
        }
    }
}

/// Draws the device state, lengths, taus and clock of every step, in measurement order.
fn plan_steps(design: &Design, seed: u64) -> Vec<StepPlan> {
    let spec = design.spec;
    let mut order: Vec<(Kind, Option<usize>, usize)> = (0..spec.n_steps)
        .flat_map(|it| {
            design
                .inner
                .iter()
                .enumerate()
                .map(move |(j, &k)| (k, Some(it), j))
        })
        .collect();
    if spec.final_transfer && spec.transfer {
        order.push((Kind::Transfer, None, 1));
    }
    let mut rng = Rng::new(seed);
    let mut clock_us = CLOCK_START_US;
    let n_total = order.len();
    order
        .into_iter()
        .enumerate()
        .map(|(pos, (kind, iteration, inner_pos))| {
            let frac = pos as f64 / n_total.saturating_sub(1).max(1) as f64;
            let jitter = [(); 3].map(|()| 1.0 + STEP_JITTER * rng.normal());
            let vth = design.vth0 + VTH_DRIFT_V * frac * design.sign + 0.005 * rng.normal();
            let ion = spec.ion * (1.0 - ION_DECAY * frac) * jitter[0];
            let width = WIDTH_V * jitter[1];
            let (data, duration_s) = match kind {
                Kind::Transfer => {
                    let full = design.sweep.len();
                    let mut n_points = full;
                    if spec.ragged && rng.uniform() < 0.25 {
                        let cut = rng.int_in(1, (full as i64 / 10).max(2)) as usize;
                        n_points = full.saturating_sub(cut).max(1);
                    }
                    let duration = n_points as f64 * TRANSFER_TIME_STEP_MS as f64 / 1000.0;
                    (StepKind::Transfer { n_points }, duration)
                }
                Kind::Transient => {
                    let mut cycles = spec.n_cycles;
                    if spec.ragged {
                        let scale = 1.0 + 0.1 * (2.0 * rng.uniform() - 1.0);
                        cycles = round_int(cycles as f64 * scale).max(2) as usize;
                    }
                    let growth = 1.0 + TAU_GROWTH * frac;
                    let tau_on = spec.tau_on_ms / 1000.0 * growth;
                    let tau_off = spec.tau_off_ms / 1000.0 * growth;
                    let mut per_cycle = |tau: f64| -> Vec<f64> {
                        (0..cycles)
                            .map(|_| tau * (spec.tau_jitter * rng.normal()).exp())
                            .collect()
                    };
                    let tau_on_cycles = per_cycle(tau_on);
                    let tau_off_cycles = per_cycle(tau_off);
                    let duration = (cycles * design.pts_per_cycle) as f64 * design.dt;
                    (
                        StepKind::Transient {
                            cycles,
                            tau_on,
                            tau_off,
                            tau_on_cycles,
                            tau_off_cycles,
                        },
                        duration,
                    )
                }
            };
            let start_us = clock_us + rng.int_in(50, 400) * 1000;
            let end_us = start_us + round_int(duration_s * 1e6);
            clock_us = end_us;
            StepPlan {
                iteration,
                inner_pos,
                vth,
                ion,
                width,
                start_us,
                end_us,
                data_file: format!("{}_{}.csv", pos + 1, kind.name()),
                data,
                noise_seed: rng.next_u64(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// signals

/// Round like `'%.3f'` (the CSV's gate voltage and time columns).
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Round like `'%g'` (the CSV's current column): 6 significant digits. Scaling by an exact
/// power of ten rounds once, so this is the printed value except, rarely, on an exact tie.
fn round_g(x: f64) -> f64 {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    // 10^|shift| is exact up to 1e22, so the scaled value is rounded once, like a decimal print
    let shift = 5 - x.abs().log10().floor() as i64;
    match POW10.get(shift.unsigned_abs() as usize) {
        Some(&p) if shift >= 0 => (x * p).round() / p,
        Some(&p) => (x / p).round() * p,
        None => format!("{x:.5e}").parse().unwrap_or(x),
    }
}

/// Appends `plan`'s transfer sweep: `(Vg, Id)` rounded like the instrument's CSV.
fn transfer_samples(design: &Design, plan: &StepPlan, vg: &mut Vec<f64>, id: &mut Vec<f64>) {
    let spec = design.spec;
    let mut rng = Rng::new(plan.noise_seed);
    // the reverse branch starts after the turning point (measured twice)
    let half = design.sweep.len().saturating_sub(1) / 2;
    for (i, &v) in design.sweep[..plan.n_points(design)].iter().enumerate() {
        let vth = if i <= half {
            plan.vth
        } else {
            plan.vth + HYSTERESIS_V * design.sign
        };
        let clean = design.current(v, vth, plan.ion, plan.width);
        let noisy =
            clean + spec.noise_abs * rng.normal() + spec.noise_rel * clean.abs() * rng.normal();
        vg.push(round3(v));
        id.push(round_g(noisy));
    }
}

/// Appends one transient step's clean current: the gate alternates a bottom then a top phase per
/// cycle; the current relaxes exponentially towards the phase's level with tau_on when |Id|
/// rises and tau_off when it falls, starting from where the previous phase left it.
fn relax_square_wave(
    design: &Design,
    n: usize,
    levels: (f64, f64),
    taus: (&[f64], &[f64]),
    out: &mut Vec<f64>,
) {
    if n == 0 {
        return;
    }
    let (i_bottom, i_top) = levels;
    let (dt, period) = (design.dt, design.period_s);
    let bottom = design.bottom_ms as f64 / 1000.0;
    let t = |k: usize| k as f64 * dt;
    let n_cycles = (t(n - 1) / period + 1e-9).floor() as usize + 1;
    let mut level = i_bottom;
    let mut k = 0;
    for c in 0..n_cycles {
        let c0 = c as f64 * period;
        let ci = c.min(taus.0.len().saturating_sub(1));
        for (start, end, target) in [
            (c0, c0 + bottom, i_bottom),
            (c0 + bottom, (c + 1) as f64 * period, i_top),
        ] {
            let mut k_end = k;
            while k_end < n && t(k_end) < end - 1e-9 {
                k_end += 1;
            }
            if k_end == k {
                continue;
            }
            let tau = if target.abs() > level.abs() {
                taus.0[ci]
            } else {
                taus.1[ci]
            };
            out.extend(
                (k..k_end).map(|kk| target + (level - target) * (-(t(kk) - start) / tau).exp()),
            );
            level = target + (level - target) * (-(end - start) / tau).exp();
            k = k_end;
        }
    }
    // float edge: a sample past the last phase boundary keeps the settled level
    out.resize(out.len() + (n - k), level);
}

// ---------------------------------------------------------------------------------------------
// JSON metadata (raw/json, raw/workflow)

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransferParams {
    is_sweep: i64,
    time_step: i64,
    source_voltage: i64,
    drain_voltage: i64,
    gate_voltage_start: i64,
    gate_voltage_end: i64,
    gate_voltage_step: i64,
    #[serde(
        rename = "transimpedance_ohms",
        skip_serializing_if = "Option::is_none"
    )]
    transimpedance_ohms: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransientParams {
    time_step: i64,
    source_voltage: i64,
    drain_voltage: i64,
    bottom_time: i64,
    top_time: i64,
    gate_voltage_bottom: i64,
    gate_voltage_top: i64,
    cycles: usize,
    #[serde(
        rename = "transimpedance_ohms",
        skip_serializing_if = "Option::is_none"
    )]
    transimpedance_ohms: Option<f64>,
    #[serde(
        rename = "transient_packet_size",
        skip_serializing_if = "Option::is_none"
    )]
    transient_packet_size: Option<i64>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Params {
    Transfer(TransferParams),
    Transient(TransientParams),
}

#[derive(Serialize)]
#[serde(untagged)]
enum WorkflowNode {
    Loop {
        id: &'static str,
        #[serde(rename = "type")]
        kind: &'static str,
        iterations: usize,
        steps: Vec<WorkflowNode>,
    },
    Step {
        id: &'static str,
        #[serde(rename = "type")]
        kind: &'static str,
        command_id: i64,
        params: Params,
    },
}

#[derive(Serialize)]
struct IterationInfo {
    #[serde(rename = "type")]
    kind: &'static str,
    parent: Option<()>,
    total: usize,
    current: usize,
}

#[derive(Serialize)]
struct WorkflowInfo {
    step_index: usize,
    total_steps: usize,
    path: Vec<PathNode>,
    path_readable: String,
    iteration_info: Option<IterationInfo>,
}

#[derive(Serialize)]
struct StepJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    start_time: String,
    end_time: String,
    params: Params,
    reason: &'static str,
    workflow_info: WorkflowInfo,
    data_file: &'a str,
}

/// A node of `workflow_info.path` (the lab's cleaning drops it; the raw export has it).
#[derive(Serialize)]
#[serde(untagged)]
enum PathNode {
    Position {
        index: usize,
        total: usize,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Iteration {
        #[serde(rename = "type")]
        kind: &'static str,
        current: usize,
        total: usize,
    },
}

#[derive(Serialize)]
struct RawParams {
    steps: Vec<WorkflowNode>,
}

/// `metadata` of the instrument's test_info.json.
#[derive(Serialize)]
struct RawMetadata<'a> {
    raw_params: RawParams,
    total_steps: usize,
    chip_id: &'a str,
    device_number: &'a str,
    sync_mode: bool,
    batch_id: &'a str,
    transimpedance_ohms: f64,
    transient_packet_size: i64,
    baseline_current: f64,
}

#[derive(Serialize)]
struct RunSummary {
    completed_steps: usize,
    total_steps: usize,
    completion_percentage: f64,
}

/// `test_info.json` as the instrument writes it (the converter cleans it, §7.3).
#[derive(Serialize)]
struct RawTestInfo<'a> {
    test_id: &'a str,
    device_id: &'a str,
    test_type: &'a str,
    port: &'a str,
    baudrate: i64,
    name: &'a str,
    description: &'a str,
    created_at: &'a str,
    metadata: RawMetadata<'a>,
    steps: Vec<StepJson<'a>>,
    completed_at: &'a str,
    status: &'a str,
    summary: RunSummary,
}

/// The instrument's `test_info.json` of an experiment, in the key order it writes.
fn raw_info(design: &Design, names: &Names, plans: &[StepPlan]) -> Json {
    let completed_at = iso_time(plans.last().map_or(CLOCK_START_US, |p| p.end_us));
    let steps = plans
        .iter()
        .map(|p| StepJson {
            kind: p.kind().name(),
            start_time: iso_time(p.start_us),
            end_time: iso_time(p.end_us),
            params: match p.kind() {
                Kind::Transfer => Params::Transfer(design.transfer_params(true)),
                Kind::Transient => Params::Transient(design.transient_params(true)),
            },
            reason: p.kind().name(),
            workflow_info: workflow_info(design, p),
            data_file: &p.data_file,
        })
        .collect();
    let unit_name = format!("{TEST_UNIT_ID}_20250815134211");
    let info = RawTestInfo {
        test_id: &names.test_id,
        device_id: TEST_UNIT_ID,
        test_type: "workflow",
        port: "COM7",
        baudrate: 512_000,
        name: &unit_name,
        description: DESCRIPTION,
        created_at: CREATED_AT,
        metadata: RawMetadata {
            raw_params: RawParams {
                steps: workflow(design),
            },
            total_steps: plans.len(),
            chip_id: &names.chip_id,
            device_number: &names.device_number,
            sync_mode: true,
            batch_id: &names.batch_id,
            transimpedance_ohms: TRANSIMPEDANCE_OHMS,
            transient_packet_size: 7,
            baseline_current: 0.0,
        },
        steps,
        completed_at: &completed_at,
        status: "completed",
        summary: RunSummary {
            completed_steps: plans.len(),
            total_steps: plans.len(),
            completion_percentage: 100.0,
        },
    };
    to_json(&info)
}

/// A serialisable value as [`Json`] (serde keeps struct field order in the text).
fn to_json<T: Serialize>(value: &T) -> Json {
    let text = serde_json::to_vec(value).expect("plain data serialises");
    Json::parse(&text).expect("serde_json writes valid JSON")
}

/// `datetime.isoformat()` of a naive local time given in µs since 1970-01-01: microseconds are
/// omitted when zero, as Python does.
fn iso_time(us: i64) -> String {
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // days → proleptic Gregorian date, counting in 400-year eras from 0000-03-01
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// Where a step sits in the workflow, as the instrument records it.
fn workflow_info(design: &Design, plan: &StepPlan) -> WorkflowInfo {
    let spec = design.spec;
    let top_total = if spec.final_transfer && spec.transfer {
        2
    } else {
        1
    };
    let label = label(plan.kind());
    match plan.iteration {
        Some(it) => WorkflowInfo {
            step_index: plan.inner_pos + 1,
            total_steps: design.inner.len(),
            path: vec![
                PathNode::Position {
                    index: 1,
                    total: top_total,
                    kind: "loop",
                },
                PathNode::Iteration {
                    kind: "iteration",
                    current: it + 1,
                    total: spec.n_steps,
                },
                PathNode::Position {
                    index: plan.inner_pos + 1,
                    total: design.inner.len(),
                    kind: plan.kind().name(),
                },
            ],
            path_readable: format!(
                "循环[1/{top_total}] > 迭代{}/{} > {label}[{}/{}]",
                it + 1,
                spec.n_steps,
                plan.inner_pos + 1,
                design.inner.len()
            ),
            iteration_info: Some(IterationInfo {
                kind: "loop",
                parent: None,
                total: spec.n_steps,
                // the instrument shares one dict across the loop's steps: always the last
                current: spec.n_steps,
            }),
        },
        None => WorkflowInfo {
            step_index: 2,
            total_steps: 2,
            path: vec![PathNode::Position {
                index: 2,
                total: top_total,
                kind: plan.kind().name(),
            }],
            path_readable: format!("{label}[2/{top_total}]"),
            iteration_info: None,
        },
    }
}

/// The instrument's `workflow.json`: the loop, then the optional final transfer.
fn workflow(design: &Design) -> Vec<WorkflowNode> {
    let spec = design.spec;
    let transfer = |id| WorkflowNode::Step {
        id,
        kind: "transfer",
        command_id: 1,
        params: Params::Transfer(design.transfer_params(false)),
    };
    let mut inner = Vec::new();
    if spec.transfer {
        inner.push(transfer("transfer-1"));
    }
    if spec.transient {
        inner.push(WorkflowNode::Step {
            id: "transient-1",
            kind: "transient",
            command_id: 1,
            params: Params::Transient(design.transient_params(false)),
        });
    }
    let mut top = vec![WorkflowNode::Loop {
        id: "loop-1",
        kind: "loop",
        iterations: spec.n_steps,
        steps: inner,
    }];
    if spec.final_transfer && spec.transfer {
        top.push(transfer("transfer-final"));
    }
    top
}

// ---------------------------------------------------------------------------------------------
// writing: an HDF5 file through the converter's writer, or an instrument export folder

/// The transient samples of an experiment, generated a batch of steps at a time in parallel
/// (each step has its own noise seed, so the values do not depend on the batching).
struct SynthTransient<'a> {
    design: &'a Design<'a>,
    plans: Vec<&'a StepPlan>,
    next: usize,
}

impl TransientSource for SynthTransient<'_> {
    fn next_batch(&mut self) -> Option<Result<Vec<StepData>, String>> {
        if self.next >= self.plans.len() {
            return None;
        }
        let n = (4 * rayon::current_num_threads()).max(8);
        let batch = &self.plans[self.next..(self.next + n).min(self.plans.len())];
        self.next += batch.len();
        Some(Ok(batch
            .par_iter()
            .map(|p| transient_samples(self.design, p))
            .collect()))
    }
}

/// `(original_time, drain_current)` of one transient step, rounded like the instrument's CSV.
fn transient_samples(design: &Design, p: &StepPlan) -> StepData {
    let spec = design.spec;
    let StepKind::Transient {
        tau_on_cycles,
        tau_off_cycles,
        ..
    } = &p.data
    else {
        return StepData::default();
    };
    let levels = (
        design.current(VG_BOTTOM_MV as f64 / 1000.0, p.vth, p.ion, p.width),
        design.current(VG_TOP_MV as f64 / 1000.0, p.vth, p.ion, p.width),
    );
    let mut clean = Vec::new();
    relax_square_wave(
        design,
        p.n_points(design),
        levels,
        (tau_on_cycles, tau_off_cycles),
        &mut clean,
    );
    let mut rng = Rng::new(p.noise_seed);
    let mut out = StepData {
        x: Vec::with_capacity(clean.len()),
        y: Vec::with_capacity(clean.len()),
    };
    for (k, &c) in clean.iter().enumerate() {
        out.x.push(round3((k + 1) as f64 * design.dt));
        let noisy = c + spec.noise_abs * rng.normal() + spec.noise_rel * c.abs() * rng.normal();
        out.y.push(round_g(noisy));
    }
    out
}

/// `(Vg, Id)` of one transfer step.
fn transfer_step(design: &Design, p: &StepPlan) -> StepData {
    let mut out = StepData::default();
    transfer_samples(design, p, &mut out.x, &mut out.y);
    out
}

/// The export folder's name, as the instrument builds it.
fn folder_name(names: &Names) -> String {
    format!(
        "{}_20250815134211_{}_20250815-134211_workflow_{}",
        TEST_UNIT_ID.replace(' ', "_"),
        sanitize(DESCRIPTION),
        names.test_id
    )
}

/// Writes the HDF5 file the converter would make from the experiment's export.
fn write_h5(
    design: &Design,
    names: &Names,
    plans: &[StepPlan],
    out_dir: &Path,
    tmp: &Path,
) -> Result<(), String> {
    let workflow = to_json(&workflow(design));
    // a fictitious raw-export folder next to the output
    let folder = std::path::absolute(out_dir)
        .unwrap_or_else(|_| out_dir.to_path_buf())
        .join("synthetic")
        .join(folder_name(names));
    let steps = plans
        .iter()
        .enumerate()
        .map(|(position, p)| PlannedStep {
            kind: p.kind(),
            position,
            csv: Some(folder.join(&p.data_file)),
        })
        .collect();
    let export = Export {
        info_path: folder.join(FINAL_INFO),
        folder,
        running: false,
        info: clean(raw_info(design, names, plans)),
        workflow: Some(workflow),
        steps,
        warnings: Vec::new(),
    };
    let by_kind = |kind: Kind| -> Vec<(&PlannedStep, &StepPlan)> {
        export
            .steps
            .iter()
            .zip(plans)
            .filter(|(s, _)| s.kind == kind)
            .collect()
    };
    let transfer: Vec<(&PlannedStep, StepData)> = by_kind(Kind::Transfer)
        .into_par_iter()
        .map(|(s, p)| (s, transfer_step(design, p)))
        .collect();
    let transient = by_kind(Kind::Transient);
    let lengths: Vec<(&PlannedStep, usize)> = transient
        .iter()
        .map(|(s, p)| (*s, p.n_points(design)))
        .collect();
    let mut source = SynthTransient {
        design,
        plans: transient.iter().map(|(_, p)| *p).collect(),
        next: 0,
    };
    let spec = file_spec(&export, &transfer, &lengths, &names.file_name, EXPORT_TIME);
    h5::write(tmp, &spec, &mut source).map_err(|e| e.to_string())
}

/// C's `%g`: 6 significant digits, trailing zeros removed, exponent form outside 1e-4 … 1e6.
fn format_g(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x.is_infinite() {
            if x > 0.0 { "inf" } else { "-inf" }.into()
        } else if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if (-4..6).contains(&exp) {
        trim(&format!("{x:.*}", (5 - exp) as usize))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

/// Writes the experiment as the instrument's export folder: `test_info.json`, `workflow.json`
/// and one CSV per step (`%.3f` for Vg and time, `%g` for the current, as numpy's savetxt).
fn write_export(
    design: &Design,
    names: &Names,
    plans: &[StepPlan],
    folder: &Path,
) -> io::Result<()> {
    fs::create_dir_all(folder)?;
    fs::write(
        folder.join("workflow.json"),
        pretty_ordered(&to_json(&workflow(design))),
    )?;
    let write_csv = |p: &StepPlan| -> io::Result<()> {
        let (header, data) = match p.kind() {
            Kind::Transfer => ("Vg,Id\n", transfer_step(design, p)),
            Kind::Transient => ("Time,Id\n", transient_samples(design, p)),
        };
        let mut text = String::with_capacity(header.len() + data.len() * 20);
        text.push_str(header);
        for (x, y) in data.x.iter().zip(&data.y) {
            text.push_str(&format!("{x:.3},{}\n", format_g(*y)));
        }
        fs::write(folder.join(&p.data_file), text)
    };
    plans.par_iter().try_for_each(write_csv)?;
    // written last, as the instrument does when a test ends
    fs::write(
        folder.join(FINAL_INFO),
        pretty_ordered(&raw_info(design, names, plans)),
    )
}

/// Indented JSON in the value's own key order, non-ASCII kept (as the instrument writes it).
fn pretty_ordered(v: &Json) -> String {
    fn go(v: &Json, indent: usize, out: &mut String) {
        let pad = "    ".repeat(indent + 1);
        let end = "    ".repeat(indent);
        match v {
            Json::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad);
                    go(item, indent + 1, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&end);
                out.push(']');
            }
            Json::Object(fields) if !fields.is_empty() => {
                out.push_str("{\n");
                for (i, (k, item)) in fields.iter().enumerate() {
                    out.push_str(&pad);
                    out.push_str(&Json::Str(k.clone()).to_python_compact());
                    out.push_str(": ");
                    go(item, indent + 1, out);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                out.push_str(&end);
                out.push('}');
            }
            other => out.push_str(&other.to_python_compact()),
        }
    }
    let mut out = String::new();
    go(v, 0, &mut out);
    out
}

/// Identity of experiment `k`.
struct Names {
    chip_id: String,
    device_number: String,
    test_id: String,
    batch_id: String,
    file_name: String,
}

fn names(spec: &SynthSpec, k: usize, seed: u64) -> Names {
    let mut state = seed;
    let hash = format!("{:08x}", splitmix64(&mut state) >> 32);
    let (chip, device) = match (&spec.chip_id, spec.devices_per_chip) {
        (Some(_), _) | (None, None) => (k, k),
        (None, Some(n)) => (k / n.max(1), k % n.max(1)),
    };
    let chip_id = spec
        .chip_id
        .clone()
        .unwrap_or_else(|| format!("{}{:04}", spec.chip_prefix, chip + 1));
    let device_number = (device + 1).to_string();
    let test_id = format!("test_20250815134211_{hash}");
    let file_name = [chip_id.as_str(), &device_number, DESCRIPTION, &test_id]
        .map(sanitize)
        .join("-")
        + ".h5";
    Names {
        chip_id,
        device_number,
        test_id,
        batch_id: format!("batch_20250815134210_{hash}"),
        file_name,
    }
}

fn write_experiment(
    design: &Design,
    k: usize,
    out_dir: &Path,
    output: Output,
) -> Result<Generated, ExportError> {
    let spec = design.spec;
    let seed = {
        let mut state = spec.seed ^ (k as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        splitmix64(&mut state)
    };
    let names = names(spec, k, seed);
    let plans = plan_steps(design, seed);
    let path = match output {
        Output::Hdf5 => {
            let path = out_dir.join(&names.file_name);
            let tmp = out_dir.join(format!(".{}.tmp", names.file_name));
            let written = write_h5(design, &names, &plans, out_dir, &tmp)
                .map_err(|e| ExportError::new(&path, format!("writing synthetic file: {e}")))
                .and_then(|()| {
                    fs::rename(&tmp, &path).map_err(|e| {
                        ExportError::new(&path, format!("cannot rename {}: {e}", tmp.display()))
                    })
                });
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            path
        }
        Output::Export => {
            let name = folder_name(&names);
            let path = out_dir.join(&name);
            let tmp = out_dir.join(format!(".{name}.tmp"));
            let _ = fs::remove_dir_all(&tmp);
            let written = write_export(design, &names, &plans, &tmp)
                .and_then(|()| {
                    if path.exists() {
                        fs::remove_dir_all(&path)?;
                    }
                    fs::rename(&tmp, &path)
                })
                .map_err(|e| ExportError::new(&path, format!("writing the export folder: {e}")));
            if let Err(e) = written {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
            path
        }
    };
    let file_name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let truth_path = out_dir.join(format!("{file_name}.truth.json"));
    let truth = truth_json(design, &names, &plans);
    let tmp_truth = out_dir.join(format!(".{file_name}.truth.json.tmp"));
    serde_json::to_vec_pretty(&truth)
        .map_err(io::Error::other)
        .and_then(|bytes| fs::write(&tmp_truth, bytes))
        .and_then(|()| fs::rename(&tmp_truth, &truth_path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp_truth);
            ExportError::new(&truth_path, format!("writing ground truth: {e}"))
        })?;
    Ok(Generated { path, truth_path })
}

// ---------------------------------------------------------------------------------------------
// ground truth

#[derive(Serialize)]
struct TransferTruth<'a> {
    transfer_index: usize,
    data_file: &'a str,
    n_points: usize,
    #[serde(rename = "vth_forward_V")]
    vth_forward: f64,
    #[serde(rename = "vth_reverse_V")]
    vth_reverse: f64,
    #[serde(rename = "ion_A")]
    ion: f64,
    #[serde(rename = "ioff_A")]
    ioff: f64,
    #[serde(rename = "width_V")]
    width: f64,
    #[serde(rename = "gm_max_forward_S")]
    gm_max_forward: f64,
}

#[derive(Serialize)]
struct TransientTruth<'a> {
    transient_index: usize,
    data_file: &'a str,
    n_points: usize,
    n_cycles: usize,
    tau_on_s: f64,
    tau_off_s: f64,
    tau_on_per_cycle_s: Option<&'a [f64]>,
    tau_off_per_cycle_s: Option<&'a [f64]>,
    #[serde(rename = "i_gate_bottom_A")]
    i_gate_bottom: f64,
    #[serde(rename = "i_gate_top_A")]
    i_gate_top: f64,
    on_phase: &'static str,
    #[serde(rename = "vth_V")]
    vth: f64,
    #[serde(rename = "ion_A")]
    ion: f64,
}

fn truth_json(design: &Design, names: &Names, plans: &[StepPlan]) -> serde_json::Value {
    let spec = design.spec;
    let mut transfer = Vec::new();
    let mut transient = Vec::new();
    for p in plans {
        match &p.data {
            StepKind::Transfer { n_points } => transfer.push(TransferTruth {
                transfer_index: transfer.len(),
                data_file: &p.data_file,
                n_points: *n_points,
                vth_forward: p.vth,
                vth_reverse: p.vth + HYSTERESIS_V * design.sign,
                ion: p.ion,
                ioff: IOFF_A,
                width: p.width,
                gm_max_forward: p.ion / (4.0 * p.width),
            }),
            StepKind::Transient {
                cycles,
                tau_on,
                tau_off,
                tau_on_cycles,
                tau_off_cycles,
            } => {
                let i_bottom = design.current(VG_BOTTOM_MV as f64 / 1000.0, p.vth, p.ion, p.width);
                let i_top = design.current(VG_TOP_MV as f64 / 1000.0, p.vth, p.ion, p.width);
                let jittered = spec.tau_jitter > 0.0;
                transient.push(TransientTruth {
                    transient_index: transient.len(),
                    data_file: &p.data_file,
                    n_points: cycles * design.pts_per_cycle,
                    n_cycles: *cycles,
                    tau_on_s: *tau_on,
                    tau_off_s: *tau_off,
                    tau_on_per_cycle_s: jittered.then_some(tau_on_cycles.as_slice()),
                    tau_off_per_cycle_s: jittered.then_some(tau_off_cycles.as_slice()),
                    i_gate_bottom: i_bottom,
                    i_gate_top: i_top,
                    on_phase: if i_top.abs() > i_bottom.abs() {
                        "top"
                    } else {
                        "bottom"
                    },
                    vth: p.vth,
                    ion: p.ion,
                });
            }
        }
    }
    let max_points = transfer.iter().map(|t| t.n_points).max().unwrap_or(0);
    let total_points: usize = transient.iter().map(|t| t.n_points).sum();
    json!({
        "generator": concat!("oect generate ", env!("CARGO_PKG_VERSION")),
        "h5_file": names.file_name,
        "args": spec,
        "layout": {
            "format_version": FORMAT_VERSION,
            "n_transfer_steps": transfer.len(),
            "n_transient_steps": transient.len(),
            "transfer_max_points": max_points,
            "transient_total_points": total_points,
        },
        "units": {"time": "s", "current": "A", "voltage": "V"},
        "conventions": {
            "tau_on": "time constant of the transition towards larger |Id| (turn-on)",
            "tau_off": "time constant of the transition towards smaller |Id| (turn-off)",
            "cycle": "each cycle starts with the bottom phase (gate=vg_bottom) lasting bottom_ms, then the top phase",
            "sample_time": "sample k of a step is taken k*dt after the step start; original_time = (k+1)*dt",
            "current_sign": "N-type positive, P-type negative",
        },
        "transient_timing": {
            "sample_rate_hz": 1000.0 / design.time_step_ms as f64,
            "dt_s": design.dt,
            "bottom_ms": design.bottom_ms,
            "top_ms": design.top_ms,
            "period_s": design.period_s,
            "points_per_cycle": design.pts_per_cycle,
        },
        "transfer_sweep_mV": {"start": design.v0_mv, "end": design.v1_mv, "step": design.step_mv},
        "transfer": transfer,
        "transient": transient,
    })
}
