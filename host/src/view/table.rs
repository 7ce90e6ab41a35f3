//! The one place that knows the layout of `oect run`'s Parquet outputs: it turns a file into
//! a typed [`Output`] (identity, provenance, health counts and one [`Series`] per plottable
//! feature), so the figures and the report never look at column names or metadata keys.
//!
//! Layout: `docs/FORMAT.md` (key columns are skipped; `feature` / `components` field metadata
//! group vector columns and name record members; older files fall back to the attrs).
//! Read: `step_index`, Float64 feature columns, `name_0..name_{k-1}` vector features,
//! nested list columns, and the `PANDAS_ATTRS` JSON (chip, device, config, source, plugins,
//! per-feature error and non-finite counts, first error messages). Read when present: a
//! per-column `unit` in the Arrow field metadata and an `elapsed_s` column (seconds since the
//! test started); the columns `chip_id`, `device_id` and `start_time` are not features.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::sink::ATTRS_KEY;

/// Columns that describe a row rather than hold a feature.
const ROW_COLUMNS: [&str; 9] = [
    "chip_id",
    "device_id",
    "test_id",
    "step_index",
    "transfer_step",
    "transient_step",
    "loop_iteration",
    "start_time",
    "elapsed_s",
];
/// Vector features with more components than this are per-cycle arrays (e.g. 100 cycle peaks)
/// and are drawn as their per-step median and quartiles; shorter ones (forward/reverse pairs)
/// get one series per component.
const MAX_COMPONENTS_AS_SERIES: usize = 4;

/// One experiment's results under one config.
#[derive(Debug, Clone)]
pub struct Output {
    pub path: PathBuf,
    pub chip_id: String,
    pub device_id: String,
    pub config_name: String,
    /// First 8 hex digits of the config hash (the output name's `hash8`).
    pub config_hash8: String,
    /// The experiment file the output was computed from, as recorded (may be relative to
    /// where `oect run` ran).
    pub source_file: Option<PathBuf>,
    pub created_at: Option<String>,
    pub oect_version: Option<String>,
    /// `name version` of every plugin loaded for the run.
    pub plugins: Vec<String>,
    /// Steps the experiment file has, per data kind (`transfer`, `transient`).
    pub step_counts: BTreeMap<String, u64>,
    /// `step_index` of every row.
    pub steps: Vec<f64>,
    /// Seconds since the test started, per row, when the output records it.
    pub elapsed_s: Option<Vec<f64>>,
    pub series: Vec<Series>,
    /// Per feature, in config order: failed steps, non-finite steps and the first messages.
    pub health: Vec<Health>,
}

/// A feature's values per row.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub unit: Option<String>,
    pub values: Values,
}

