//! The metadata of an output file: one typed struct, written as JSON under `PANDAS_ATTRS`
//! (so `pandas.read_parquet(f).attrs` shows it) and read back as the same struct.

use std::collections::BTreeMap;

use oect_plugin_api::FailureKind;
use serde::{Deserialize, Serialize};

/// Version of the output layout and metadata described in `docs/FORMAT.md`. Files without
/// it (or with another) are from an older oect: never up to date, recomputed on the next run.
pub const FORMAT_VERSION: u32 = 3;

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
    /// What kind of failure (`invalid_input`, `no_result`, `panic`, `timeout`, …).
    #[serde(with = "failure_kind")]
    pub kind: FailureKind,
    pub message: String,
}

impl StepError {
    /// "No fit": the data has no such result (a decay time of a step that does not
    /// decay), not "something went wrong". Counted apart from failures, and not a reason
    /// for a non-zero exit status.
    pub fn is_no_fit(&self) -> bool {
        !self.kind.is_fault()
    }
}

/// A [`FailureKind`] by its name, as the plugin API spells it (in metadata and in the
/// worker protocol).
pub mod failure_kind {
    use oect_plugin_api::FailureKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &FailureKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FailureKind, D::Error> {
        let name = String::deserialize(d)?;
        FailureKind::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown failure kind {name:?}")))
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
    /// Per feature: steps that failed (any failure kind but `no_result`).
    pub feature_errors: BTreeMap<String, usize>,
    /// Per feature: steps without a result ("no fit": failure kind `no_result`).
    pub feature_no_fit: BTreeMap<String, usize>,
    /// Per feature: steps without a value by failure kind (only kinds that occurred).
    pub feature_failures: BTreeMap<String, BTreeMap<String, usize>>,
    /// Per feature: steps whose value holds NaN or ±inf (not counting failed steps).
    pub feature_nonfinite: BTreeMap<String, usize>,
    /// The first failed and no-fit steps, with their messages.
    pub errors: Vec<StepError>,
}

/// Totals over the features of one file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub failed_steps: usize,
    pub no_fit_steps: usize,
    pub nonfinite_values: usize,
    /// The failed steps by failure kind (`panic`, `timeout`, …; not `no_result`).
    pub failed_by_kind: BTreeMap<String, usize>,
}

impl OutputMeta {
    pub fn counts(&self) -> Counts {
        let mut failed_by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for (kind, n) in self.feature_failures.values().flatten() {
            if FailureKind::parse(kind).is_some_and(FailureKind::is_fault) {
                *failed_by_kind.entry(kind.clone()).or_default() += n;
            }
        }
        Counts {
            failed_steps: self.feature_errors.values().sum(),
            no_fit_steps: self.feature_no_fit.values().sum(),
            nonfinite_values: self.feature_nonfinite.values().sum(),
            failed_by_kind,
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
