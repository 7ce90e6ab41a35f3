//! The feature DAG: which feature needs which, in what order, on which rows.
//!
//! Data sources (`transfer`, `transient`) are layer 0. Extractor features are
//! computed step by step: layer 1 reads a data source, higher layers read other
//! per-step features of the same source. `func:` features are compiled expressions
//! evaluated over whole per-experiment columns (so `x.mean()` is the experiment's
//! mean, as in the predecessor's experiment mode); they form the layers above their
//! inputs. Unknown names, duplicates, cycles, bad parameters and unsafe expressions
//! are all rejected here, before any file is read.

pub mod expr;

use std::collections::BTreeMap;

use oect_plugin_api::{Dim, InputKind};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, FeatureConfig, FeatureKind};
use crate::plugins::{Extractor, Registry};
use expr::Expr;

/// A measured data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Transfer,
    Transient,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Transfer => "transfer",
            Source::Transient => "transient",
        }
    }

    fn parse(name: &str) -> Option<Source> {
        match name {
            "transfer" => Some(Source::Transfer),
            "transient" => Some(Source::Transient),
            _ => None,
        }
    }
}

/// Where a node reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Source(Source),
    /// Index of another node.
    Feature(usize),
}

/// How a node is computed.
pub enum Op {
    /// Per step, by a plugin extractor.
    Extract(Extractor),
    /// Over whole columns, by a compiled expression.
    Func(Expr),
}

/// One feature of the graph.
pub struct Node {
    pub name: String,
    pub inputs: Vec<Input>,
    pub op: Op,
    /// 0 is reserved for data sources; 1 + the longest path from a source.
    pub layer: usize,
    /// For per-step nodes: the data source whose steps are its rows.
    pub rows: Option<Source>,
    /// For extractor nodes: (extractor, plugin name, plugin version).
    pub provenance: Option<(String, String, String)>,
}

impl Node {
    /// Per-step shape declared by the extractor (`None` for expressions).
    pub fn declared_shape(&self) -> Option<&[Dim]> {
        match &self.op {
            Op::Extract(e) => Some(&e.shape),
            Op::Func(_) => None,
        }
    }
}

/// A validated feature graph; `nodes` are in topological order (config order among
/// independent features).
pub struct FeatureGraph {
    pub nodes: Vec<Node>,
    /// Node indices per layer, layer 1 first.
    pub layers: Vec<Vec<usize>>,
    /// Hash of the config text and the plugins it uses: outputs carry it, so an edited
    /// config or an updated plugin triggers recomputation.
    pub content_hash: String,
}

