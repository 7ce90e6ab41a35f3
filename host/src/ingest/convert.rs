//! `oect convert`: export folders → HDF5 files in layout variant A, the file the predecessor's
//! `batch_clean_json_files` + `process_folders_parallel` pipeline writes for the same export.
//!
//! Folders run in parallel and, within a folder, the CSVs are parsed and the chunks encoded in
//! parallel (on the caller's rayon pool). Each file is written under a hidden temporary name
//! and renamed when complete; a folder that fails leaves nothing and does not stop the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rayon::prelude::*;

use super::csv::{count_rows, parse_step, read_step, StepData};
use super::export::{name_fields, Export, ExportError, Kind, PlannedStep};
use super::h5::{self, Attr, FileSpec, TransferGroup, TransientGroup, TransientSource, WriteError};
use super::json::Json;
use super::table::{step_row, StepTable};

/// What to do when the output file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    /// Convert again only if a file of the export changed after the existing file was made.
    Update,
    /// Keep the existing file (the predecessor's `skip`).
    Skip,
    /// Always convert again (the predecessor's default).
    Overwrite,
    /// Write `NAME_2.h5`, `NAME_3.h5`, … (the predecessor's `rename`).
    Rename,
}

/// What happened to one export folder.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Converted {
    Written {
        folder: PathBuf,
        output: PathBuf,
        transfer_steps: usize,
        transient_steps: usize,
        /// Only `test_info_temp.json` was there: the steps recorded so far.
        running: bool,
        warnings: Vec<String>,
    },
    Skipped {
        folder: PathBuf,
        output: PathBuf,
        reason: String,
    },
    Failed {
        folder: PathBuf,
        reason: String,
    },
}

impl Converted {
    pub fn folder(&self) -> &Path {
        match self {
            Converted::Written { folder, .. }
            | Converted::Skipped { folder, .. }
            | Converted::Failed { folder, .. } => folder,
        }
    }

    /// The HDF5 file that now represents the export, if any.
    pub fn output(&self) -> Option<&Path> {
        match self {
            Converted::Written { output, .. } | Converted::Skipped { output, .. } => Some(output),
            Converted::Failed { .. } => None,
        }
    }
}

/// Converts `folders` into `out_dir` on the current rayon pool; results in input order.
pub fn convert_all(folders: &[PathBuf], out_dir: &Path, on_conflict: Conflict) -> Vec<Converted> {
    let claims = Mutex::new(HashMap::new());
    folders
        .par_iter()
        .with_max_len(1)
        .map(|f| convert_one(f, out_dir, on_conflict, &claims))
        .collect()
}

/// Converts one folder. `claims` maps output names taken in this batch to their folder, so two
/// exports of one batch never write the same file.
pub fn convert_one(
    folder: &Path,
    out_dir: &Path,
    on_conflict: Conflict,
    claims: &Mutex<HashMap<PathBuf, PathBuf>>,
) -> Converted {
    let failed = |reason: String| Converted::Failed {
        folder: folder.to_path_buf(),
        reason,
    };
    // Files of the export changed after this instant make the output stale (see `Update`).
    let started = SystemTime::now();
    let export = match Export::open(folder) {
        Ok(e) => e,
        Err(e) => return failed(e.message),
    };
    if let Err(e) = std::fs::create_dir_all(out_dir) {
        return failed(format!("{}: cannot create folder: {e}", out_dir.display()));
    }
    let name = export.file_name();
    let mut output = out_dir.join(&name);
    {
        let mut claims = claims.lock().expect("claims");
        if on_conflict == Conflict::Rename {
            let mut k = 2;
            while output.exists() || claims.contains_key(&output) {
                output = out_dir.join(format!("{}_{k}.h5", name.trim_end_matches(".h5")));
                k += 1;
            }
        } else if let Some(other) = claims.get(&output) {
            return failed(format!(
                "writes the same file {name} as {} (same chip, device, description and test id)",
                other.display()
            ));
        }
        claims.insert(output.clone(), folder.to_path_buf());
    }
    if output.exists() {
        let skip = match on_conflict {
            Conflict::Skip => Some("the file exists (--on-conflict skip)".to_owned()),
            Conflict::Update => {
                up_to_date(&export, &output).then(|| "up to date with the export".to_owned())
            }
            Conflict::Overwrite | Conflict::Rename => None,
        };
        if let Some(reason) = skip {
            return Converted::Skipped {
                folder: folder.to_path_buf(),
                output,
                reason,
            };
        }
    }
    match write_export(&export, &name, &output, started) {
        Ok((transfer_steps, transient_steps, warnings)) => Converted::Written {
            folder: folder.to_path_buf(),
            output,
            transfer_steps,
            transient_steps,
            running: export.running,
            warnings,
        },
        Err(e) => failed(e.message),
    }
}

