//! The worker protocol: what the supervisor and a worker process say to each other.
//!
//! Language-neutral on purpose (a Python worker speaks it too; `docs/WORKER_PROTOCOL.md`
//! is the reference). The channel is a Unix socketpair that the worker finds on its
//! standard input (fd 0) and moves away from it before anything else runs, so neither a
//! plugin's `print` nor a `read` from stdin can touch it. Every message is one frame:
//!
//! ```text
//! u32 LE  header length H
//! u32 LE  payload length P (a multiple of 8)
//! H bytes header: one JSON object with a "type" field
//! P bytes payload: little-endian f64 values (only `part` frames carry any)
//! ```
//!
//! ([`crate::frame`] reads and writes them; Python plugin children speak the same frames.)

use std::ops::Range;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use oect_plugin_api::FailureKind;

use super::compute::{Failure, Part};
pub use crate::frame::{read_frame, write_frame};
use crate::graph::Source;
use crate::source::{ExperimentInfo, Overview};

/// A config as the worker rebuilds it: the exact text, so the graph and its hash agree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigText {
    pub name: String,
    pub origin: String,
    pub text: String,
}

/// One range of steps of a compute request. `index` is the supervisor's chunk number
/// within `source`; replies name ranges by their position in the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRange {
    #[serde(with = "source_name")]
    pub source: Source,
    pub index: usize,
    pub start: usize,
    pub end: usize,
}

impl StepRange {
    pub fn steps(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// A data source by its name (`transfer`, `transient`).
mod source_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::graph::Source;

    pub fn serialize<S: Serializer>(source: &Source, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(source.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let name = String::deserialize(d)?;
        Source::parse(&name).ok_or_else(|| D::Error::custom(format!("no data source '{name}'")))
    }
}

/// A (node, step) call the worker must not make; it records a failure of `kind` with
/// `message` for that step instead (a known casualty, or one that already cost a worker in
/// this run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skip {
    pub node: usize,
    pub step: usize,
    #[serde(with = "crate::sink::failure_kind")]
    pub kind: FailureKind,
    pub message: String,
}

/// Supervisor → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First message. Without a config the worker only opens and inspects files.
    Init {
        config: Option<ConfigText>,
        /// Plugin libraries to load, in the supervisor's discovery order.
        plugins: Vec<PathBuf>,
        /// The graph hash the supervisor computed; the worker refuses to run on another.
        content_hash: Option<String>,
        /// The supervisor's hashes of the plugin libraries, with the identity of each file
        /// (device, inode, size, modification time): the worker hashes only a file whose
        /// identity differs.
        #[serde(default)]
        library_hashes: Vec<crate::plugins::LibraryHash>,
        /// Seconds one extractor call may take (`None`: no limit).
        step_timeout: Option<f64>,
        /// Seconds opening a file or reading one range of steps may take.
        read_timeout: Option<f64>,
    },
    /// Open a file and reply `opened` (or `open_failed`); it stays open for `compute`.
    Open { task: u64, path: PathBuf },
    /// Read and inspect a file; reply `inspected` (or `open_failed`).
    Inspect { task: u64, path: PathBuf },
    /// Read `ranges` of `path` (opening it if needed) and run every per-step feature on
    /// them, range by range. `isolate`: report each step as it is computed (`step` before
    /// each call, one-step `part`s), so that a crash can be pinned on one call.
    Compute {
        task: u64,
        path: PathBuf,
        /// `chip-device`, as extractors see it in their step context.
        experiment: String,
        ranges: Vec<StepRange>,
        isolate: bool,
        skip: Vec<Skip>,
    },
    /// Forget an open file.
    Close { path: PathBuf },
}

/// What a thread of the worker is doing, for `begin` markers and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Open,
    Read,
    Compute,
    Call,
}

