//! `oect watch RAW_ROOT -c CONFIG -o OUT`: features while tests run.
//!
//! The export folders under `RAW_ROOT` are followed ([`ingest::follow`]); each step taken is
//! computed once ([`exec::incremental`]) and its per-step results are kept, in memory and in an
//! append-only journal (`OUT/.oect-watch/`), so an update costs the new steps, and a restarted
//! watcher resumes from the journal instead of starting over. Each experiment's table is
//! replaced atomically at most every `--interval` seconds. When a test ends, its HDF5 file is
//! converted (as `oect convert` does) and the final table is written with that file as its
//! source, so it equals `oect convert` + `oect run` and a later `oect run` skips it.
//!
//! The OS's file-change notifications (the `notify` crate: inotify, FSEvents, …) wake the loop;
//! without them (`--poll`, or when they cannot be set up, e.g. on some network file systems)
//! the folders are rescanned every interval.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use oect_plugin_api::abi::{Channel, FailureKind, Source};

use crate::exec::compute::{Failure, Part, Recorded};
use crate::exec::incremental::Incremental;
use crate::exec::table::row_layout;
use crate::exec::{self, experiment_key, Outcome, TableSource};
use crate::ingest::follow::{Follower, NewStep, Position};
use crate::ingest::json::Json;
use crate::ingest::{self, export::name_fields, Conflict, Converted, Export, Kind};
use crate::sink::ExperimentKey;
use crate::source::{keys, step_record, AttrValue, Experiment, StepBlock, StepRecord};

/// Steps per computed block (spread over the workers when many steps arrive at once).
const BLOCK_STEPS: usize = 64;
/// Without notifications from the OS, nothing is missed for longer than this.
const RESCAN: Duration = Duration::from_secs(30);

#[derive(Args)]
pub(super) struct WatchArgs {
    /// Folder holding the export folders (searched recursively; new ones are picked up).
    root: PathBuf,
    /// Shipped config name or path to a .yaml/.yml/.json config.
    #[arg(short, long)]
    config: String,
    /// Output folder for the tables.
    #[arg(short, long)]
    out: PathBuf,
    /// Where the HDF5 files of finished tests are written [default: OUT/h5].
    #[arg(long, value_name = "DIR")]
    h5_dir: Option<PathBuf>,
    /// Shortest time between two rewrites of one experiment's table, in seconds.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// Rescan the folders every interval instead of using the OS's file-change notifications.
    #[arg(long)]
    poll: bool,
    /// Worker threads [default: the cores available, or SLURM_CPUS_PER_TASK when set].
    #[arg(short = 'j', long)]
    workers: Option<usize>,
}

/// An empty list per data kind.
fn by_kind<T>() -> BTreeMap<Source, Vec<T>> {
    BTreeMap::from([
        (Source::Transfer, Vec::new()),
        (Source::Transient, Vec::new()),
    ])
}

fn source_of(kind: Kind) -> Source {
    match kind {
        Kind::Transfer => Source::Transfer,
        Kind::Transient => Source::Transient,
    }
}

/// One step as the table records it: its CSV name and its number of samples.
type StepId = (String, usize);

/// A computed part in the journal (values as bit patterns, so NaN and ±inf survive JSON).
#[derive(Serialize, Deserialize)]
struct JournalPart {
    node: usize,
    first: usize,
    values: Vec<u64>,
    offsets: Vec<usize>,
    shapes: Vec<Option<Vec<u64>>>,
    /// Steps without a value: step, failure kind (its metadata name), message.
    failures: Vec<(usize, String, String)>,
}

impl JournalPart {
    fn new(node: usize, p: &Part) -> JournalPart {
        JournalPart {
            node,
            first: p.first,
            values: p.values.iter().map(|v| v.to_bits()).collect(),
            offsets: p.offsets.clone(),
            shapes: p.shapes.clone(),
            failures: p
                .failures
                .iter()
                .map(|f| (f.step, f.kind.as_str().to_owned(), f.message.clone()))
                .collect(),
        }
    }