/// True when no file of the export was modified after `output` was (converted files get the
/// conversion's start time as their modification time).
pub fn up_to_date(export: &Export, output: &Path) -> bool {
    let Ok(made) = std::fs::metadata(output).and_then(|m| m.modified()) else {
        return false;
    };
    newest_input(&export.folder).is_some_and(|newest| newest <= made)
}

/// Latest modification time of the export's files (the folder's own entries).
fn newest_input(folder: &Path) -> Option<SystemTime> {
    std::fs::read_dir(folder)
        .ok()?
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max()
}

/// Writes the HDF5 file of `export` to `output`; returns the step counts and warnings.
fn write_export(
    export: &Export,
    name: &str,
    output: &Path,
    started: SystemTime,
) -> Result<(usize, usize, Vec<String>), ExportError> {
    let fail = |m: String| ExportError::new(&export.folder, m);
    let mut warnings = export.warnings.clone();
    let describe = |s: &PlannedStep| {
        let file = s
            .csv
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        format!(
            "step {} ({}, {})",
            s.position + 1,
            s.kind,
            file.unwrap_or_default()
        )
    };

    // transfer: parsed whole (small)
    let planned: Vec<&PlannedStep> = export
        .steps
        .iter()
        .filter(|s| s.kind == Kind::Transfer && s.csv.is_some())
        .collect();
    let results: Vec<Result<StepData, String>> = planned
        .par_iter()
        .map(|s| read_step(s.csv.as_ref().expect("filtered"), Kind::Transfer))
        .collect();
    let mut transfer: Vec<(&PlannedStep, StepData)> = Vec::new();
    for (s, r) in planned.into_iter().zip(results) {
        match r {
            Ok(d) => transfer.push((s, d)),
            Err(e) => warnings.push(format!("{}: {e}; step skipped", describe(s))),
        }
    }

    // transient: sized by counting lines, streamed; counted exactly by parsing when that fails
    let candidates: Vec<&PlannedStep> = export
        .steps
        .iter()
        .filter(|s| s.kind == Kind::Transient && s.csv.is_some())
        .collect();
    let counted: Vec<Result<usize, String>> = candidates
        .par_iter()
        .map(|s| {
            let path = s.csv.as_ref().expect("filtered");
            std::fs::read(path)
                .map(|b| count_rows(&b))
                .map_err(|e| format!("cannot read: {e}"))
        })
        .collect();
    let mut transient: Vec<(&PlannedStep, usize)> = Vec::new();
    let mut transient_warnings = Vec::new();
    for (s, c) in candidates.iter().zip(counted) {
        match c {
            Ok(0) => {
                transient_warnings.push(format!("{}: no data rows; step skipped", describe(s)))
            }
            Ok(n) => transient.push((s, n)),
            Err(e) => transient_warnings.push(format!("{}: {e}; step skipped", describe(s))),
        }
    }
    let tmp = output.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut attempt = write_file(export, &transfer, &transient, name, &tmp);
    if matches!(
        attempt,
        Err(WriteError::Miscount(_) | WriteError::Source(_))
    ) {
        // a quoted line break, a bad row or a missing column: parse every CSV to size it
        let _ = std::fs::remove_file(&tmp);
        transient.clear();
        transient_warnings.clear();
        let exact: Vec<Result<usize, String>> = candidates
            .par_iter()
            .map(|s| read_step(s.csv.as_ref().expect("filtered"), Kind::Transient).map(|d| d.len()))
            .collect();
        for (s, c) in candidates.iter().zip(exact) {
            match c {
                Ok(0) => {
                    transient_warnings.push(format!("{}: no data rows; step skipped", describe(s)))
                }
                Ok(n) => transient.push((s, n)),
                Err(e) => transient_warnings.push(format!("{}: {e}; step skipped", describe(s))),
            }
        }
        attempt = write_file(export, &transfer, &transient, name, &tmp);
    }
    warnings.extend(transient_warnings);
    let finish = attempt.map_err(|e| e.to_string()).and_then(|()| {
        // the start time, so that a file changed while converting makes the output stale
        let f = std::fs::File::options()
            .write(true)
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        f.set_modified(started).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, output).map_err(|e| format!("cannot move the file into place: {e}"))
    });
    if let Err(e) = finish {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(format!("writing {}: {e}", output.display())));
    }
    if transfer.is_empty() && transient.is_empty() {
        warnings.push("no transfer or transient step with data: the file has neither group".into());
    }
    Ok((transfer.len(), transient.len(), warnings))
}

/// Streams the transient CSVs, a batch in parallel at a time.
struct CsvSource<'a> {
    paths: Vec<&'a Path>,
    next: usize,
}

impl TransientSource for CsvSource<'_> {
    fn next_batch(&mut self) -> Option<Result<Vec<StepData>, String>> {
        if self.next >= self.paths.len() {
            return None;
        }
        let n = (4 * rayon::current_num_threads()).max(8);
        let batch = &self.paths[self.next..(self.next + n).min(self.paths.len())];
        self.next += batch.len();
        let parsed: Vec<Result<StepData, String>> = batch
            .par_iter()
            .map(|p| {
                let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                parse_step(&bytes, Kind::Transient).map_err(|e| format!("{}: {e}", p.display()))
            })
            .collect();
        Some(parsed.into_iter().collect())
    }
}