#[derive(Debug, Clone)]
pub enum Values {
    /// One value per step.
    Scalar(Vec<f64>),
    /// Many values per step (cycles): their quartiles, NaN where a step has no finite value.
    Spread(Vec<Quartiles>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quartiles {
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
}

/// How one feature fared over the experiment's steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub feature: String,
    /// Steps whose extractor or expression failed (the value is NaN).
    pub failed: u64,
    /// Steps without a meaningful result ("no fit: …", NaN by design).
    pub no_fit: u64,
    /// Steps whose value holds NaN or ±inf.
    pub nonfinite: u64,
    /// Distinct messages of the failures, first seen first, with how often each occurs among
    /// the recorded ones.
    pub reasons: Vec<(String, usize)>,
    /// The same for the recorded "no fit" steps.
    pub no_fit_reasons: Vec<(String, usize)>,
}

impl Output {
    /// Reads an output file; the error names the file.
    pub fn read(path: &Path) -> Result<Output, String> {
        let fail = |m: String| format!("{}: {m}", path.display());
        let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| fail(format!("not a readable Parquet file ({e})")))?;
        // In the file's key-value metadata (oect writes it there) or only in the Arrow
        // schema's (where pandas and pyarrow put it).
        let attrs_text = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == ATTRS_KEY))
            .and_then(|e| e.value.clone())
            .or_else(|| builder.schema().metadata().get(ATTRS_KEY).cloned())
            .ok_or_else(|| {
                fail(format!(
                    "no {ATTRS_KEY} metadata: not a per-experiment output of `oect run`"
                ))
            })?;
        let attrs: Value = serde_json::from_str(&attrs_text)
            .map_err(|e| fail(format!("{ATTRS_KEY} is not valid JSON ({e})")))?;
        let schema = builder.schema().clone();
        let reader = builder
            .build()
            .map_err(|e| fail(format!("cannot read ({e})")))?;
        let batches: Vec<RecordBatch> = reader
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("cannot read ({e})")))?;
        let column = |name: &str| -> Option<Vec<ArrayRef>> {
            let i = schema.index_of(name).ok()?;
            Some(batches.iter().map(|b| b.column(i).clone()).collect())
        };

        let steps = match column("step_index") {
            Some(parts) => int_or_float(&parts).ok_or_else(|| {
                fail("column step_index is neither int64 nor float64".to_string())
            })?,
            None => return Err(fail("no step_index column".to_string())),
        };
        let elapsed_s = column("elapsed_s").and_then(|parts| floats(&parts));

        let text = |key: &str| attrs[key].as_str().filter(|s| !s.is_empty());
        let mut expanded: BTreeMap<String, usize> = attrs["multidim_features"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()? as usize)))
                    .collect()
            })
            .unwrap_or_default();
        for f in schema.fields() {
            if let Some(group) = f.metadata().get("feature").filter(|g| *g != f.name()) {
                let n = schema
                    .fields()
                    .iter()
                    .filter(|g| g.metadata().get("feature") == Some(group))
                    .count();
                expanded.insert(group.clone(), n);
            }
        }

        let mut series = Vec::new();
        let mut done_groups = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name();
            if ROW_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            let parts: Vec<ArrayRef> = batches.iter().map(|b| b.column(i).clone()).collect();
            if let Some((group, k)) = group_of(name, &expanded) {
                if k > MAX_COMPONENTS_AS_SERIES {
                    if !done_groups.contains(&group) {
                        done_groups.push(group.clone());
                        let members: Vec<Vec<f64>> = (0..k)
                            .map(|j| {
                                column(&format!("{group}_{j}"))
                                    .and_then(|p| floats(&p))
                                    .unwrap_or_default()
                            })
                            .collect();
                        series.push(Series {
                            name: group.clone(),
                            unit: unit(field),
                            values: Values::Spread(spread_of_columns(&members, steps.len())),
                        });
                    }
                    continue;
                }
            }
            match field.data_type() {
                DataType::Float64 | DataType::Float32 | DataType::Int64 | DataType::Int32 => {
                    if let Some(values) = floats(&parts).or_else(|| int_or_float(&parts)) {
                        series.push(Series {
                            name: name.clone(),
                            unit: unit(field),
                            values: Values::Scalar(values),
                        });
                    }
                }
                DataType::List(_) | DataType::LargeList(_) => {
                    let components: Vec<String> = field
                        .metadata()
                        .get("components")
                        .and_then(|c| serde_json::from_str(c).ok())
                        .unwrap_or_default();
                    series.extend(list_series(name, unit(field), &components, &parts));
                }
                _ => {}
            }
        }

        let count = |key: &str, feature: &str| attrs[key][feature].as_u64().unwrap_or(0);
        let mut features: Vec<String> = Vec::new();
        for key in ["feature_errors", "feature_no_fit", "feature_nonfinite"] {
            for k in attrs[key].as_object().into_iter().flat_map(|m| m.keys()) {
                if !features.contains(k) {
                    features.push(k.clone());
                }
            }
        }
        // Config order where the columns tell it (the JSON maps are sorted by name).
        let position = |f: &String| {
            series
                .iter()
                .position(|s| &s.name == f || s.name.starts_with(&format!("{f}[")))
                .unwrap_or(usize::MAX)
        };
        features.sort_by_key(position);
        let health = features
            .into_iter()
            .map(|feature| {
                let mut reasons: Vec<(String, usize)> = Vec::new();
                let mut no_fit_reasons: Vec<(String, usize)> = Vec::new();
                let messages = attrs["errors"].as_array().into_iter().flatten();
                for e in messages.filter(|e| e["feature"].as_str() == Some(&feature)) {
                    let m = e["message"].as_str().unwrap_or("").to_string();
                    let list = if m.starts_with("no fit") {
                        &mut no_fit_reasons
                    } else {
                        &mut reasons
                    };
                    match list.iter_mut().find(|(r, _)| *r == m) {
                        Some((_, n)) => *n += 1,
                        None => list.push((m, 1)),
                    }
                }
                Health {
                    failed: count("feature_errors", &feature),
                    no_fit: count("feature_no_fit", &feature),
                    nonfinite: count("feature_nonfinite", &feature),
                    reasons,
                    no_fit_reasons,
                    feature,
                }
            })
            .collect();

        let config_hash = text("config_hash").unwrap_or("");
        Ok(Output {
            path: path.to_path_buf(),
            chip_id: text("chip_id").unwrap_or("NA").to_string(),
            device_id: text("device_id").unwrap_or("NA").to_string(),
            config_name: text("config_name").unwrap_or("unknown config").to_string(),
            config_hash8: config_hash.chars().take(8).collect(),
            source_file: text("source_file").map(PathBuf::from),
            created_at: text("created_at").map(str::to_string),
            oect_version: text("oect_version").map(str::to_string),
            plugins: attrs["plugins"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["name"].as_str().unwrap_or("?"),
                        p["version"].as_str().unwrap_or("?")
                    )
                })
                .collect(),
            step_counts: attrs["steps"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            steps,
            elapsed_s,
            series,
            health,
        })
    }
}

