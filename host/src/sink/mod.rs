//! Parquet output: one file per (experiment, config), written atomically.
//!
//! Layout (`docs/FORMAT.md`): `OUT/<config>/<chip>-<device>-<test_id>-feat_<stamp>_<hash8>.parquet`.
//! One sub-folder per config, so that reading a folder gives one config's table with one
//! schema, and a config's outputs never mix with another's; the folder records (in each
//! file's metadata) which config owns it, and a different config with the same name is
//! refused before any work. Within it, the test id makes the name unique per experiment
//! (two tests of one device, shards, day 1 and day 2). `hash8` covers the config's text,
//! the oect version and every plugin used (version and library hash). Name parts never
//! begin with `#`, `.`, `_`, `-` or `~` (a shell comment, a hidden file, a file pyarrow
//! skips, an option); the exact chip id is in the `chip_id` column and the metadata.
//!
//! A file is first written under a hidden temporary name and renamed when complete, so a
//! file under the final name is always whole. An experiment is skipped when a file with the
//! current `hash8` exists and records the same source fingerprint; otherwise (or with
//! `--force`) it is recomputed and older files of the same experiment and config are
//! removed, leaving exactly one.

pub mod meta;
pub mod table;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};

pub use meta::{
    failure_kind, CollectedMeta, Counts, FeatureMeta, OutputMeta, PluginMeta, StepError,
    FORMAT_VERSION,
};
pub use table::{check_columns, ColumnKind, FeatureColumns, FeatureData, RowKeys, Table, Values};

/// Key of the JSON metadata; pandas exposes it as `DataFrame.attrs`.
pub const ATTRS_KEY: &str = "PANDAS_ATTRS";

/// Which experiment an output belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExperimentKey {
    pub chip_id: String,
    pub device_id: String,
    /// The file's test id (or, without one, its file stem).
    pub test_id: String,
}

impl ExperimentKey {
    /// `<chip>-<device>-<test>`, each part made safe for a file name.
    pub fn stem(&self) -> String {
        format!(
            "{}-{}-{}",
            file_part(&self.chip_id),
            file_part(&self.device_id),
            file_part(&self.test_id)
        )
    }

    fn prefix(&self) -> String {
        format!("{}-feat_", self.stem())
    }
}

/// Where and how one config's outputs are written.
#[derive(Debug, Clone)]
pub struct Sink {
    dir: PathBuf,
    config_identity: String,
    /// First 8 hex digits of the graph's content hash.
    hash8: String,
}

/// An output problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SinkError {
    pub path: PathBuf,
    pub message: String,
}

/// A file-name part: path separators and control characters become `_`, and leading
/// characters that would make the name a shell comment (`#`), hidden (`.`), skipped by
/// pyarrow datasets (`_`), an option (`-`) or a home folder (`~`) are dropped; `NA` if
/// nothing is left.
pub fn file_part(part: &str) -> String {
    let cleaned: String = part
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let kept = cleaned.trim_start_matches(|c: char| "#._-~".contains(c) || c.is_whitespace());
    if kept.is_empty() {
        "NA".to_string()
    } else {
        kept.to_string()
    }
}

/// Non-hidden `.parquet` files of `dir` (sorted), and the hidden ones.
pub fn parquet_files(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut shown, mut hidden) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".parquet") || !path.is_file() {
            continue;
        }
        if name.starts_with('.') {
            hidden.push(path);
        } else {
            shown.push(path);
        }
    }
    shown.sort();
    hidden.sort();
    Ok((shown, hidden))
}