fn write_file(
    export: &Export,
    transfer: &[(&PlannedStep, StepData)],
    transient: &[(&PlannedStep, usize)],
    name: &str,
    tmp: &Path,
) -> Result<(), WriteError> {
    let spec = file_spec(export, transfer, transient, name, &export_time());
    let mut source = CsvSource {
        paths: transient
            .iter()
            .map(|(s, _)| s.csv.as_deref().expect("planned with a CSV"))
            .collect(),
        next: 0,
    };
    h5::write(tmp, &spec, &mut source)
}

/// Everything of the file of `export` but the transient samples: the stored transfer steps
/// with their data, the stored transient steps with their lengths, the file's name and the
/// `export_time_utc` to record.
pub(crate) fn file_spec(
    export: &Export,
    transfer: &[(&PlannedStep, StepData)],
    transient: &[(&PlannedStep, usize)],
    name: &str,
    export_time: &str,
) -> FileSpec {
    let info = &export.info;
    let mut attrs = vec![(
        "format_version".to_owned(),
        Attr::Utf8(h5::FORMAT_VERSION.into()),
    )];
    if let Json::Object(fields) = info {
        for (k, v) in fields {
            let attr = match v {
                Json::Str(s) => Attr::Ascii(s.clone()),
                Json::Int(i) => Attr::Int(*i),
                Json::UInt(u) => Attr::UInt(*u),
                Json::Float(f) => Attr::Float(*f),
                Json::Bool(b) => Attr::Bool(*b),
                // the predecessor stops on a null; it has no HDF5 value, so it is left out
                Json::Null | Json::Array(_) | Json::Object(_) => continue,
            };
            if k != "steps" {
                attrs.push((k.clone(), attr));
            }
        }
    }
    let folder = std::path::absolute(&export.folder).unwrap_or_else(|_| export.folder.clone());
    let base = |p: &Path| {
        p.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let [chip, device, description, test_id] = name_fields(info);
    for (k, v) in [
        ("source_folder_name", base(&folder)),
        ("source_folder_path", folder.to_string_lossy().into_owned()),
        ("source_json_name", base(&export.info_path)),
        ("export_time_utc", export_time.to_owned()),
        ("chip_id", chip),
        ("device_number", device),
        ("description", description),
        ("test_id", test_id),
        ("output_filename", name.to_owned()),
    ] {
        attrs.push((k.to_owned(), Attr::Utf8(v)));
    }

    let transfer_group = (!transfer.is_empty()).then(|| {
        let rows: Vec<_> = transfer
            .iter()
            .enumerate()
            .map(|(i, (s, _))| step_row(export.step_json(s), i))
            .collect();
        TransferGroup {
            steps: transfer.iter().map(|(_, d)| d.clone()).collect(),
            table: StepTable::from_rows(&rows),
        }
    });
    let transient_group = (!transient.is_empty()).then(|| {
        let mut start = 0i64;
        let rows: Vec<_> = transient
            .iter()
            .enumerate()
            .map(|(i, (s, n))| {
                let mut row = step_row(export.step_json(s), i);
                row.push(("start_data_index".into(), Json::Int(start)));
                start += *n as i64;
                row.push(("end_data_index".into(), Json::Int(start)));
                row
            })
            .collect();
        TransientGroup {
            lengths: transient.iter().map(|(_, n)| *n).collect(),
            time_steps_ms: transient
                .iter()
                .map(|(s, _)| continuous_time_step_ms(export.step_json(s)))
                .collect(),
            table: StepTable::from_rows(&rows),
        }
    });
    FileSpec {
        attrs,
        raw_json: info.to_python_ascii(),
        workflow: export.workflow.as_ref().map(Json::to_python_compact),
        transfer: transfer_group,
        transient: transient_group,
    }
}

/// The spacing the predecessor gives `continuous_time`: `parameters.timeStep` ms, else 1 ms.
/// The instrument writes `params`, so real exports always get 1 ms (`specs/hdf5_format.md`
/// §4.4).
pub fn continuous_time_step_ms(step: &Json) -> f64 {
    step.get("parameters")
        .and_then(|p| p.get("timeStep"))
        .and_then(Json::as_f64)
        .unwrap_or(1.0)
}

/// `datetime.now(timezone.utc).isoformat()`.
fn export_time() -> String {
    let now = chrono::Utc::now();
    let base = now.format("%Y-%m-%dT%H:%M:%S").to_string();
    match now.timestamp_subsec_micros() {
        0 => format!("{base}+00:00"),
        us => format!("{base}.{us:06}+00:00"),
    }
}