    /// The part; `None` for a failure kind this host does not know (a journal from another
    /// version), which ends the journal there.
    fn part(&self) -> Option<Part> {
        let failures = self
            .failures
            .iter()
            .map(|(step, kind, message)| {
                Some(Failure {
                    step: *step,
                    kind: FailureKind::parse(kind)?,
                    message: message.clone(),
                })
            })
            .collect::<Option<Vec<Failure>>>()?;
        Some(Part {
            first: self.first,
            values: self.values.iter().map(|b| f64::from_bits(*b)).collect(),
            offsets: self.offsets.clone(),
            shapes: self.shapes.clone(),
            failures,
        })
    }
}

/// A step in the journal: its CSV, its number of samples and its `test_info` entry (for its
/// record: times, loop iteration, settings).
#[derive(Serialize, Deserialize)]
struct JournalStep {
    file: String,
    samples: usize,
    info: String,
}

/// One journal line: the steps an update took and their computed parts.
#[derive(Serialize, Deserialize, Default)]
struct Entry {
    position: Position,
    transfer: Vec<JournalStep>,
    transient: Vec<JournalStep>,
    parts: Vec<JournalPart>,
    /// The test ended and its final file and table were written.
    finished: bool,
}

/// The first journal line: what the entries belong to.
#[derive(Serialize, Deserialize, PartialEq)]
struct Header {
    folder: PathBuf,
    config_hash: String,
}

/// One followed export.
struct Watched {
    follower: Follower,
    /// The HDF5 file name the export converts to.
    name: String,
    /// The experiment its table belongs to, as the converted file will say.
    key: ExperimentKey,
    /// When the test started (the info's `created_at`).
    created_at: Option<chrono::NaiveDateTime>,
    /// `raw/workflow` as the converter writes it, for the steps' planned settings.
    workflow: Option<String>,
    journal: PathBuf,
    columns: Vec<Option<Part>>,
    steps: BTreeMap<Source, Vec<StepId>>,
    records: BTreeMap<Source, Vec<StepRecord>>,
    /// The root attributes the converted file will carry from the test's info, for the
    /// step contexts.
    attributes: BTreeMap<String, AttrValue>,
    dirty: bool,
    last_write: Option<Instant>,
    done: bool,
}

struct Watcher {
    inc: Incremental,
    h5_dir: PathBuf,
    journal_dir: PathBuf,
    interval: Duration,
    pool: rayon::ThreadPool,
    exports: BTreeMap<PathBuf, Watched>,
    /// Experiment → folder, to refuse two exports that would write the same table.
    claimed: HashMap<ExperimentKey, PathBuf>,
    /// Folders that failed for good, reported once.
    failed: BTreeMap<PathBuf, String>,
}

