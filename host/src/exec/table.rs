//! Turning one experiment's per-step results into its output table: which rows the table
//! has, how the steps of the two data kinds pair up, the derived features, and the counts.
//! Pure functions of their inputs, so both schedulers (and any future one) give the same
//! table.
//!
//! Rows are steps. A config over one data kind has one row per step of it. A config over
//! both kinds pairs the steps that ran in the same workflow loop iteration (the step tables
//! record it), like pandas aligning two series on their index: a row whose iteration lacks
//! a step of one kind (the final transfer after the loop, a step whose CSV was missing) is
//! NaN (null) in that kind's columns. Files that do not record iterations pair steps by
//! index. A derived feature over features of one kind is computed over that kind's own
//! steps, so its reductions (`x.mean()`) never see the other kind's gaps; one over both
//! kinds is computed over the paired rows, where the gaps are padding that element-wise
//! operations keep and reductions skip.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use ndarray::{ArrayViewD, IxDyn};
use oect_plugin_api::abi::Source;
use oect_plugin_api::{Dim, FailureKind};

use super::compute::Part;
use crate::graph::expr::{Cell, Column, Failure, OutCell};
use crate::graph::{FeatureGraph, Input, Node, Op, Rows};
use crate::sink::{
    ColumnKind, FeatureColumns, FeatureData, FeatureMeta, RowKeys, StepError, Table, Values,
};
use crate::source::StepKey;

/// How a feature's per-step shape is stored.
pub fn column_kind(shape: &[Dim]) -> ColumnKind {
    match shape {
        [] => ColumnKind::Scalar,
        [Dim::Fixed(k)] => ColumnKind::Expanded(*k as usize),
        _ => ColumnKind::Nested(shape.len()),
    }
}

/// The output columns of every feature of `graph`, in config order of the graph.
pub fn feature_columns(graph: &FeatureGraph) -> Vec<FeatureColumns> {
    graph
        .nodes
        .iter()
        .map(|n| FeatureColumns {
            feature: n.name.clone(),
            kind: column_kind(&n.shape),
            unit: n.unit.clone(),
            components: n.components.clone(),
        })
        .collect()
}

/// The metadata describing each feature of `graph`.
pub fn feature_meta(graph: &FeatureGraph) -> Vec<FeatureMeta> {
    graph
        .nodes
        .iter()
        .zip(feature_columns(graph))
        .map(|(n, c)| FeatureMeta {
            name: n.name.clone(),
            extractor: matches!(n.op, Op::Extract(_)).then(|| n.definition.clone()),
            func: matches!(n.op, Op::Func(_)).then(|| n.definition.clone()),
            inputs: n
                .inputs
                .iter()
                .map(|i| match i {
                    Input::Source(s) => s.name().to_string(),
                    Input::Feature(j) => graph.nodes[*j].name.clone(),
                })
                .collect(),
            rows: match n.rows {
                Rows::Source(s) => s.name().to_string(),
                Rows::Aligned => "aligned".to_string(),
            },
            shape: n
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(k) => k.to_string(),
                    Dim::Dyn(name) => name.to_string(),
                })
                .collect(),
            layout: match c.kind {
                ColumnKind::Scalar => "scalar",
                ColumnKind::Expanded(_) => "expanded",
                ColumnKind::Nested(_) => "nested",
            }
            .to_string(),
            columns: c.names(),
            unit: n.unit.clone(),
            components: n.components.clone(),
        })
        .collect()
}

/// Per row: (transfer step, transient step).
pub type RowSteps = Vec<(Option<usize>, Option<usize>)>;

/// How the rows of a table over both data kinds pair steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    LoopIteration,
    StepIndex,
}

impl Alignment {
    pub fn name(self) -> &'static str {
        match self {
            Alignment::LoopIteration => "loop_iteration",
            Alignment::StepIndex => "step_index",
        }
    }
}

/// `(iteration, k-th step of this kind in it)` per step, if every step that has an
/// iteration comes after the previous one (a single loop); `None` otherwise.
fn loop_keys(iterations: &[Option<u64>]) -> Option<Vec<Option<(u64, usize)>>> {
    let mut keys = Vec::with_capacity(iterations.len());
    let mut last: Option<(u64, usize)> = None;
    for it in iterations {
        keys.push(match it {
            None => None,
            Some(it) => {
                let key = match last {
                    Some((l, k)) if l == *it => (*it, k + 1),
                    Some((l, _)) if l > *it => return None,
                    _ => (*it, 0),
                };
                last = Some(key);
                Some(key)
            }
        });
    }
    keys.iter().any(Option::is_some).then_some(keys)
}

