//! The one place that knows the layout of `oect run`'s Parquet outputs (`docs/FORMAT.md`):
//! it turns a file into typed [`Output`]s (identity, provenance, health counts, time span and
//! one [`Series`] per plottable feature), so the figures and the report never look at column
//! names or metadata keys.
//!
//! The file's `PANDAS_ATTRS` is read as the sink's own [`OutputMeta`] (or, for a file merged
//! by `oect collect`, [`CollectedMeta`], whose rows are split back into experiments by
//! `test_id`); its `features` list says which columns hold which feature and in what layout,
//! so nothing is guessed from column names. Per row it reads `step_index`, the step of each
//! data kind in a table over both kinds (`transfer_step`, `transient_step`), `start_time` and
//! `elapsed_s`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDateTime};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::sink::{CollectedMeta, FeatureMeta, OutputMeta, ATTRS_KEY, FORMAT_VERSION};

/// Expanded features with more columns than this are per-cycle arrays (e.g. 100 cycle peaks)
/// and are drawn as their per-step median and quartiles; shorter ones (forward/reverse pairs)
/// get one series per column.
const MAX_COLUMNS_AS_SERIES: usize = 4;

/// One experiment's results under one config.
#[derive(Debug, Clone)]
pub struct Output {
    /// The file it was read from (a merged file holds several experiments).
    pub path: PathBuf,
    pub chip_id: String,
    pub device_id: String,
    /// Unique per test: tells two tests of one device apart.
    pub test_id: String,
    pub config_name: String,
    /// First 8 hex digits of the config hash (the output name's `hash8`).
    pub config_hash8: String,
    /// The experiment file the output was computed from, as recorded (may be relative to
    /// where `oect run` ran).
    pub source_file: PathBuf,
    pub created_at: String,
    pub oect_version: String,
    /// `name version` of every plugin the config used.
    pub plugins: Vec<String>,
    /// Steps read, per data kind (`transfer`, `transient`).
    pub step_counts: BTreeMap<String, usize>,
    /// Seconds since the test started, per row (NaN where the row has no time).
    pub elapsed_s: Vec<f64>,
    /// Start of the first and of the last step, local time.
    pub span: Option<(NaiveDateTime, NaiveDateTime)>,
    pub series: Vec<Series>,
    /// Per feature, in config order: failed, no-fit and non-finite steps and their messages.
    pub health: Vec<Health>,
}

/// Which steps a feature's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAxis {
    /// `step_index`: the steps of the config's one data kind, or the row number.
    Row,
    /// `transfer_step` of a table over both kinds.
    Transfer,
    /// `transient_step` of a table over both kinds.
    Transient,
}

impl StepAxis {
    /// The axis label: what the numbers are and the column they come from.
    pub fn label(self) -> &'static str {
        match self {
            StepAxis::Row => "step (step_index)",
            StepAxis::Transfer => "transfer step (transfer_step)",
            StepAxis::Transient => "transient step (transient_step)",
        }
    }
}

/// A feature's values per row.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub unit: Option<String>,
    pub axis: StepAxis,
    /// The step of each row on [`Self::axis`]; NaN where the row has no step of that kind.
    pub steps: Vec<f64>,
    pub values: Values,
}

#[derive(Debug, Clone)]
pub enum Values {
    /// One value per step.
    Scalar(Vec<f64>),
    /// Many values per step (cycles): their quartiles, NaN where a step has no finite value.
    Spread(Vec<Quartiles>),
}

impl Values {
    fn take(&self, rows: &[usize]) -> Values {
        match self {
            Values::Scalar(v) => Values::Scalar(rows.iter().map(|&r| v[r]).collect()),
            Values::Spread(v) => Values::Spread(rows.iter().map(|&r| v[r]).collect()),
        }
    }
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
    /// Distinct messages of the recorded failures, first seen first, with how often each
    /// occurs among the recorded ones.
    pub reasons: Vec<(String, usize)>,
    /// The same for the recorded "no fit" steps.
    pub no_fit_reasons: Vec<(String, usize)>,
}