pub(super) fn watch(plugin_dirs: &[PathBuf], args: &WatchArgs) -> Result<u8> {
    if !(args.interval.is_finite() && args.interval >= 0.0) {
        anyhow::bail!(
            "--interval must be a number of seconds ≥ 0, got {}",
            args.interval
        );
    }
    if !args.root.is_dir() {
        anyhow::bail!("{}: not a folder", args.root.display());
    }
    let job = super::job(plugin_dirs, &args.config, &args.out)?;
    let workers = args.workers.unwrap_or_else(super::default_workers).max(1);
    let hash8 = job.graph.content_hash[..8].to_string();
    job.sink.remove_stale_temps();
    let inc = Incremental::new(job.graph, job.config, job.sink);
    let mut w = Watcher {
        inc,
        h5_dir: args.h5_dir.clone().unwrap_or_else(|| args.out.join("h5")),
        journal_dir: args.out.join(".oect-watch").join(hash8),
        interval: Duration::from_secs_f64(args.interval),
        pool: rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("oect-watch-{i}"))
            .build()
            .context("starting the worker threads")?,
        exports: BTreeMap::new(),
        claimed: HashMap::new(),
        failed: BTreeMap::new(),
    };
    exec::stop_on_signals().context("cannot install the Ctrl-C handler")?;

    let (tx, rx) = crossbeam_channel::unbounded::<()>();
    let notifier = if args.poll {
        None
    } else {
        let set_up = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            let _ = tx.send(());
        })
        .and_then(|mut n| {
            notify::Watcher::watch(&mut n, &args.root, notify::RecursiveMode::Recursive)?;
            Ok(n)
        });
        match set_up {
            Ok(n) => Some(n),
            Err(e) => {
                warning!("no file-change notifications ({e}); rescanning every interval");
                None
            }
        }
    };
    errln!(
        "watching {} ({}); tables in {}, Ctrl-C to stop",
        args.root.display(),
        if notifier.is_some() {
            "file-change notifications"
        } else {
            "rescanning"
        },
        args.out.display()
    );
    let mut last_scan: Option<Instant> = None;
    let mut changed = true;
    while !exec::stopping() {
        let rescan_due = last_scan.is_none_or(|t| {
            t.elapsed()
                >= if notifier.is_some() {
                    RESCAN
                } else {
                    w.interval
                }
        });
        if changed || rescan_due {
            w.scan(&args.root);
            last_scan = Some(Instant::now());
        }
        w.write_due(false);
        // sleep until something changes, a table is due, or a rescan is due; wake up often
        // enough to notice Ctrl-C
        let wait = w
            .next_write_in()
            .unwrap_or(Duration::from_millis(500))
            .min(Duration::from_millis(200));
        changed = match rx.recv_timeout(wait) {
            Ok(()) => {
                while rx.try_recv().is_ok() {}
                true
            }
            Err(_) => false,
        };
        if notifier.is_none() && last_scan.is_some_and(|t| t.elapsed() >= w.interval) {
            changed = true;
        }
    }
    w.write_due(true);
    errln!("stopped; every table on disk is complete, and the journal lets the next watch resume");
    /// The shell's status for a command stopped by SIGINT.
    const INTERRUPTED: u8 = 130;
    Ok(INTERRUPTED)
}

impl Watcher {
    /// Finds new exports and takes the new steps of each one still running.
    fn scan(&mut self, root: &Path) {
        let folders = ingest::find_exports(&[root.to_path_buf()]).unwrap_or_default();
        for folder in folders {
            if exec::stopping() {
                return;
            }
            if self.failed.contains_key(&folder) {
                continue;
            }
            if !self.exports.contains_key(&folder) {
                match self.start(&folder) {
                    Ok(Some(watched)) => {
                        self.exports.insert(folder.clone(), watched);
                    }
                    Ok(None) => continue, // not readable yet
                    Err(e) => {
                        failed!("{}: {e}", folder.display());
                        self.failed.insert(folder, e);
                        continue;
                    }
                }
            }
            let result = self.pool.install(|| {
                let watched = self.exports.get_mut(&folder).expect("inserted above");
                if watched.done {
                    return Ok(());
                }
                update(&self.inc, &self.h5_dir, watched)
            });
            if let Err(e) = result {
                failed!("{}: {e}", folder.display());
                self.failed.insert(folder.clone(), e);
                self.exports.remove(&folder);
            }
        }
    }