impl FeatureGraph {
    /// Data sources some node reads.
    pub fn sources(&self) -> Vec<Source> {
        let mut s: Vec<Source> = self
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter())
            .filter_map(|i| match i {
                Input::Source(s) => Some(*s),
                Input::Feature(_) => None,
            })
            .collect();
        s.sort();
        s.dedup();
        s
    }

    /// Builds and validates the graph of `config` against the loaded plugins.
    pub fn build(config: &FeatureConfig, registry: &Registry) -> Result<FeatureGraph, ConfigError> {
        let err = |m: String| ConfigError(format!("{}: {m}", config.origin));
        let index: BTreeMap<&str, usize> = config
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        let feature_names = || -> String {
            let v: Vec<&str> = config.features.iter().map(|f| f.name.as_str()).collect();
            v.join(", ")
        };

        // Resolve inputs by name.
        let mut inputs: Vec<Vec<Input>> = Vec::new();
        for f in &config.features {
            let mut resolved = Vec::new();
            for name in &f.inputs {
                let input = if let Some(&i) = index.get(name.as_str()) {
                    Input::Feature(i)
                } else if let Some(s) = Source::parse(name) {
                    Input::Source(s)
                } else {
                    return Err(err(format!(
                        "feature '{}': input '{name}' is neither a data source (transfer, transient) nor a feature of this config ({})",
                        f.name,
                        feature_names()
                    )));
                };
                resolved.push(input);
            }
            inputs.push(resolved);
        }

        let order = topological_order(&inputs).map_err(|stuck| {
            let names: Vec<&str> = stuck
                .iter()
                .map(|&i| config.features[i].name.as_str())
                .collect();
            err(format!(
                "circular dependency between features: {}",
                names.join(", ")
            ))
        })?;

        // Create operations in topological order, so input shapes and rows are known.
        let mut position = vec![usize::MAX; config.features.len()];
        let mut nodes: Vec<Node> = Vec::with_capacity(order.len());
        for &i in &order {
            let spec = &config.features[i];
            let here = |m: String| err(format!("feature '{}': {m}", spec.name));
            let node_inputs: Vec<Input> = inputs[i]
                .iter()
                .map(|inp| match inp {
                    Input::Feature(j) => Input::Feature(position[*j]),
                    s => *s,
                })
                .collect();
            let layer = 1 + node_inputs
                .iter()
                .map(|inp| match inp {
                    Input::Source(_) => 0,
                    Input::Feature(j) => nodes[*j].layer,
                })
                .max()
                .unwrap_or(0);
            let (op, rows, provenance) = match &spec.kind {
                FeatureKind::Extractor(name) => {
                    let doc = registry.extractor(name).ok_or_else(|| {
                        let e = registry
                            .create(name, &spec.params)
                            .err()
                            .unwrap_or_default();
                        here(e)
                    })?;
                    let rows = extractor_rows(doc.input, &node_inputs, &nodes).map_err(&here)?;
                    let extractor = registry
                        .create(name, &spec.params)
                        .map_err(|e| here(format!("{name}: {e}")))?;
                    let plugin = registry.plugin_of(name).expect("extractor has a plugin");
                    (
                        Op::Extract(extractor),
                        Some(rows),
                        Some((name.clone(), plugin.name.clone(), plugin.version.clone())),
                    )
                }
                FeatureKind::Func(src) => {
                    if node_inputs
                        .iter()
                        .any(|inp| matches!(inp, Input::Source(_)))
                    {
                        return Err(here(
                            "a func feature takes other features as input, not a data source"
                                .into(),
                        ));
                    }
                    let params = numeric_params(&spec.params).map_err(&here)?;
                    let param_refs: Vec<(&str, f64)> =
                        params.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    let input_names: Vec<&str> = spec.inputs.iter().map(String::as_str).collect();
                    let expr = Expr::compile(src, &input_names, &param_refs)
                        .map_err(|e| here(format!("invalid func: {e}")))?;
                    (Op::Func(expr), None, None)
                }
            };
            position[i] = nodes.len();
            nodes.push(Node {
                name: spec.name.clone(),
                inputs: node_inputs,
                op,
                layer,
                rows,
                provenance,
            });
        }

        let depth = nodes.iter().map(|n| n.layer).max().unwrap_or(0);
        let layers = (1..=depth)
            .map(|l| (0..nodes.len()).filter(|&i| nodes[i].layer == l).collect())
            .collect();
        let mut hash = Sha256::new();
        hash.update(config.text.as_bytes());
        for n in &nodes {
            if let Some((ex, plugin, version)) = &n.provenance {
                hash.update(format!("\n{ex}={plugin}@{version}").as_bytes());
            }
        }
        let content_hash = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(FeatureGraph {
            nodes,
            layers,
            content_hash,
        })
    }
}

/// Kahn's algorithm, FIFO in config order; on a cycle, returns the nodes left over.
fn topological_order(inputs: &[Vec<Input>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = inputs.len();
    let mut indegree: Vec<usize> = inputs
        .iter()
        .map(|ins| {
            ins.iter()
                .filter(|i| matches!(i, Input::Feature(_)))
                .count()
        })
        .collect();
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for (j, ins) in inputs.iter().enumerate() {
            for inp in ins {
                if *inp == Input::Feature(i) {
                    indegree[j] -= 1;
                    if indegree[j] == 0 {
                        queue.push_back(j);
                    }
                }
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err((0..n).filter(|i| !order.contains(i)).collect())
    }
}

/// The rows of an extractor node, checking that its inputs fit its input kind.
fn extractor_rows(kind: InputKind, inputs: &[Input], nodes: &[Node]) -> Result<Source, String> {
    match kind {
        InputKind::Transfer | InputKind::Transient => {
            let want = if kind == InputKind::Transfer {
                Source::Transfer
            } else {
                Source::Transient
            };
            match inputs {
                [Input::Source(s)] if *s == want => Ok(want),
                _ => Err(format!(
                    "this extractor reads the '{}' data source; set `input: {}`",
                    want.name(),
                    want.name()
                )),
            }
        }
        InputKind::Features => {
            let mut rows = None;
            for inp in inputs {
                let Input::Feature(j) = inp else {
                    return Err("this extractor reads other features, not a data source".into());
                };
                let Some(r) = nodes[*j].rows else {
                    return Err(format!(
                        "input '{}' is a func feature (whole-column); per-step extractors need per-step inputs",
                        nodes[*j].name
                    ));
                };
                if rows.is_some_and(|prev| prev != r) {
                    return Err("per-step inputs must all come from the same data source".into());
                }
                rows = Some(r);
            }
            rows.ok_or_else(|| "no input features given".to_string())
        }
    }
}

/// `func` params: lambda arguments beyond the inputs are bound to these by name.
fn numeric_params(params: &serde_json::Value) -> Result<Vec<(String, f64)>, String> {
    let Some(map) = params.as_object() else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(k, v)| match v {
            serde_json::Value::Bool(b) => Ok((k.clone(), f64::from(u8::from(*b)))),
            v => v
                .as_f64()
                .map(|x| (k.clone(), x))
                .ok_or_else(|| format!("param '{k}' of a func feature must be a number, got {v}")),
        })
        .collect()
}

#[cfg(test)]
mod tests;
