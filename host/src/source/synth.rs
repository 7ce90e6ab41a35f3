//! Synthetic experiment files behind `oect generate`: layout variant A of the batch format (what
//! the lab's csv2hdf converter writes, see `specs/hdf5_format.md`) filled with a known device
//! model, plus a `<file>.truth.json` sidecar holding the parameters the features should recover.
//!
//! Same model and layout as `tools/make_synthetic_h5.py`, but not its random numbers. The work is
//! linear in the number of samples and streams the transient data to the file in chunk-aligned
//! slabs, so memory stays bounded however many steps a file has.

use std::f64::consts::PI;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};

use hdf5::dataset::FillTime;
use hdf5::types::{
    CompoundField, CompoundType, FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode,
};
use hdf5::{Dataset, File, Group, H5Type, Location};
use serde::Serialize;
use serde_json::json;

use super::reader::{FixedBytes, SourceError};

const FORMAT_VERSION: &str = "2.0_direct_new_storage";
const DESCRIPTION: &str = "synthetic";
const TEST_UNIT_ID: &str = "Test Unit A1";
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
/// Transient points buffered before a write (rounded to whole chunks): ~6 MB for three rows.
const SLAB_POINTS: usize = 1 << 18;

/// Device polarity: N-type current is positive and rises with Vg, P-type is negative and rises
/// (in magnitude) as Vg falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeviceType {
    N,
    P,
}

/// What to generate. Experiment k (0-based) gets chip `"<chip_prefix><k+1:04>"` (or
/// `chip_id` when set) and device number `"<k+1>"`, so the defaults reproduce the
/// predecessor script's `#SYN0001`, device `1`.
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
        }
    }
}

/// One written experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub path: PathBuf,
    pub truth_path: PathBuf,
}

/// Writes `spec.n_experiments` files (and their truth sidecars) into `out_dir`.
pub fn generate(spec: &SynthSpec, out_dir: &Path) -> Result<Vec<Generated>, SourceError> {
    let design = Design::new(spec).map_err(|m| SourceError::new(out_dir, m))?;
    fs::create_dir_all(out_dir)
        .map_err(|e| SourceError::new(out_dir, format!("cannot create directory: {e}")))?;
    (0..spec.n_experiments)
        .map(|k| write_experiment(&design, k, out_dir))
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transfer,
    Transient,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Transfer => "transfer",
            Kind::Transient => "transient",
        }
    }

    /// The instrument's (Chinese) label in `path_readable`.
    fn label(self) -> &'static str {
        match self {
            Kind::Transfer => "转移特性",
            Kind::Transient => "瞬态特性",
        }
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
enum StepData {
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
    data: StepData,
    noise_seed: u64,
}

impl StepPlan {
    fn kind(&self) -> Kind {
        match self.data {
            StepData::Transfer { .. } => Kind::Transfer,
            StepData::Transient { .. } => Kind::Transient,
        }
    }

