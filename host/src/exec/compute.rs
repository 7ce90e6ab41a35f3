//! Running per-step extractors over a contiguous range of steps: what an extractor
//! receives (its declared channels, the step's recorded context) and what becomes of
//! what it returns (a value checked against its declared shape, or a typed failure).
//!
//! Both schedulers call these functions on the same step ranges, so their results
//! are identical whatever the mode or the number of workers.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use abi_stable::std_types::{RSlice, RStr};
use oect_plugin_api::abi::{
    AttrValue as AbiAttr, Attribute, Source, StepArray, StepContext, StepInput, StepSettings,
};
use oect_plugin_api::{Dim, FailureKind, FeatureValue, StepFailure};

use crate::graph::{FeatureGraph, Input, Op, Rows};
use crate::plugins::Extractor;
use crate::source::{AttrValue, StepBlock, StepRecord};

/// Sees every extractor call: a worker's watchdog times the call in progress (and ends
/// the worker when `--step-timeout` is exceeded), and isolated tasks report each call
/// before making it, so a crash is pinned on one step.
pub trait Watch: Sync {
    /// `node` is about to be called on `step`.
    fn calling(&self, node: usize, step: usize);
    /// The call returned.
    fn returned(&self);
}

/// For callers that run extractors without a watchdog (tests, in-process tools).
pub struct NoWatch;

impl Watch for NoWatch {
    fn calling(&self, _: usize, _: usize) {}
    fn returned(&self) {}
}

/// What the file records about an experiment's steps, for the step contexts.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// `chip-device`, for messages.
    pub experiment: &'a str,
    /// Per step of the source whose steps are the rows, in step order.
    pub steps: &'a [StepRecord],
    /// The experiment's scalar root attributes (device metadata).
    pub attributes: &'a BTreeMap<String, AttrValue>,
}

impl<'a> Recorded<'a> {
    /// The attributes as the ABI carries them, borrowing the strings.
    fn attributes(&self) -> Vec<Attribute<'a>> {
        self.attributes
            .iter()
            .map(|(name, value)| attribute(name, value))
            .collect()
    }

    /// The context of step `step`; `attributes` are [`Self::attributes`].
    fn context<'c>(&self, step: usize, attributes: &'c [Attribute<'a>]) -> StepContext<'c>
    where
        'a: 'c,
    {
        let mut context = StepContext::new(self.experiment, step as u64);
        context.attributes = RSlice::from_slice(attributes);
        if let Some(record) = self.steps.get(step) {
            context.settings = settings(record);
            // Whole seconds and the fraction apart, so that the µs survive the rounding.
            context.start_time = record
                .start_time
                .map(|t| {
                    let t = t.and_utc();
                    t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) * 1e-6
                })
                .into();
            context.loop_iteration = record.loop_iteration.into();
        }
        context
    }
}

fn attribute<'a>(name: &'a str, value: &'a AttrValue) -> Attribute<'a> {
    Attribute {
        name: RStr::from_str(name),
        value: match value {
            AttrValue::String(s) => AbiAttr::Text(RStr::from_str(s)),
            AttrValue::Int(i) => AbiAttr::Int(*i),
            AttrValue::Float(f) => AbiAttr::Float(*f),
            AttrValue::Bool(b) => AbiAttr::Bool(*b),
        },
    }
}

/// The recorded instrument settings of a step, as extractors see them.
fn settings(record: &StepRecord) -> StepSettings {
    let p = &record.params;
    let sampling = p.sampling();
    StepSettings {
        drain_voltage: p.drain_voltage.into(),
        source_voltage: p.source_voltage.into(),
        gate_start: p.gate_start.into(),
        gate_end: p.gate_end.into(),
        gate_step: p.gate_step.into(),
        sweep_back: p.sweep_back.into(),
        gate_bottom: p.gate_bottom.into(),
        gate_top: p.gate_top.into(),
        bottom_time: p.bottom_time.into(),
        top_time: p.top_time.into(),
        cycles: p.cycles.into(),
        time_step: p.time_step.into(),
        period: sampling.map(|s| s.period).into(),
        sample_rate: sampling.map(|s| s.sample_rate).into(),
    }
}

