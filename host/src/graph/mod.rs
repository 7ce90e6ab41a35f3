//! The feature DAG: which feature needs which, in what order, on which rows, with what
//! per-step shape.
//!
//! Extractor features are computed step by step, reading a data source (`transfer`,
//! `transient`) or other per-step features of the same source. `func:` features are
//! compiled expressions evaluated over whole per-experiment columns (so `x.mean()` is the
//! experiment's mean, as in the predecessor's experiment mode), per step within each step.
//! Every node's per-step shape is known here, from the extractors' declarations and the
//! expressions, so the output schema never depends on the data. Unknown names, cycles, bad
//! parameters, unsafe expressions and shape errors are all rejected here, before any file
//! is read.

pub mod expr;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The data sources are the plugin API's: the host and plugins name them alike.
pub use oect_plugin_api::abi::Source;
use oect_plugin_api::abi::{Channel, InputKind};
use oect_plugin_api::Dim;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, FeatureConfig, FeatureKind};
use crate::plugins::{Extractor, Registry};
use expr::{Expr, Extent};

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

/// The rows a node has values for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// The steps of one data kind.
    Source(Source),
    /// The steps of both kinds, paired by loop iteration (a `func` over features of both).
    Aligned,
}

/// One feature of the graph.
pub struct Node {
    pub name: String,
    pub inputs: Vec<Input>,
    pub op: Op,
    pub rows: Rows,
    /// Per-step shape (without the step axis): the extractor's declaration, or what the
    /// expression gives for its inputs' shapes.
    pub shape: Vec<Dim>,
    /// The config's `unit:`, else the extractor's declared unit.
    pub unit: Option<String>,
    pub components: Option<Vec<String>>,
    /// The extractor's name, or the `func` text.
    pub definition: String,
}

/// A declared shape as text, e.g. `[n_cycles, 2]` or `a scalar`.
pub fn describe(shape: &[Dim]) -> String {
    if shape.is_empty() {
        return "a scalar".into();
    }
    let dims: Vec<String> = shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => k.to_string(),
            Dim::Dyn(name) => name.to_string(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// A plugin library the graph uses, identified by version and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedPlugin {
    pub name: String,
    pub version: String,
    pub api_version: String,
    pub library_sha256: String,
    /// The extractors of this plugin that the graph uses, so that what a worker process
    /// prints or suffers while running one can be attributed to the plugin.
    pub extractors: Vec<String>,
}

/// A validated feature graph; `nodes` are in topological order (config order among
/// independent features).
pub struct FeatureGraph {
    pub nodes: Vec<Node>,
    /// The plugins the nodes' extractors come from, sorted by name.
    pub plugins: Vec<UsedPlugin>,
    /// The used plugins' libraries in the order the registry loaded them: a worker process
    /// loads exactly these, in this order, so that every extractor name resolves to the
    /// same plugin as here (the first loaded wins; any library before the winner that
    /// offered the name would have won instead, so it is not needed).
    pub libraries: Vec<PathBuf>,
    /// SHA-256 over the config text, the oect version and every used plugin's name,
    /// version and library hash: outputs carry it, so an edited config, a new oect or a
    /// rebuilt plugin (even with the same version) triggers recomputation.
    pub content_hash: String,
}

fn extents(shape: &[Dim]) -> Vec<Extent> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => Extent::Fixed(*k as usize),
            Dim::Dyn(_) => Extent::Dyn,
        })
        .collect()
}

