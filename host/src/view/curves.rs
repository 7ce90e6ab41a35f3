//! The raw curves behind the experiment figures, read through [`crate::source`]: every k-th
//! transfer sweep (and the last one) for the transfer evolution, and the first, middle and
//! last transient step, cut to a few pulse cycles, for the snapshots.

use chrono::NaiveDateTime;
use oect_plugin_api::abi::Channel;

use crate::source::{Experiment, SourceError, StepBlock};

/// Transfer sweeps drawn per experiment: enough to see the drift, few enough to tell apart.
pub const TRANSFER_CURVES: usize = 40;
/// Pulse cycles shown per transient snapshot.
pub const SNAPSHOT_CYCLES: usize = 5;

/// One drawn step: its index in the file (0-based) and its samples.
#[derive(Debug, Clone)]
pub struct Curve {
    pub step: usize,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// What the figures of one experiment file show.
#[derive(Debug, Clone)]
pub struct ExperimentCurves {
    pub chip_id: String,
    pub device_id: String,
    /// The file name without `.h5`.
    pub name: String,
    /// Transfer steps in the file and the drawn ones (Vg in V, Id in A).
    pub transfer_steps: usize,
    pub transfer: Vec<Curve>,
    /// Transient steps in the file and the snapshots (time since the step's start in s, Id in A).
    pub transient_steps: usize,
    pub transient: Vec<Curve>,
    /// Start of the first and end of the last recorded step.
    pub span: Option<(NaiveDateTime, NaiveDateTime)>,
}

/// Step indices `0, k, 2k, …` and the last, at most `max + 1` of them.
pub fn every_kth(n: usize, max: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let k = n.div_ceil(max.max(1));
    let mut steps: Vec<usize> = (0..n).step_by(k).collect();
    if steps.last() != Some(&(n - 1)) {
        steps.push(n - 1);
    }
    steps
}

/// First, middle and last of `n` steps (fewer when `n < 3`).
pub fn first_middle_last(n: usize) -> Vec<usize> {
    let mut s = match n {
        0 => vec![],
        _ => vec![0, (n - 1) / 2, n - 1],
    };
    s.dedup();
    s
}

/// The one step of `block` on `channel`, which the block was read with.
fn samples(block: &StepBlock, channel: Channel) -> &[f64] {
    block.samples(channel, 0).expect("read with this channel")
}

/// Reads the curves of `exp`; an unreadable step is an error naming the file.
pub fn read(exp: &Experiment) -> Result<ExperimentCurves, SourceError> {
    let name = exp
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let transfer_steps = exp.transfer.as_ref().map_or(0, |t| t.n_steps);
    let mut transfer = Vec::new();
    for step in every_kth(transfer_steps, TRANSFER_CURVES) {
        let block = exp.read_transfer(step..step + 1)?;
        let (x, y) = (samples(&block, Channel::Vg), samples(&block, Channel::Id));
        transfer.push(Curve {
            step,
            x: x.to_vec(),
            y: y.to_vec(),
        });
    }
    let transient_steps = exp.transient.as_ref().map_or(0, |t| t.steps.len());
    let mut transient = Vec::new();
    for step in first_middle_last(transient_steps) {
        let block = exp.read_transient(step..step + 1, &[Channel::Time, Channel::Current])?;
        let (t, i) = (
            samples(&block, Channel::Time),
            samples(&block, Channel::Current),
        );
        let t0 = t.first().copied().unwrap_or(0.0);
        // A few cycles from the recorded period; without one, the first tenth of the step.
        let window = exp
            .transient_sampling(step)
            .map(|s| s.period * SNAPSHOT_CYCLES as f64);
        let keep = match window {
            Some(w) => t.iter().take_while(|&&v| v - t0 < w).count(),
            None => t.len().div_ceil(10),
        };
        transient.push(Curve {
            step,
            x: t[..keep].iter().map(|v| v - t0).collect(),
            y: i[..keep].to_vec(),
        });
    }
    let records = exp.transfer_steps.iter().chain(&exp.transient_steps);
    let starts = records.clone().filter_map(|r| r.start_time).min();
    let ends = records.filter_map(|r| r.end_time.or(r.start_time)).max();
    Ok(ExperimentCurves {
        chip_id: exp.chip_id.clone(),
        device_id: exp.device_id.clone(),
        name,
        transfer_steps,
        transfer,
        transient_steps,
        transient,
        span: starts.zip(ends),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_choices() {
        assert_eq!(every_kth(0, 40), Vec::<usize>::new());
        assert_eq!(every_kth(3, 40), vec![0, 1, 2]);
        let s = every_kth(5001, 40);
        assert_eq!((s[0], s[1], *s.last().unwrap()), (0, 126, 5000));
        assert!(s.len() <= 41);
        assert_eq!(first_middle_last(1), vec![0]);
        assert_eq!(first_middle_last(2), vec![0, 1]);
        assert_eq!(first_middle_last(5000), vec![0, 2499, 4999]);
    }
}
