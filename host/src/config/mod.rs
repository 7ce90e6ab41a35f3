//! Feature configs: the predecessor's YAML schema, parsed and validated before any work.
//!
//! Accepted shapes of `features`: the predecessor's list of
//! `{name, extractor | func, input, params}` items, or a mapping
//! `name → {extractor | func, input, params}`. The root and the sub-objects follow the
//! predecessor's strictness (unknown root keys are allowed; `data_source`,
//! `versioning`, `advanced.caching`, `advanced.parallel` and `postprocessing` items
//! reject unknown keys). Feature items are stricter than the predecessor's: an unknown
//! key there (a typo such as `parmas:`) is an error, because silently ignoring it would
//! compute the wrong feature.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// What a feature computes.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// A plugin extractor, by registry name.
    Extractor(String),
    /// A derived feature: a `lambda` string over other features.
    Func(String),
}

/// One feature of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: FeatureKind,
    /// Data sources (`transfer`, `transient`) or other features' names, in order.
    pub inputs: Vec<String>,
    /// A JSON object.
    pub params: Json,
    /// `unit:` of the column(s), written to the output's field metadata and attrs.
    pub unit: Option<String>,
    /// `components:` names of the last axis of a per-step array (e.g. `[tau_on, tau_off]`),
    /// so readers of the output need not guess which member is which.
    pub components: Option<Vec<String>>,
}

/// A loaded, schema-valid feature config.
#[derive(Debug, Clone)]
pub struct FeatureConfig {
    /// Name used in output file names: the built-in's name, or the file stem.
    pub name: String,
    /// Where it came from (`builtin:<name>` or the path as given).
    pub origin: String,
    /// What makes two configs the same config: `builtin:<name>`, or the canonical path of the
    /// file. Outputs record it, so a different config that happens to have the same name is
    /// never mistaken for this one (see `sink`).
    pub identity: String,
    /// The exact text, hashed into output names so an edited config is recomputed.
    pub text: String,
    pub features: Vec<FeatureSpec>,
}

/// A config problem, naming the config and, where known, the feature and key. A config
/// with several problems has one line per problem, so that all of them are fixed in one
/// go (`oect check`, `oect run`).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(Vec<String>);

impl ConfigError {
    /// One problem.
    pub fn new(problem: impl Into<String>) -> ConfigError {
        ConfigError(vec![problem.into()])
    }

    /// Several problems, each reported on its own (a problem may span lines, e.g. an
    /// expression with a caret under the error).
    pub fn many(problems: impl IntoIterator<Item = String>) -> ConfigError {
        ConfigError(problems.into_iter().collect())
    }

    /// The problems, in the order found.
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "v2_transfer_basic",
        "transfer: gm_max, Von (forward/reverse) and absI_max — 5 features",
        include_str!("../../configs/v2_transfer_basic.yaml"),
    ),
    (
        "v2_transfer_basic_derived",
        "v2_transfer_basic + z-scored gm_max_forward and the gm forward/reverse ratio — 7 features",
        include_str!("../../configs/v2_transfer_basic_derived.yaml"),
    ),
    (
        "v2_quick_analysis",
        "transfer: gm_max_forward, Von_forward, absI_max — 3 features",
        include_str!("../../configs/v2_quick_analysis.yaml"),
    ),
    (
        "v2_ml_ready",
        "transfer: basic features, gm_max/Von coordinates and derived ratios — 12 features",
        include_str!("../../configs/v2_ml_ready.yaml"),
    ),
    (
        "v2_mixed",
        "transfer + transient: gm_max, Von, absI_max, peak current, AutoTau decay time, derived — 8 features",
        include_str!("../../configs/v2_mixed.yaml"),
    ),
    (
        "v2_transient_cycles",
        "transient: a peak per cycle (up to 100 per step) and their mean, std and decay rate — 4 features",
        include_str!("../../configs/v2_transient_cycles.yaml"),
    ),
    (
        "transient_tau",
        "transient: per-cycle tau_on/tau_off (AutoTau) and per-step statistics — 7 features",
        include_str!("../../configs/transient_tau.yaml"),
    ),
];

/// Shipped configs: (name, summary).
pub fn builtin() -> impl Iterator<Item = (&'static str, &'static str)> {
    BUILTIN.iter().map(|(n, s, _)| (*n, *s))
}

/// The text of a shipped config.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _, _)| *n == name).map(|b| b.2)
}

/// Loads a config by built-in name, by path (`.yaml`, `.yml` or `.json`), or by a bare
/// name that is a file of the current folder with one of those extensions (`-c features`
/// finds `./features.yaml`). Every command's `-c` goes through here, so all accept the same.
pub fn load(name_or_path: &str) -> Result<FeatureConfig, ConfigError> {
    if let Some(text) = builtin_text(name_or_path) {
        return parse(name_or_path, &format!("builtin:{name_or_path}"), text);
    }
    let mut path = PathBuf::from(name_or_path);
    let bare = path.extension().is_none() && path.components().count() == 1;
    if !path.exists() && bare {
        if let Some(found) = ["yaml", "yml", "json"]
            .iter()
            .map(|ext| path.with_extension(ext))
            .find(|p| p.is_file())
        {
            path = found;
        }
    }
    if !path.exists() {
        let names: Vec<&str> = builtin().map(|b| b.0).collect();
        return Err(ConfigError::new(format!(
            "config '{name_or_path}' is neither a file nor a built-in config{} (built-in: {})",
            crate::suggest::hint(name_or_path, names.iter().copied()),
            names.join(", ")
        )));
    }
    load_path(&path)
}