impl Sink {
    /// The sink of the config `config_identity` (named `config_name`) under `root`. Refuses a
    /// folder whose outputs belong to another config of the same name, naming both.
    pub fn open(
        root: &Path,
        config_name: &str,
        config_identity: &str,
        hash8: &str,
    ) -> Result<Sink, SinkError> {
        let dir = root.join(file_part(config_name));
        if let Ok((outputs, _)) = parquet_files(&dir) {
            for f in outputs {
                let Ok(meta) = read_meta(&f) else { continue };
                if meta.config_identity != config_identity {
                    return Err(SinkError {
                        path: dir,
                        message: format!(
                            "holds outputs of the config {} ({}), not of {config_identity}; two configs \
                             with the same name cannot share an output folder: rename one or use another -o",
                            meta.config_identity,
                            f.display()
                        ),
                    });
                }
            }
        }
        Ok(Sink {
            dir,
            config_identity: config_identity.to_string(),
            hash8: hash8.to_string(),
        })
    }

    /// The config's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder and checks that a file can be written there, so that a bad
    /// output folder stops a run before any work.
    pub fn create_folder(&self) -> Result<(), SinkError> {
        let err = |m: String| SinkError {
            path: self.dir.clone(),
            message: m,
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| err(format!("cannot create output folder: {e}")))?;
        let probe = self.dir.join(format!(
            ".write-check.parquet.{}.{}.tmp",
            host_name(),
            std::process::id()
        ));
        File::create(&probe).map_err(|e| err(format!("cannot write in output folder: {e}")))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// Existing outputs of this experiment and config (any hash), sorted.
    pub fn existing(&self, key: &ExperimentKey) -> Vec<PathBuf> {
        let prefix = key.prefix();
        let Ok((outputs, _)) = parquet_files(&self.dir) else {
            return Vec::new();
        };
        outputs
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect()
    }

    /// Removes temporary files that killed runs left in the output folder: hidden
    /// `.NAME.parquet.HOST.PID.tmp` files of this host whose writer process no longer
    /// exists. Files of live runs sharing the folder are kept, and so are those of other
    /// hosts (a shared folder on a cluster) and everything when `/proc` is not there to
    /// tell. Call it before this process writes: its own PID counts as gone, since a
    /// file under it can only come from an earlier process that had the PID.
    pub fn remove_stale_temps(&self) -> Vec<PathBuf> {
        let proc = Path::new("/proc");
        if !proc.join("self").exists() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let (host, own) = (host_name(), std::process::id());
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let writer = p.file_name().and_then(|n| n.to_str()).and_then(temp_writer);
                writer.is_some_and(|(h, pid)| {
                    h == host && (pid == own || !proc.join(pid.to_string()).exists())
                })
            })
            .filter(|p| std::fs::remove_file(p).is_ok())
            .collect()
    }

    /// An existing output that is complete for this config and source, with its metadata.
    pub fn up_to_date(
        &self,
        key: &ExperimentKey,
        source_hash: &str,
    ) -> Option<(PathBuf, OutputMeta)> {
        let suffix = format!("_{}.parquet", self.hash8);
        self.existing(key).into_iter().find_map(|p| {
            if !p.to_string_lossy().ends_with(&suffix) {
                return None;
            }
            let meta = read_meta(&p).ok()?;
            (meta.source_hash == source_hash && meta.config_identity == self.config_identity)
                .then_some((p, meta))
        })
    }

    /// Writes `table` with `meta` and removes older outputs of the experiment.
    pub fn write(
        &self,
        key: &ExperimentKey,
        table: &Table,
        meta: &OutputMeta,
    ) -> Result<PathBuf, SinkError> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let name = format!("{}{stamp}_{}.parquet", key.prefix(), self.hash8);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(
            ".{name}.{}.{}.tmp",
            host_name(),
            std::process::id()
        ));
        let err = |p: &Path, m: String| SinkError {
            path: p.to_path_buf(),
            message: m,
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| err(&self.dir, format!("cannot create output folder: {e}")))?;
        let written = write_parquet(&tmp, table, meta);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(&path, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(
                &path,
                format!("cannot move the finished file into place: {e}"),
            )
        })?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        for old in self.existing(key) {
            if old != path {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(path)
    }
}

