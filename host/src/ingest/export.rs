//! One raw export folder of the MiniTest-OECT instrument (`specs/hdf5_format.md` §7): its
//! `test_info.json` (or `test_info_temp.json` while the test runs), cleaned the way the lab's
//! `batch_clean_json_files` does it, its optional `workflow.json`, and which CSV holds each
//! transfer or transient step. Nothing here reads the CSVs' contents or changes the folder: the
//! cleaning happens in memory.

use std::fmt;
use std::path::{Path, PathBuf};

use super::json::Json;

/// What the instrument writes when a test has ended.
pub const FINAL_INFO: &str = "test_info.json";
/// What it rewrites after every step while the test runs.
pub const TEMP_INFO: &str = "test_info_temp.json";

/// A problem with one export folder, naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{folder}: {message}")]
pub struct ExportError {
    pub folder: PathBuf,
    pub message: String,
}

impl ExportError {
    pub(crate) fn new(folder: &Path, message: impl Into<String>) -> Self {
        Self {
            folder: folder.to_path_buf(),
            message: message.into(),
        }
    }
}

/// The two step kinds the converter stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Transfer,
    Transient,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Transfer => "transfer",
            Kind::Transient => "transient",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A transfer or transient step of the JSON `steps` list.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub kind: Kind,
    /// 0-based position in `steps` (the CSV fallback names use `position + 1`).
    pub position: usize,
    /// The CSV found for it; `None` when there is none (the step is skipped).
    pub csv: Option<PathBuf>,
}

/// An export folder, read and cleaned.
#[derive(Debug, Clone)]
pub struct Export {
    pub folder: PathBuf,
    /// The info file read (`test_info.json`, `test_info_temp.json` or the folder's only JSON).
    pub info_path: PathBuf,
    /// The test is still running: only `test_info_temp.json` is there.
    pub running: bool,
    /// `test_info` after the lab's cleaning pass.
    pub info: Json,
    /// `workflow.json`, when present and valid JSON.
    pub workflow: Option<Json>,
    /// Transfer and transient steps in measurement order; other step types are left out.
    pub steps: Vec<PlannedStep>,
    /// Things worth telling the user (a step without CSV, a null attribute, …).
    pub warnings: Vec<String>,
}

/// True when `dir` looks like an export folder (holds an info file).
pub fn is_export(dir: &Path) -> bool {
    dir.join(FINAL_INFO).is_file() || dir.join(TEMP_INFO).is_file()
}

/// Export folders among `inputs` (each an export folder, or a folder searched recursively for
/// them), sorted, each once. An export folder is not searched further.
pub fn find_exports(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ExportError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ExportError> {
        if is_export(dir) {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ExportError::new(dir, format!("cannot read folder: {e}")))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            walk(&d, out)?;
        }
        Ok(())
    }
    let mut found = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            return Err(ExportError::new(input, "not a folder"));
        }
        let before = found.len();
        walk(input, &mut found)?;
        if found.len() == before {
            return Err(ExportError::new(
                input,
                format!("no export folder (one holding {FINAL_INFO} or {TEMP_INFO}) in it"),
            ));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The info file of a folder: `test_info.json`, else `test_info_temp.json` (a running test),
/// else the folder's only `*.json` besides `workflow.json` (the predecessor takes a folder's
/// only JSON).
fn info_file(folder: &Path) -> Result<(PathBuf, bool), ExportError> {
    let fin = folder.join(FINAL_INFO);
    if fin.is_file() {
        return Ok((fin, false));
    }
    let temp = folder.join(TEMP_INFO);
    if temp.is_file() {
        return Ok((temp, true));
    }
    let entries = std::fs::read_dir(folder)
        .map_err(|e| ExportError::new(folder, format!("cannot read folder: {e}")))?;
    let jsons: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase());
            name.is_some_and(|n| n.ends_with(".json") && n != "workflow.json")
        })
        .collect();
    match &jsons[..] {
        [one] => Ok((one.clone(), false)),
        _ => Err(ExportError::new(
            folder,
            format!("no {FINAL_INFO} or {TEMP_INFO} (and not exactly one other .json)"),
        )),
    }
}

