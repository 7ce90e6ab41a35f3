//! Turning one experiment's per-step results into its output table.
//!
//! Rows are steps. When a config reads both data sources, the table has as many rows
//! as the longer one (real files have 5001 transfer but 5000 transient steps); columns
//! of the shorter source are NaN (or null) past its end. An expression that combines
//! columns of different lengths is an error for that feature, never a silent
//! misalignment.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use oect_plugin_api::Dim;

use super::compute::Part;
use crate::graph::{FeatureGraph, Input, Op};

/// One output column.
#[derive(Debug, Clone, PartialEq)]
pub enum OutColumn {
    /// A Float64 column.
    Float { name: String, values: Vec<f64> },
    /// A nested list column of depth `rank` (lossless n-d per-step values); `None` rows
    /// are null (a failed step, or past the end of a shorter source).
    Nested {
        name: String,
        rank: usize,
        rows: Vec<Option<(Vec<u64>, Vec<f64>)>>,
    },
}

/// A failure recorded for one feature (`step == None`: the whole feature).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepError {
    pub feature: String,
    pub step: Option<usize>,
    pub message: String,
}

/// One experiment's table, ready for the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub rows: usize,
    pub columns: Vec<OutColumn>,
    /// Failed cells per feature (0 for clean features).
    pub error_counts: BTreeMap<String, usize>,
    /// Steps whose value holds NaN or ±inf, per extractor feature. Not errors: several
    /// extractors return NaN by design (no fit, padding), but a researcher should see
    /// how many there are.
    pub nonfinite_counts: BTreeMap<String, usize>,
    pub errors: Vec<StepError>,
    /// Features stored as one Float64 column.
    pub scalar_features: Vec<String>,
    /// Features expanded to `name_0..name_{k-1}`, with k.
    pub expanded_features: BTreeMap<String, usize>,
    /// Features stored as nested list columns.
    pub nested_features: Vec<String>,
}

/// Builds the table from the complete per-step columns (indexed like `graph.nodes`,
/// `None` for expression nodes), evaluating the expressions.
pub fn assemble(graph: &FeatureGraph, mut steps: Vec<Option<Part>>, rows: usize) -> Table {
    let mut table = Table {
        rows,
        columns: Vec::new(),
        error_counts: BTreeMap::new(),
        nonfinite_counts: BTreeMap::new(),
        errors: Vec::new(),
        scalar_features: Vec::new(),
        expanded_features: BTreeMap::new(),
        nested_features: Vec::new(),
    };
    // Whole-column values of every node, built lazily for expression inputs.
    let mut arrays: Vec<Option<ArrayD<f64>>> = vec![None; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        match &node.op {
            Op::Extract(extractor) => {
                let part = steps[i].take().expect("per-step column is complete");
                table
                    .error_counts
                    .insert(node.name.clone(), part.errors.len());
                let nonfinite = (0..part.len())
                    .filter(|&k| {
                        part.step(k)
                            .is_some_and(|(_, v)| v.iter().any(|x| !x.is_finite()))
                    })
                    .count();
                table.nonfinite_counts.insert(node.name.clone(), nonfinite);
                table
                    .errors
                    .extend(part.errors.iter().map(|(step, message)| StepError {
                        feature: node.name.clone(),
                        step: Some(*step),
                        message: message.clone(),
                    }));
                if graph
                    .nodes
                    .iter()
                    .any(|n| matches!(n.op, Op::Func(_)) && n.inputs.contains(&Input::Feature(i)))
                {
                    arrays[i] = Some(to_array(&part));
                }
                table.push_steps(&node.name, &extractor.shape, &part);
            }
            Op::Func(expr) => {
                let result = func_inputs(graph, i, &arrays).and_then(|(n, inputs)| {
                    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
                    let out = expr.eval(&views)?;
                    if out.ndim() == 0 || out.shape()[0] != n {
                        return Err(format!(
                            "the expression returned shape {:?}; expected one value per step ({n} steps)",
                            out.shape()
                        ));
                    }
                    Ok(out)
                });
                match result {
                    Ok(out) => {
                        table.error_counts.insert(node.name.clone(), 0);
                        table.push_array(&node.name, &out);
                        arrays[i] = Some(out);
                    }
                    Err(message) => {
                        table.error_counts.insert(node.name.clone(), rows);
                        table.errors.push(StepError {
                            feature: node.name.clone(),
                            step: None,
                            message,
                        });
                        table.push_float(&node.name, vec![f64::NAN; rows]);
                        arrays[i] = Some(ArrayD::from_elem(IxDyn(&[rows]), f64::NAN));
                    }
                }
            }
        }
    }
    table
}

fn func_inputs(
    graph: &FeatureGraph,
    node: usize,
    arrays: &[Option<ArrayD<f64>>],
) -> Result<(usize, Vec<ArrayD<f64>>), String> {
    let mut inputs = Vec::new();
    let mut n: Option<(usize, &str)> = None;
    for input in &graph.nodes[node].inputs {
        let Input::Feature(j) = input else {
            return Err("a func feature cannot read a data source".into());
        };
        let a = arrays[*j]
            .clone()
            .expect("inputs come first in topological order");
        let len = a.shape()[0];
        let name = graph.nodes[*j].name.as_str();
        match n {
            Some((m, other)) if m != len => {
                return Err(format!(
                    "inputs have different numbers of steps: '{other}' has {m}, '{name}' has {len}"
                ))
            }
            _ => n = Some((len, name)),
        }
        inputs.push(a);
    }
    Ok((n.map_or(0, |(m, _)| m), inputs))
}