/// Reads an output file: one [`Output`], or one per experiment of a merged file. The error
/// names the file.
pub fn read(path: &Path) -> Result<Vec<Output>, String> {
    let fail = |m: String| format!("{}: {m}", path.display());
    let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(format!("not a readable Parquet file ({e})")))?;
    let attrs_text = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == ATTRS_KEY))
        .and_then(|e| e.value.clone())
        .or_else(|| builder.schema().metadata().get(ATTRS_KEY).cloned())
        .ok_or_else(|| {
            fail(format!(
                "no {ATTRS_KEY} metadata: not an output of `oect run`"
            ))
        })?;
    let attrs: Value = serde_json::from_str(&attrs_text)
        .map_err(|e| fail(format!("{ATTRS_KEY} is not valid JSON ({e})")))?;
    match attrs["format_version"].as_u64() {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        other => {
            return Err(fail(format!(
                "written by another oect (output format {}, this oect reads {FORMAT_VERSION}); run `oect run` again",
                other.map_or("1".to_string(), |v| v.to_string())
            )))
        }
    }
    let metas: Vec<OutputMeta> = if attrs.get("experiments").is_some() {
        let merged: CollectedMeta = serde_json::from_value(attrs)
            .map_err(|e| fail(format!("unreadable {ATTRS_KEY} ({e})")))?;
        merged.experiments
    } else {
        vec![serde_json::from_value(attrs)
            .map_err(|e| fail(format!("unreadable {ATTRS_KEY} ({e})")))?]
    };
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .build()
        .map_err(|e| fail(format!("cannot read ({e})")))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("cannot read ({e})")))?;
    let table = Columns { schema, batches };
    let all_rows: Vec<usize> = (0..table.rows()).collect();
    let test_ids = match metas.len() {
        1 => None,
        _ => Some(table.text("test_id").map_err(fail)?),
    };
    // Every experiment's features are those of the same config: read the columns once.
    let first = &metas[0];
    let series = table.series(&first.features).map_err(fail)?;
    let elapsed = table.floats("elapsed_s").map_err(fail)?;
    let starts = table.times("start_time").map_err(fail)?;
    metas
        .into_iter()
        .map(|meta| {
            let rows = match &test_ids {
                None => all_rows.clone(),
                Some(ids) => (0..ids.len()).filter(|&r| ids[r] == meta.test_id).collect(),
            };
            if rows.len() != meta.rows {
                return Err(fail(format!(
                    "test {} has {} rows, its metadata says {}",
                    meta.test_id,
                    rows.len(),
                    meta.rows
                )));
            }
            let series = series
                .iter()
                .map(|s| Series {
                    name: s.name.clone(),
                    unit: s.unit.clone(),
                    axis: s.axis,
                    steps: rows.iter().map(|&r| s.steps[r]).collect(),
                    values: s.values.take(&rows),
                })
                .collect();
            let times = rows.iter().filter_map(|&r| starts[r]);
            let span = times.clone().min().zip(times.max());
            Ok(output(
                path,
                meta,
                rows.iter().map(|&r| elapsed[r]).collect(),
                span,
                series,
            ))
        })
        .collect()
}

fn output(
    path: &Path,
    m: OutputMeta,
    elapsed_s: Vec<f64>,
    span: Option<(NaiveDateTime, NaiveDateTime)>,
    series: Vec<Series>,
) -> Output {
    let health = m
        .features
        .iter()
        .map(|f| {
            let mut reasons: Vec<(String, usize)> = Vec::new();
            let mut no_fit_reasons: Vec<(String, usize)> = Vec::new();
            for e in m.errors.iter().filter(|e| e.feature == f.name) {
                let list = if e.is_no_fit() {
                    &mut no_fit_reasons
                } else {
                    &mut reasons
                };
                match list.iter_mut().find(|(r, _)| *r == e.message) {
                    Some((_, n)) => *n += 1,
                    None => list.push((e.message.clone(), 1)),
                }
            }
            let count = |map: &BTreeMap<String, usize>| map.get(&f.name).copied().unwrap_or(0);
            Health {
                feature: f.name.clone(),
                failed: count(&m.feature_errors) as u64,
                no_fit: count(&m.feature_no_fit) as u64,
                nonfinite: count(&m.feature_nonfinite) as u64,
                reasons,
                no_fit_reasons,
            }
        })
        .collect();
    Output {
        path: path.to_path_buf(),
        config_hash8: m.config_hash.chars().take(8).collect(),
        source_file: PathBuf::from(&m.source_file),
        plugins: m
            .plugins
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect(),
        step_counts: m.steps,
        chip_id: m.chip_id,
        device_id: m.device_id,
        test_id: m.test_id,
        config_name: m.config_name,
        created_at: m.created_at,
        oect_version: m.oect_version,
        elapsed_s,
        span,
        series,
        health,
    }
}