/// The lab's cleaning pass (`clean_test_info_json`), in memory: drop `test_type`, rename
/// `device_id` to `test_unit_id`, lift `metadata` (minus `raw_params`) to the root without
/// overwriting, lift `summary.completed_steps` / `completion_percentage`, drop each step's
/// `workflow_info.path`, and put the well-known keys first. Cleaning a cleaned file changes
/// nothing, so an export gives the same HDF5 whether it was cleaned before or not.
pub fn clean(mut info: Json) -> Json {
    if !matches!(info, Json::Object(_)) {
        return info;
    }
    info.remove("test_type");
    if let Some(unit) = info.remove("device_id") {
        info.insert("test_unit_id", unit);
    }
    if let Some(Json::Object(meta)) = info.remove("metadata") {
        for (k, v) in meta {
            if k != "raw_params" && info.get(&k).is_none() {
                info.insert(&k, v);
            }
        }
    }
    if let Some(summary) = info.remove("summary") {
        for key in ["completed_steps", "completion_percentage"] {
            if let Some(v) = summary.get(key) {
                info.insert(key, v.clone());
            }
        }
    }
    if let Some(Json::Array(steps)) = match &mut info {
        Json::Object(m) => m.iter_mut().find(|(k, _)| k == "steps").map(|(_, v)| v),
        _ => None,
    } {
        for step in steps {
            if let Json::Object(fields) = step {
                if let Some((_, wf)) = fields.iter_mut().find(|(k, _)| k == "workflow_info") {
                    wf.remove("path");
                }
            }
        }
    }
    const ORDER: [&str; 17] = [
        "sync_mode",
        "batch_id",
        "test_id",
        "name",
        "description",
        "test_unit_id",
        "chip_id",
        "device_number",
        "port",
        "baudrate",
        "created_at",
        "completed_at",
        "status",
        "total_steps",
        "completed_steps",
        "completion_percentage",
        "steps",
    ];
    let Json::Object(mut fields) = info else {
        unreachable!("checked above")
    };
    let mut ordered = Vec::with_capacity(fields.len());
    for key in ORDER {
        if let Some(at) = fields.iter().position(|(k, _)| k == key) {
            ordered.push(fields.remove(at));
        }
    }
    ordered.extend(fields);
    Json::Object(ordered)
}