/// Pairs the steps of two data kinds (given their loop iterations, in step order) into
/// rows: `(step of a, step of b)`. Each kind's steps keep their order; steps of the same
/// iteration (and the same position within it) share a row; steps outside the loop get
/// rows of their own where they occur. Without usable iterations on both sides, step `k`
/// of each kind shares row `k`.
pub fn align(a: &[Option<u64>], b: &[Option<u64>]) -> (RowSteps, Alignment) {
    let (Some(ka), Some(kb)) = (loop_keys(a), loop_keys(b)) else {
        let rows = (0..a.len().max(b.len()))
            .map(|k| ((k < a.len()).then_some(k), (k < b.len()).then_some(k)))
            .collect();
        return (rows, Alignment::StepIndex);
    };
    let (mut i, mut j) = (0, 0);
    let mut rows = Vec::with_capacity(a.len().max(b.len()));
    while i < ka.len() || j < kb.len() {
        let row = match (ka.get(i), kb.get(j)) {
            (Some(None), _) | (Some(_), None) => (Some(i), None),
            (None, Some(_)) | (Some(Some(_)), Some(None)) => (None, Some(j)),
            (Some(Some(x)), Some(Some(y))) if x == y => (Some(i), Some(j)),
            (Some(Some(x)), Some(Some(y))) if x < y => (Some(i), None),
            (Some(Some(_)), Some(Some(_))) => (None, Some(j)),
            (None, None) => break,
        };
        i += usize::from(row.0.is_some());
        j += usize::from(row.1.is_some());
        rows.push(row);
    }
    (rows, Alignment::LoopIteration)
}

/// The rows of one experiment's table.
#[derive(Debug, Clone, PartialEq)]
pub struct RowLayout {
    pub rows: RowSteps,
    /// `Some` for a table over both data kinds.
    pub alignment: Option<Alignment>,
    pub keys: RowKeys,
    /// Start of the test, which `elapsed_s` counts from.
    pub started: Option<NaiveDateTime>,
}

impl RowLayout {
    fn step_of(&self, row: usize, source: Source) -> Option<usize> {
        let (t, s) = self.rows[row];
        match source {
            Source::Transfer => t,
            Source::Transient => s,
        }
    }
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// The rows of a table over `sources` (one or both kinds), with their key columns from the
/// step records. The test started at `created_at` (the file's attribute), or at its first
/// step if that is earlier or the attribute is missing.
pub fn row_layout(
    sources: &[Source],
    transfer: &[StepKey],
    transient: &[StepKey],
    created_at: Option<NaiveDateTime>,
) -> RowLayout {
    let iterations = |r: &[StepKey]| r.iter().map(|s| s.loop_iteration).collect::<Vec<_>>();
    let (rows, alignment) = match sources {
        [Source::Transfer] => ((0..transfer.len()).map(|k| (Some(k), None)).collect(), None),
        [Source::Transient] => (
            (0..transient.len()).map(|k| (None, Some(k))).collect(),
            None,
        ),
        _ => {
            let (rows, a) = align(&iterations(transfer), &iterations(transient));
            (rows, Some(a))
        }
    };
    let first_step = transfer
        .iter()
        .chain(transient)
        .filter_map(|r| r.start_time)
        .min();
    let started = match (created_at, first_step) {
        (Some(c), Some(f)) => Some(c.min(f)),
        (c, f) => c.or(f),
    };
    let mut keys = RowKeys::default();
    let mut steps = (Vec::new(), Vec::new());
    for (r, &(t, s)) in rows.iter().enumerate() {
        let records = [t.map(|k| &transfer[k]), s.map(|k| &transient[k])];
        let start = records.iter().flatten().filter_map(|r| r.start_time).min();
        keys.step_index.push(r as i64);
        keys.loop_iteration.push(
            records
                .iter()
                .flatten()
                .find_map(|r| r.loop_iteration)
                .map(|i| i as i64),
        );
        keys.start_time.push(start.map(micros));
        keys.elapsed_s.push(match (start, started) {
            (Some(s), Some(t0)) => Some((micros(s) - micros(t0)) as f64 * 1e-6),
            _ => None,
        });
        steps.0.push(t.map(|k| k as i64));
        steps.1.push(s.map(|k| k as i64));
    }
    if alignment.is_some() {
        keys.source_steps = Some(steps);
    }
    RowLayout {
        rows,
        alignment,
        keys,
        started,
    }
}

/// One experiment's table and what went wrong in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    pub table: Table,
    /// Per feature: failed steps (any kind but `no_result`), steps without a result
    /// ("no fit"), steps without a value by failure kind, and steps whose value holds NaN
    /// or ±inf.
    pub feature_errors: BTreeMap<String, usize>,
    pub feature_no_fit: BTreeMap<String, usize>,
    pub feature_failures: BTreeMap<String, BTreeMap<String, usize>>,
    pub feature_nonfinite: BTreeMap<String, usize>,
    /// Every failed and no-fit step, in feature order.
    pub errors: Vec<StepError>,
}