/// A per-step column as an array with the step axis first; per-step arrays of
/// different lengths are NaN-padded to the largest (as the predecessor stacked them),
/// failed steps are NaN.
fn to_array(part: &Part) -> ArrayD<f64> {
    let rank = part
        .shapes
        .iter()
        .flatten()
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let mut dims = vec![0usize; rank];
    for shape in part.shapes.iter().flatten() {
        if shape.len() == rank {
            for (d, s) in dims.iter_mut().zip(shape) {
                *d = (*d).max(*s as usize);
            }
        }
    }
    let mut full = vec![part.len()];
    full.extend(&dims);
    let mut array = ArrayD::from_elem(IxDyn(&full), f64::NAN);
    for k in 0..part.len() {
        let Some((shape, values)) = part.step(k) else {
            continue;
        };
        if shape.len() != rank {
            continue;
        }
        let mut index = vec![k; rank + 1];
        for (flat, v) in values.iter().enumerate() {
            let mut rest = flat;
            for axis in (0..rank).rev() {
                let s = shape[axis] as usize;
                index[axis + 1] = rest % s;
                rest /= s;
            }
            array[IxDyn(&index)] = *v;
        }
    }
    array
}

impl Table {
    fn push_float(&mut self, name: &str, mut values: Vec<f64>) {
        values.resize(self.rows, f64::NAN);
        self.columns.push(OutColumn::Float {
            name: name.to_string(),
            values,
        });
    }

    fn push_steps(&mut self, name: &str, declared: &[Dim], part: &Part) {
        match declared {
            [] => {
                let values = (0..part.len())
                    .map(|k| part.step(k).map_or(f64::NAN, |(_, v)| v[0]))
                    .collect();
                self.scalar_features.push(name.to_string());
                self.push_float(name, values);
            }
            [Dim::Fixed(k)] => {
                let k = *k as usize;
                for j in 0..k {
                    let values = (0..part.len())
                        .map(|s| part.step(s).map_or(f64::NAN, |(_, v)| v[j]))
                        .collect();
                    self.push_float(&format!("{name}_{j}"), values);
                }
                self.expanded_features.insert(name.to_string(), k);
            }
            _ => {
                let mut rows: Vec<_> = (0..part.len())
                    .map(|k| part.step(k).map(|(s, v)| (s.to_vec(), v.to_vec())))
                    .collect();
                rows.resize(self.rows, None);
                self.nested_features.push(name.to_string());
                self.columns.push(OutColumn::Nested {
                    name: name.to_string(),
                    rank: declared.len(),
                    rows,
                });
            }
        }
    }

    fn push_array(&mut self, name: &str, a: &ArrayD<f64>) {
        match a.ndim() {
            1 => {
                self.scalar_features.push(name.to_string());
                self.push_float(name, a.iter().copied().collect());
            }
            2 => {
                let k = a.shape()[1];
                for j in 0..k {
                    let values = a.index_axis(ndarray::Axis(1), j).iter().copied().collect();
                    self.push_float(&format!("{name}_{j}"), values);
                }
                self.expanded_features.insert(name.to_string(), k);
            }
            _ => {
                let inner: Vec<u64> = a.shape()[1..].iter().map(|&d| d as u64).collect();
                let mut rows: Vec<_> = a
                    .outer_iter()
                    .map(|row| Some((inner.clone(), row.iter().copied().collect())))
                    .collect();
                rows.resize(self.rows, None);
                self.nested_features.push(name.to_string());
                self.columns.push(OutColumn::Nested {
                    name: name.to_string(),
                    rank: a.ndim() - 1,
                    rows,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oect_plugin_api::FeatureValue;

    fn part(values: &[Option<Vec<f64>>]) -> Part {
        let mut p = Part {
            first: 0,
            values: Vec::new(),
            offsets: vec![0],
            shapes: Vec::new(),
            errors: Vec::new(),
        };
        for (k, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    p.values.extend(v);
                    p.shapes
                        .push(Some(FeatureValue::vector(v.clone()).shape.into_vec()));
                }
                None => {
                    p.shapes.push(None);
                    p.errors.push((k, "failed".into()));
                }
            }
            p.offsets.push(p.values.len());
        }
        p
    }

    #[test]
    fn ragged_steps_are_nan_padded_for_expressions() {
        let p = part(&[Some(vec![1.0, 2.0, 3.0]), None, Some(vec![4.0])]);
        let a = to_array(&p);
        assert_eq!(a.shape(), &[3, 3]);
        assert_eq!(a[[0, 2]], 3.0);
        assert!(a[[1, 0]].is_nan());
        assert_eq!(a[[2, 0]], 4.0);
        assert!(a[[2, 1]].is_nan());
    }
}
