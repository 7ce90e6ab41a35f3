//! `oect convert`, and the conversion `oect run` does when it is given export folders.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::ingest::{self, Conflict, Converted};

#[derive(Args)]
pub(super) struct ConvertArgs {
    /// Export folders (holding test_info.json or test_info_temp.json), or folders searched
    /// recursively for them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder for the HDF5 files.
    #[arg(short, long)]
    out: PathBuf,
    /// When the output file exists: convert again only if the export changed since (update),
    /// keep it (skip), replace it (overwrite), or write NAME_2.h5, NAME_3.h5, … (rename).
    #[arg(long, value_enum, default_value_t = Conflict::Update)]
    on_conflict: Conflict,
    /// Folders converted at once, and threads for parsing and compressing [default: cores].
    #[arg(short = 'j', long)]
    workers: Option<usize>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn convert(args: &ConvertArgs) -> Result<u8> {
    let folders = ingest::find_exports(&args.inputs)?;
    let results = convert_folders(&folders, &args.out, args.on_conflict, args.workers)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        report(&results);
    }
    let failed = results
        .iter()
        .any(|r| matches!(r, Converted::Failed { .. }));
    Ok(if failed { super::PARTIAL } else { super::OK })
}

/// Converts on a pool of `workers` threads (all cores by default).
pub(super) fn convert_folders(
    folders: &[PathBuf],
    out: &Path,
    on_conflict: Conflict,
    workers: Option<usize>,
) -> Result<Vec<Converted>> {
    let mut pool = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("oect-convert-{i}"));
    if let Some(n) = workers {
        anyhow::ensure!(n > 0, "--workers must be at least 1");
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting the conversion threads")?;
    Ok(pool.install(|| ingest::convert_all(folders, out, on_conflict)))
}

/// One line per folder on stdout, warnings and failures on stderr.
pub(super) fn report(results: &[Converted]) {
    for r in results {
        match r {
            Converted::Written {
                folder,
                output,
                transfer_steps,
                transient_steps,
                running,
                warnings,
            } => {
                for w in warnings {
                    warning!("{}: {w}", folder.display());
                }
                let running = if *running {
                    " (test still running)"
                } else {
                    ""
                };
                outln!(
                    "wrote {} ({transfer_steps} transfer, {transient_steps} transient steps){running}",
                    output.display()
                );
            }
            Converted::Skipped { output, reason, .. } => {
                outln!("skipped {}: {reason}", output.display());
            }
            Converted::Failed { folder, reason } => {
                failed!("{}: {reason}", folder.display());
            }
        }
    }
    let count = |f: fn(&Converted) -> bool| results.iter().filter(|r| f(r)).count();
    errln!(
        "{} export folders: {} converted, {} skipped, {} failed",
        results.len(),
        count(|r| matches!(r, Converted::Written { .. })),
        count(|r| matches!(r, Converted::Skipped { .. })),
        count(|r| matches!(r, Converted::Failed { .. })),
    );
}

/// The HDF5 inputs of `oect run`: `.h5` files as given or found in folders, plus the export
/// folders found among the inputs, converted into `h5_dir` first (converted again only when the
/// export changed, the default `update` rule). With `shard`, the export folders and the files
/// are sharded together, by position in their sorted list, and only the shard's exports are
/// converted. Conversion failures are reported on stderr and returned.
pub(super) fn run_inputs(
    inputs: &[PathBuf],
    h5_dir: &Path,
    shard: Option<super::batch::Shard>,
    workers: usize,
) -> Result<(Vec<PathBuf>, Vec<Converted>)> {
    let mut exports = Vec::new();
    let mut plain = Vec::new();
    for input in inputs {
        let found = if input.is_dir() {
            ingest::find_exports(std::slice::from_ref(input)).unwrap_or_default()
        } else {
            Vec::new()
        };
        if found.is_empty() {
            plain.push(input.clone());
            continue;
        }
        exports.extend(found);
        // .h5 files beside the exports count too, but need not exist
        if let Ok(files) = super::collect_inputs(std::slice::from_ref(input)) {
            plain.extend(files);
        }
    }
    let mut files = if plain.is_empty() {
        Vec::new()
    } else {
        super::collect_inputs(&plain)?
    };
    exports.sort();
    exports.dedup();
    if let Some(shard) = shard {
        let mut all: Vec<PathBuf> = files.iter().chain(&exports).cloned().collect();
        all.sort();
        let keep = shard.select(all);
        files.retain(|f| keep.contains(f));
        exports.retain(|e| keep.contains(e));
    }
    let converted = if exports.is_empty() {
        Vec::new()
    } else {
        convert_folders(&exports, h5_dir, Conflict::Update, Some(workers))?
    };
    let mut failed = Vec::new();
    for c in converted {
        match &c {
            Converted::Written {
                folder,
                output,
                warnings,
                running,
                ..
            } => {
                for w in warnings {
                    warning!("{}: {w}", folder.display());
                }
                let running = if *running {
                    " (test still running)"
                } else {
                    ""
                };
                errln!(
                    "converted {} → {}{running}",
                    folder.display(),
                    output.display()
                );
                files.push(output.clone());
            }
            Converted::Skipped { output, .. } => files.push(output.clone()),
            Converted::Failed { folder, reason } => {
                failed!("{}: {reason}", folder.display());
                failed.push(c);
            }
        }
    }
    files.sort();
    files.dedup();
    Ok((files, failed))
}