fn extractor(graph: &FeatureGraph, node: usize) -> &Extractor {
    match &graph.nodes[node].op {
        Op::Extract(e) => e,
        Op::Func(_) => unreachable!("only extractor nodes run per step"),
    }
}

/// Calls node `node`'s extractor on one step, under `watch`.
fn call(
    graph: &FeatureGraph,
    node: usize,
    input: &StepInput<'_>,
    watch: &dyn Watch,
) -> Result<FeatureValue, StepFailure> {
    watch.calling(node, input.context.step_index as usize);
    let result = extractor(graph, node).extract(input);
    watch.returned();
    result
}

/// A step without a value, as the host records it (and as the worker protocol carries
/// it: `kind` by its name, [`FailureKind::as_str`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub step: usize,
    #[serde(with = "crate::sink::failure_kind")]
    pub kind: FailureKind,
    pub message: String,
}

/// Values of one per-step feature for a range of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Index of the first step.
    pub first: usize,
    /// Step `k`'s values are `values[offsets[k]..offsets[k + 1]]`.
    pub values: Vec<f64>,
    pub offsets: Vec<usize>,
    /// Per-step shape; `None` where the step has no value.
    pub shapes: Vec<Option<Vec<u64>>>,
    /// Every step without a value, in step order.
    pub failures: Vec<Failure>,
}

impl Part {
    fn with_capacity(first: usize, steps: usize) -> Part {
        Part {
            first,
            values: Vec::with_capacity(steps),
            offsets: {
                let mut o = Vec::with_capacity(steps + 1);
                o.push(0);
                o
            },
            shapes: Vec::with_capacity(steps),
            failures: Vec::new(),
        }
    }

    /// One step without a value: what a step that is not run (a known casualty) contributes.
    pub fn failed(step: usize, kind: FailureKind, message: String) -> Part {
        let mut part = Part::with_capacity(step, 1);
        part.push(step, Err(StepFailure::new(kind, message)), &[]);
        part
    }

    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Step `k` (relative to `first`): its shape and values, or `None` if it has none.
    pub fn step(&self, k: usize) -> Option<(&[u64], &[f64])> {
        self.shapes[k]
            .as_deref()
            .map(|s| (s, &self.values[self.offsets[k]..self.offsets[k + 1]]))
    }

    /// The failure of step `k` (relative to `first`), if it failed.
    fn failure(&self, k: usize) -> Option<&Failure> {
        let step = self.first + k;
        self.failures
            .binary_search_by_key(&step, |f| f.step)
            .ok()
            .map(|i| &self.failures[i])
    }

    fn push(&mut self, step: usize, result: Result<FeatureValue, StepFailure>, declared: &[Dim]) {
        match result.and_then(|v| check_shape(v, declared)) {
            Ok(v) => {
                self.values.extend_from_slice(&v.data);
                self.shapes.push(Some(v.shape.into_vec()));
            }
            Err(f) => {
                self.shapes.push(None);
                self.failures.push(Failure {
                    step,
                    kind: f.kind,
                    message: f.message.into_string(),
                });
            }
        }
        self.offsets.push(self.values.len());
    }

    /// Appends `other`, which must start where `self` ends.
    pub fn append(&mut self, other: &Part) {
        debug_assert_eq!(self.first + self.len(), other.first);
        let base = self.values.len();
        self.values.extend_from_slice(&other.values);
        self.offsets
            .extend(other.offsets[1..].iter().map(|o| o + base));
        self.shapes.extend(other.shapes.iter().cloned());
        self.failures.extend(other.failures.iter().cloned());
    }
}

/// A value whose shape disagrees with the extractor's declaration is a failure of that
/// step: writing it would silently misalign the table.
fn check_shape(v: FeatureValue, declared: &[Dim]) -> Result<FeatureValue, StepFailure> {
    let n: u64 = v.shape.iter().product();
    let fits = v.shape.len() == declared.len()
        && n == v.data.len() as u64
        && v.shape.iter().zip(declared).all(|(s, d)| match d {
            Dim::Fixed(k) => s == k,
            Dim::Dyn(_) => true,
        });
    if fits {
        Ok(v)
    } else {
        Err(StepFailure::new(
            FailureKind::WrongShape,
            format!(
                "returned shape {:?} ({} values) but declares {}",
                v.shape.as_slice(),
                v.data.len(),
                crate::graph::describe(declared)
            ),
        ))
    }
}