/// The record batches of one file, read column by column by name.
struct Columns {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Columns {
    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    fn parts(&self, name: &str) -> Option<Vec<ArrayRef>> {
        let i = self.schema.index_of(name).ok()?;
        Some(self.batches.iter().map(|b| b.column(i).clone()).collect())
    }

    fn need(&self, name: &str) -> Result<Vec<ArrayRef>, String> {
        self.parts(name)
            .ok_or_else(|| format!("no column {name} (the metadata names it)"))
    }

    /// A float64 column (NaN for null); all NaN when the column is absent.
    fn floats(&self, name: &str) -> Result<Vec<f64>, String> {
        match self.parts(name) {
            None => Ok(vec![f64::NAN; self.rows()]),
            Some(parts) => floats(&parts).ok_or_else(|| format!("column {name} is not float64")),
        }
    }

    /// An int64 column as f64 (NaN for null), `None` when absent.
    fn steps(&self, name: &str) -> Result<Option<Vec<f64>>, String> {
        let Some(parts) = self.parts(name) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(self.rows());
        for a in &parts {
            let a = a
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| format!("column {name} is not int64"))?;
            out.extend(a.iter().map(|v| v.map_or(f64::NAN, |v| v as f64)));
        }
        Ok(Some(out))
    }

    /// A timestamp[µs] column as local date-times; all `None` when absent.
    fn times(&self, name: &str) -> Result<Vec<Option<NaiveDateTime>>, String> {
        let Some(parts) = self.parts(name) else {
            return Ok(vec![None; self.rows()]);
        };
        let mut out = Vec::with_capacity(self.rows());
        for a in &parts {
            if a.data_type() != &DataType::Timestamp(TimeUnit::Microsecond, None) {
                return Err(format!("column {name} is not timestamp[µs]"));
            }
            let a = a.as_primitive::<TimestampMicrosecondType>();
            out.extend(a.iter().map(|v| {
                v.and_then(DateTime::from_timestamp_micros)
                    .map(|t| t.naive_utc())
            }));
        }
        Ok(out)
    }