    fn n_points(&self, design: &Design) -> usize {
        match self.data {
            StepData::Transfer { n_points } => n_points,
            StepData::Transient { cycles, .. } => cycles * design.pts_per_cycle,
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
                    (StepData::Transfer { n_points }, duration)
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
                        StepData::Transient {
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

/// The cleaned `test_info.json`, keys in the order the lab's cleaning pass leaves them.
#[derive(Serialize)]
struct TestInfo<'a> {
    sync_mode: bool,
    batch_id: &'a str,
    test_id: &'a str,
    name: &'a str,
    description: &'a str,
    test_unit_id: &'a str,
    chip_id: &'a str,
    device_number: &'a str,
    port: &'a str,
    baudrate: i64,
    created_at: &'a str,
    completed_at: &'a str,
    status: &'a str,
    total_steps: usize,
    completed_steps: usize,
    completion_percentage: f64,
    steps: Vec<StepJson<'a>>,
    transimpedance_ohms: f64,
    transient_packet_size: i64,
    baseline_current: f64,
}

/// Python's `json.dumps` defaults: `", "` and `": "` separators, non-ASCII as `\uXXXX`.
struct PyJsonFormatter;

impl serde_json::ser::Formatter for PyJsonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_array_value(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut plain = 0;
        for (i, ch) in fragment.char_indices().filter(|(_, c)| !c.is_ascii()) {
            w.write_all(&fragment.as_bytes()[plain..i])?;
            for unit in ch.encode_utf16(&mut [0; 2]) {
                write!(w, "\\u{unit:04x}")?;
            }
            plain = i + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[plain..])
    }
}

fn python_json<T: Serialize>(value: &T) -> Result<String, String> {
    let mut ser = serde_json::Serializer::with_formatter(Vec::new(), PyJsonFormatter);
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    String::from_utf8(ser.into_inner()).map_err(|e| e.to_string())
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

/// The predecessor's name sanitising: path-hostile characters to `_`, whitespace runs to one
/// space, trimmed, at most 120 characters, `NA` when empty.
fn sanitize(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return "NA".to_owned();
    }
    // trimmed first, so collapsing whitespace runs never leaves a space at either end
    let replaced: String = s
        .chars()
        .map(|c| {
            if "\\/:*?\"<>|\r\n\t".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let collapsed = replaced.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .chars()
        .take(120)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Where a step sits in the workflow, as the instrument records it.
fn workflow_info(design: &Design, plan: &StepPlan) -> WorkflowInfo {
    let spec = design.spec;
    let top_total = if spec.final_transfer && spec.transfer {
        2
    } else {
        1
    };
    let label = plan.kind().label();
    match plan.iteration {
        Some(it) => WorkflowInfo {
            step_index: plan.inner_pos + 1,
            total_steps: design.inner.len(),
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
// step_info_table

/// In-memory row of a step table. HDF5 converts it to the file's packed compound by field name:
/// numbers to the column's int64/float64, strings truncated to the column width, and
/// `start/end_data_index` dropped for the transfer table, whose file type lacks them.
#[derive(H5Type, Clone, Copy)]
#[repr(C)]
struct TableRow {
    step_index: f64,
    #[hdf5(rename = "type")]
    kind: FixedBytes<16, false>,
    start_time: FixedBytes<32, false>,
    end_time: FixedBytes<32, false>,
    reason: FixedBytes<16, false>,
    data_file: FixedBytes<64, false>,
    workflow_step_index: f64,
    workflow_total_steps: f64,
    workflow_path_readable: FixedBytes<256, false>,
    workflow_iteration_info_type: FixedBytes<16, false>,
    workflow_iteration_info_total: f64,
    workflow_iteration_info_current: f64,
    start_data_index: f64,
    end_data_index: f64,
}

fn fixed<const N: usize>(s: &str) -> FixedBytes<N, false> {
    let mut buf = [0; N];
    let n = s.len().min(N);
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    FixedBytes(buf)
}

/// The text columns of one row, kept to size the file's string columns.
struct RowText {
    kind: &'static str,
    start_time: String,
    end_time: String,
    data_file: String,
    path_readable: String,
    in_loop: bool,
}

/// The file type of a step table, as pandas/numpy infer it from the row dicts: integer columns
/// with a missing value become float64, text becomes `S<max(10, longest in characters)>`.
fn table_type(texts: &[RowText], with_indices: bool) -> TypeDescriptor {
    let width = |f: &dyn Fn(&RowText) -> usize| texts.iter().map(f).max().unwrap_or(0).max(10);
    let all_in_loop = texts.iter().all(|t| t.in_loop);
    let iteration = if all_in_loop {
        TypeDescriptor::Integer(IntSize::U8)
    } else {
        TypeDescriptor::Float(FloatSize::U8)
    };
    let int = TypeDescriptor::Integer(IntSize::U8);
    let kind_width = width(&|t: &RowText| t.kind.len());
    // a row outside the loop has no iteration info: pandas sees NaN, printed "nan"
    let loop_width = width(&|t: &RowText| if t.in_loop { "loop".len() } else { "nan".len() });
    let mut fields = vec![
        ("step_index", int.clone()),
        ("type", TypeDescriptor::FixedAscii(kind_width)),
        (
            "start_time",
            TypeDescriptor::FixedAscii(width(&|t| t.start_time.chars().count())),
        ),
        (
            "end_time",
            TypeDescriptor::FixedAscii(width(&|t| t.end_time.chars().count())),
        ),
        ("reason", TypeDescriptor::FixedAscii(kind_width)),
        (
            "data_file",
            TypeDescriptor::FixedAscii(width(&|t| t.data_file.chars().count())),
        ),
        ("workflow_step_index", int.clone()),
        ("workflow_total_steps", int.clone()),
        (
            "workflow_path_readable",
            TypeDescriptor::FixedAscii(width(&|t| t.path_readable.chars().count())),
        ),
        (
            "workflow_iteration_info_type",
            TypeDescriptor::FixedAscii(loop_width),
        ),
        ("workflow_iteration_info_total", iteration.clone()),
        ("workflow_iteration_info_current", iteration),
    ];
    if with_indices {
        fields.push(("start_data_index", int.clone()));
        fields.push(("end_data_index", int));
    }
    let mut offset = 0;
    let fields = fields
        .into_iter()
        .enumerate()
        .map(|(index, (name, ty))| {
            let field = CompoundField {
                name: name.to_owned(),
                offset,
                index,
                ty,
            };
            offset += field.ty.size();
            field
        })
        .collect();
    TypeDescriptor::Compound(CompoundType {
        fields,
        size: offset,
    })
}

// ---------------------------------------------------------------------------------------------
// HDF5 writing

fn h5err(message: impl Into<String>) -> hdf5::Error {
    hdf5::Error::from(message.into())
}

fn put_utf8(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v: VarLenUnicode = value
        .parse()
        .map_err(|e| h5err(format!("attribute {name}: {e}")))?;
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&v)
}

/// Python `bytes` attributes: variable-length with the ASCII flag.
fn put_ascii(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v = VarLenAscii::from_ascii(value).map_err(|e| h5err(format!("attribute {name}: {e}")))?;
    loc.new_attr::<VarLenAscii>().create(name)?.write_scalar(&v)
}

fn put_scalar<T: H5Type>(loc: &Location, name: &str, value: &T) -> hdf5::Result<()> {
    loc.new_attr::<T>().create(name)?.write_scalar(value)
}

fn put_utf8_list(loc: &Location, name: &str, values: &[&str]) -> hdf5::Result<()> {
    let values = values
        .iter()
        .map(|v| {
            v.parse::<VarLenUnicode>()
                .map_err(|e| h5err(format!("attribute {name}: {e}")))
        })
        .collect::<hdf5::Result<Vec<_>>>()?;
    loc.new_attr::<VarLenUnicode>()
        .shape(values.len())
        .create(name)?
        .write_raw(&values)
}

/// Chunk shape as h5py guesses it (so files match the predecessor's): halve the axes in turn
/// until the chunk is near a target that grows with the dataset size (8 KiB … 1 MiB).
fn guess_chunk(shape: &[usize], type_size: usize) -> Vec<usize> {
    const BASE: f64 = 16.0 * 1024.0;
    const MIN: f64 = 8.0 * 1024.0;
    const MAX: f64 = 1024.0 * 1024.0;
    let mut chunk: Vec<f64> = shape.iter().map(|&d| d.max(1) as f64).collect();
    let bytes = |c: &[f64]| c.iter().product::<f64>() * type_size as f64;
    let target = (BASE * 2f64.powf((bytes(&chunk) / (1024.0 * 1024.0)).log10())).clamp(MIN, MAX);
    let mut axis = 0;
    loop {
        let b = bytes(&chunk);
        let near = b < target || (b - target).abs() / target < 0.5;
        if (near && b < MAX) || chunk.iter().product::<f64>() <= 1.0 {
            break;
        }
        let i = axis % chunk.len();
        chunk[i] = (chunk[i] / 2.0).ceil();
        axis += 1;
    }
    chunk.into_iter().map(|c| c as usize).collect()
}

/// A chunked dataset with the predecessor's filters: shuffle → deflate(4) → fletcher32.
fn filtered_dataset(
    group: &Group,
    name: &str,
    dtype: TypeDescriptor,
    shape: &[usize],
) -> hdf5::Result<Dataset> {
    let chunk = guess_chunk(shape, dtype.size());
    group
        .new_dataset_builder()
        .empty_as(dtype)
        .packed(true)
        .shape(shape.to_vec())
        .chunk(chunk)
        .shuffle()
        .deflate(4)
        .fletcher32()
        .fill_time(FillTime::IfSet)
        .create(name)
}

fn labels(ds: &Dataset, dims: &[&str], types: &[&str], description: &str) -> hdf5::Result<()> {
    put_utf8_list(ds, "dimension_labels", dims)?;
    put_utf8_list(ds, "data_type_labels", types)?;
    put_utf8(ds, "description", description)
}

fn write_table(
    group: &Group,
    rows: &[TableRow],
    texts: &[RowText],
    with_indices: bool,
) -> hdf5::Result<()> {
    let dtype = table_type(texts, with_indices);
    let TypeDescriptor::Compound(compound) = &dtype else {
        return Err(h5err("step table type is not a compound"));
    };
    let columns: Vec<String> = compound.fields.iter().map(|f| f.name.clone()).collect();
    let ds = filtered_dataset(group, "step_info_table", dtype, &[rows.len()])?;
    ds.write_raw(rows)?;
    put_utf8(
        &ds,
        "description",
        "Step information table stored as structured array",
    )?;
    put_utf8_list(
        &ds,
        "columns",
        &columns.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// `3 × n` points, row-major, for one write.
struct Slab {
    n: usize,
    data: Vec<f64>,
}

/// Takes the leading whole chunks of the buffered rows (everything when `all`).
fn take_slab(rows: &mut [Vec<f64>; 3], chunk_len: usize, all: bool) -> Slab {
    let len = rows[0].len();
    let n = if all { len } else { len - len % chunk_len };
    let mut data = Vec::with_capacity(3 * n);
    for row in rows.iter_mut() {
        data.extend(row.drain(..n));
    }
    Slab { n, data }
}

/// Generates the transient rows step by step and hands them on in slabs of whole chunks, so
/// no chunk is written twice and memory stays at a few slabs. Runs beside the writer because
/// deflate, under HDF5's global lock, takes about twice as long as generating the signal.
fn transient_slabs(design: &Design, plans: &[&StepPlan], chunk_len: usize, tx: SyncSender<Slab>) {
    let spec = design.spec;
    let slab_len = (SLAB_POINTS / chunk_len).max(1) * chunk_len;
    let mut rows = [(); 3].map(|()| Vec::with_capacity(2 * slab_len));
    let mut offset = 0.0;
    let mut clean = Vec::new();
    for p in plans {
        let StepData::Transient {
            tau_on_cycles,
            tau_off_cycles,
            ..
        } = &p.data
        else {
            continue;
        };
        let levels = (
            design.current(VG_BOTTOM_MV as f64 / 1000.0, p.vth, p.ion, p.width),
            design.current(VG_TOP_MV as f64 / 1000.0, p.vth, p.ion, p.width),
        );
        clean.clear();
        relax_square_wave(
            design,
            p.n_points(design),
            levels,
            (tau_on_cycles, tau_off_cycles),
            &mut clean,
        );
        let mut rng = Rng::new(p.noise_seed);
        let [continuous, original, current] = &mut rows;
        for (k, &c) in clean.iter().enumerate() {
            // csv2hdf builds continuous_time with a 1 ms step whatever the real time step
            // (it looks for `parameters`, the instrument writes `params`)
            continuous.push(k as f64 * 0.001 + offset);
            original.push(round3((k + 1) as f64 * design.dt));
            let noisy = c + spec.noise_abs * rng.normal() + spec.noise_rel * c.abs() * rng.normal();
            current.push(round_g(noisy));
        }
        offset = continuous.last().copied().unwrap_or(offset) + 0.001;
        // a failed send means the writer gave up: stop generating
        if rows[0].len() >= slab_len && tx.send(take_slab(&mut rows, chunk_len, false)).is_err() {
            return;
        }
    }
    if !rows[0].is_empty() {
        // the writer notices missing points itself, so a failed send needs no handling
        let _ = tx.send(take_slab(&mut rows, chunk_len, true));
    }
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
    let chip_id = spec
        .chip_id
        .clone()
        .unwrap_or_else(|| format!("{}{:04}", spec.chip_prefix, k + 1));
    let device_number = (k + 1).to_string();
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

fn write_experiment(design: &Design, k: usize, out_dir: &Path) -> Result<Generated, SourceError> {
    let spec = design.spec;
    let seed = {
        let mut state = spec.seed ^ (k as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        splitmix64(&mut state)
    };
    let names = names(spec, k, seed);
    let path = out_dir.join(&names.file_name);
    let truth_path = out_dir.join(format!("{}.truth.json", names.file_name));
    let plans = plan_steps(design, seed);

    let tmp = out_dir.join(format!(".{}.tmp", names.file_name));
    let written = write_h5(design, &names, &plans, &tmp, out_dir)
        .map_err(|e| SourceError::new(&path, format!("writing synthetic file: {e}")))
        .and_then(|()| {
            fs::rename(&tmp, &path).map_err(|e| {
                SourceError::new(&path, format!("cannot rename {}: {e}", tmp.display()))
            })
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }

    let truth = truth_json(design, &names, &plans);
    let tmp_truth = out_dir.join(format!(".{}.truth.json.tmp", names.file_name));
    serde_json::to_vec_pretty(&truth)
        .map_err(io::Error::other)
        .and_then(|bytes| fs::write(&tmp_truth, bytes))
        .and_then(|()| fs::rename(&tmp_truth, &truth_path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp_truth);
            SourceError::new(&truth_path, format!("writing ground truth: {e}"))
        })?;
    Ok(Generated { path, truth_path })
}

fn write_h5(
    design: &Design,
    names: &Names,
    plans: &[StepPlan],
    tmp: &Path,
    out_dir: &Path,
) -> hdf5::Result<()> {
    let file = File::create(tmp)?;
    let completed_at = iso_time(plans.last().map_or(CLOCK_START_US, |p| p.end_us));
    write_root_attrs(&file, names, plans.len(), &completed_at, out_dir)?;
    write_raw(&file, design, names, plans, &completed_at)?;
    let transfer: Vec<&StepPlan> = plans
        .iter()
        .filter(|p| p.kind() == Kind::Transfer)
        .collect();
    if !transfer.is_empty() {
        write_transfer(&file.create_group("transfer")?, design, &transfer)?;
    }
    let transient: Vec<&StepPlan> = plans
        .iter()
        .filter(|p| p.kind() == Kind::Transient)
        .collect();
    if !transient.is_empty() {
        write_transient(&file.create_group("transient")?, design, &transient)?;
    }
    file.close()
}

/// The unit's name as the instrument builds it.
fn unit_name() -> String {
    format!("{TEST_UNIT_ID}_20250815134211")
}

/// Root attributes: the format tag, the cleaned test_info scalars (text as Python bytes, so
/// the ASCII flag), then the converter's provenance strings (UTF-8), which replace chip,
/// device, description and test id with their sanitised forms.
fn write_root_attrs(
    file: &File,
    names: &Names,
    n_steps: usize,
    completed_at: &str,
    out_dir: &Path,
) -> hdf5::Result<()> {
    put_utf8(file, "format_version", FORMAT_VERSION)?;
    put_scalar(file, "sync_mode", &true)?;
    put_ascii(file, "batch_id", &names.batch_id)?;
    put_ascii(file, "name", &unit_name())?;
    put_ascii(file, "test_unit_id", TEST_UNIT_ID)?;
    put_ascii(file, "port", "COM7")?;
    put_scalar(file, "baudrate", &512_000_i64)?;
    put_ascii(file, "created_at", CREATED_AT)?;
    put_ascii(file, "completed_at", completed_at)?;
    put_ascii(file, "status", "completed")?;
    put_scalar(file, "total_steps", &(n_steps as i64))?;
    put_scalar(file, "completed_steps", &(n_steps as i64))?;
    put_scalar(file, "completion_percentage", &100.0_f64)?;
    put_scalar(file, "transimpedance_ohms", &TRANSIMPEDANCE_OHMS)?;
    put_scalar(file, "transient_packet_size", &7_i64)?;
    put_scalar(file, "baseline_current", &0.0_f64)?;
    // a fictitious raw-export folder next to the output
    let folder = format!(
        "{}_20250815134211_{}_20250815-134211_workflow_{}",
        TEST_UNIT_ID.replace(' ', "_"),
        sanitize(DESCRIPTION),
        names.test_id
    );
    let folder_path = std::path::absolute(out_dir)
        .unwrap_or_else(|_| out_dir.to_path_buf())
        .join("synthetic")
        .join(&folder);
    put_utf8(file, "source_folder_name", &folder)?;
    put_utf8(file, "source_folder_path", &folder_path.to_string_lossy())?;
    put_utf8(file, "source_json_name", "test_info.json")?;
    put_utf8(file, "export_time_utc", EXPORT_TIME)?;
    put_utf8(file, "chip_id", &sanitize(&names.chip_id))?;
    put_utf8(file, "device_number", &sanitize(&names.device_number))?;
    put_utf8(file, "description", &sanitize(DESCRIPTION))?;
    put_utf8(file, "test_id", &sanitize(&names.test_id))?;
    put_utf8(file, "output_filename", &names.file_name)
}

/// `raw/json` (the cleaned test_info, Python-style JSON, ASCII flag) and `raw/workflow`.
fn write_raw(
    file: &File,
    design: &Design,
    names: &Names,
    plans: &[StepPlan],
    completed_at: &str,
) -> hdf5::Result<()> {
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
    let unit_name = unit_name();
    let info = TestInfo {
        sync_mode: true,
        batch_id: &names.batch_id,
        test_id: &names.test_id,
        name: &unit_name,
        description: DESCRIPTION,
        test_unit_id: TEST_UNIT_ID,
        chip_id: &names.chip_id,
        device_number: &names.device_number,
        port: "COM7",
        baudrate: 512_000,
        created_at: CREATED_AT,
        completed_at,
        status: "completed",
        total_steps: plans.len(),
        completed_steps: plans.len(),
        completion_percentage: 100.0,
        steps,
        transimpedance_ohms: TRANSIMPEDANCE_OHMS,
        transient_packet_size: 7,
        baseline_current: 0.0,
    };
    let raw = file.create_group("raw")?;
    let json = python_json(&info).map_err(h5err)?;
    let json = VarLenAscii::from_ascii(&json).map_err(|e| h5err(format!("raw/json: {e}")))?;
    raw.new_dataset::<VarLenAscii>()
        .fill_time(FillTime::Alloc)
        .create("json")?
        .write_scalar(&json)?;
    let workflow = serde_json::to_string(&workflow(design)).map_err(|e| h5err(e.to_string()))?;
    let workflow: VarLenUnicode = workflow
        .parse()
        .map_err(|e| h5err(format!("raw/workflow: {e}")))?;
    raw.new_dataset::<VarLenUnicode>()
        .fill_time(FillTime::Alloc)
        .create("workflow")?
        .write_scalar(&workflow)
}

/// A step's `step_info_table` row (`index` within its kind) and the text that sizes the columns.
fn table_row(design: &Design, p: &StepPlan, index: usize) -> (TableRow, RowText) {
    let info = workflow_info(design, p);
    let text = RowText {
        kind: p.kind().name(),
        start_time: iso_time(p.start_us),
        end_time: iso_time(p.end_us),
        data_file: p.data_file.clone(),
        path_readable: info.path_readable,
        in_loop: info.iteration_info.is_some(),
    };
    let (iter_total, iter_current, iter_type) = match &info.iteration_info {
        Some(it) => (it.total as f64, it.current as f64, it.kind),
        None => (f64::NAN, f64::NAN, ""),
    };
    let row = TableRow {
        step_index: index as f64,
        kind: fixed(text.kind),
        start_time: fixed(&text.start_time),
        end_time: fixed(&text.end_time),
        reason: fixed(text.kind),
        data_file: fixed(&text.data_file),
        workflow_step_index: info.step_index as f64,
        workflow_total_steps: info.total_steps as f64,
        workflow_path_readable: fixed(&text.path_readable),
        workflow_iteration_info_type: fixed(iter_type),
        workflow_iteration_info_total: iter_total,
        workflow_iteration_info_current: iter_current,
        start_data_index: f64::NAN,
        end_data_index: f64::NAN,
    };
    (row, text)
}

/// The transfer group: small, so generated and written in one piece.
fn write_transfer(group: &Group, design: &Design, plans: &[&StepPlan]) -> hdf5::Result<()> {
    let max_points = plans.iter().map(|p| p.n_points(design)).max().unwrap_or(0);
    let mut data = vec![f64::NAN; plans.len() * 2 * max_points];
    let (mut vg, mut id) = (
        Vec::with_capacity(max_points),
        Vec::with_capacity(max_points),
    );
    let (mut rows, mut texts) = (Vec::new(), Vec::new());
    for (i, (p, step)) in plans
        .iter()
        .zip(data.chunks_exact_mut(2 * max_points))
        .enumerate()
    {
        vg.clear();
        id.clear();
        transfer_samples(design, p, &mut vg, &mut id);
        step[..vg.len()].copy_from_slice(&vg);
        step[max_points..max_points + id.len()].copy_from_slice(&id);
        let (row, text) = table_row(design, p, i);
        rows.push(row);
        texts.push(text);
    }
    let shape = [plans.len(), 2, max_points];
    let ds = filtered_dataset(group, "measurement_data", f64::type_descriptor(), &shape)?;
    ds.write_raw(&data)?;
    labels(
        &ds,
        &["step_index", "data_type", "data_point"],
        &["Vg", "Id"],
        "3D transfer measurement data: [step_index, data_type, data_point]",
    )?;
    write_table(group, &rows, &texts, false)
}

/// The transient group: the signal is generated on a second thread and streamed to the file.
fn write_transient(group: &Group, design: &Design, plans: &[&StepPlan]) -> hdf5::Result<()> {
    let (mut rows, mut texts) = (Vec::new(), Vec::new());
    let mut total = 0;
    for (i, p) in plans.iter().enumerate() {
        let (mut row, text) = table_row(design, p, i);
        row.start_data_index = total as f64;
        total += p.n_points(design);
        row.end_data_index = total as f64;
        rows.push(row);
        texts.push(text);
    }
    let shape = [3, total];
    let chunk_len = guess_chunk(&shape, 8)[1];
    let ds = filtered_dataset(group, "measurement_data", f64::type_descriptor(), &shape)?;
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(2);
        scope.spawn(move || transient_slabs(design, plans, chunk_len, tx));
        let mut written = 0;
        // returning early drops `rx`, which stops the producer
        for slab in rx {
            let view = ndarray::ArrayView2::from_shape((3, slab.n), &slab.data)
                .map_err(|e| h5err(e.to_string()))?;
            ds.write_slice(view, (.., written..written + slab.n))?;
            written += slab.n;
        }
        if written == total {
            Ok(())
        } else {
            Err(h5err(format!(
                "generated {written} transient points instead of {total}"
            )))
        }
    })?;
    labels(
        &ds,
        &["data_type", "data_point"],
        &["continuous_time", "original_time", "drain_current"],
        "2D transient measurement data: [data_type, data_point]",
    )?;
    write_table(group, &rows, &texts, true)
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
            StepData::Transfer { n_points } => transfer.push(TransferTruth {
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
            StepData::Transient {
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