/// Runs a node that reads a data source over every step of `block`, handing it the
/// channels it declares (which `block` holds, all of one length per step).
pub fn source_chunk(
    graph: &Arc<FeatureGraph>,
    node: usize,
    source: Source,
    block: &StepBlock,
    recorded: Recorded<'_>,
    watch: &dyn Watch,
) -> Part {
    let ex = extractor(graph, node);
    debug_assert!(ex.channels.iter().all(|c| c.source() == source));
    let attributes = recorded.attributes();
    let mut part = Part::with_capacity(block.first_step, block.n_steps());
    for k in 0..block.n_steps() {
        let step = block.first_step + k;
        let shape = [block.len(k) as u64];
        let arrays: Vec<StepArray<'_>> = ex
            .channels
            .iter()
            .map(|&c| {
                let data = block
                    .samples(c, k)
                    .expect("the reader read every declared channel");
                StepArray::new(c.field(), &shape, data)
            })
            .collect();
        let input = StepInput::new(&arrays, recorded.context(step, &attributes));
        let result = call(graph, node, &input, watch);
        part.push(step, result, &ex.shape);
    }
    part
}

/// Runs a node that reads other per-step features over `range`, given their parts
/// for exactly that range (in the node's input order).
pub fn derived_chunk(
    graph: &Arc<FeatureGraph>,
    node: usize,
    inputs: &[&Part],
    range: Range<usize>,
    recorded: Recorded<'_>,
    watch: &dyn Watch,
) -> Part {
    let declared = &extractor(graph, node).shape;
    // Inputs are named after the input features, in the node's input order.
    let input_names: Vec<&str> = graph.nodes[node]
        .inputs
        .iter()
        .map(|i| match i {
            Input::Feature(j) => graph.nodes[*j].name.as_str(),
            Input::Source(s) => s.name(),
        })
        .collect();
    let attributes = recorded.attributes();
    let mut part = Part::with_capacity(range.start, range.len());
    for (k, step) in range.enumerate() {
        let mut missing = None;
        let mut arrays = Vec::with_capacity(inputs.len());
        for (name, p) in input_names.iter().zip(inputs) {
            match p.step(k) {
                Some((shape, data)) => arrays.push(StepArray::new(name, shape, data)),
                None => missing = Some((*name, p.failure(k).map(|f| f.kind))),
            }
        }
        let result = match missing {
            // An input without a result leaves this feature without one too; any other
            // failure of an input is recorded as such.
            Some((name, Some(FailureKind::NoResult))) => Err(StepFailure::new(
                FailureKind::NoResult,
                format!("input '{name}' has no result at this step"),
            )),
            Some((name, _)) => Err(StepFailure::new(
                FailureKind::InputFailed,
                format!("input '{name}' failed at this step"),
            )),
            None => {
                let input = StepInput::new(&arrays, recorded.context(step, &attributes));
                call(graph, node, &input, watch)
            }
        };
        part.push(step, result, declared);
    }
    part
}