    /// Begins following `folder`: from its journal when there is one.
    fn start(&mut self, folder: &Path) -> Result<Option<Watched>, String> {
        let export = match Export::open(folder) {
            Ok(e) => e,
            Err(_)
                if ingest::export::is_export(folder)
                    && !folder.join(ingest::export::FINAL_INFO).is_file() =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.message),
        };
        let name = export.file_name();
        let key = running_key(&export, &name);
        if let Some(other) = self.claimed.get(&key) {
            return Err(format!(
                "same chip_id, device_number and test_id ({}) as {}: the same test twice; their tables would overwrite each other",
                key.stem(),
                other.display()
            ));
        }
        self.claimed.insert(key.clone(), folder.to_path_buf());
        let journal = self.journal_dir.join(format!("{name}.journal"));
        let mut watched = Watched {
            follower: Follower::new(folder, Position::default()),
            name,
            key,
            created_at: export
                .info
                .get("created_at")
                .and_then(|t| t.as_str())
                .and_then(crate::source::steps::parse_time),
            workflow: export.workflow.as_ref().map(|j| j.to_python_compact()),
            journal,
            columns: self.inc.empty_columns(),
            steps: by_kind(),
            records: by_kind(),
            attributes: info_attributes(&export.info),
            dirty: false,
            last_write: None,
            done: false,
        };
        let header = Header {
            folder: std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf()),
            config_hash: self.inc.graph().content_hash.clone(),
        };
        let journal = watched.journal.clone();
        let resumed = load_journal(&journal, &header, &mut watched);
        if !resumed {
            std::fs::create_dir_all(&self.journal_dir)
                .map_err(|e| format!("{}: cannot create: {e}", self.journal_dir.display()))?;
            let line = serde_json::to_string(&header).map_err(|e| e.to_string())?;
            std::fs::write(&watched.journal, line + "\n")
                .map_err(|e| format!("{}: cannot write: {e}", watched.journal.display()))?;
        } else {
            let n = |s: Source| watched.steps[&s].len();
            errln!(
                "{}: resumed from the journal ({} transfer, {} transient steps{})",
                folder.display(),
                n(Source::Transfer),
                n(Source::Transient),
                if watched.done { ", finished" } else { "" }
            );
            if watched.done {
                // the final table must still be there and match the final file
                let h5 = self.h5_dir.join(&watched.name);
                let current = exec::source_hash(&h5)
                    .ok()
                    .is_some_and(|hash| self.inc.sink().up_to_date(&watched.key, &hash).is_some());
                watched.done = current;
            }
        }
        Ok(Some(watched))
    }

    /// Writes the tables whose interval has passed (all pending ones with `all`).
    fn write_due(&mut self, all: bool) {
        for (folder, w) in &mut self.exports {
            let due = w.dirty && (all || w.last_write.is_none_or(|t| t.elapsed() >= self.interval));
            if due {
                let src = TableSource {
                    input: folder.clone(),
                    key: w.key.clone(),
                    source_hash: format!("running:{}", w.follower.position.next),
                    layout: row_layout(
                        &self.inc.graph().sources(),
                        &keys(&w.records[&Source::Transfer]),
                        &keys(&w.records[&Source::Transient]),
                        w.created_at,
                    ),
                    steps: w.counts(&self.inc),
                };
                report(folder, &self.inc.write(&src, w.columns.clone()), "table");
                w.dirty = false;
                w.last_write = Some(Instant::now());
            }
        }
    }

    /// Time until the next pending table is due.
    fn next_write_in(&self) -> Option<Duration> {
        self.exports
            .values()
            .filter(|w| w.dirty)
            .map(|w| {
                w.last_write.map_or(Duration::ZERO, |t| {
                    self.interval.saturating_sub(t.elapsed())
                })
            })
            .min()
    }
}

/// The key the converted file will give the experiment (`exec::experiment_key` of the file):
/// chip, device and test id from the info, the file's stem without a test id.
fn running_key(export: &Export, file_name: &str) -> ExperimentKey {
    let [chip_id, device_id, _, test_id] = name_fields(&export.info);
    ExperimentKey {
        chip_id,
        device_id,
        test_id: if test_id == "NA" {
            file_name.trim_end_matches(".h5").to_owned()
        } else {
            test_id
        },
    }
}

impl Watched {
    /// `chip-device`, for extractor messages.
    fn id(&self) -> String {
        format!("{}-{}", self.key.chip_id, self.key.device_id)
    }

    /// What is recorded about the steps of `source` so far, as a run reads it from the file.
    fn recorded<'a>(&'a self, source: Source, id: &'a str) -> Recorded<'a> {
        Recorded {
            experiment: id,
            steps: &self.records[&source],
            attributes: &self.attributes,
        }
    }

    /// Takes steps of `kind` into the followed state.
    fn take(&mut self, kind: Kind, steps: &[JournalStep]) {
        let source = source_of(kind);
        for step in steps {
            let info = serde_json::from_str(&step.info).unwrap_or(serde_json::Value::Null);
            let record = step_record(&info, self.workflow.as_deref(), kind.name());
            self.records
                .get_mut(&source)
                .expect("both kinds")
                .push(record);
            self.steps
                .get_mut(&source)
                .expect("both kinds")
                .push((step.file.clone(), step.samples));
        }
    }

