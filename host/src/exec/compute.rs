//! Running per-step extractors over a contiguous range of steps.
//!
//! Both schedulers call these functions on the same step ranges, so their results
//! are identical whatever the mode or the number of workers.

use std::ops::Range;
use std::sync::Arc;

use oect_plugin_api::{Channel, Dim, FeatureValue, StepContext, StepInput};

use crate::graph::{FeatureGraph, Input, Op, Rows, Source};
use crate::plugins::Extractor;
use crate::source::{Sampling, StepBlock};

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
    channels: &[Channel<'_>],
    context: StepContext<'_>,
    watch: &dyn Watch,
) -> Result<FeatureValue, String> {
    watch.calling(node, context.step_index as usize);
    let result = extractor(graph, node).extract(&StepInput::new(channels, context));
    watch.returned();
    result
}

/// Values of one per-step feature for a range of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Index of the first step.
    pub first: usize,
    /// Step `k`'s values are `values[offsets[k]..offsets[k + 1]]`.
    pub values: Vec<f64>,
    pub offsets: Vec<usize>,
    /// Per-step shape; `None` where the step failed.
    pub shapes: Vec<Option<Vec<u64>>>,
    /// (step index, message) of every failed step.
    pub errors: Vec<(usize, String)>,
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
            errors: Vec::new(),
        }
    }

    /// One failed step: what a step that is not run (a known casualty) contributes.
    pub fn failed(step: usize, message: String) -> Part {
        let mut part = Part::with_capacity(step, 1);
        part.push(step, Err(message), &[]);
        part
    }

    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Step `k` (relative to `first`): its shape and values, or `None` if it failed.
    pub fn step(&self, k: usize) -> Option<(&[u64], &[f64])> {
        self.shapes[k]
            .as_deref()
            .map(|s| (s, &self.values[self.offsets[k]..self.offsets[k + 1]]))
    }

    fn push(&mut self, step: usize, result: Result<FeatureValue, String>, declared: &[Dim]) {
        match result.and_then(|v| check_shape(v, declared)) {
            Ok(v) => {
                self.values.extend_from_slice(&v.data);
                self.shapes.push(Some(v.shape.into_vec()));
            }
            Err(e) => {
                self.shapes.push(None);
                self.errors.push((step, e));
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
        self.errors.extend(other.errors.iter().cloned());
    }
}

/// A value whose shape disagrees with the extractor's declaration is an error for that
/// step: writing it would silently misalign the table.
fn check_shape(v: FeatureValue, declared: &[Dim]) -> Result<FeatureValue, String> {
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
        Err(format!(
            "returned shape {:?} ({} values) but declares {}",
            v.shape.as_slice(),
            v.data.len(),
            crate::graph::describe(declared)
        ))
    }
}

/// Channel names of the measured data, as extractors see them.
fn channel_names(source: Source) -> (&'static str, &'static str) {
    match source {
        Source::Transfer => ("Vg", "Id"),
        Source::Transient => ("continuous_time", "drain_current"),
    }
}

/// Runs a node that reads a data source over every step of `block`.
pub fn source_chunk(
    graph: &Arc<FeatureGraph>,
    node: usize,
    source: Source,
    block: &StepBlock,
    experiment: &str,
    sampling: &[Option<Sampling>],
    watch: &dyn Watch,
) -> Part {
    let declared = &extractor(graph, node).shape;
    let (x_name, y_name) = channel_names(source);
    let mut part = Part::with_capacity(block.first_step, block.n_steps());
    for k in 0..block.n_steps() {
        let step = block.first_step + k;
        let (x, y) = block.step(k);
        let shape = [x.len() as u64];
        let channels = [
            Channel::new(x_name, &shape, x),
            Channel::new(y_name, &shape, y),
        ];
        let s = sampling.get(step).copied().flatten();
        let context = StepContext::new(experiment, step as u64)
            .with_sampling(s.map(|s| s.period), s.map(|s| s.sample_rate));
        let result = call(graph, node, &channels, context, watch);
        part.push(step, result, declared);
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
    experiment: &str,
    watch: &dyn Watch,
) -> Part {
    let declared = &extractor(graph, node).shape;
    // Channels are named after the input features, in the node's input order.
    let input_names: Vec<&str> = graph.nodes[node]
        .inputs
        .iter()
        .map(|i| match i {
            Input::Feature(j) => graph.nodes[*j].name.as_str(),
            Input::Source(s) => s.name(),
        })
        .collect();
    let mut part = Part::with_capacity(range.start, range.len());
    for (k, step) in range.enumerate() {
        let mut missing = None;
        let mut channels = Vec::with_capacity(inputs.len());
        for (name, p) in input_names.iter().zip(inputs) {
            match p.step(k) {
                Some((shape, data)) => channels.push(Channel::new(name, shape, data)),
                None => missing = Some(*name),
            }
        }
        let result = match missing {
            Some(name) => Err(format!("input '{name}' failed at this step")),
            None => call(
                graph,
                node,
                &channels,
                StepContext::new(experiment, step as u64),
                watch,
            ),
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
    experiment: &str,
    sampling: &[Option<Sampling>],
    watch: &dyn Watch,
) -> Vec<Option<Part>> {
    let range = block.first_step..block.first_step + block.n_steps();
    let mut parts: Vec<Option<Part>> = vec![None; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if node.rows != Rows::Source(source) || !matches!(node.op, Op::Extract(_)) {
            continue;
        }
        let part = if node.inputs == [Input::Source(source)] {
            source_chunk(graph, i, source, block, experiment, sampling, watch)
        } else {
            let inputs: Vec<&Part> = node
                .inputs
                .iter()
                .filter_map(|inp| match inp {
                    Input::Feature(j) => parts[*j].as_ref(),
                    Input::Source(_) => None,
                })
                .collect();
            derived_chunk(graph, i, &inputs, range.clone(), experiment, watch)
        };
        parts[i] = Some(part);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RString;

    #[test]
    fn shapes_are_checked_against_the_declaration() {
        let two = [Dim::Fixed(2)];
        let dynamic = [Dim::Dyn(RString::from("n")), Dim::Fixed(2)];
        assert!(check_shape(FeatureValue::vector(vec![1.0, 2.0]), &two).is_ok());
        let e = check_shape(FeatureValue::vector(vec![1.0, 2.0, 3.0]), &two).unwrap_err();
        assert!(e.contains("[3]") && e.contains("declares [2]"), "{e}");
        assert!(check_shape(FeatureValue::scalar(1.0), &two).is_err());
        let ok = FeatureValue::array(vec![3, 2], vec![0.0; 6]).unwrap();
        assert!(check_shape(ok, &dynamic).is_ok());
        let bad = FeatureValue::array(vec![3, 3], vec![0.0; 9]).unwrap();
        assert!(check_shape(bad, &dynamic).is_err());
    }

    #[test]
    fn parts_append_in_order() {
        let mut a = Part::with_capacity(0, 2);
        a.push(0, Ok(FeatureValue::scalar(1.0)), &[]);
        a.push(1, Err("bad".into()), &[]);
        let mut b = Part::with_capacity(2, 1);
        b.push(2, Ok(FeatureValue::scalar(3.0)), &[]);
        a.append(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.step(0).unwrap().1, &[1.0]);
        assert!(a.step(1).is_none());
        assert_eq!(a.step(2).unwrap().1, &[3.0]);
        assert_eq!(a.errors, vec![(1, "bad".to_string())]);
    }
}
