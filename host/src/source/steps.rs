//! What an experiment file records about each step, besides its samples.
//!
//! Two places hold it (`shared/specs/hdf5_format.md` §4): the step tables
//! (`/<kind>/step_info_table`: start and end time, source CSV name, workflow position) and
//! `/raw/json`, the instrument's `test_info.json`, whose `steps[*].params` are the only copy
//! of the instrument settings (voltages in mV, times in ms). The two are joined on
//! `data_file`, the step's CSV name; when the table has no such column, the table rows and
//! the JSON steps of the same kind are paired by position, but only when their counts agree
//! (steps whose CSV was missing are absent from the tables and present in the JSON, so a
//! positional join of different counts would pair the wrong steps). Everything here only
//! describes the data: a missing, partial or unparsable record gives `None` fields, never an
//! unreadable file.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, H5Type};
use serde::Deserialize;
use serde_json::Value;

use super::reader::{decode_text, FixedBytes, TextCell};

/// The instrument settings recorded for one step, in SI units (V, s, Hz).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepParams {
    pub drain_voltage: Option<f64>,
    pub source_voltage: Option<f64>,
    /// Transfer sweeps: first gate voltage, turning point and increment.
    pub gate_start: Option<f64>,
    pub gate_end: Option<f64>,
    pub gate_step: Option<f64>,
    /// Transfer sweeps: the sweep goes back to `gate_start` (`isSweep = 1`).
    pub sweep_back: Option<bool>,
    /// Transient pulse trains: gate voltage during the off and on part of each cycle.
    pub gate_bottom: Option<f64>,
    pub gate_top: Option<f64>,
    /// Transient pulse trains: duration of the off and on part of each cycle.
    pub bottom_time: Option<f64>,
    pub top_time: Option<f64>,
    pub cycles: Option<u64>,
    /// Time between samples.
    pub time_step: Option<f64>,
}

impl StepParams {
    /// Reads the instrument's keys (`drainVoltage` in mV, `timeStep` in ms, …).
    fn from_json(params: &Value) -> StepParams {
        let num = |key: &str| {
            params
                .get(key)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite())
        };
        let mv = |key: &str| num(key).map(|v| v / 1000.0);
        let ms = |key: &str| num(key).filter(|v| *v >= 0.0).map(|v| v / 1000.0);
        StepParams {
            drain_voltage: mv("drainVoltage"),
            source_voltage: mv("sourceVoltage"),
            gate_start: mv("gateVoltageStart"),
            gate_end: mv("gateVoltageEnd"),
            gate_step: mv("gateVoltageStep"),
            sweep_back: num("isSweep").map(|v| v != 0.0),
            gate_bottom: mv("gateVoltageBottom"),
            gate_top: mv("gateVoltageTop"),
            bottom_time: ms("bottomTime"),
            top_time: ms("topTime"),
            cycles: num("cycles")
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                .map(|v| v as u64),
            time_step: ms("timeStep").filter(|v| *v > 0.0),
        }
    }

    /// Each setting from `self`, or from `other` where `self` has none.
    fn or(self, other: StepParams) -> StepParams {
        StepParams {
            drain_voltage: self.drain_voltage.or(other.drain_voltage),
            source_voltage: self.source_voltage.or(other.source_voltage),
            gate_start: self.gate_start.or(other.gate_start),
            gate_end: self.gate_end.or(other.gate_end),
            gate_step: self.gate_step.or(other.gate_step),
            sweep_back: self.sweep_back.or(other.sweep_back),
            gate_bottom: self.gate_bottom.or(other.gate_bottom),
            gate_top: self.gate_top.or(other.gate_top),
            bottom_time: self.bottom_time.or(other.bottom_time),
            top_time: self.top_time.or(other.top_time),
            cycles: self.cycles.or(other.cycles),
            time_step: self.time_step.or(other.time_step),
        }
    }

    /// Pulse period and sample rate, when both are recorded and positive.
    pub fn sampling(&self) -> Option<Sampling> {
        let period = self.bottom_time? + self.top_time?;
        let sample_rate = 1.0 / self.time_step?;
        let valid = |v: f64| v.is_finite() && v > 0.0;
        (valid(period) && valid(sample_rate)).then_some(Sampling {
            period,
            sample_rate,
        })
    }
}