    /// Rows per source the graph reads.
    fn counts(&self, inc: &Incremental) -> BTreeMap<Source, usize> {
        inc.graph()
            .sources()
            .into_iter()
            .map(|s| (s, self.steps[&s].len()))
            .collect()
    }
}

/// The scalar root attributes `oect convert` writes from a test's info (its scalar fields
/// and the name fields, cleaned as in the file); a null has no HDF5 value and is left out.
fn info_attributes(info: &Json) -> BTreeMap<String, AttrValue> {
    let mut attrs = BTreeMap::new();
    if let Json::Object(fields) = info {
        for (k, v) in fields {
            let value = match v {
                Json::Str(s) => AttrValue::String(s.clone()),
                Json::Int(i) => AttrValue::Int(*i),
                Json::UInt(u) => match i64::try_from(*u) {
                    Ok(i) => AttrValue::Int(i),
                    Err(_) => continue,
                },
                Json::Float(f) => AttrValue::Float(*f),
                Json::Bool(b) => AttrValue::Bool(*b),
                Json::Null | Json::Array(_) | Json::Object(_) => continue,
            };
            if k != "steps" {
                attrs.insert(k.clone(), value);
            }
        }
    }
    let [chip, device, description, test_id] = name_fields(info);
    for (k, v) in [
        ("chip_id", chip),
        ("device_number", device),
        ("description", description),
        ("test_id", test_id),
    ] {
        attrs.insert(k.to_owned(), AttrValue::String(v));
    }
    attrs
}

fn report(folder: &Path, outcome: &Outcome, what: &str) {
    match outcome {
        Outcome::Written {
            output,
            rows,
            step_errors,
            ..
        } => {
            let errors = if *step_errors > 0 {
                format!(", {step_errors} failed steps")
            } else {
                String::new()
            };
            errln!(
                "{}: {what} {} ({rows} rows{errors})",
                folder.display(),
                output.display()
            );
        }
        Outcome::Failed { reason, .. } => failed!("{}: {reason}", folder.display()),
        _ => {}
    }
}

/// Reads the journal into `w`; false (and nothing changed) when there is none or it belongs to
/// another export or config.
fn load_journal(path: &Path, header: &Header, w: &mut Watched) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let first = lines.next().and_then(Result::ok);
    if first
        .and_then(|l| serde_json::from_str::<Header>(&l).ok())
        .as_ref()
        != Some(header)
    {
        return false;
    }
    // a line cut short by a crash ends the journal
    for line in lines.map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            break;
        };
        if entry.parts.iter().any(|p| p.part().is_none()) {
            break;
        }
        apply(w, &entry);
    }
    true
}

/// Adds an update's steps and parts to `w`.
fn apply(w: &mut Watched, entry: &Entry) {
    w.follower.position = entry.position.clone();
    w.take(Kind::Transfer, &entry.transfer);
    w.take(Kind::Transient, &entry.transient);
    for jp in &entry.parts {
        if let (Some(part), Some(Some(column))) = (jp.part(), w.columns.get_mut(jp.node)) {
            column.append(&part);
        }
    }
    w.done = entry.finished;
}