/// A data-dependent axis of a func result takes the name of its inputs' (e.g. `n_cycles`).
fn dims(shape: &[Extent], inputs: &[&[Dim]]) -> Vec<Dim> {
    let dyn_name = inputs
        .iter()
        .flat_map(|s| s.iter())
        .find_map(|d| match d {
            Dim::Dyn(n) => Some(n.clone()),
            Dim::Fixed(_) => None,
        })
        .unwrap_or_else(|| "n".into());
    shape
        .iter()
        .map(|e| match e {
            Extent::Fixed(k) => Dim::Fixed(*k as u64),
            Extent::Dyn => Dim::Dyn(dyn_name.clone()),
        })
        .collect()
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

    /// The channels of `source` that its per-step nodes read: the reader decodes only these.
    pub fn channels(&self, source: Source) -> Vec<Channel> {
        let mut c: Vec<Channel> = self
            .nodes
            .iter()
            .filter(|n| n.inputs == [Input::Source(source)])
            .filter_map(|n| match &n.op {
                Op::Extract(e) => Some(e.channels.iter().copied()),
                Op::Func(_) => None,
            })
            .flatten()
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// Builds and validates the graph of `config` against the loaded plugins.
    pub fn build(config: &FeatureConfig, registry: &Registry) -> Result<FeatureGraph, ConfigError> {
        let at = |m: String| format!("{}: {m}", config.origin);
        let err = |m: String| ConfigError::new(at(m));
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

        // Every problem is collected, so that one `oect check` lists them all; a feature
        // whose input is broken is skipped silently (its input's error says why).
        // (feature index, problem), reported in config order
        let mut errors: Vec<(usize, String)> = Vec::new();
        let mut broken = vec![false; config.features.len()];

        // Resolve inputs by name.
        let mut inputs: Vec<Vec<Input>> = Vec::new();
        for (i, f) in config.features.iter().enumerate() {
            let mut resolved = Vec::new();
            for name in &f.inputs {
                if let Some(&j) = index.get(name.as_str()) {
                    resolved.push(Input::Feature(j));
                } else if let Some(s) = Source::parse(name) {
                    resolved.push(Input::Source(s));
                } else {
                    let known = config
                        .features
                        .iter()
                        .map(|g| g.name.as_str())
                        .chain(["transfer", "transient"]);
                    errors.push((i, at(format!(
                        "feature '{}': input '{name}' is neither a data source (transfer, transient) nor a feature of this config{} ({})",
                        f.name,
                        crate::suggest::hint(name, known),
                        feature_names()
                    ))));
                    broken[i] = true;
                }
            }
            inputs.push(resolved);
        }

        let (order, stuck) = topological_order(&inputs);
        if !stuck.is_empty() {
            let names: Vec<&str> = stuck
                .iter()
                .map(|&i| config.features[i].name.as_str())
                .collect();
            errors.push((
                stuck[0],
                at(format!(
                    "circular dependency between features: {}",
                    names.join(", ")
                )),
            ));
        }

        // Create operations in topological order, so input shapes and rows are known.
        let mut used: Vec<UsedPlugin> = Vec::new();
        let mut position = vec![usize::MAX; config.features.len()];
        let mut nodes: Vec<Node> = Vec::with_capacity(order.len());
        for &i in &order {
            let depends_on_broken = inputs[i]
                .iter()
                .any(|inp| matches!(inp, Input::Feature(j) if position[*j] == usize::MAX));
            if broken[i] || depends_on_broken {
                broken[i] = true;
                continue;
            }
            let node = (|| -> Result<Node, ConfigError> {
                let spec = &config.features[i];
                let here = |m: String| err(format!("feature '{}': {m}", spec.name));
                let node_inputs: Vec<Input> = inputs[i]
                    .iter()
                    .map(|inp| match inp {
                        Input::Feature(j) => Input::Feature(position[*j]),
                        s => *s,
                    })
                    .collect();
                let (op, rows, shape, unit) = match &spec.kind {
                    FeatureKind::Extractor(name) => {
                        let doc = registry.extractor(name).ok_or_else(|| {
                            let e = registry
                                .create(name, &spec.params)
                                .err()
                                .unwrap_or_default();
                            let names: Vec<&str> =
                                registry.extractors().map(|d| d.name.as_str()).collect();
                            match crate::suggest::nearest(name, names.iter().copied()) {
                                Some(near) => here(format!(
                                    "unknown extractor '{name}'; did you mean '{near}'? (available: {})",
                                    names.join(", ")
                                )),
                                None => here(e),
                            }
                        })?;
                        check_params(doc, &spec.params).map_err(|e| {
                            ConfigError::many(
                                e.into_iter()
                                    .map(|m| at(format!("feature '{}': {name}: {m}", spec.name))),
                            )
                        })?;
                        let rows =
                            extractor_rows(doc.input, &node_inputs, &nodes).map_err(&here)?;
                        let extractor = registry
                            .create(name, &spec.params)
                            .map_err(|e| here(format!("{name}: {e}")))?;
                        let plugin = registry.plugin_of(name).expect("extractor has a plugin");
                        if !used.iter().any(|p: &UsedPlugin| p.name == plugin.name) {
                            let library_sha256 = crate::plugins::library_sha256(&plugin.path)
                                .map_err(|e| here(format!("{name}: {e}")))?;
                            used.push(UsedPlugin {
                                name: plugin.name.clone(),
                                version: plugin.version.clone(),
                                api_version: plugin.api_version.clone(),
                                library_sha256,
                                extractors: Vec::new(),
                            });
                        }
                        let entry = used.iter_mut().find(|p| p.name == plugin.name);
                        let entry = entry.expect("pushed above");
                        if !entry.extractors.contains(name) {
                            entry.extractors.push(name.clone());
                        }
                        let unit = Some(doc.unit.clone()).filter(|u| !u.is_empty());
                        let shape = extractor.shape.clone();
                        (Op::Extract(extractor), Rows::Source(rows), shape, unit)
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
                        let input_names: Vec<&str> =
                            spec.inputs.iter().map(String::as_str).collect();
                        let expr = Expr::compile(src, &input_names, &param_refs)
                            .map_err(|e| here(format!("invalid func: {e}")))?;
                        let input_nodes: Vec<&Node> = node_inputs
                            .iter()
                            .filter_map(|inp| match inp {
                                Input::Feature(j) => Some(&nodes[*j]),
                                Input::Source(_) => None,
                            })
                            .collect();
                        let input_shapes: Vec<Vec<Extent>> =
                            input_nodes.iter().map(|n| extents(&n.shape)).collect();
                        let result = expr
                            .per_step_shape(&input_shapes)
                            .map_err(|e| here(format!("func: {e}")))?;
                        let declared: Vec<&[Dim]> =
                            input_nodes.iter().map(|n| n.shape.as_slice()).collect();
                        let first = input_nodes.first().map(|n| n.rows);
                        let rows = if input_nodes.iter().all(|n| Some(n.rows) == first) {
                            first.unwrap_or(Rows::Aligned)
                        } else {
                            Rows::Aligned
                        };
                        (Op::Func(expr), rows, dims(&result, &declared), None)
                    }
                };
                if let Some(c) = &spec.components {
                    match shape.last() {
                        Some(Dim::Fixed(k)) if *k as usize == c.len() => {}
                        _ => {
                            return Err(here(format!(
                                "`components` names {} members, but the last axis of its per-step shape {} does not have that fixed length",
                                c.len(),
                                describe(&shape)
                            )))
                        }
                    }
                }
                let definition = match &spec.kind {
                    FeatureKind::Extractor(n) | FeatureKind::Func(n) => n.clone(),
                };
                Ok(Node {
                    name: spec.name.clone(),
                    inputs: node_inputs,
                    op,
                    rows,
                    shape,
                    unit: spec.unit.clone().or(unit),
                    components: spec.components.clone(),
                    definition,
                })
            })();
            match node {
                Ok(node) => {
                    position[i] = nodes.len();
                    nodes.push(node);
                }
                Err(e) => {
                    errors.extend(e.problems().map(|p| (i, p.to_string())));
                    broken[i] = true;
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|(i, _)| *i);
            return Err(ConfigError::many(errors.into_iter().map(|(_, e)| e)));
        }

        let libraries = registry
            .plugins()
            .filter(|p| used.iter().any(|u| u.name == p.name))
            .map(|p| p.path.clone())
            .collect();
        used.sort_by(|a, b| a.name.cmp(&b.name));
        let mut hash = Sha256::new();
        hash.update(config.text.as_bytes());
        hash.update(format!("\noect {}", env!("CARGO_PKG_VERSION")).as_bytes());
        for p in &used {
            hash.update(
                format!(
                    "\nplugin {}@{} api {} sha256 {}",
                    p.name, p.version, p.api_version, p.library_sha256
                )
                .as_bytes(),
            );
        }
        let content_hash = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(FeatureGraph {
            nodes,
            plugins: used,
            libraries,
            content_hash,
        })
    }
}

/// Kahn's algorithm, FIFO in config order: the order, and the nodes left over on a cycle
/// (those on it and those that depend on it).
fn topological_order(inputs: &[Vec<Input>]) -> (Vec<usize>, Vec<usize>) {
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
    let stuck = (0..n).filter(|i| !order.contains(i)).collect();
    (order, stuck)
}

/// The rows of an extractor node, checking that its inputs fit its input kind.
fn extractor_rows(kind: InputKind, inputs: &[Input], nodes: &[Node]) -> Result<Source, String> {
    match kind {
        InputKind::Source(want) => match inputs {
            [Input::Source(s)] if *s == want => Ok(want),
            _ => Err(format!(
                "this extractor reads the '{}' data source; set `input: {}`",
                want.name(),
                want.name()
            )),
        },
        InputKind::Features => {
            let mut rows = None;
            for inp in inputs {
                let Input::Feature(j) = inp else {
                    return Err("this extractor reads other features, not a data source".into());
                };
                let (Op::Extract(_), Rows::Source(r)) = (&nodes[*j].op, nodes[*j].rows) else {
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

/// The host's own check of an extractor's parameters against its declaration, before the
/// plugin's: every unknown name and every choice outside its list, each with the nearest
/// valid one. Types and limits are left to the plugin, whose messages say them best.
fn check_params(
    doc: &crate::plugins::ExtractorDoc,
    params: &serde_json::Value,
) -> Result<(), Vec<String>> {
    let Some(given) = params.as_object().filter(|_| !doc.any_params) else {
        return Ok(());
    };
    let names: Vec<&str> = doc.params.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    for (key, value) in given {
        let Some(param) = doc.params.iter().find(|p| p.name == *key) else {
            let accepted = if names.is_empty() {
                "this extractor takes none".to_string()
            } else {
                format!("accepted: {}", names.join(", "))
            };
            problems.push(format!(
                "unknown parameter '{key}'{} ({accepted})",
                crate::suggest::hint(key, names.iter().copied())
            ));
            continue;
        };
        // `one of: forward, reverse, both`
        let (Some(choices), Some(value)) = (param.kind.strip_prefix("one of: "), value.as_str())
        else {
            continue;
        };
        let choices: Vec<&str> = choices.split(", ").collect();
        if !choices.contains(&value) {
            problems.push(format!(
                "parameter '{key}': '{value}' is not one of {}{}",
                choices.join(", "),
                crate::suggest::hint(value, choices.iter().copied())
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
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