/// This machine's name as it appears in temporary file names (PIDs are per host).
fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        match name.trim().replace(['/', '\\'], "_") {
            n if n.is_empty() => "localhost".to_string(),
            n => n,
        }
    })
}

/// The writer's host and PID if `name` is one of [`Sink::write`]'s temporary names.
fn temp_writer(name: &str) -> Option<(&str, u32)> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (rest, pid) = inner.rsplit_once('.')?;
    let (_, host) = rest.rsplit_once(".parquet.")?;
    Some((host, pid.parse().ok()?))
}

/// The `PANDAS_ATTRS` text of a Parquet file.
fn read_attrs_text(path: &Path) -> Result<String, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    let kv = reader.metadata().file_metadata().key_value_metadata();
    kv.and_then(|kv| kv.iter().find(|e| e.key == ATTRS_KEY))
        .and_then(|e| e.value.clone())
        .ok_or_else(|| format!("no {ATTRS_KEY} metadata"))
}

/// The metadata of an output file; an error for files of another layout version.
pub fn read_meta(path: &Path) -> Result<OutputMeta, String> {
    let text = read_attrs_text(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    match value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        other => {
            return Err(format!(
            "written by another oect version (output format {}, this oect writes {FORMAT_VERSION})",
            other.map_or("1".to_string(), |v| v.to_string())
        ))
        }
    }
    serde_json::from_value(value).map_err(|e| format!("unreadable {ATTRS_KEY}: {e}"))
}

fn field(name: &str, data_type: DataType, nullable: bool, meta: &[(&str, String)]) -> Field {
    let metadata: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    Field::new(name, data_type, nullable).with_metadata(metadata)
}

/// A column holding one string on every row, dictionary-encoded so it costs nothing.
fn constant_text(value: &str, rows: usize) -> ArrayRef {
    let keys = Int32Array::from(vec![0; rows]);
    let values = Arc::new(StringArray::from(vec![value]));
    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).expect("key 0 is in range"))
}