/// `(group, k)` when `name` is component `name_j` of a feature expanded to k columns.
fn group_of(name: &str, expanded: &BTreeMap<String, usize>) -> Option<(String, usize)> {
    let (group, j) = name.rsplit_once('_')?;
    let k = *expanded.get(group)?;
    (j.parse::<usize>().ok()? < k).then(|| (group.to_string(), k))
}

fn unit(field: &Field) -> Option<String> {
    field
        .metadata()
        .get("unit")
        .filter(|u| !u.trim().is_empty())
        .cloned()
}

/// A Float64 (or Float32) column as f64, nulls as NaN.
fn floats(parts: &[ArrayRef]) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    for a in parts {
        match a.data_type() {
            DataType::Float64 => {
                let a = a.as_primitive::<Float64Type>();
                out.extend((0..a.len()).map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) }));
            }
            DataType::Float32 => {
                let a = a.as_primitive::<arrow_array::types::Float32Type>();
                out.extend((0..a.len()).map(|i| {
                    if a.is_null(i) {
                        f64::NAN
                    } else {
                        a.value(i) as f64
                    }
                }));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// An integer or float column as f64 (step indices, integer features).
fn int_or_float(parts: &[ArrayRef]) -> Option<Vec<f64>> {
    if let Some(f) = floats(parts) {
        return Some(f);
    }
    let mut out = Vec::new();
    for a in parts {
        match a.data_type() {
            DataType::Int64 => {
                let a = a.as_primitive::<Int64Type>();
                out.extend((0..a.len()).map(|i| {
                    if a.is_null(i) {
                        f64::NAN
                    } else {
                        a.value(i) as f64
                    }
                }));
            }
            DataType::Int32 => {
                let a = a.as_primitive::<arrow_array::types::Int32Type>();
                out.extend((0..a.len()).map(|i| {
                    if a.is_null(i) {
                        f64::NAN
                    } else {
                        a.value(i) as f64
                    }
                }));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Series of a nested list column: a list of numbers per step is one spread; a list of
/// fixed-length records per step (per-cycle `[tau_on, tau_off]`) is one spread per component,
/// named `name[component]` (`name[j]` where the file does not name them). Anything deeper is
/// not plotted.
fn list_series(
    name: &str,
    unit: Option<String>,
    components: &[String],
    parts: &[ArrayRef],
) -> Vec<Series> {
    // Per step: the list of values, or of rows, flattened to Vec<Vec<f64>> (rows of 1 value
    // for a flat list).
    let mut steps: Vec<Option<Vec<Vec<f64>>>> = Vec::new();
    let mut width = None;
    for a in parts {
        let Some(list) = a.as_list_opt::<i32>() else {
            return Vec::new();
        };
        for i in 0..list.len() {
            if list.is_null(i) {
                steps.push(None);
                continue;
            }
            let inner = list.value(i);
            let rows: Vec<Vec<f64>> = match inner.data_type() {
                DataType::Float64 => {
                    let v = floats(&[inner]).unwrap_or_default();
                    v.into_iter().map(|x| vec![x]).collect()
                }
                DataType::List(_) => {
                    let rows = inner.as_list::<i32>();
                    (0..rows.len())
                        .map(|r| {
                            if rows.is_null(r) {
                                Vec::new()
                            } else {
                                floats(&[rows.value(r)]).unwrap_or_default()
                            }
                        })
                        .collect()
                }
                _ => return Vec::new(),
            };
            for r in &rows {
                if !r.is_empty() {
                    width = Some(width.map_or(r.len(), |w: usize| w.max(r.len())));
                }
            }
            steps.push(Some(rows));
        }
    }
    let Some(width) = width else {
        return Vec::new();
    };
    let flat = parts
        .first()
        .and_then(|a| a.as_list_opt::<i32>())
        .is_some_and(|l| matches!(l.value_type(), DataType::Float64));
    (0..width)
        .map(|j| Series {
            name: match (flat, components.get(j)) {
                (true, _) => name.to_string(),
                (false, Some(c)) => format!("{name}[{c}]"),
                (false, None) => format!("{name}[{j}]"),
            },
            unit: unit.clone(),
            values: Values::Spread(
                steps
                    .iter()
                    .map(|rows| {
                        let mut v: Vec<f64> = rows
                            .iter()
                            .flatten()
                            .filter_map(|r| r.get(j).copied())
                            .filter(|x| x.is_finite())
                            .collect();
                        quartiles(&mut v)
                    })
                    .collect(),
            ),
        })
        .collect()
}

fn spread_of_columns(members: &[Vec<f64>], rows: usize) -> Vec<Quartiles> {
    (0..rows)
        .map(|r| {
            let mut v: Vec<f64> = members
                .iter()
                .filter_map(|m| m.get(r).copied())
                .filter(|x| x.is_finite())
                .collect();
            quartiles(&mut v)
        })
        .collect()
}

/// Quartiles with linear interpolation between order statistics (numpy's default), NaN for no
/// values. Sorts `v`.
pub fn quartiles(v: &mut [f64]) -> Quartiles {
    if v.is_empty() {
        return Quartiles {
            q1: f64::NAN,
            median: f64::NAN,
            q3: f64::NAN,
        };
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (lo, frac) = (pos.floor() as usize, pos.fract());
        let hi = (lo + 1).min(v.len() - 1);
        v[lo] + (v[hi] - v[lo]) * frac
    };
    Quartiles {
        q1: at(0.25),
        median: at(0.5),
        q3: at(0.75),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_match_numpy() {
        // numpy.percentile([3, 1, 4, 1, 5, 9, 2, 6], [25, 50, 75]) = [1.75, 3.5, 5.25]
        let q = quartiles(&mut [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]);
        assert_eq!((q.q1, q.median, q.q3), (1.75, 3.5, 5.25));
        let q = quartiles(&mut [7.0]);
        assert_eq!((q.q1, q.median, q.q3), (7.0, 7.0, 7.0));
        assert!(quartiles(&mut []).median.is_nan());
    }

    #[test]
    fn expanded_columns_are_found_by_group() {
        let expanded = BTreeMap::from([("cycles".to_string(), 100), ("gm".to_string(), 2)]);
        assert_eq!(
            group_of("cycles_99", &expanded),
            Some(("cycles".into(), 100))
        );
        assert_eq!(group_of("cycles_100", &expanded), None);
        assert_eq!(group_of("gm_1", &expanded), Some(("gm".into(), 2)));
        assert_eq!(group_of("gm_max_forward", &expanded), None);
    }
}