    /// A dictionary<int32, utf8> (or plain utf8) column's text per row.
    fn text(&self, name: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(self.rows());
        for a in &self.need(name)? {
            if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
                let values = d
                    .values()
                    .as_string_opt::<i32>()
                    .ok_or_else(|| format!("column {name} is not text"))?;
                out.extend(d.keys().iter().map(|k| {
                    k.map(|k| values.value(k as usize).to_string())
                        .unwrap_or_default()
                }));
            } else if let Some(s) = a.as_string_opt::<i32>() {
                out.extend(s.iter().map(|v| v.unwrap_or_default().to_string()));
            } else {
                return Err(format!("column {name} is not text"));
            }
        }
        Ok(out)
    }

    /// The series of every plottable feature, in config order.
    fn series(&self, features: &[FeatureMeta]) -> Result<Vec<Series>, String> {
        let rows = self.rows();
        let row_steps = self.steps("step_index")?.ok_or("no column step_index")?;
        let transfer = self.steps("transfer_step")?;
        let transient = self.steps("transient_step")?;
        let axis_of = |f: &FeatureMeta| match (f.rows.as_str(), &transfer, &transient) {
            ("transfer", Some(s), _) => (StepAxis::Transfer, s.clone()),
            ("transient", _, Some(s)) => (StepAxis::Transient, s.clone()),
            _ => (StepAxis::Row, row_steps.clone()),
        };
        let mut out = Vec::new();
        for f in features {
            let (axis, steps) = axis_of(f);
            let series = |name: String, values: Values| Series {
                name,
                unit: f.unit.clone(),
                axis,
                steps: steps.clone(),
                values,
            };
            let column = |c: &str| {
                let parts = self.need(c)?;
                floats(&parts)
                    .ok_or_else(|| format!("column {c} of feature {} is not float64", f.name))
            };
            match f.layout.as_str() {
                "scalar" => {
                    let c = f
                        .columns
                        .first()
                        .ok_or_else(|| format!("feature {} has no column", f.name))?;
                    out.push(series(f.name.clone(), Values::Scalar(column(c)?)));
                }
                "expanded" if f.columns.len() <= MAX_COLUMNS_AS_SERIES => {
                    for c in &f.columns {
                        out.push(series(c.clone(), Values::Scalar(column(c)?)));
                    }
                }
                "expanded" => {
                    let members: Vec<Vec<f64>> = f
                        .columns
                        .iter()
                        .map(|c| column(c))
                        .collect::<Result<_, _>>()?;
                    out.push(series(
                        f.name.clone(),
                        Values::Spread(spread_of_columns(&members, rows)),
                    ));
                }
                "nested" => {
                    let c = f
                        .columns
                        .first()
                        .ok_or_else(|| format!("feature {} has no column", f.name))?;
                    let parts = self.need(c)?;
                    let components = f.components.clone().unwrap_or_default();
                    for (name, values) in nested(&f.name, &f.shape, &components, &parts)
                        .ok_or_else(|| {
                            format!("column {c} of feature {} is not a list of float64", f.name)
                        })?
                    {
                        out.push(series(name, values));
                    }
                }
                other => return Err(format!("feature {}: unknown layout {other:?}", f.name)),
            }
        }
        Ok(out)
    }
}

/// A float64 column as f64, nulls as NaN; `None` for another type.
fn floats(parts: &[ArrayRef]) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    for a in parts {
        let a = a.as_primitive_opt::<Float64Type>()?;
        out.extend(a.iter().map(|v| v.unwrap_or(f64::NAN)));
    }
    Some(out)
}

/// The spreads of a nested column: a list of numbers per step (`[n_cycles]`) is one spread;
/// a list of fixed-length records per step (`[n_cycles, 2]`, per-cycle `[tau_on, tau_off]`) is
/// one spread per member, named `name[member]` (`name[j]` where the config names none).
/// Deeper shapes have no figure (an empty list).
fn nested(
    name: &str,
    shape: &[String],
    components: &[String],
    parts: &[ArrayRef],
) -> Option<Vec<(String, Values)>> {
    // Per step: its rows (one value each for a flat list), `None` for a null step.
    let mut steps: Vec<Option<Vec<Vec<f64>>>> = Vec::new();
    for a in parts {
        let list = a.as_list_opt::<i32>()?;
        for i in 0..list.len() {
            if list.is_null(i) {
                steps.push(None);
                continue;
            }
            let inner = list.value(i);
            let rows: Vec<Vec<f64>> = match shape.len() {
                1 => floats(&[inner])?.into_iter().map(|x| vec![x]).collect(),
                2 => {
                    let rows = inner.as_list_opt::<i32>()?;
                    (0..rows.len())
                        .map(|r| match rows.is_null(r) {
                            true => Some(Vec::new()),
                            false => floats(&[rows.value(r)]),
                        })
                        .collect::<Option<_>>()?
                }
                _ => return Some(Vec::new()),
            };
            steps.push(Some(rows));
        }
    }
    let width = match shape.len() {
        1 => 1,
        _ => steps
            .iter()
            .flatten()
            .flatten()
            .map(Vec::len)
            .max()
            .unwrap_or(components.len())
            .max(components.len()),
    };
    Some(
        (0..width)
            .map(|j| {
                let label = match (shape.len(), components.get(j)) {
                    (1, _) => name.to_string(),
                    (_, Some(c)) => format!("{name}[{c}]"),
                    (_, None) => format!("{name}[{j}]"),
                };
                let spread = steps
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
                    .collect();
                (label, Values::Spread(spread))
            })
            .collect(),
    )
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
}
