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
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::RunOptionArgs;
use crate::config::FeatureConfig;
use crate::sink::{
    file_part, parquet_files, read_meta, CollectedMeta, OutputMeta, Sink, ATTRS_KEY, FORMAT_VERSION,
};
use crate::source::ExperimentInfo;

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
#[serde(rename_all = "snake_case")]
pub enum State {
    /// An up-to-date output exists, without failed steps.
    Done,
    /// An up-to-date output exists, but it records failed steps (NaN cells); rerunning
    /// with `--force` computes them again.
    DoneWithFailedSteps {
        failed_steps: usize,
        no_fit_steps: usize,
    },
    /// No up-to-date output (never computed, or stale).
    Missing,
    /// The file cannot be used; the reason.
    Failed(String),
}

/// Per input file (in input order): its shard and state, given what opening each file
/// gave (`infos`, in the same order).
pub fn status(
    files: &[PathBuf],
    infos: Vec<Result<ExperimentInfo, String>>,
    sink: &Sink,
    shards: usize,
) -> Vec<(PathBuf, usize, State)> {
    files
        .iter()
        .zip(infos)
        .enumerate()
        .map(|(i, (f, info))| {
            let state = match info {
                Err(e) => State::Failed(e),
                Ok(exp) => match crate::exec::source_hash(f) {
                    Ok(hash) => match sink.up_to_date(&crate::exec::experiment_key(&exp), &hash) {
                        Some((_, meta)) => {
                            let c = meta.counts();
                            if c.failed_steps == 0 {
                                State::Done
                            } else {
                                State::DoneWithFailedSteps {
                                    failed_steps: c.failed_steps,
                                    no_fit_steps: c.no_fit_steps,
                                }
                            }
                        }
                        None => State::Missing,
                    },
                    Err(e) => State::Failed(e),
                },
            };
            (f.clone(), i % shards.max(1), state)
        })
        .collect()
}

/// The shards (sorted, each once) that still have an experiment without an up-to-date
/// output (an output with failed steps is up to date: rerunning gives the same).
pub fn incomplete_shards(states: &[(PathBuf, usize, State)]) -> Vec<usize> {
    let mut shards: Vec<usize> = states
        .iter()
        .filter(|s| matches!(s.2, State::Missing | State::Failed(_)))
        .map(|s| s.1)
        .collect();
    shards.sort_unstable();
    shards.dedup();
    shards
}

