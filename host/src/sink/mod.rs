//! Parquet output: one file per (experiment, config), written atomically.
//!
//! Files are named like the predecessor's,
//! `{chip}-{device}-{config}-feat_{YYYYmmdd-HHMMSS}_{hash8}.parquet`, so existing
//! tooling finds them, but `hash8` covers the config's content and the versions of
//! the plugins it uses. A file is first written under a hidden temporary name and
//! renamed when complete, so a file under the final name is always whole. An
//! experiment is skipped when a file with the current `hash8` exists and records the
//! same source fingerprint; otherwise (or with `--force`) it is recomputed and older
//! files of the same experiment and config are removed, leaving exactly one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::exec::table::{OutColumn, Table};

/// Key of the JSON metadata; pandas exposes it as `DataFrame.attrs`.
pub const ATTRS_KEY: &str = "PANDAS_ATTRS";

/// Where and how one config's outputs are written.
#[derive(Debug, Clone)]
pub struct Sink {
    pub out_dir: PathBuf,
    pub config_name: String,
    /// First 8 hex digits of the graph's content hash.
    pub hash8: String,
}

/// An output problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SinkError {
    pub path: PathBuf,
    pub message: String,
}

/// Keeps file names portable: path separators and control characters become `_`.
pub fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl Sink {
    fn prefix(&self, chip: &str, device: &str) -> String {
        format!(
            "{}-{}-{}-feat_",
            sanitize(chip),
            sanitize(device),
            sanitize(&self.config_name)
        )
    }

    /// Existing outputs of this experiment and config (any hash), sorted.
    pub fn existing(&self, chip: &str, device: &str) -> Vec<PathBuf> {
        let prefix = self.prefix(chip, device);
        let Ok(entries) = std::fs::read_dir(&self.out_dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".parquet"))
            })
            .collect();
        files.sort();
        files
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
        let Ok(entries) = std::fs::read_dir(&self.out_dir) else {
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

    /// An existing output that is complete for this config and source, if any.
    pub fn up_to_date(&self, chip: &str, device: &str, source_hash: &str) -> Option<PathBuf> {
        let suffix = format!("_{}.parquet", self.hash8);
        self.existing(chip, device).into_iter().find(|p| {
            p.to_string_lossy().ends_with(&suffix)
                && read_attrs(p).is_ok_and(|a| a["source_hash"] == source_hash)
        })
    }

    /// Writes `table` with `attrs` and removes older outputs of the experiment.
    pub fn write(
        &self,
        chip: &str,
        device: &str,
        table: &Table,
        attrs: &serde_json::Value,
    ) -> Result<PathBuf, SinkError> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let name = format!(
            "{}{stamp}_{}.parquet",
            self.prefix(chip, device),
            self.hash8
        );
        let path = self.out_dir.join(&name);
        let tmp = self.out_dir.join(format!(
            ".{name}.{}.{}.tmp",
            host_name(),
            std::process::id()
        ));
        let err = |p: &Path, m: String| SinkError {
            path: p.to_path_buf(),
            message: m,
        };
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|e| err(&self.out_dir, format!("cannot create output folder: {e}")))?;
        let written = write_parquet(&tmp, table, attrs);
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
        if let Ok(dir) = File::open(&self.out_dir) {
            let _ = dir.sync_all();
        }
        for old in self.existing(chip, device) {
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
        match sanitize(name.trim()) {
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

/// The JSON metadata of an output file.
pub fn read_attrs(path: &Path) -> Result<serde_json::Value, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    let kv = reader.metadata().file_metadata().key_value_metadata();
    let text = kv
        .and_then(|kv| kv.iter().find(|e| e.key == ATTRS_KEY))
        .and_then(|e| e.value.clone())
        .ok_or_else(|| format!("no {ATTRS_KEY} metadata"))?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn write_parquet(path: &Path, table: &Table, attrs: &serde_json::Value) -> Result<(), String> {
    let mut fields = vec![Field::new("step_index", DataType::Int64, false)];
    let mut arrays: Vec<ArrayRef> =
        vec![Arc::new(Int64Array::from_iter_values(0..table.rows as i64))];
    for column in &table.columns {
        let (name, array): (&str, ArrayRef) = match column {
            OutColumn::Float { name, values } => {
                (name, Arc::new(Float64Array::from(values.clone())))
            }
            OutColumn::Nested { name, rank, rows } => (name, nested(rows, *rank)?),
        };
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let metadata = HashMap::from([(ATTRS_KEY.to_string(), attrs.to_string())]);
    let schema = Arc::new(Schema::new(fields).with_metadata(metadata));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(path).map_err(|e| format!("cannot create: {e}"))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    // Also as a plain key-value entry, for readers that ignore the Arrow schema.
    writer.append_key_value_metadata(KeyValue::new(ATTRS_KEY.to_string(), attrs.to_string()));
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