/// The predecessor's file-name sanitising: path-hostile characters to `_`, whitespace runs to
/// one space, trimmed, at most 120 characters, `NA` when empty.
pub fn sanitize(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return "NA".to_owned();
    }
    let replaced: String = s
        .chars()
        .map(|c| {
            if "\\/:*?\"<>|\r\n\t".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let collapsed = replaced.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .chars()
        .take(120)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// The four name fields (chip, device, description, test id), sanitised, `NA` when missing or
/// falsy, as the predecessor reads them from the cleaned info.
pub fn name_fields(info: &Json) -> [String; 4] {
    ["chip_id", "device_number", "description", "test_id"].map(|key| match info.get(key) {
        Some(v) if v.truthy() => sanitize(&v.python_str()),
        _ => "NA".to_owned(),
    })
}

/// `chip-device-description-test_id.h5`.
pub fn file_name(info: &Json) -> String {
    name_fields(info).join("-") + ".h5"
}

impl Export {
    /// Reads and cleans the folder's info, finds each step's CSV.
    pub fn open(folder: &Path) -> Result<Export, ExportError> {
        let fail = |m: String| ExportError::new(folder, m);
        if !folder.is_dir() {
            return Err(fail("not a folder".into()));
        }
        let (info_path, running) = info_file(folder)?;
        let name = info_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let bytes =
            std::fs::read(&info_path).map_err(|e| fail(format!("{name}: cannot read: {e}")))?;
        let info =
            Json::parse(&bytes).map_err(|e| fail(format!("{name}: not valid JSON ({e})")))?;
        if !matches!(info, Json::Object(_)) {
            return Err(fail(format!("{name}: not a JSON object")));
        }
        let info = clean(info);
        let Some(steps) = info.get("steps").and_then(Json::as_array) else {
            return Err(fail(format!("{name}: no \"steps\" list")));
        };
        if steps.is_empty() && !running {
            return Err(fail(format!("{name}: the \"steps\" list is empty")));
        }
        let mut warnings = Vec::new();
        let listing = CsvListing::read(folder).map_err(fail)?;
        let mut planned = Vec::new();
        for (position, step) in steps.iter().enumerate() {
            let kind = match step
                .get("type")
                .and_then(Json::as_str)
                .map(str::to_lowercase)
            {
                Some(t) if t == "transfer" => Kind::Transfer,
                Some(t) if t == "transient" => Kind::Transient,
                _ => continue,
            };
            let csv = find_csv(step, position + 1, folder, &listing);
            if csv.is_none() {
                warnings.push(format!(
                    "step {} ({kind}{}): no CSV file, step skipped",
                    position + 1,
                    step.get("data_file")
                        .and_then(Json::as_str)
                        .map(|f| format!(", {f}"))
                        .unwrap_or_default()
                ));
            }
            planned.push(PlannedStep {
                kind,
                position,
                csv,
            });
        }
        let workflow_path = folder.join("workflow.json");
        let workflow = if workflow_path.is_file() {
            match std::fs::read(&workflow_path)
                .map_err(|e| e.to_string())
                .and_then(|b| Json::parse(&b))
            {
                Ok(w) => Some(w),
                Err(e) => {
                    warnings.push(format!("workflow.json not stored: {e}"));
                    None
                }
            }
        } else {
            None
        };
        if running {
            warnings.push(format!(
                "the test is still running ({TEMP_INFO}): converting the {} steps recorded so far",
                steps.len()
            ));
        }
        Ok(Export {
            folder: folder.to_path_buf(),
            info_path,
            running,
            info,
            workflow,
            steps: planned,
            warnings,
        })
    }

    /// The JSON entry of a planned step.
    pub fn step_json(&self, step: &PlannedStep) -> &Json {
        &self
            .info
            .get("steps")
            .and_then(Json::as_array)
            .expect("checked in open")[step.position]
    }

    /// The HDF5 file name the predecessor gives this export.
    pub fn file_name(&self) -> String {
        file_name(&self.info)
    }
}

/// The folder's CSV names, sorted, for the fallback patterns.
struct CsvListing(Vec<String>);

impl CsvListing {
    fn read(folder: &Path) -> Result<CsvListing, String> {
        let entries = std::fs::read_dir(folder).map_err(|e| format!("cannot read folder: {e}"))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(CsvListing(names))
    }
}

/// The predecessor's CSV discovery for the step at 1-based position `k`: any string in the
/// step ending in `.csv` (any case) that names an existing file, else the first sorted match
/// of `k_*.csv`, then `stepk_*.csv`, then `k.csv`.
fn find_csv(step: &Json, k: usize, folder: &Path, listing: &CsvListing) -> Option<PathBuf> {
    fn strings<'a>(v: &'a Json, out: &mut Vec<&'a str>) {
        match v {
            Json::Str(s) if s.to_lowercase().ends_with(".csv") => out.push(s),
            Json::Array(items) => items.iter().for_each(|i| strings(i, out)),
            Json::Object(m) => m.iter().for_each(|(_, i)| strings(i, out)),
            _ => {}
        }
    }
    let mut named = Vec::new();
    strings(step, &mut named);
    for name in named {
        // os.path.basename: the part after the last '/'
        let base = name.rsplit('/').next().unwrap_or(name);
        let path = folder.join(base);
        if !base.is_empty() && path.exists() {
            return Some(path);
        }
    }
    let (prefix, step_prefix, exact) = (format!("{k}_"), format!("step{k}_"), format!("{k}.csv"));
    let glob = |p: &str| {
        listing
            .0
            .iter()
            .find(|n| n.starts_with(p) && n.ends_with(".csv") && n.len() >= p.len() + 4)
            .map(|n| folder.join(n))
    };
    glob(&prefix).or_else(|| glob(&step_prefix)).or_else(|| {
        listing
            .0
            .iter()
            .find(|n| **n == exact)
            .map(|n| folder.join(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn cleaning_is_the_labs_and_idempotent() {
        let raw = j(
            r##"{"test_id": "t1", "device_id": "Unit A", "test_type": "workflow",
            "metadata": {"raw_params": {"x": 1}, "chip_id": "#C1", "test_id": "other", "sync_mode": false},
            "steps": [{"type": "transfer", "workflow_info": {"step_index": 1, "path": [1]}}],
            "summary": {"completed_steps": 1, "total_steps": 1, "completion_percentage": 100.0},
            "status": "completed", "extra": 5}"##,
        );
        let cleaned = clean(raw);
        assert_eq!(
            cleaned.to_python_compact(),
            r##"{"sync_mode":false,"test_id":"t1","test_unit_id":"Unit A","chip_id":"#C1","status":"completed","completed_steps":1,"completion_percentage":100.0,"steps":[{"type":"transfer","workflow_info":{"step_index":1}}],"extra":5}"##
        );
        assert_eq!(clean(cleaned.clone()), cleaned);
    }

    #[test]
    fn names_are_sanitised_and_default_to_na() {
        let info = j(
            r##"{"chip_id": "#A/1", "device_number": 3, "description": " 稳定  性 ", "test_id": ""}"##,
        );
        assert_eq!(file_name(&info), "#A_1-3-稳定 性-NA.h5");
        assert_eq!(file_name(&j("{}")), "NA-NA-NA-NA.h5");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 120);
    }
}