fn load_path(path: &Path) -> Result<FeatureConfig, ConfigError> {
    let shown = path.display();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "yaml" | "yml" | "json") {
        return Err(ConfigError::new(format!(
            "{shown}: unsupported config format '.{ext}' (use .yaml, .yml or .json)"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("{shown}: cannot read: {e}")))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("config")
        .to_string();
    let mut config = parse(&name, &shown.to_string(), &text)?;
    let canonical = path
        .canonicalize()
        .map_err(|e| ConfigError::new(format!("{shown}: cannot resolve the path: {e}")))?;
    config.identity = canonical.display().to_string();
    Ok(config)
}

/// Parses and validates config text (YAML; JSON is valid YAML). Every problem found is
/// reported, one per line of the error (see [`ConfigError::many`]), not only the first.
pub fn parse(name: &str, origin: &str, text: &str) -> Result<FeatureConfig, ConfigError> {
    let at = |m: String| format!("{origin}: {m}");
    let root: Yaml = serde_norway::from_str(text)
        .map_err(|e| ConfigError::new(at(format!("invalid YAML: {e}"))))?;
    let Yaml::Mapping(root) = root else {
        return Err(ConfigError::new(at(
            "the config must be a mapping with a `features` key".into(),
        )));
    };
    let get = |k: &str| root.get(Yaml::String(k.to_string()));
    let mut errors: Vec<String> = Vec::new();
    let mut keep = |r: Result<(), String>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };

    keep(check_literal(
        get("data_type"),
        "data_type",
        &["transfer", "transient", "both"],
    ));
    if let Some(ds) = get("data_source") {
        keep(check_keys(
            ds,
            "data_source",
            &["experiment_type", "load_mode"],
        ));
        keep(check_literal(
            ds.get("experiment_type"),
            "data_source.experiment_type",
            &["transfer", "transient", "both"],
        ));
        keep(check_literal(
            ds.get("load_mode"),
            "data_source.load_mode",
            &["batch", "step_by_step"],
        ));
    }
    if let Some(v) = get("versioning") {
        keep(check_keys(
            v,
            "versioning",
            &[
                "auto_create",
                "expand_multidim",
                "selected_features",
                "version_name",
            ],
        ));
    }
    if let Some(Yaml::Mapping(adv)) = get("advanced") {
        if let Some(c) = adv.get(Yaml::String("caching".into())) {
            keep(check_keys(
                c,
                "advanced.caching",
                &["enabled", "backend", "memory_size_mb", "disk_cache_dir"],
            ));
        }
        if let Some(p) = adv.get(Yaml::String("parallel".into())) {
            keep(check_keys(
                p,
                "advanced.parallel",
                &["enabled", "n_workers", "backend"],
            ));
        }
    }
    if let Some(pp) = get("postprocessing") {
        match pp {
            Yaml::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    keep(check_keys(
                        item,
                        &format!("postprocessing[{i}]"),
                        &["type", "target", "params"],
                    ));
                }
            }
            _ => keep(Err("postprocessing must be a list".into())),
        }
    }

    // (the item's name where it has one, what it parsed to)
    let results: Vec<(Option<&str>, Parsed)> = match get("features") {
        None => vec![(None, Err(vec!["missing required key `features`".into()]))],
        Some(Yaml::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = item.get("name").and_then(Yaml::as_str);
                (name, feature(item, None, i))
            })
            .collect(),
        Some(Yaml::Mapping(map)) => map
            .iter()
            .enumerate()
            .map(|(i, (k, item))| match k {
                Yaml::String(name) => (Some(name.as_str()), feature(item, Some(name), i)),
                other => (
                    None,
                    Err(vec![format!("features: key {other:?} must be a string")]),
                ),
            })
            .collect(),
        Some(_) => vec![(
            None,
            Err(vec!["`features` must be a list or a mapping".into()]),
        )],
    };
    if results.is_empty() {
        keep(Err("`features` must not be empty".into()));
    }
    let mut features: Vec<FeatureSpec> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, r) in results {
        if let Some(name) = name {
            if seen.contains(&name) {
                keep(Err(format!("feature '{name}' is defined twice")));
                continue;
            }
            seen.push(name);
        }
        match r {
            Ok(f) => features.push(f),
            Err(e) => e.into_iter().for_each(|problem| keep(Err(problem))),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError::many(errors.into_iter().map(at)));
    }
    Ok(FeatureConfig {
        name: name.to_string(),
        origin: origin.to_string(),
        identity: origin.to_string(),
        text: text.to_string(),
        features,
    })
}