/// A node's values over its own rows (its data kind's steps, or the paired rows).
enum NodeValues {
    Part(Part),
    Cells(Vec<OutCell>),
}

impl NodeValues {
    fn len(&self) -> usize {
        match self {
            NodeValues::Part(p) => p.len(),
            NodeValues::Cells(c) => c.len(),
        }
    }

    /// Step `k`: its shape and values, or its failure (`Err(None)`: absent).
    fn step(
        &self,
        k: usize,
        failures: &[Option<Failure>],
    ) -> Result<(Vec<usize>, &[f64]), Option<Failure>> {
        match self {
            NodeValues::Part(p) => match p.step(k) {
                Some((shape, v)) => Ok((shape.iter().map(|&d| d as usize).collect(), v)),
                None => Err(Some(
                    failures
                        .get(k)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| "failed".to_string().into()),
                )),
            },
            NodeValues::Cells(c) => match &c[k] {
                OutCell::Value(a) => Ok((
                    a.shape().to_vec(),
                    a.as_slice().expect("owned results are in standard layout"),
                )),
                OutCell::Failed(f) => Err(Some(f.clone())),
                OutCell::Absent => Err(None),
            },
        }
    }
}

/// What a derived feature sees at a step where its input has no value: no result where
/// the input has none, otherwise a failed input.
fn input_failure(input: &str, failure: &Failure) -> Failure {
    if failure.kind == FailureKind::NoResult {
        Failure {
            kind: FailureKind::NoResult,
            message: format!("no fit: input '{input}' has no result at this step").into(),
        }
    } else {
        Failure {
            kind: FailureKind::InputFailed,
            message: format!("input '{input}' failed at this step").into(),
        }
    }
}

/// Builds the table from the complete per-step columns of the extractor nodes (indexed like
/// `graph.nodes`, `None` for expression nodes), evaluating the expressions.
pub fn assemble(
    graph: &FeatureGraph,
    mut parts: Vec<Option<Part>>,
    layout: &RowLayout,
) -> Assembled {
    let n_rows = layout.rows.len();
    let mut out = Assembled {
        table: Table {
            keys: layout.keys.clone(),
            features: Vec::new(),
        },
        feature_errors: BTreeMap::new(),
        feature_no_fit: BTreeMap::new(),
        feature_failures: BTreeMap::new(),
        feature_nonfinite: BTreeMap::new(),
        errors: Vec::new(),
    };
    let mut values: Vec<Option<NodeValues>> = (0..graph.nodes.len()).map(|_| None).collect();
    // The failure of each step of each extractor node.
    let mut messages: Vec<Vec<Option<Failure>>> = vec![Vec::new(); graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let mut whole_failure = false;
        let v = match &node.op {
            Op::Extract(_) => {
                let part = parts[i].take().expect("per-step column is complete");
                let mut m = vec![None; part.len()];
                for f in &part.failures {
                    if let Some(slot) = m.get_mut(f.step - part.first) {
                        *slot = Some(Failure {
                            kind: f.kind,
                            message: f.message.as_str().into(),
                        });
                    }
                }
                messages[i] = m;
                NodeValues::Part(part)
            }
            Op::Func(expr) => {
                let domain = match node.rows {
                    Rows::Aligned => n_rows,
                    Rows::Source(_) => node
                        .inputs
                        .iter()
                        .find_map(|inp| match inp {
                            Input::Feature(j) => values[*j].as_ref().map(NodeValues::len),
                            Input::Source(_) => None,
                        })
                        .unwrap_or(0),
                };
                let columns: Vec<Column<'_>> = node
                    .inputs
                    .iter()
                    .map(|inp| {
                        let Input::Feature(j) = inp else {
                            unreachable!("func features read features")
                        };
                        let input = &graph.nodes[*j];
                        let vals = values[*j].as_ref().expect("inputs come first");
                        let cell = |k: usize| match vals.step(k, &messages[*j]) {
                            Ok((shape, data)) => Cell::Value(
                                ArrayViewD::from_shape(IxDyn(&shape), data)
                                    .expect("shape matches the values"),
                            ),
                            Err(Some(f)) => Cell::Failed(input_failure(&input.name, &f)),
                            Err(None) => Cell::Absent,
                        };
                        let cells = match (node.rows, input.rows) {
                            (Rows::Aligned, Rows::Source(s)) => (0..n_rows)
                                .map(|r| layout.step_of(r, s).map_or(Cell::Absent, cell))
                                .collect(),
                            _ => (0..vals.len()).map(cell).collect(),
                        };
                        Column {
                            rank: input.shape.len(),
                            cells,
                        }
                    })
                    .collect();
                match expr.eval_steps(&columns) {
                    Ok(cells) => NodeValues::Cells(cells),
                    Err(message) => {
                        whole_failure = true;
                        out.errors.push(StepError {
                            feature: node.name.clone(),
                            step: None,
                            kind: FailureKind::InvalidInput,
                            message: message.clone(),
                        });
                        NodeValues::Cells(vec![OutCell::Failed(message.into()); domain])
                    }
                }
            }
        };
        count(&mut out, node, &v, &messages[i], whole_failure);
        out.table.features.push(place(node, &v, layout));
        values[i] = Some(v);
    }
    out
}

