//! `oect check CONFIG...`: everything `run` validates before reading a file — the schema,
//! the extractors and their parameters, the inputs, the DAG, the expressions and shapes,
//! the output columns — for each config, reporting every problem at once.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::{OK, USAGE};
use crate::config::{self, ConfigError, FeatureConfig};
use crate::graph::{describe, FeatureGraph, Input, Op};
use crate::plugins::Registry;

/// A config and its graph, checked the way `run` checks them (without the output folder).
pub(super) fn load(
    registry: &Registry,
    name_or_path: &str,
) -> Result<(FeatureConfig, FeatureGraph), ConfigError> {
    let config = config::load(name_or_path)?;
    let graph = FeatureGraph::build(&config, registry)?;
    crate::sink::check_columns(&crate::exec::table::feature_columns(&graph))
        .map_err(|e| ConfigError::new(format!("{}: {e}", config.origin)))?;
    Ok((config, graph))
}

/// The layer of each node: 0 if it reads only data sources, else one more than its
/// deepest input. Nodes of one layer depend on none of each other.
pub(super) fn layers(graph: &FeatureGraph) -> Vec<usize> {
    let mut layer = vec![0; graph.nodes.len()];
    // nodes are in topological order, so inputs come first
    for (i, node) in graph.nodes.iter().enumerate() {
        layer[i] = node
            .inputs
            .iter()
            .filter_map(|inp| match inp {
                Input::Feature(j) => Some(layer[*j] + 1),
                Input::Source(_) => None,
            })
            .max()
            .unwrap_or(0);
    }
    layer
}

/// Checks every config; prints the problems of each on stderr and a summary of the valid
/// ones on stdout. Exit 2 if any config has a problem.
pub(super) fn check(plugin_dirs: &[PathBuf], configs: &[String], json: bool) -> Result<u8> {
    let registry = Registry::discover(plugin_dirs);
    for w in &registry.warnings {
        warning!("{w}");
    }
    let mut reports = Vec::new();
    let mut problems = 0;
    for name in configs {
        match load(&registry, name) {
            Ok((config, graph)) => {
                let layer = layers(&graph);
                let features: Vec<_> = graph
                    .nodes
                    .iter()
                    .zip(&layer)
                    .map(|(n, l)| {
                        json!({
                            "name": n.name,
                            "layer": l,
                            "kind": match n.op { Op::Extract(_) => "extractor", Op::Func(_) => "func" },
                            "definition": n.definition,
                            "shape": describe(&n.shape),
                            "unit": n.unit,
                        })
                    })
                    .collect();
                reports.push(json!({
                    "config": name,
                    "origin": config.origin,
                    "valid": true,
                    "layers": layer.iter().max().map_or(0, |l| l + 1),
                    "features": features,
                    "errors": [],
                }));
            }
            Err(e) => {
                let errors: Vec<&str> = e.problems().collect();
                problems += errors.len();
                if !json {
                    for problem in &errors {
                        error!("{problem}");
                    }
                }
                reports.push(json!({ "config": name, "valid": false, "errors": errors }));
            }
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in reports.iter().filter(|r| r["valid"] == true) {
            print_summary(r);
        }
        let bad = reports.iter().filter(|r| r["valid"] == false).count();
        if bad > 0 {
            errln!(
                "{bad} of {} {} invalid: {problems} {}",
                reports.len(),
                plural(reports.len(), "config", "configs"),
                plural(problems, "problem", "problems")
            );
        }
    }
    Ok(if problems > 0 { USAGE } else { OK })
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn print_summary(r: &serde_json::Value) {
    let features = r["features"].as_array().map_or(&[][..], Vec::as_slice);
    let layers = r["layers"].as_u64().unwrap_or(0) as usize;
    outln!(
        "{}: ok — {} {} in {} {}",
        r["origin"].as_str().unwrap_or(""),
        features.len(),
        plural(features.len(), "feature", "features"),
        layers,
        plural(layers, "layer", "layers")
    );
    for layer in 0..layers {
        outln!("  layer {layer}:");
        for f in features.iter().filter(|f| f["layer"] == layer) {
            let unit = f["unit"]
                .as_str()
                .map_or(String::new(), |u| format!(" [{u}]"));
            outln!(
                "    {:<24} {} {}, {} per step{unit}",
                f["name"].as_str().unwrap_or(""),
                f["kind"].as_str().unwrap_or(""),
                f["definition"].as_str().unwrap_or(""),
                f["shape"].as_str().unwrap_or("")
            );
        }
    }
}