/// Sampling of a transient step, from the instrument parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Gate square-wave period in seconds.
    pub period: f64,
    /// Samples per second.
    pub sample_rate: f64,
}

/// Everything recorded about one step except its samples.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// Local time the step started and ended (the files store local time without a zone).
    pub start_time: Option<NaiveDateTime>,
    pub end_time: Option<NaiveDateTime>,
    /// The step's source CSV, e.g. `4_transient.csv`.
    pub data_file: Option<String>,
    /// 1-based iteration of the workflow loop the step ran in; `None` outside a loop (e.g. the
    /// final transfer after it) or when the file does not say.
    pub loop_iteration: Option<u64>,
    pub params: StepParams,
}

/// What the rows of a table take from a step's record: when it started and its loop
/// iteration. It is all the supervisor of a run needs of the records, so only this
/// crosses the process boundary (the full records of 5 001 steps are 2 MB of JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepKey {
    pub start_time: Option<NaiveDateTime>,
    pub loop_iteration: Option<u64>,
}

impl From<&StepRecord> for StepKey {
    fn from(r: &StepRecord) -> StepKey {
        StepKey {
            start_time: r.start_time,
            loop_iteration: r.loop_iteration,
        }
    }
}

/// The keys of `records`, in step order.
pub fn keys(records: &[StepRecord]) -> Vec<StepKey> {
    records.iter().map(StepKey::from).collect()
}

/// Reads the records of a kind's `count` steps from its step table, the `raw/json` text and
/// the `raw/workflow` text (each optional). `kind` is `transfer` or `transient`. A setting a
/// step's JSON entry lacks is taken from the first workflow node of the kind, which is what
/// the instrument was told to run.
pub(crate) fn records(
    table: Option<&Dataset>,
    raw_json: Option<&str>,
    workflow: Option<&str>,
    kind: &str,
    count: usize,
) -> Vec<StepRecord> {
    let column = |read: fn(&Dataset) -> Option<Vec<String>>| {
        table.and_then(read).filter(|c| c.len() == count)
    };
    let (starts, ends, files, paths) = (
        column(start_times),
        column(end_times),
        column(data_files),
        column(workflow_paths),
    );
    let mut out: Vec<StepRecord> = (0..count)
        .map(|j| {
            let cell = |c: &Option<Vec<String>>| c.as_ref().map(|c| c[j].clone());
            StepRecord {
                start_time: cell(&starts).as_deref().and_then(parse_time),
                end_time: cell(&ends).as_deref().and_then(parse_time),
                data_file: cell(&files).filter(|f| !f.is_empty()),
                loop_iteration: cell(&paths).as_deref().and_then(loop_iteration),
                params: StepParams::default(),
            }
        })
        .collect();

    // Steps of another kind are left out; an entry without a type can still be joined by
    // its file name, but never by position.
    let steps: Vec<JsonStep> = raw_json
        .and_then(|t| serde_json::from_str::<RawInfo>(t).ok())
        .map(|info| {
            let other = |s: &JsonStep| s.kind.as_deref().is_some_and(|k| k != kind);
            info.steps.into_iter().filter(|s| !other(s)).collect()
        })
        .unwrap_or_default();
    let by_file: HashMap<&str, &JsonStep> = steps
        .iter()
        .filter_map(|s| Some((s.data_file.as_deref()?, s)))
        .collect();
    let typed: Vec<&JsonStep> = steps.iter().filter(|s| s.kind.is_some()).collect();
    for (j, record) in out.iter_mut().enumerate() {
        let step = match &record.data_file {
            Some(name) => by_file.get(name.as_str()).copied(),
            None if typed.len() == count => Some(typed[j]),
            None => None,
        };
        if let Some(step) = step {
            record.merge(step);
        }
    }
    if let Some(planned) = workflow.and_then(|w| workflow_params(w, kind)) {
        for record in &mut out {
            record.params = record.params.or(planned);
        }
    }
    out
}

