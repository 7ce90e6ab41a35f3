//! Following one export folder while its test runs: which steps are new since the last look,
//! their samples, and whether the test has ended (`oect watch`).
//!
//! Steps are taken in measurement order with the converter's rules, so that the steps followed
//! are the steps `oect convert` stores. While the test runs, a step is taken only once its CSV
//! is there, parses and has not changed for [`SETTLE`]: the instrument saves files
//! asynchronously, and a step that is not ready holds back the ones after it. Once the test
//! has ended (`test_info.json`), every remaining step is final: a missing or unreadable CSV is
//! skipped with a warning, as the converter does.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::convert::continuous_time_step_ms;
use super::csv::{read_step, StepData};
use super::export::{Export, ExportError, Kind};
use super::json::Json;

/// How long a CSV of a running test must be unchanged before it is read.
pub const SETTLE: Duration = Duration::from_secs(1);

/// A step taken from the export.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub kind: Kind,
    /// Its entry of the info file's `steps`.
    pub json: Json,
    pub data_file: String,
    /// `(Vg, Id)` or `(original_time, drain_current)`, as the converter stores them.
    pub data: StepData,
    /// Transient steps: `continuous_time`, continuing the previous steps' grid.
    pub continuous_time: Vec<f64>,
}

/// What a look at the export found.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The export as read this time (cleaned info, workflow).
    pub export: Export,
    pub steps: Vec<NewStep>,
    /// Steps given up (only once the test has ended), with the reason.
    pub warnings: Vec<String>,
    /// The test has ended and every step has been taken or skipped.
    pub finished: bool,
}

/// Where following an export stands; small, so the caller can keep it in its journal.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Entries of `steps` dealt with (taken or skipped).
    pub next: usize,
    /// `continuous_time` of the next transient step starts here.
    pub offset: f64,
}

/// One followed export folder.
#[derive(Debug, Clone)]
pub struct Follower {
    pub folder: PathBuf,
    pub position: Position,
}

impl Follower {
    pub fn new(folder: &Path, position: Position) -> Follower {
        Follower {
            folder: folder.to_path_buf(),
            position,
        }
    }

    /// Reads the export and takes the steps that are ready; `Ok(None)` when the info file is
    /// not readable yet (being rewritten) while the test runs.
    pub fn poll(&mut self) -> Result<Option<Progress>, ExportError> {
        let export = match Export::open(&self.folder) {
            Ok(e) => e,
            // a half-written test_info_temp.json is read again next time
            Err(_)
                if self.folder.join(super::export::TEMP_INFO).is_file()
                    && !self.folder.join(super::export::FINAL_INFO).is_file() =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let ended = !export.running;
        let total = export
            .info
            .get("steps")
            .and_then(Json::as_array)
            .map_or(0, <[Json]>::len);
        let mut steps = Vec::new();
        let mut warnings = Vec::new();
        let now = SystemTime::now();
        let start = self.position.next;
        for planned in export.steps.iter().filter(|s| s.position >= start) {
            let json = export.step_json(planned).clone();
            let name = |p: &Path| {
                p.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            };
            let describe = format!("step {} ({})", planned.position + 1, planned.kind);
            let outcome: Result<(PathBuf, StepData), String> = match &planned.csv {
                None => Err("no CSV file".into()),
                Some(csv) => {
                    let settled = ended
                        || std::fs::metadata(csv)
                            .and_then(|m| m.modified())
                            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= SETTLE);
                    if !settled {
                        Err(String::new())
                    } else {
                        read_step(csv, planned.kind).map(|d| (csv.clone(), d))
                    }
                }
            };
            let usable = match &outcome {
                // an empty transfer sweep is stored (as the converter does), an empty
                // transient step is not; while the test runs an empty file is not written yet
                Ok((_, d)) => !d.is_empty() || (ended && planned.kind == Kind::Transfer),
                Err(_) => false,
            };
            if !usable && !ended {
                break;
            }
            self.position.next = planned.position + 1;
            match outcome {
                Ok((csv, data)) if usable => {
                    let continuous_time = if planned.kind == Kind::Transient {
                        let dt = continuous_time_step_ms(&json) / 1000.0;
                        let t: Vec<f64> = (0..data.len())
                            .map(|k| k as f64 * dt + self.position.offset)
                            .collect();
                        if let Some(&last) = t.last() {
                            self.position.offset = last + dt;
                        }
                        t
                    } else {
                        Vec::new()
                    };
                    steps.push(NewStep {
                        kind: planned.kind,
                        data_file: name(&csv),
                        json,
                        data,
                        continuous_time,
                    });
                }
                Ok((csv, _)) => warnings.push(format!(
                    "{describe}, {}: no data rows; step skipped",
                    name(&csv)
                )),
                Err(e) => warnings.push(format!("{describe}: {e}; step skipped")),
            }
        }
        if ended {
            // every entry is dealt with, including those of other types after the last step
            self.position.next = total;
        }
        Ok(Some(Progress {
            finished: ended,
            export,
            steps,
            warnings,
        }))
    }
}