/// Worker → supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Ready {
        pid: u32,
    },
    /// The worker could not start (plugins, config); it exits after this.
    Fatal {
        message: String,
    },
    Opened {
        task: u64,
        info: ExperimentInfo,
        seconds: f64,
    },
    Inspected {
        task: u64,
        overview: Overview,
    },
    /// Opening failed with an ordinary error (not a crash).
    OpenFailed {
        task: u64,
        message: String,
    },
    /// A thread starts `what` on range `range` of `task` (`None` for an open).
    Begin {
        task: u64,
        range: Option<usize>,
        what: Activity,
    },
    /// Range `range` of `task` is read; computing it comes next. `fallbacks`: step reads
    /// the HDF5 library did instead of the parallel chunk reader (optional, 0).
    ReadDone {
        task: u64,
        range: usize,
        seconds: f64,
        #[serde(default)]
        fallbacks: usize,
    },
    /// Reading range `range` failed; `fallbacks` as in `read_done` (a chunk the parallel
    /// reader refused is read again by HDF5, which then reports the damage).
    ReadFailed {
        task: u64,
        range: usize,
        message: String,
        #[serde(default)]
        fallbacks: usize,
    },
    /// Isolated tasks only: about to call `node` on `step`.
    Step {
        task: u64,
        range: usize,
        node: usize,
        step: usize,
    },
    /// Values of `node` for steps `first..first + shapes.len()` of range `range`; the
    /// payload holds the values of the steps that did not fail, in order, each of
    /// `product(shape)` values.
    Part {
        task: u64,
        range: usize,
        node: usize,
        first: usize,
        shapes: Vec<Option<Vec<u64>>>,
        failures: Vec<Failure>,
        /// Time spent computing it.
        seconds: f64,
    },
    /// Every range of `task` is computed.
    Done {
        task: u64,
    },
    /// Sent by the worker's watchdog just before the worker ends itself.
    Timeout {
        task: u64,
        what: Activity,
        range: Option<usize>,
        node: Option<usize>,
        step: Option<usize>,
        seconds: f64,
    },
}

/// The `part` reply for `part` and its payload.
pub fn part_reply(
    task: u64,
    range: usize,
    node: usize,
    part: Part,
    seconds: f64,
) -> (Reply, Vec<f64>) {
    (
        Reply::Part {
            task,
            range,
            node,
            first: part.first,
            shapes: part.shapes,
            failures: part.failures,
            seconds,
        },
        part.values,
    )
}

/// Rebuilds a [`Part`] from a `part` reply; `None` if the payload does not match the shapes.
pub fn part_from(
    first: usize,
    shapes: Vec<Option<Vec<u64>>>,
    failures: Vec<Failure>,
    values: Vec<f64>,
) -> Option<Part> {
    let mut offsets = Vec::with_capacity(shapes.len() + 1);
    offsets.push(0usize);
    for s in &shapes {
        let n = s.as_ref().map_or(0, |s| s.iter().product::<u64>() as usize);
        offsets.push(offsets.last().expect("non-empty") + n);
    }
    (*offsets.last().expect("non-empty") == values.len()).then_some(Part {
        first,
        values,
        offsets,
        shapes,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_payload() {
        let part = Part {
            first: 7,
            values: vec![1.5, f64::NAN, -0.0, 4.0, 5.0],
            offsets: vec![0, 1, 1, 5],
            shapes: vec![Some(vec![]), None, Some(vec![2, 2])],
            failures: vec![Failure {
                step: 8,
                kind: FailureKind::Crashed,
                message: "bad step".into(),
            }],
        };
        let (reply, payload) = part_reply(3, 1, 2, part.clone(), 0.5);
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &reply, &payload).unwrap();
        write_frame(&mut bytes, &Reply::Done { task: 3 }, &[]).unwrap();
        let mut r = bytes.as_slice();
        let (back, values): (Reply, Vec<f64>) = read_frame(&mut r).unwrap().unwrap();
        let Reply::Part {
            task,
            range,
            node,
            first,
            shapes,
            failures,
            ..
        } = back
        else {
            panic!("not a part: {back:?}")
        };
        assert_eq!((task, range, node), (3, 1, 2));
        let got = part_from(first, shapes, failures, values).unwrap();
        assert_eq!(got.offsets, part.offsets);
        assert_eq!(got.shapes, part.shapes);
        assert_eq!(got.failures, part.failures);
        let bits = |p: &Part| p.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&part));
        assert!(matches!(
            read_frame::<Reply>(&mut r).unwrap(),
            Some((Reply::Done { task: 3 }, _))
        ));
        assert!(read_frame::<Reply>(&mut r).unwrap().is_none());
    }

    #[test]
    fn damaged_frames_are_errors_not_allocations() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        assert!(read_frame::<Reply>(&mut bytes.as_slice()).is_err());
        // A truncated frame is an error, not a clean end.
        let mut ok = Vec::new();
        write_frame(&mut ok, &Reply::Done { task: 1 }, &[1.0]).unwrap();
        ok.pop();
        assert!(read_frame::<Reply>(&mut ok.as_slice()).is_err());
        // Payload and shapes must agree.
        assert!(part_from(0, vec![Some(vec![2])], vec![], vec![1.0]).is_none());
    }
}