/// The record [`records`] gives a step from its own `test_info` entry and the workflow text,
/// for a caller that has the entry but no file yet (`oect watch`, while a test runs). The
/// converter's step table holds the same entry's fields, so the records agree.
pub fn step_record(step: &Value, workflow: Option<&str>, kind: &str) -> StepRecord {
    let mut record = StepRecord::default();
    if let Ok(entry) = serde_json::from_value::<JsonStep>(step.clone()) {
        record.data_file = entry.data_file.clone().filter(|f| !f.is_empty());
        record.merge(&entry);
    }
    if let Some(planned) = workflow.and_then(|w| workflow_params(w, kind)) {
        record.params = record.params.or(planned);
    }
    record
}

/// The parameters of the first workflow node of `kind`, searching loops depth-first.
fn workflow_params(text: &str, kind: &str) -> Option<StepParams> {
    fn first<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
        match node {
            Value::Array(items) => items.iter().find_map(|n| first(n, kind)),
            Value::Object(obj) if obj.get("type").and_then(Value::as_str) == Some(kind) => {
                obj.get("params")
            }
            Value::Object(obj) => obj.get("steps").and_then(|s| first(s, kind)),
            _ => None,
        }
    }
    let workflow: Value = serde_json::from_str(text).ok()?;
    first(&workflow, kind).map(StepParams::from_json)
}

impl StepRecord {
    /// Fills in what the JSON step knows; the table's own values win where both have one
    /// (the table's strings may be truncated, so the loop iteration prefers the JSON's).
    fn merge(&mut self, step: &JsonStep) {
        if let Some(params) = &step.params {
            self.params = StepParams::from_json(params);
        }
        let text = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).and_then(parse_time);
        self.start_time = self.start_time.or_else(|| text(&step.start_time));
        self.end_time = self.end_time.or_else(|| text(&step.end_time));
        let path = step
            .workflow_info
            .as_ref()
            .and_then(|w| w.get("path_readable"))
            .and_then(Value::as_str);
        if let Some(it) = path.and_then(loop_iteration) {
            self.loop_iteration = Some(it);
        }
    }
}

#[derive(Deserialize)]
struct RawInfo {
    #[serde(default)]
    steps: Vec<JsonStep>,
}

/// One entry of `test_info.json`'s `steps`. The instrument writes `params`; the converter
/// code looks for `parameters`: both are accepted.
#[derive(Deserialize)]
struct JsonStep {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    data_file: Option<String>,
    #[serde(default, alias = "parameters")]
    params: Option<Value>,
    #[serde(default)]
    start_time: Option<Value>,
    #[serde(default)]
    end_time: Option<Value>,
    #[serde(default)]
    workflow_info: Option<Value>,
}

/// `2025-08-15T13:42:12.000456` (the instrument's local time, µs, no zone); a zone or a
/// space instead of `T` is tolerated.
pub(crate) fn parse_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.naive_local())
        })
}

