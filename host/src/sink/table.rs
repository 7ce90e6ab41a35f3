//! What an output file holds: the table the writer turns into Parquet, and how a feature's
//! per-step values become columns.

use std::collections::BTreeMap;

/// How a feature's per-step values are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// One Float64 column.
    Scalar,
    /// A fixed-length vector per step: columns `name_0 … name_{k-1}`.
    Expanded(usize),
    /// Anything else (a data-dependent axis, or more axes): one nested list column of this
    /// depth, lossless.
    Nested(usize),
}

/// A feature's columns and what describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureColumns {
    pub feature: String,
    pub kind: ColumnKind,
    pub unit: Option<String>,
    /// Names of the last axis's members (e.g. `tau_on`, `tau_off`).
    pub components: Option<Vec<String>>,
}

impl FeatureColumns {
    /// The output column names, in order.
    pub fn names(&self) -> Vec<String> {
        match self.kind {
            ColumnKind::Expanded(k) => (0..k).map(|j| format!("{}_{j}", self.feature)).collect(),
            ColumnKind::Scalar | ColumnKind::Nested(_) => vec![self.feature.clone()],
        }
    }
}

/// Columns before the features: which experiment and which step each row is.
pub const KEY_COLUMNS: [&str; 7] = [
    "chip_id",
    "device_id",
    "test_id",
    "step_index",
    "loop_iteration",
    "start_time",
    "elapsed_s",
];
/// Extra key columns of a table over both data kinds: the step of each kind in the row.
pub const MIXED_KEY_COLUMNS: [&str; 2] = ["transfer_step", "transient_step"];

/// Checks that every output column name is unique and none is a key column, so that
/// pandas, polars and DuckDB can read the file. The error names both features.
pub fn check_columns(features: &[FeatureColumns]) -> Result<(), String> {
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for key in KEY_COLUMNS.iter().chain(&MIXED_KEY_COLUMNS) {
        owner.insert((*key).to_string(), "");
    }
    for f in features {
        for name in f.names() {
            match owner.get(&name) {
                Some(&"") => {
                    return Err(format!(
                        "feature '{}': its column '{name}' is one of the columns every output has ({}); rename the feature",
                        f.feature,
                        KEY_COLUMNS
                            .iter()
                            .chain(&MIXED_KEY_COLUMNS)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
                Some(other) => {
                    let what = |n: &str, feature: &str| {
                        if n == feature {
                            format!("feature '{feature}'")
                        } else {
                            format!("column '{n}' of feature '{feature}'")
                        }
                    };
                    return Err(format!(
                        "{} and {} would have the same column name; rename one of them",
                        what(&name, other),
                        what(&name, &f.feature)
                    ));
                }
                None => {
                    owner.insert(name, &f.feature);
                }
            }
        }
    }
    Ok(())
}

/// Per row, the step of one data kind (`None`: none in that row).
pub type StepColumn = Vec<Option<i64>>;

/// Which step each row is. All vectors have one entry per row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowKeys {
    pub step_index: Vec<i64>,
    /// Tables over both data kinds: (transfer step, transient step) of each row; `None`
    /// where the row has no step of that kind.
    pub source_steps: Option<(StepColumn, StepColumn)>,
    /// Workflow loop iteration (1-based) the row's steps ran in.
    pub loop_iteration: Vec<Option<i64>>,
    /// Local start time of the row's (first) step, µs since 1970-01-01 (the files record
    /// local time without a zone).
    pub start_time: Vec<Option<i64>>,
    /// Seconds from the start of the test to `start_time`.
    pub elapsed_s: Vec<Option<f64>>,
}

/// A feature's values, one entry per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// [`ColumnKind::Scalar`]; NaN where there is no value.
    Float(Vec<f64>),
    /// [`ColumnKind::Expanded`]: one vector per column.
    Expanded(Vec<Vec<f64>>),
    /// [`ColumnKind::Nested`]: per row (shape, row-major values), `None` for null.
    Nested(Vec<Option<(Vec<u64>, Vec<f64>)>>),
}

/// One feature's columns and values.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureData {
    pub columns: FeatureColumns,
    pub values: Values,
}

/// One experiment's table, ready for the writer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub keys: RowKeys,
    pub features: Vec<FeatureData>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.keys.step_index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, kind: ColumnKind) -> FeatureColumns {
        FeatureColumns {
            feature: name.into(),
            kind,
            unit: None,
            components: None,
        }
    }

    #[test]
    fn clashing_columns_name_both_features() {
        let e = check_columns(&[
            f("gm", ColumnKind::Expanded(2)),
            f("gm_0", ColumnKind::Scalar),
        ])
        .unwrap_err();
        assert!(
            e.contains("column 'gm_0' of feature 'gm'") && e.contains("feature 'gm_0'"),
            "{e}"
        );
        let e = check_columns(&[f("step_index", ColumnKind::Scalar)]).unwrap_err();
        assert!(e.contains("feature 'step_index'"), "{e}");
        assert!(check_columns(&[
            f("gm", ColumnKind::Expanded(2)),
            f("gm_2", ColumnKind::Scalar)
        ])
        .is_ok());
        assert!(check_columns(&[f("tau", ColumnKind::Nested(2))]).is_ok());
    }
}