/// `oect run` arguments that give each array task the options of `submit`: every one of
/// [`RunOptionArgs`], in `--name=value` form (a value may start with `-`). Taken apart
/// field by field, so that an option added to the struct does not compile until it is
/// passed on here.
pub(super) fn forward(options: &RunOptionArgs) -> Vec<String> {
    let RunOptionArgs {
        mode,
        in_flight,
        force,
        chip_id,
        device_id,
        step_timeout,
        read_timeout,
        max_memory,
        json,
        progress,
        h5_dir,
    } = options;
    let mode = clap::ValueEnum::to_possible_value(mode).expect("no skipped modes");
    let mut args = vec![
        format!("--mode={}", mode.get_name()),
        format!("--in-flight={in_flight}"),
    ];
    if *force {
        args.push("--force".into());
    }
    if let Some(chip) = chip_id {
        args.push(format!("--chip-id={chip}"));
    }
    if let Some(device) = device_id {
        args.push(format!("--device-id={device}"));
    }
    if let Some(seconds) = step_timeout {
        // Display of f64 is the shortest text that parses back to the same value.
        args.push(format!("--step-timeout={seconds}"));
    }
    args.push(format!("--read-timeout={read_timeout}"));
    if let Some(bytes) = max_memory {
        args.push(format!("--max-memory={bytes}"));
    }
    if *json {
        args.push("--json".into());
    }
    if let Some(progress) = progress {
        let progress = clap::ValueEnum::to_possible_value(progress).expect("no skipped modes");
        args.push(format!("--progress={}", progress.get_name()));
    }
    if let Some(dir) = h5_dir {
        args.push(format!("--h5-dir={}", dir.display()));
    }
    args
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

/// What `collect` merged and what it left out.
#[derive(Debug, Default)]
pub struct Collected {
    pub experiments: usize,
    pub rows: usize,
    /// Files of the config's folder that were not merged, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// How many of the skipped files could not be read.
    pub unreadable: usize,
}

/// Merges the outputs of `config` under `out_dir` (its folder `out_dir/<config>`) into one
/// Parquet file. Outputs are selected by their metadata: files of another config, hidden
/// files and unreadable ones are skipped and reported. The merged file's metadata holds
/// every experiment's own. Outputs of different versions of the config (different
/// `config_hash`) are refused: their values are not one table.
pub fn collect(out_dir: &Path, config: &FeatureConfig, target: &Path) -> Result<Collected> {
    let dir = out_dir.join(file_part(&config.name));
    let (files, hidden) = parquet_files(&dir).with_context(|| {
        format!(
            "{}: no outputs of config '{}' (cannot read the folder)",
            dir.display(),
            config.name
        )
    })?;
    let mut report = Collected::default();
    for h in hidden {
        report.skipped.push((
            h,
            "hidden file (a temporary file of a run in progress?)".into(),
        ));
    }
    let target_abs = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    let mut chosen: Vec<(PathBuf, OutputMeta)> = Vec::new();
    for f in files {
        if std::path::absolute(&f).is_ok_and(|p| p == target_abs) {
            continue;
        }
        match read_meta(&f) {
            Err(e) => {
                report.unreadable += 1;
                report.skipped.push((f, format!("unreadable: {e}")));
            }
            Ok(m) if m.config_identity != config.identity => report.skipped.push((
                f,
                format!("an output of another config ({})", m.config_identity),
            )),
            Ok(m) => chosen.push((f, m)),
        }
    }
    if chosen.is_empty() {
        bail!(
            "{}: no outputs of config '{}'",
            dir.display(),
            config.identity
        );
    }
    let mut hashes: Vec<&str> = chosen.iter().map(|(_, m)| m.config_hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.len() > 1 {
        bail!(
            "{}: the outputs come from {} different versions of config '{}' (config or plugins changed between runs); run `oect run` again to bring them all up to date",
            dir.display(),
            hashes.len(),
            config.name
        );
    }
    let mut batches = Vec::new();
    let mut schema: Option<Arc<Schema>> = None;
    for (f, _) in &chosen {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f)?)
            .with_context(|| format!("{}: not a readable Parquet file", f.display()))?
            .build()?;
        for batch in reader {
            let batch = batch.with_context(|| format!("{}: cannot read", f.display()))?;
            let this = batch.schema();
            match &schema {
                Some(s) if s.fields() != this.fields() => bail!(
                    "{}: its columns differ from the other outputs of '{}'",
                    f.display(),
                    config.name
                ),
                Some(_) => {}
                None => schema = Some(this.clone()),
            }
            report.rows += batch.num_rows();
            batches.push(batch);
        }
    }
    let first = &chosen[0].1;
    let merged = CollectedMeta {
        format_version: FORMAT_VERSION,
        config_name: config.name.clone(),
        config_identity: config.identity.clone(),
        config_hash: first.config_hash.clone(),
        created_at: chrono::Local::now().to_rfc3339(),
        oect_version: env!("CARGO_PKG_VERSION").to_string(),
        units: first.units.clone(),
        experiments: chosen.iter().map(|(_, m)| m.clone()).collect(),
    };
    let attrs = serde_json::to_string(&merged)?;
    let fields = schema.expect("at least one file").fields().clone();
    let schema = Arc::new(
        Schema::new(fields).with_metadata(std::collections::HashMap::from([(
            ATTRS_KEY.to_string(),
            attrs.clone(),
        )])),
    );
    let tmp = target.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let write = || -> Result<()> {
        let mut writer = ArrowWriter::try_new(File::create(&tmp)?, schema.clone(), Some(props))?;
        for b in &batches {
            writer.write(&RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)?;
        }
        writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
            ATTRS_KEY.to_string(),
            attrs.clone(),
        ));
        writer.close()?;
        std::fs::rename(&tmp, target)?;
        Ok(())
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("{}: cannot write", target.display()))?;
    report.experiments = chosen.len();
    Ok(report)
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
