//! The metadata of an output file: one typed struct, written as JSON under `PANDAS_ATTRS`
//! (so `pandas.read_parquet(f).attrs` shows it) and read back as the same struct.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the output layout and metadata described in `docs/FORMAT.md`. Files without
/// it (or with another) are from an older oect: never up to date, recomputed on the next run.
pub const FORMAT_VERSION: u32 = 2;

/// A plugin library a config used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginMeta {
    pub name: String,
    pub version: String,
    pub api_version: String,
    /// SHA-256 of the library file: a rebuilt plugin with the same version is recognised.
    pub library_sha256: String,
}

/// One feature of the config and where its values are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMeta {
    pub name: String,
    /// The extractor, or the `func` text of a derived feature.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub extractor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub func: Option<String>,
    pub inputs: Vec<String>,
    /// `transfer`, `transient`, or `aligned` (both kinds, paired by loop iteration).
    pub rows: String,
    /// Per-step shape without the step axis; a data-dependent axis is named (`n_cycles`).
    pub shape: Vec<String>,
    /// `scalar`, `expanded` or `nested`.
    pub layout: String,
    pub columns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub components: Option<Vec<String>>,
}

/// A step of one feature without a value, and why (`step: None`: every step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub feature: String,
    pub step: Option<usize>,
    pub message: String,
}

/// Prefix of a step failure that means "the data has no such result" (a decay time of a
/// step that does not decay) rather than "something went wrong". Counted apart from
/// failures, and not a reason for a non-zero exit status.
pub const NO_FIT: &str = "no fit: ";

impl StepError {
    pub fn is_no_fit(&self) -> bool {
        self.message.starts_with(NO_FIT)
    }
}

/// The `PANDAS_ATTRS` metadata of one output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputMeta {
    pub format_version: u32,
    pub chip_id: String,
    pub device_id: String,
    /// The file's `test_id`, or its file stem when it has none.
    pub test_id: String,
    pub config_name: String,
    pub config_origin: String,
    /// `builtin:<name>` or the config file's canonical path.
    pub config_identity: String,
    /// SHA-256 over the config text, the oect version and every plugin used (name,
    /// version, library hash); its first 8 hex digits are the file name's `hash8`.
    pub config_hash: String,
    pub source_file: String,
    /// Size and modification time of the source file, hashed.
    pub source_hash: String,
    /// When the test started (the file's `created_at`, or its first step): `elapsed_s` is
    /// counted from here. Local time, ISO 8601.
    pub test_started_at: Option<String>,
    pub created_at: String,
    pub oect_version: String,
    pub plugins: Vec<PluginMeta>,
    /// Steps per data kind read.
    pub steps: BTreeMap<String, usize>,
    pub rows: usize,
    /// How rows of a table over both data kinds pair the steps: `loop_iteration` or
    /// `step_index`; `None` for one data kind.
    pub alignment: Option<String>,
    /// Unit per column (where the config or the extractor gives one).
    pub units: BTreeMap<String, String>,
    pub features: Vec<FeatureMeta>,
    /// Per feature: steps that failed (errors, not counting "no fit").
    pub feature_errors: BTreeMap<String, usize>,
    /// Per feature: steps without a result ("no fit: …").
    pub feature_no_fit: BTreeMap<String, usize>,
    /// Per feature: steps whose value holds NaN or ±inf (not counting failed steps).
    pub feature_nonfinite: BTreeMap<String, usize>,
    /// The first failed and no-fit steps, with their messages.
    pub errors: Vec<StepError>,
}

/// Totals over the features of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub failed_steps: usize,
    pub no_fit_steps: usize,
    pub nonfinite_values: usize,
}

impl OutputMeta {
    pub fn counts(&self) -> Counts {
        Counts {
            failed_steps: self.feature_errors.values().sum(),
            no_fit_steps: self.feature_no_fit.values().sum(),
            nonfinite_values: self.feature_nonfinite.values().sum(),
        }
    }
}

/// The metadata of a merged file (`oect collect`): the config, and every merged
/// experiment's own metadata, in row order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectedMeta {
    pub format_version: u32,
    pub config_name: String,
    pub config_identity: String,
    pub config_hash: String,
    pub created_at: String,
    pub oect_version: String,
    pub units: BTreeMap<String, String>,
    pub experiments: Vec<OutputMeta>,
}