/// Runs every per-step node that reads `source` (directly or through other per-step
/// features) over the steps of `block`, in topological order. The result is indexed like
/// `graph.nodes`: `Some` for those nodes, `None` for the others.
pub fn block_parts(
    graph: &Arc<FeatureGraph>,
    source: Source,
    block: &StepBlock,
    recorded: Recorded<'_>,
    watch: &dyn Watch,
) -> Vec<Option<Part>> {
    let range = block.first_step..block.first_step + block.n_steps();
    let mut parts: Vec<Option<Part>> = vec![None; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.rows != Rows::Source(source) || !matches!(node.op, Op::Extract(_)) {
            continue;
        }
        let part = if node.inputs == [Input::Source(source)] {
            source_chunk(graph, i, source, block, recorded, watch)
        } else {
            let inputs: Vec<&Part> = node
                .inputs
                .iter()
                .filter_map(|inp| match inp {
                    Input::Feature(j) => parts[*j].as_ref(),
                    Input::Source(_) => None,
                })
                .collect();
            derived_chunk(graph, i, &inputs, range.clone(), recorded, watch)
        };
        parts[i] = Some(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::RString;

    use super::*;

    #[test]
    fn shapes_are_checked_against_the_declaration() {
        let two = [Dim::Fixed(2)];
        let dynamic = [Dim::Dyn(RString::from("n")), Dim::Fixed(2)];
        assert!(check_shape(FeatureValue::vector(vec![1.0, 2.0]), &two).is_ok());
        let e = check_shape(FeatureValue::vector(vec![1.0, 2.0, 3.0]), &two).unwrap_err();
        assert_eq!(e.kind, FailureKind::WrongShape);
        assert!(
            e.message.contains("[3]") && e.message.contains("declares [2]"),
            "{}",
            e.message
        );
        assert!(check_shape(FeatureValue::scalar(1.0), &two).is_err());
        let ok = FeatureValue::array(vec![3, 2], vec![0.0; 6]).unwrap();
        assert!(check_shape(ok, &dynamic).is_ok());
        let bad = FeatureValue::array(vec![3, 3], vec![0.0; 9]).unwrap();
        assert!(check_shape(bad, &dynamic).is_err());
    }

    #[test]
    fn parts_append_in_order_and_keep_failure_kinds() {
        let mut a = Part::with_capacity(0, 2);
        a.push(0, Ok(FeatureValue::scalar(1.0)), &[]);
        a.push(1, Err(StepFailure::invalid_input("bad")), &[]);
        let mut b = Part::with_capacity(2, 2);
        b.push(2, Ok(FeatureValue::scalar(3.0)), &[]);
        b.push(3, Err(StepFailure::no_result("no fit")), &[]);
        a.append(&b);
        assert_eq!(a.len(), 4);
        assert_eq!(a.step(0).unwrap().1, &[1.0]);
        assert!(a.step(1).is_none());
        assert_eq!(a.step(2).unwrap().1, &[3.0]);
        let kinds: Vec<(usize, FailureKind)> =
            a.failures.iter().map(|f| (f.step, f.kind)).collect();
        assert_eq!(
            kinds,
            [(1, FailureKind::InvalidInput), (3, FailureKind::NoResult)]
        );
        assert_eq!(a.failure(3).map(|f| f.message.as_str()), Some("no fit"));
        assert!(a.failure(2).is_none());
    }

    #[test]
    fn contexts_carry_the_recorded_settings_time_and_attributes() {
        let record = StepRecord {
            start_time: chrono::NaiveDate::from_ymd_opt(2025, 8, 15)
                .and_then(|d| d.and_hms_micro_opt(13, 42, 12, 456)),
            loop_iteration: Some(17),
            params: crate::source::StepParams {
                drain_voltage: Some(-0.6),
                bottom_time: Some(0.125),
                top_time: Some(0.125),
                time_step: Some(0.001),
                ..Default::default()
            },
            ..Default::default()
        };
        let attrs = BTreeMap::from([
            ("channel_width_um".to_string(), AttrValue::Float(4000.0)),
            ("description".to_string(), AttrValue::String("x".into())),
        ]);
        let steps = [record];
        let recorded = Recorded {
            experiment: "c-1",
            steps: &steps,
            attributes: &attrs,
        };
        let attributes = recorded.attributes();
        let c = recorded.context(0, &attributes);
        assert_eq!(c.settings.drain_voltage.into_option(), Some(-0.6));
        assert_eq!(c.settings.period.into_option(), Some(0.25));
        assert_eq!(c.settings.sample_rate.into_option(), Some(1000.0));
        assert_eq!(c.loop_iteration.into_option(), Some(17));
        assert_eq!(c.start_time.into_option(), Some(1_755_265_332.000_456));
        assert_eq!(c.attributes.len(), 2);
        // A step the file records nothing about.
        let c = recorded.context(5, &attributes);
        assert_eq!(c.settings, StepSettings::default());
    }
}
