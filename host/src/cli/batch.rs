//! Batches beyond one machine: deterministic shards, Slurm job arrays, the status of an
//! output folder, and one merged table for analysis.
//!
//! Shard `I/N` takes the files at positions ≡ I (mod N) of the sorted input list, so
//! shards are disjoint, cover everything, and do not depend on file contents (a shard
//! can be recomputed from the list alone). Outputs and skip logic are per experiment,
//! so each shard can be rerun on its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::sink::{read_attrs, Sink};
use crate::source::Experiment;

/// `I/N` with `I < N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected I/N (e.g. 0/4), got '{s}'"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index '{i}'"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count '{n}'"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The files of this shard, from the sorted list of all inputs.
    pub fn select(self, files: Vec<PathBuf>) -> Vec<PathBuf> {
        files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, f)| f)
            .collect()
    }
}

/// State of one experiment of a batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// An up-to-date output exists.
    Done,
    /// No up-to-date output (never computed, or stale).
    Missing,
    /// The file cannot be used; the reason.
    Failed(String),
}

/// Per input file (in input order): its shard and state.
pub fn status(files: &[PathBuf], sink: &Sink, shards: usize) -> Vec<(PathBuf, usize, State)> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let state = match Experiment::open(f) {
                Err(e) => State::Failed(e.message),
                Ok(exp) => match crate::exec::source_hash(f) {
                    Ok(hash)
                        if sink
                            .up_to_date(&exp.chip_id, &exp.device_id, &hash)
                            .is_some() =>
                    {
                        State::Done
                    }
                    Ok(_) => State::Missing,
                    Err(e) => State::Failed(e),
                },
            };
            (f.clone(), i % shards.max(1), state)
        })
        .collect()
}

/// The shards (sorted, each once) that still have an experiment not done.
pub fn incomplete_shards(states: &[(PathBuf, usize, State)]) -> Vec<usize> {
    let mut shards: Vec<usize> = states
        .iter()
        .filter(|s| s.2 != State::Done)
        .map(|s| s.1)
        .collect();
    shards.sort_unstable();
    shards.dedup();
    shards
}

/// Options of the generated job array.
pub struct ArrayJob<'a> {
    pub oect: &'a Path,
    /// `oect run` arguments shared by every shard (inputs, config, output, flags).
    pub run_args: &'a [String],
    pub shards: usize,
    /// Array indices to run (all shards, or only those with missing experiments).
    pub indices: &'a [usize],
    pub partition: Option<&'a str>,
    pub time: Option<&'a str>,
    pub cpus_per_task: usize,
    pub log_dir: &'a Path,
}

fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The `sbatch` script of a job array, one task per shard.
pub fn sbatch_script(job: &ArrayJob<'_>) -> String {
    let indices: Vec<String> = job.indices.iter().map(usize::to_string).collect();
    let mut s = String::from("#!/usr/bin/env bash\n");
    s.push_str("#SBATCH --job-name=oect\n");
    s.push_str(&format!("#SBATCH --array={}\n", indices.join(",")));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", job.cpus_per_task));
    s.push_str(&format!(
        "#SBATCH --output={}/oect-%A_%a.log\n",
        job.log_dir.display()
    ));
    if let Some(p) = job.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = job.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    s.push_str("set -euo pipefail\n");
    let args: Vec<String> = job.run_args.iter().map(|a| quote(a)).collect();
    s.push_str(&format!(
        "exec {} run {} --shard \"$SLURM_ARRAY_TASK_ID/{}\" --workers \"${{SLURM_CPUS_PER_TASK:-1}}\"\n",
        quote(&job.oect.to_string_lossy()),
        args.join(" "),
        job.shards
    ));
    s
}

/// Merges the outputs of `config` in `out_dir` into one Parquet file with `chip_id` and
/// `device_id` columns first. Returns the number of experiments and rows.
pub fn collect(out_dir: &Path, config: &str, target: &Path) -> Result<(usize, usize)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .with_context(|| format!("{}: cannot read folder", out_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".parquet")
                && !name.starts_with('.')
                && name.contains(&format!("-{config}-feat_"))
                && p.as_path() != target
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no outputs of config '{config}'", out_dir.display());
    }
    let mut batches = Vec::new();
    let mut schema: Option<Arc<Schema>> = None;
    for f in &files {
        let attrs = read_attrs(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let text = |k: &str| attrs[k].as_str().unwrap_or("NA").to_string();
        let (chip, device) = (text("chip_id"), text("device_id"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f)?)
            .with_context(|| format!("{}: not a readable Parquet file", f.display()))?
            .build()?;
        for batch in reader {
            let batch = batch?;
            let n = batch.num_rows();
            let mut fields = vec![
                Field::new("chip_id", DataType::Utf8, false),
                Field::new("device_id", DataType::Utf8, false),
            ];
            fields.extend(batch.schema().fields().iter().map(|f| f.as_ref().clone()));
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![chip.as_str(); n])),
                Arc::new(StringArray::from(vec![device.as_str(); n])),
            ];
            columns.extend(batch.columns().iter().cloned());
            let this = Arc::new(Schema::new(fields));
            match &schema {
                Some(s) if s.fields() != this.fields() => bail!(
                    "{}: its columns differ from the other outputs of '{config}'",
                    f.display()
                ),
                Some(_) => {}
                None => schema = Some(this.clone()),
            }
            batches.push(RecordBatch::try_new(this, columns)?);
        }
    }
    let schema = schema.expect("at least one file");
    let meta: std::collections::HashMap<String, String> = [
        ("config_name".to_string(), config.to_string()),
        ("source".to_string(), "oect collect".to_string()),
    ]
    .into();
    let schema = Arc::new(Schema::new(schema.fields().clone()).with_metadata(meta));
    let tmp = target.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(File::create(&tmp)?, schema.clone(), Some(props))?;
    let mut rows = 0;
    for b in batches {
        rows += b.num_rows();
        writer.write(&RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)?;
    }
    writer.close()?;
    std::fs::rename(&tmp, target)?;
    Ok((files.len(), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        let files: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("f{i}.h5"))).collect();
        let mut all = Vec::new();
        for i in 0..3 {
            let shard: Shard = format!("{i}/3").parse().unwrap();
            all.extend(shard.select(files.clone()));
        }
        all.sort();
        let mut want = files.clone();
        want.sort();
        assert_eq!(all, want);
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(
            s.select(files),
            ["f1.h5", "f4.h5", "f7.h5"].map(PathBuf::from)
        );
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1-3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
    }

    #[test]
    fn the_array_script_runs_one_shard_per_task() {
        let args = [
            "data dir".to_string(),
            "-c".into(),
            "v2_transfer_basic".into(),
        ];
        let script = sbatch_script(&ArrayJob {
            oect: Path::new("/opt/oect"),
            run_args: &args,
            shards: 3,
            indices: &[0, 2],
            partition: Some("debug"),
            time: Some("01:00:00"),
            cpus_per_task: 4,
            log_dir: Path::new("/out/logs"),
        });
        assert!(script.contains("#SBATCH --array=0,2\n"), "{script}");
        assert!(script.contains("#SBATCH --cpus-per-task=4\n"));
        assert!(script.contains("#SBATCH --partition=debug\n"));
        assert!(script.contains("#SBATCH --time=01:00:00\n"));
        assert!(script.contains(
            "exec /opt/oect run 'data dir' -c v2_transfer_basic --shard \"$SLURM_ARRAY_TASK_ID/3\" --workers \"${SLURM_CPUS_PER_TASK:-1}\""
        ), "{script}");
    }
}