/// The iteration `k` of the innermost `迭代k/N` ("Iteration k/N") in a workflow path such as
/// `循环[1/1] > 迭代17/5000 > 转移特性[1/2]`. The instrument's iteration counter itself is
/// useless (it always holds the last iteration, §4.5), so the readable path is the record.
fn loop_iteration(path: &str) -> Option<u64> {
    let marker = ["迭代", "Iteration ", "Iteration", "iteration "]
        .iter()
        .filter_map(|m| path.rfind(m).map(|at| at + m.len()))
        .max()?;
    let digits: String = path[marker..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let k: u64 = digits.parse().ok()?;
    // `k/N` must be complete: a table cell cut in the middle of the number says nothing.
    path[marker + digits.len()..].starts_with('/').then_some(k)
}

/// Defines `$fun(table) -> Option<Vec<String>>`, reading the text column `$field` of a
/// compound table in whatever string type the table stores it (HDF5 converts compound
/// members by name, so a one-member struct named like the column reads just that column).
macro_rules! text_column {
    ($fun:ident, $cell:ident, $field:ident) => {
        fn $fun(table: &Dataset) -> Option<Vec<String>> {
            #[derive(H5Type)]
            #[repr(C)]
            struct $cell<S: H5Type> {
                $field: S,
            }
            fn read<S: TextCell>(table: &Dataset) -> Option<Vec<String>> {
                let rows = table.read_raw::<$cell<S>>().ok()?;
                Some(rows.iter().map(|r| decode_text(r.$field.bytes())).collect())
            }
            let TypeDescriptor::Compound(c) = table.dtype().ok()?.to_descriptor().ok()? else {
                return None;
            };
            match c.fields.iter().find(|f| f.name == stringify!($field))?.ty {
                TypeDescriptor::FixedAscii(_) => read::<FixedBytes<256, false>>(table),
                TypeDescriptor::FixedUnicode(_) => read::<FixedBytes<256, true>>(table),
                TypeDescriptor::VarLenAscii => read::<VarLenAscii>(table),
                TypeDescriptor::VarLenUnicode => read::<VarLenUnicode>(table),
                _ => None,
            }
        }
    };
}

text_column!(start_times, StartTime, start_time);
text_column!(end_times, EndTime, end_time);
text_column!(data_files, DataFile, data_file);
text_column!(workflow_paths, WorkflowPath, workflow_path_readable);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_iterations_come_from_the_readable_path() {
        assert_eq!(
            loop_iteration("循环[1/1] > 迭代17/5000 > 转移特性[1/2]"),
            Some(17)
        );
        assert_eq!(
            loop_iteration("Loop[1/1] > Iteration 3/10 > Transfer[1/2]"),
            Some(3)
        );
        assert_eq!(loop_iteration("转移特性[2/2]"), None);
        // a truncated table cell
        assert_eq!(loop_iteration("循环[1/1] > 迭代17"), None);
        assert_eq!(loop_iteration(""), None);
    }

    #[test]
    fn times_parse_with_and_without_fraction() {
        let t = parse_time("2025-08-15T13:42:12.000456").unwrap();
        assert_eq!(t.and_utc().timestamp_micros() % 1_000_000, 456);
        assert!(parse_time("2025-08-15 13:42:12").is_some());
        assert!(parse_time("2025-08-15T13:42:12+02:00").is_some());
        assert!(parse_time("nan").is_none());
        assert!(parse_time("").is_none());
    }

    #[test]
    fn instrument_units_become_si() {
        let p = StepParams::from_json(&serde_json::json!({
            "drainVoltage": -600, "gateVoltageStart": -300, "gateVoltageEnd": 600,
            "gateVoltageStep": 10, "isSweep": 1, "timeStep": 1,
            "bottomTime": 125, "topTime": 125, "cycles": 100, "gateVoltageTop": "x",
        }));
        assert_eq!(p.drain_voltage, Some(-0.6));
        assert_eq!(p.gate_start, Some(-0.3));
        assert_eq!(p.gate_step, Some(0.01));
        assert_eq!(p.sweep_back, Some(true));
        assert_eq!(p.cycles, Some(100));
        assert_eq!(p.gate_top, None);
        assert_eq!(
            p.sampling(),
            Some(Sampling {
                period: 0.25,
                sample_rate: 1000.0
            })
        );
        assert_eq!(StepParams::default().sampling(), None);
    }
}