fn append_journal(path: &Path, entry: &Entry) -> Result<(), String> {
    let line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.flush())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A block of steps for the extractors, holding `channels` (those the graph declares for the
/// steps' source): transfer sweeps without their NaN pairs (the reader's rule), transient
/// steps as `continuous_time` and `drain_current`.
fn block(first: usize, steps: &[&NewStep], channels: &[Channel]) -> StepBlock {
    let mut offsets = vec![0];
    let mut data: Vec<(Channel, Vec<f64>)> = channels.iter().map(|&c| (c, Vec::new())).collect();
    for s in steps {
        let mut n = 0;
        match s.kind {
            Kind::Transfer => {
                for (&vg, &id) in s.data.x.iter().zip(&s.data.y) {
                    if !vg.is_nan() && !id.is_nan() {
                        for (c, values) in &mut data {
                            values.push(if *c == Channel::Vg { vg } else { id });
                        }
                        n += 1;
                    }
                }
            }
            Kind::Transient => {
                for (c, values) in &mut data {
                    match c {
                        Channel::Time => values.extend_from_slice(&s.continuous_time),
                        _ => values.extend_from_slice(&s.data.y),
                    }
                }
                n = s.data.y.len();
            }
        }
        offsets.push(offsets.last().copied().unwrap_or(0) + n);
    }
    StepBlock {
        first_step: first,
        offsets,
        channels: data,
    }
}

/// Computes `source`'s per-step features for `block`, cut into pieces spread over the pool.
fn compute_parts(
    inc: &Incremental,
    source: Source,
    block: &StepBlock,
    recorded: Recorded<'_>,
) -> Vec<Option<Part>> {
    let n = block.n_steps();
    let pieces: Vec<StepBlock> = (0..n)
        .step_by(BLOCK_STEPS)
        .map(|k| {
            let end = (k + BLOCK_STEPS).min(n);
            let (lo, hi) = (block.offsets[k], block.offsets[end]);
            StepBlock {
                first_step: block.first_step + k,
                offsets: block.offsets[k..=end].iter().map(|o| o - lo).collect(),
                channels: block
                    .channels
                    .iter()
                    .map(|(c, values)| (*c, values[lo..hi].to_vec()))
                    .collect(),
            }
        })
        .collect();
    let computed: Vec<Vec<Option<Part>>> = pieces
        .par_iter()
        .map(|b| inc.compute(source, b, recorded))
        .collect();
    let mut out: Vec<Option<Part>> = vec![None; inc.graph().nodes.len()];
    for parts in computed {
        for (slot, part) in out.iter_mut().zip(parts) {
            if let Some(part) = part {
                match slot {
                    Some(s) => s.append(&part),
                    None => *slot = Some(part),
                }
            }
        }
    }
    out
}

/// One look at an export: new steps computed and journalled; the final file and table when the
/// test has ended.
fn update(inc: &Incremental, h5_dir: &Path, w: &mut Watched) -> Result<(), String> {
    let Some(progress) = w.follower.poll().map_err(|e| e.message)? else {
        return Ok(());
    };
    for warning in &progress.warnings {
        warning!("{}: {warning}", w.follower.folder.display());
    }
    let id = w.id();
    w.workflow = progress
        .export
        .workflow
        .as_ref()
        .map(|j| j.to_python_compact());
    w.attributes = info_attributes(&progress.export.info);
    let mut entry = Entry {
        position: w.follower.position.clone(),
        ..Entry::default()
    };
    for kind in [Kind::Transfer, Kind::Transient] {
        let source = source_of(kind);
        let new: Vec<&NewStep> = progress.steps.iter().filter(|s| s.kind == kind).collect();
        if new.is_empty() {
            continue;
        }
        let first = w.steps[&source].len();
        let taken: Vec<JournalStep> = new
            .iter()
            .map(|s| JournalStep {
                file: s.data_file.clone(),
                samples: s.data.len(),
                info: s.json.to_python_compact(),
            })
            .collect();
        w.take(kind, &taken);
        if inc.graph().sources().contains(&source) {
            let channels = inc.graph().channels(source);
            let parts = compute_parts(
                inc,
                source,
                &block(first, &new, &channels),
                w.recorded(source, &id),
            );
            for (node, part) in parts.into_iter().enumerate() {
                if let Some(part) = part {
                    entry.parts.push(JournalPart::new(node, &part));
                    if let Some(Some(column)) = w.columns.get_mut(node) {
                        column.append(&part);
                    }
                }
            }
            w.dirty = true;
        }
        match kind {
            Kind::Transfer => entry.transfer = taken,
            Kind::Transient => entry.transient = taken,
        }
    }
    if !progress.steps.is_empty() {
        append_journal(&w.journal, &entry)?;
    }
    if progress.finished {
        finish(inc, h5_dir, w)?;
    }
    Ok(())
}

/// The test has ended: its HDF5 file (as `oect convert` writes it) and the final table, whose
/// source is that file. The steps followed are checked against the file's; if they differ
/// (a CSV rewritten after it was read), the table is computed again from the file.
fn finish(inc: &Incremental, h5_dir: &Path, w: &mut Watched) -> Result<(), String> {
    let folder = w.follower.folder.clone();
    let converted = ingest::convert_all(std::slice::from_ref(&folder), h5_dir, Conflict::Update);
    let h5 = match converted.into_iter().next() {
        Some(Converted::Written {
            output, warnings, ..
        }) => {
            for warning in warnings {
                warning!("{}: {warning}", folder.display());
            }
            output
        }
        Some(Converted::Skipped { output, .. }) => output,
        Some(Converted::Failed { reason, .. }) => return Err(format!("converting: {reason}")),
        None => return Err("converting: no result".into()),
    };
    let exp = Experiment::open(&h5).map_err(|e| e.to_string())?;
    let file_steps = |s: Source| -> Vec<StepId> {
        let (records, lengths): (&[crate::source::StepRecord], Vec<usize>) = match s {
            Source::Transfer => (&exp.transfer_steps, Vec::new()),
            Source::Transient => (
                &exp.transient_steps,
                exp.transient
                    .as_ref()
                    .map_or_else(Vec::new, |t| t.steps.iter().map(|r| r.len()).collect()),
            ),
        };
        records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.data_file.clone().unwrap_or_default(),
                    lengths.get(i).copied().unwrap_or(0),
                )
            })
            .collect()
    };
    let matches = |s: Source| {
        let ours = &w.steps[&s];
        let theirs = file_steps(s);
        match s {
            Source::Transfer => ours.iter().map(|x| &x.0).eq(theirs.iter().map(|x| &x.0)),
            Source::Transient => *ours == theirs,
        }
    };
    if !(matches(Source::Transfer) && matches(Source::Transient)) {
        warning!("{}: the steps followed differ from the final file's; computing the table from the file",
            folder.display()
        );
        w.columns = inc.empty_columns();
        let id = format!("{}-{}", exp.chip_id, exp.device_id);
        for source in inc.graph().sources() {
            let n = match source {
                Source::Transfer => exp.transfer.as_ref().map_or(0, |t| t.n_steps),
                Source::Transient => exp.transient.as_ref().map_or(0, |t| t.steps.len()),
            };
            for start in (0..n).step_by(512) {
                let range = start..(start + 512).min(n);
                let block = match source {
                    Source::Transfer => exp.read_transfer(range),
                    Source::Transient => exp.read_transient(range, &inc.graph().channels(source)),
                }
                .map_err(|e| e.to_string())?;
                let recorded = Recorded {
                    experiment: &id,
                    steps: match source {
                        Source::Transfer => &exp.transfer_steps,
                        Source::Transient => &exp.transient_steps,
                    },
                    attributes: &exp.attrs,
                };
                for (node, part) in compute_parts(inc, source, &block, recorded)
                    .into_iter()
                    .enumerate()
                {
                    if let (Some(part), Some(Some(column))) = (part, w.columns.get_mut(node)) {
                        column.append(&part);
                    }
                }
            }
        }
        w.steps
            .insert(Source::Transfer, file_steps(Source::Transfer));
        w.steps
            .insert(Source::Transient, file_steps(Source::Transient));
    }
    // the final table's rows and keys are the file's, as in a run on it
    w.records
        .insert(Source::Transfer, exp.transfer_steps.clone());
    w.records
        .insert(Source::Transient, exp.transient_steps.clone());
    let src = TableSource {
        input: h5.clone(),
        key: experiment_key(&exp.info()),
        source_hash: exec::source_hash(&h5)?,
        layout: row_layout(
            &inc.graph().sources(),
            &keys(&exp.transfer_steps),
            &keys(&exp.transient_steps),
            exp.created_at,
        ),
        steps: w.counts(inc),
    };
    let outcome = inc.write(&src, w.columns.clone());
    report(
        &folder,
        &outcome,
        &format!("finished: {} and final table", h5.display()),
    );
    if let Outcome::Failed { reason, .. } = outcome {
        return Err(reason);
    }
    append_journal(
        &w.journal,
        &Entry {
            position: w.follower.position.clone(),
            finished: true,
            ..Entry::default()
        },
    )?;
    w.dirty = false;
    w.done = true;
    Ok(())
}