/// Counts failures, no-fits and non-finite values of one feature, and records its failed
/// steps (a whole-feature failure is recorded once, with `step: None`).
fn count(
    out: &mut Assembled,
    node: &Node,
    v: &NodeValues,
    failures: &[Option<Failure>],
    whole_failure: bool,
) {
    let (mut errors, mut no_fit, mut nonfinite) = (0, 0, 0);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut record = |step: usize, failure: &Failure, out: &mut Assembled| {
        if failure.kind.is_fault() {
            errors += 1;
        } else {
            no_fit += 1;
        }
        *by_kind
            .entry(failure.kind.as_str().to_string())
            .or_default() += 1;
        if !whole_failure {
            out.errors.push(StepError {
                feature: node.name.clone(),
                step: Some(step),
                kind: failure.kind,
                message: failure.message.to_string(),
            });
        }
    };
    match v {
        NodeValues::Part(p) => {
            for k in 0..p.len() {
                match p.step(k) {
                    Some((_, data)) => {
                        nonfinite += usize::from(data.iter().any(|x| !x.is_finite()))
                    }
                    None => {
                        let failure = failures
                            .get(k)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| "failed".to_string().into());
                        record(p.first + k, &failure, out)
                    }
                }
            }
        }
        NodeValues::Cells(cells) => {
            for (k, c) in cells.iter().enumerate() {
                match c {
                    OutCell::Value(a) => nonfinite += usize::from(a.iter().any(|x| !x.is_finite())),
                    OutCell::Failed(f) => record(k, f, out),
                    OutCell::Absent => {}
                }
            }
        }
    }
    out.feature_errors.insert(node.name.clone(), errors);
    out.feature_no_fit.insert(node.name.clone(), no_fit);
    out.feature_failures.insert(node.name.clone(), by_kind);
    out.feature_nonfinite.insert(node.name.clone(), nonfinite);
}

/// A node's values placed on the table's rows.
fn place(node: &Node, v: &NodeValues, layout: &RowLayout) -> FeatureData {
    let columns = FeatureColumns {
        feature: node.name.clone(),
        kind: column_kind(&node.shape),
        unit: node.unit.clone(),
        components: node.components.clone(),
    };
    let n_rows = layout.rows.len();
    let no_errors: [Option<Failure>; 0] = [];
    // The node's own step (or row) shown in table row r.
    let own = |r: usize| match node.rows {
        Rows::Aligned => Some(r),
        Rows::Source(s) if layout.alignment.is_some() => layout.step_of(r, s),
        Rows::Source(_) => (r < v.len()).then_some(r),
    };
    let at = |r: usize| own(r).and_then(|k| v.step(k, &no_errors).ok());
    let values = match columns.kind {
        ColumnKind::Scalar => Values::Float(
            (0..n_rows)
                .map(|r| at(r).map_or(f64::NAN, |(_, d)| d[0]))
                .collect(),
        ),
        ColumnKind::Expanded(k) => Values::Expanded(
            (0..k)
                .map(|j| {
                    (0..n_rows)
                        .map(|r| at(r).map_or(f64::NAN, |(_, d)| d[j]))
                        .collect()
                })
                .collect(),
        ),
        ColumnKind::Nested(_) => Values::Nested(
            (0..n_rows)
                .map(|r| {
                    at(r).map(|(shape, d)| (shape.iter().map(|&s| s as u64).collect(), d.to_vec()))
                })
                .collect(),
        ),
    };
    FeatureData { columns, values }
}

#[cfg(test)]
mod tests;