/// A feature item: its spec, or every problem found in it.
type Parsed = Result<FeatureSpec, Vec<String>>;

const FEATURE_KEYS: &[&str] = &[
    "name",
    "extractor",
    "func",
    "input",
    "params",
    "output_shape",
    "unit",
    "description",
    "components",
];

/// One feature item; every problem of it is reported, each naming the feature.
fn feature(item: &Yaml, name_key: Option<&String>, index: usize) -> Parsed {
    let Yaml::Mapping(map) = item else {
        return Err(vec![format!("features[{index}] must be a mapping")]);
    };
    let field = |k: &str| map.get(Yaml::String(k.to_string()));
    let name = match (name_key, field("name")) {
        (Some(n), None) => n.clone(),
        (Some(n), Some(Yaml::String(inner))) if inner == n => n.clone(),
        (Some(n), Some(_)) => {
            return Err(vec![format!("feature '{n}': `name` differs from its key")])
        }
        (None, Some(Yaml::String(n))) if !n.is_empty() => n.clone(),
        (None, _) => return Err(vec![format!("features[{index}]: missing `name`")]),
    };
    let mut errors: Vec<String> = Vec::new();
    for key in map.keys() {
        match key {
            Yaml::String(k) if FEATURE_KEYS.contains(&k.as_str()) => {}
            Yaml::String(k) => errors.push(format!(
                "unknown key `{k}`{} (allowed: {})",
                crate::suggest::hint(k, FEATURE_KEYS.iter().copied()),
                FEATURE_KEYS.join(", ")
            )),
            other => errors.push(format!("key {other:?} must be a string")),
        }
    }
    let kind = match (field("extractor"), field("func")) {
        (Some(Yaml::String(e)), None) => Ok(FeatureKind::Extractor(e.clone())),
        (None, Some(Yaml::String(f))) => Ok(FeatureKind::Func(f.clone())),
        (Some(_), Some(_)) => Err("give either `extractor` or `func`, not both"),
        (None, None) => Err("one of `extractor` or `func` is required"),
        _ => Err("`extractor` / `func` must be a string"),
    };
    let inputs = match field("input") {
        Some(Yaml::String(s)) => Ok(vec![s.clone()]),
        Some(Yaml::Sequence(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Yaml::String(s) => Ok(s.clone()),
                _ => Err("`input` entries must be strings"),
            })
            .collect::<Result<_, _>>(),
        Some(_) => Err("`input` must be a name or a non-empty list of names"),
        None => Err("missing required key `input`"),
    };
    let params = match field("params") {
        None | Some(Yaml::Null) => Ok(Json::Object(Default::default())),
        Some(p @ Yaml::Mapping(_)) => serde_json::to_value(p).map_err(|e| format!("`params`: {e}")),
        Some(_) => Err("`params` must be a mapping".to_string()),
    };
    let unit = match field("unit") {
        None | Some(Yaml::Null) => Ok(None),
        Some(Yaml::String(u)) => Ok(Some(u.clone())),
        Some(_) => Err("`unit` must be a string"),
    };
    let components = match field("components") {
        None | Some(Yaml::Null) => Ok(None),
        Some(Yaml::Sequence(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Yaml::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err("`components` entries must be non-empty strings"),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err("`components` must be a non-empty list of names"),
    };
    let spec = match (kind, inputs, params, unit, components) {
        (Ok(kind), Ok(inputs), Ok(params), Ok(unit), Ok(components)) if errors.is_empty() => {
            return Ok(FeatureSpec {
                name,
                kind,
                inputs,
                params,
                unit,
                components,
            })
        }
        spec => spec,
    };
    errors.extend(spec.0.err().map(String::from));
    errors.extend(spec.1.err().map(String::from));
    errors.extend(spec.2.err());
    errors.extend(spec.3.err().map(String::from));
    errors.extend(spec.4.err().map(String::from));
    Err(errors
        .into_iter()
        .map(|m| format!("feature '{name}': {m}"))
        .collect())
}

fn check_keys(value: &Yaml, what: &str, allowed: &[&str]) -> Result<(), String> {
    match value {
        Yaml::Null => Ok(()),
        Yaml::Mapping(map) => {
            for k in map.keys() {
                let k = k.as_str().unwrap_or("?");
                if !allowed.contains(&k) {
                    return Err(format!(
                        "{what}: unknown key `{k}`{} (allowed: {})",
                        crate::suggest::hint(k, allowed.iter().copied()),
                        allowed.join(", ")
                    ));
                }
            }
            Ok(())
        }
        _ => Err(format!("{what} must be a mapping")),
    }
}

fn check_literal(value: Option<&Yaml>, what: &str, allowed: &[&str]) -> Result<(), String> {
    match value {
        None | Some(Yaml::Null) => Ok(()),
        Some(Yaml::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(v) => Err(format!(
            "{what} must be one of {}, got {v:?}{}",
            allowed.join(", "),
            v.as_str().map_or(String::new(), |s| crate::suggest::hint(
                s,
                allowed.iter().copied()
            ))
        )),
    }
}

#[cfg(test)]
mod tests;