fn write_parquet(path: &Path, table: &Table, meta: &OutputMeta) -> Result<(), String> {
    let rows = table.rows();
    let k = &table.keys;
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = vec![
        field("chip_id", dict.clone(), false, &[]),
        field("device_id", dict.clone(), false, &[]),
        field("test_id", dict, false, &[]),
        field("step_index", DataType::Int64, false, &[]),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        constant_text(&meta.chip_id, rows),
        constant_text(&meta.device_id, rows),
        constant_text(&meta.test_id, rows),
        Arc::new(Int64Array::from(k.step_index.clone())),
    ];
    if let Some((transfer, transient)) = &k.source_steps {
        fields.push(field("transfer_step", DataType::Int64, true, &[]));
        fields.push(field("transient_step", DataType::Int64, true, &[]));
        arrays.push(Arc::new(Int64Array::from(transfer.clone())));
        arrays.push(Arc::new(Int64Array::from(transient.clone())));
    }
    fields.push(field("loop_iteration", DataType::Int64, true, &[]));
    arrays.push(Arc::new(Int64Array::from(k.loop_iteration.clone())));
    fields.push(field(
        "start_time",
        DataType::Timestamp(TimeUnit::Microsecond, None),
        true,
        &[("description", "local start time of the step".into())],
    ));
    arrays.push(Arc::new(TimestampMicrosecondArray::from(
        k.start_time.clone(),
    )));
    fields.push(field(
        "elapsed_s",
        DataType::Float64,
        true,
        &[
            ("unit", "s".into()),
            ("description", "seconds since the test started".into()),
        ],
    ));
    arrays.push(Arc::new(Float64Array::from(k.elapsed_s.clone())));
    for f in &table.features {
        let c = &f.columns;
        let mut base: Vec<(&str, String)> = Vec::new();
        if let Some(u) = &c.unit {
            base.push(("unit", u.clone()));
        }
        match &f.values {
            Values::Float(v) => {
                fields.push(field(&c.feature, DataType::Float64, true, &base));
                arrays.push(Arc::new(Float64Array::from(v.clone())));
            }
            Values::Expanded(cols) => {
                for (j, (name, v)) in c.names().iter().zip(cols).enumerate() {
                    let mut m = base.clone();
                    m.push(("feature", c.feature.clone()));
                    if let Some(comp) = c.components.as_ref().and_then(|cs| cs.get(j)) {
                        m.push(("component", comp.clone()));
                    }
                    fields.push(field(name, DataType::Float64, true, &m));
                    arrays.push(Arc::new(Float64Array::from(v.clone())));
                }
            }
            Values::Nested(v) => {
                let rank = match c.kind {
                    ColumnKind::Nested(r) => r,
                    _ => {
                        return Err(format!(
                            "{}: nested values of a non-nested column",
                            c.feature
                        ))
                    }
                };
                let array = nested(v, rank)?;
                let mut m = base.clone();
                if let Some(comp) = &c.components {
                    m.push((
                        "components",
                        serde_json::to_string(comp).map_err(|e| e.to_string())?,
                    ));
                }
                fields.push(field(&c.feature, array.data_type().clone(), true, &m));
                arrays.push(array);
            }
        }
    }
    let attrs = serde_json::to_string(meta).map_err(|e| e.to_string())?;
    let metadata = HashMap::from([(ATTRS_KEY.to_string(), attrs.clone())]);
    let schema = Arc::new(Schema::new(fields).with_metadata(metadata));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(path).map_err(|e| format!("cannot create: {e}"))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    // Also as a plain key-value entry, for readers that ignore the Arrow schema (DuckDB's
    // parquet_kv_metadata, polars' read_parquet_metadata).
    writer.append_key_value_metadata(KeyValue::new(ATTRS_KEY.to_string(), attrs));
    let mut file = writer.into_inner().map_err(|e| e.to_string())?;
    file.flush().map_err(|e| e.to_string())?;
    file.sync_all()
        .map_err(|e| format!("cannot sync to disk: {e}"))
}

/// A nested list column of depth `rank` from per-row (shape, row-major values).
fn nested(rows: &[Option<(Vec<u64>, Vec<f64>)>], rank: usize) -> Result<ArrayRef, String> {
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<bool>>());
    let mut items: Vec<(&[u64], &[f64])> = rows
        .iter()
        .map(|r| match r {
            Some((s, v)) => (s.as_slice(), v.as_slice()),
            None => (&[0u64][..], &[][..]),
        })
        .collect();
    let mut offsets: Vec<Vec<i32>> = Vec::with_capacity(rank);
    for level in 0..rank {
        let mut next = Vec::new();
        let mut level_offsets = vec![0i32];
        for (shape, values) in &items {
            let Some((&n, rest)) = shape.split_first() else {
                return Err(format!("a value has rank {level}, expected {rank}"));
            };
            let n = n as usize;
            let chunk = values.len().checked_div(n).unwrap_or(0);
            for i in 0..n {
                next.push((rest, &values[i * chunk..(i + 1) * chunk]));
            }
            level_offsets.push(i32::try_from(next.len()).map_err(|_| "column too large")?);
        }
        offsets.push(level_offsets);
        items = next;
    }
    let leaves: Vec<f64> = items.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let mut array: ArrayRef = Arc::new(Float64Array::from(leaves));
    for (level, level_offsets) in offsets.into_iter().enumerate().rev() {
        let field = Arc::new(Field::new_list_field(array.data_type().clone(), true));
        let null_buffer = (level == 0).then(|| nulls.clone());
        array = Arc::new(
            ListArray::try_new(
                field,
                OffsetBuffer::new(level_offsets.into()),
                array,
                null_buffer,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    Ok(array)
}

#[cfg(test)]
mod tests;
