//! Running a feature graph over a batch of experiment files, contained.
//!
//! The `oect` process is a **supervisor** ([`supervise`]) that never opens an HDF5 file
//! nor calls an extractor: **worker processes** ([`worker`], the same binary's hidden
//! `__worker` subcommand, speaking [`protocol`]) open the files, read ranges of steps and
//! run the extractors, and send back per-step values. So whatever a plugin or libhdf5 does
//! to its process (a signal, `abort`, `exit`, a runaway allocation, an endless loop) costs
//! only the work that process was doing; the supervisor pins it on the steps involved,
//! records the casualty with its cause (here, in the file's metadata and in the crash
//! [`journal`]) and goes on with a fresh worker.
//!
//! Both modes call the same per-chunk functions ([`compute`]) on the same step ranges and
//! assemble tables the same way ([`table`]), so they write identical files:
//!
//! * **step mode** (default): tasks are (experiment, chunk of steps) running every
//!   per-step feature of that chunk; at most `in_flight` experiments are open at once;
//! * **experiment mode**: one task per experiment, its chunks computed in order.
//!
//! Each worker holds two tasks, so reading the next chunk overlaps computing this one,
//! and each opens the files it reads itself, so HDF5's global lock is per worker.

pub mod compute;
pub mod incremental;
pub mod journal;
pub mod pool;
pub mod probe;
mod progress;
pub mod protocol;
mod supervise;
pub mod table;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oect_plugin_api::abi::{Channel, Source};
use sha2::{Digest, Sha256};

use crate::config::FeatureConfig;
use crate::graph::{FeatureGraph, Input};
use crate::sink::{ExperimentKey, OutputMeta, PluginMeta, Sink, StepError, FORMAT_VERSION};
use crate::source::{Experiment, ExperimentInfo, SourceError, StepBlock};
use compute::Part;
pub use pool::WorkerCommand;
use progress::Progress;
pub use progress::ProgressMode;

/// Set by SIGINT / SIGTERM; the supervisor checks it every few milliseconds and then kills
/// its workers, so a stop is prompt even while a worker is stuck, and leaves only whole
/// files (or none) behind.
fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// True once a stop was requested.
pub fn stopping() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// Makes SIGINT and SIGTERM request a clean stop; a second one exits at once with
/// status 130 (temporary files it leaves are removed by the next run).
pub fn stop_on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(stop_flag()))?;
        signal_hook::flag::register(signal, Arc::clone(stop_flag()))?;
    }
    Ok(())
}

/// How tasks are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Step,
    Experiment,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: Mode,
    pub workers: usize,
    /// Experiments open at once in step mode.
    pub in_flight: usize,
    pub force: bool,
    /// Only experiments of this chip / device.
    pub chip_id: Option<String>,
    pub device_id: Option<String>,
    pub progress: ProgressMode,
    /// Longest time one extractor call may take; the worker making it is ended and the
    /// step fails.
    pub step_timeout: Option<Duration>,
    /// Longest time opening a file or reading one chunk of steps may take.
    pub read_timeout: Option<Duration>,
    /// Resident memory one worker process may use, in bytes.
    pub max_memory: Option<u64>,
    /// How worker processes are started.
    pub worker: WorkerCommand,
}

/// What happened to one input file.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Written; `step_errors` cells are NaN because a step failed, `no_fit_steps` because
    /// the step has no result ("no fit": failure kind `no_result`), and `nonfinite_steps`
    /// values hold NaN or ±inf; `failed_by_kind` splits `step_errors` by failure kind.
    /// Counts cover every feature, derived ones included. `seconds` is the wall time from
    /// opening the file to writing its table (experiments overlap in step mode, so these
    /// add up to more than the run's time).
    Written {
        input: PathBuf,
        output: PathBuf,
        rows: usize,
        seconds: f64,
        step_errors: usize,
        no_fit_steps: usize,
        nonfinite_steps: usize,
        failed_by_kind: BTreeMap<String, usize>,
        errors: Vec<StepError>,
    },
    /// An up-to-date output already exists; the counts are those it records.
    Skipped {
        input: PathBuf,
        output: PathBuf,
        step_errors: usize,
        no_fit_steps: usize,
        nonfinite_steps: usize,
        failed_by_kind: BTreeMap<String, usize>,
    },
    /// Nothing written; `reason` says why.
    Failed { input: PathBuf, reason: String },
    /// Excluded by `--chip-id` / `--device-id`; its chip and device, so that a filter
    /// matching nothing can say what there is.
    Filtered {
        input: PathBuf,
        chip_id: String,
        device_id: String,
    },
    /// Not finished because the run was stopped (Ctrl-C); nothing was written.
    Interrupted { input: PathBuf },
}

impl Outcome {
    pub fn input(&self) -> &Path {
        match self {
            Outcome::Written { input, .. }
            | Outcome::Skipped { input, .. }
            | Outcome::Failed { input, .. }
            | Outcome::Filtered { input, .. }
            | Outcome::Interrupted { input } => input,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub workers: usize,
    /// In input order; filtered-out files are left out.
    pub experiments: Vec<Outcome>,
    /// (chip, device) of the files `--chip-id` / `--device-id` left out.
    #[serde(skip)]
    pub filtered: Vec<(String, String)>,
    /// Per-step extractor tasks run (feature × chunk of steps).
    pub tasks: usize,
    pub seconds: f64,
    pub time_split: TimeSplit,
    /// Step reads that the HDF5 library did itself instead of the parallel chunk reader:
    /// storage that reader does not decode, or a chunk it gave up on (HDF5 then reports any
    /// damage). Each is slower, not different: the values are the same.
    pub read_fallbacks: usize,
    /// The run was stopped by a signal before every experiment was done.
    pub interrupted: bool,
    /// Work that took a worker process down (or hung), in the order it happened.
    pub casualties: Vec<Casualty>,
    /// What plugins printed, if anything: it is kept out of oect's stdout.
    pub worker_output: Option<WorkerOutput>,
}

/// A worker process lost on some work: the experiment's file (`feature == None`: opening
/// or reading it) or one extractor call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Casualty {
    pub input: PathBuf,
    pub feature: Option<String>,
    pub step: Option<usize>,
    /// Signal name, exit status, "no answer within S s" or "memory limit", in words.
    pub cause: String,
}

/// Output of worker processes (plugins' prints, libhdf5 messages).
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerOutput {
    pub log: PathBuf,
    pub lines: u64,
    pub stdout_bytes: u64,
}

impl Summary {
    pub fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        self.experiments.iter().filter(|o| pred(o)).count()
    }

    /// True when every experiment was written or is up to date without any failed step
    /// (steps without a result, "no fit", are not failures).
    pub fn all_ok(&self) -> bool {
        self.experiments.iter().all(|o| match o {
            Outcome::Written { step_errors, .. } | Outcome::Skipped { step_errors, .. } => {
                *step_errors == 0
            }
            Outcome::Filtered { .. } => true,
            Outcome::Failed { .. } | Outcome::Interrupted { .. } => false,
        })
    }
}

/// Everything the workers share.
struct Ctx {
    graph: Arc<FeatureGraph>,
    config: FeatureConfig,
    sink: Sink,
    opts: RunOptions,
    /// Experiment → file, to refuse two files that would write the same output.
    claimed: Mutex<HashMap<ExperimentKey, PathBuf>>,
    tasks: AtomicUsize,
    /// Nanoseconds spent per phase, summed over the workers.
    phase_ns: [AtomicU64; 3],
    /// Step reads done by HDF5 instead of the parallel chunk reader (reported by workers).
    read_fallbacks: AtomicUsize,
}

/// Where a run spends its time; see [`TimeSplit`].
#[derive(Debug, Clone, Copy)]
enum Phase {
    Read,
    Extract,
    Write,
}

/// Seconds spent opening and reading files, running extractors and assembling and writing
/// tables, each summed over the threads doing it (so with several workers the parts can add
/// up to more than the run's wall time). Reading includes decoding the HDF5 chunks.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct TimeSplit {
    pub read: f64,
    pub extract: f64,
    pub write: f64,
}

impl Ctx {
    fn new(graph: FeatureGraph, config: FeatureConfig, sink: Sink, opts: RunOptions) -> Ctx {
        Ctx {
            graph: Arc::new(graph),
            config,
            sink,
            opts,
            claimed: Mutex::new(HashMap::new()),
            tasks: AtomicUsize::new(0),
            phase_ns: Default::default(),
            read_fallbacks: AtomicUsize::new(0),
        }
    }

    /// Runs `f`, adding its duration to `phase`.
    fn timed<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.phase_ns[phase as usize].fetch_add(ns, Ordering::Relaxed);
        out
    }

    fn time_split(&self) -> TimeSplit {
        let s = |p: Phase| self.phase_ns[p as usize].load(Ordering::Relaxed) as f64 * 1e-9;
        TimeSplit {
            read: s(Phase::Read),
            extract: s(Phase::Extract),
            write: s(Phase::Write),
        }
    }
}

/// An opened experiment that needs computing, as the supervisor knows it.
struct Prepared {
    /// `chip-device`, for extractor messages.
    id: String,
    table: TableSource,
    chunks: BTreeMap<Source, Vec<Range<usize>>>,
    /// When the supervisor asked for the file to be opened.
    started: Instant,
}

/// Steps per chunk: about 256 k samples, at most 512 steps, and small enough that every
/// worker gets about four chunks of one experiment (so slow extractors such as AutoTau
/// spread over the workers even in short experiments). Rounded to whole multiples of
/// `align` steps (the file's own chunking along the steps, if any) when that is at most 4×
/// larger, so that no stored chunk is decoded twice. Chunking never changes the values.
fn chunk_ranges(
    n_steps: usize,
    points_per_step: usize,
    align: usize,
    workers: usize,
) -> Vec<Range<usize>> {
    let mut per_chunk = (262_144 / points_per_step.max(1))
        .clamp(1, 512)
        .min(n_steps.div_ceil(4 * workers.max(1)))
        .max(1);
    if align > 1 && align <= 4 * per_chunk {
        per_chunk = (per_chunk / align).max(1) * align;
    }
    (0..n_steps)
        .step_by(per_chunk)
        .map(|s| s..(s + per_chunk).min(n_steps))
        .collect()
}

/// Steps `range` of one data source with `channels`, the ones the graph reads (in a
/// worker process).
fn read_block(
    exp: &Experiment,
    source: Source,
    range: Range<usize>,
    channels: &[Channel],
) -> Result<StepBlock, SourceError> {
    match source {
        Source::Transfer => exp.read_transfer(range),
        Source::Transient => exp.read_transient(range, channels),
    }
}

/// A fingerprint of the source file (size and modification time), so that a replaced
/// or re-converted file is recomputed.
pub fn source_hash(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO);
    let digest = Sha256::digest(format!("{}:{}", meta.len(), mtime.as_nanos()));
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

impl Ctx {
    /// Decides whether an opened experiment needs computing, and how it is cut; if not,
    /// what became of it (boxed: an outcome is large, and most files do need computing).
    fn admit(
        &self,
        exp: ExperimentInfo,
        source_hash: String,
        started: Instant,
    ) -> Result<Prepared, Box<Outcome>> {
        let path = exp.path.clone();
        let path = path.as_path();
        let failed = |reason: String| {
            Box::new(Outcome::Failed {
                input: path.to_path_buf(),
                reason,
            })
        };
        let wanted =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        if !wanted(&self.opts.chip_id, &exp.chip_id)
            || !wanted(&self.opts.device_id, &exp.device_id)
        {
            return Err(Box::new(Outcome::Filtered {
                input: path.to_path_buf(),
                chip_id: exp.chip_id.clone(),
                device_id: exp.device_id.clone(),
            }));
        }
        let id = format!("{}-{}", exp.chip_id, exp.device_id);
        let key = experiment_key(&exp);
        if let Some(other) = self
            .claimed
            .lock()
            .expect("claim table")
            .insert(key.clone(), path.to_path_buf())
        {
            return Err(failed(format!(
                "same chip_id, device_number and test_id ({}) as {}: the same test twice; their outputs would overwrite each other",
                key.stem(),
                other.display()
            )));
        }
        let mut steps = BTreeMap::new();
        let mut chunks = BTreeMap::new();
        for source in self.graph.sources() {
            let (n, points, align) = match source {
                Source::Transfer => exp
                    .transfer
                    .as_ref()
                    .map(|t| (t.n_steps, t.max_points, t.steps_per_chunk)),
                Source::Transient => exp
                    .transient
                    .as_ref()
                    .map(|t| (t.steps.len(), t.total_points / t.steps.len().max(1), 1)),
            }
            .unwrap_or((0, 0, 1));
            if n == 0 {
                let users: Vec<&str> = self
                    .graph
                    .nodes
                    .iter()
                    .filter(|node| node.inputs.contains(&Input::Source(source)))
                    .map(|node| node.name.as_str())
                    .collect();
                return Err(failed(format!(
                    "the file has no {} steps, which features {} need",
                    source.name(),
                    users.join(", ")
                )));
            }
            steps.insert(source, n);
            chunks.insert(source, chunk_ranges(n, points, align, self.opts.workers));
        }
        if !self.opts.force {
            if let Some((output, meta)) = self.sink.up_to_date(&key, &source_hash) {
                let c = meta.counts();
                return Err(Box::new(Outcome::Skipped {
                    input: path.to_path_buf(),
                    output,
                    step_errors: c.failed_steps,
                    no_fit_steps: c.no_fit_steps,
                    nonfinite_steps: c.nonfinite_values,
                    failed_by_kind: c.failed_by_kind,
                }));
            }
        }
        let layout = table::row_layout(
            &self.graph.sources(),
            &exp.transfer_steps,
            &exp.transient_steps,
            exp.created_at,
        );
        Ok(Prepared {
            table: TableSource {
                input: path.to_path_buf(),
                key,
                source_hash,
                layout,
                steps,
            },
            id,
            chunks,
            started,
        })
    }

    /// Assembles and writes a complete experiment.
    fn finish(&self, prep: &Prepared, columns: Vec<Option<Part>>) -> Outcome {
        self.timed(Phase::Write, || {
            self.write(&prep.table, columns, prep.started)
        })
    }

    /// Assembles the table of one experiment from its per-step columns and writes it;
    /// `started` is when its computation began.
    fn write(&self, src: &TableSource, columns: Vec<Option<Part>>, started: Instant) -> Outcome {
        let assembled = table::assemble(&self.graph, columns, &src.layout);
        let rows = assembled.table.rows();
        let features = table::feature_meta(&self.graph);
        let mut units: BTreeMap<String, String> = features
            .iter()
            .filter_map(|f| f.unit.as_ref().map(|u| (f, u)))
            .flat_map(|(f, u)| f.columns.iter().map(move |c| (c.clone(), u.clone())))
            .collect();
        units.insert("elapsed_s".into(), "s".into());
        let meta = OutputMeta {
            format_version: FORMAT_VERSION,
            chip_id: src.key.chip_id.clone(),
            device_id: src.key.device_id.clone(),
            test_id: src.key.test_id.clone(),
            config_name: self.config.name.clone(),
            config_origin: self.config.origin.clone(),
            config_identity: self.config.identity.clone(),
            config_hash: self.graph.content_hash.clone(),
            source_file: src.input.display().to_string(),
            source_hash: src.source_hash.clone(),
            test_started_at: src
                .layout
                .started
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
            created_at: chrono::Local::now().to_rfc3339(),
            oect_version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: self
                .graph
                .plugins
                .iter()
                .map(|p| PluginMeta {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    api_version: p.api_version.clone(),
                    library_sha256: p.library_sha256.clone(),
                })
                .collect(),
            steps: src
                .steps
                .iter()
                .map(|(s, n)| (s.name().to_string(), *n))
                .collect(),
            rows,
            alignment: src.layout.alignment.map(|a| a.name().to_string()),
            units,
            features,
            feature_errors: assembled.feature_errors,
            feature_no_fit: assembled.feature_no_fit,
            feature_failures: assembled.feature_failures,
            feature_nonfinite: assembled.feature_nonfinite,
            errors: assembled.errors.iter().take(100).cloned().collect(),
        };
        let counts = meta.counts();
        match self.sink.write(&src.key, &assembled.table, &meta) {
            Ok(output) => Outcome::Written {
                input: src.input.clone(),
                output,
                rows,
                seconds: started.elapsed().as_secs_f64(),
                step_errors: counts.failed_steps,
                no_fit_steps: counts.no_fit_steps,
                nonfinite_steps: counts.nonfinite_values,
                failed_by_kind: counts.failed_by_kind,
                errors: assembled.errors,
            },
            Err(e) => Outcome::Failed {
                input: src.input.clone(),
                reason: e.to_string(),
            },
        }
    }
}

/// Which experiment a file is: chip, device and test id (or, for a file without a test id,
/// its file stem, so that two such files of one device still get outputs of their own).
pub fn experiment_key(exp: &ExperimentInfo) -> ExperimentKey {
    let stem = || {
        exp.path
            .file_stem()
            .map_or_else(|| "NA".to_string(), |s| s.to_string_lossy().into_owned())
    };
    ExperimentKey {
        chip_id: exp.chip_id.clone(),
        device_id: exp.device_id.clone(),
        test_id: exp.test_id.clone().unwrap_or_else(stem),
    }
}

/// What a table is computed from, besides the values: the experiment, its input and
/// fingerprint, and its rows.
#[derive(Debug, Clone)]
pub struct TableSource {
    /// The experiment file (or, while a test runs, its export folder).
    pub input: PathBuf,
    pub key: ExperimentKey,
    /// Fingerprint of the input ([`source_hash`]), for skipping up-to-date experiments.
    pub source_hash: String,
    /// The table's rows and key columns.
    pub layout: table::RowLayout,
    /// Steps per data source the graph reads.
    pub steps: BTreeMap<Source, usize>,
}

/// Runs `graph` over `inputs` (files, in the order given) and writes to `sink`. If the
/// worker processes cannot be started at all, every experiment fails with that reason.
pub fn run(
    graph: FeatureGraph,
    config: FeatureConfig,
    sink: Sink,
    inputs: &[PathBuf],
    opts: RunOptions,
) -> Summary {
    let start = Instant::now();
    sink.remove_stale_temps();
    let progress = Progress::start(opts.progress, inputs.len());
    let log = Arc::new(pool::OutputLog::new(sink.dir()));
    let init = protocol::Request::Init {
        config: Some(protocol::ConfigText {
            name: config.name.clone(),
            origin: config.origin.clone(),
            text: config.text.clone(),
        }),
        plugins: graph.libraries.clone(),
        content_hash: Some(graph.content_hash.clone()),
        library_hashes: crate::plugins::known_hashes(),
        step_timeout: opts.step_timeout.map(|d| d.as_secs_f64()),
        read_timeout: opts.read_timeout.map(|d| d.as_secs_f64()),
    };
    let workers = pool::Pool::new(opts.worker.clone(), init, opts.workers, Arc::clone(&log));
    let ctx = Ctx::new(graph, config, sink, opts.clone());
    let report = supervise::run(&ctx, workers, inputs, &progress);
    let mut outcomes = report.outcomes;
    let seconds = start.elapsed().as_secs_f64();
    progress.finish(seconds);
    let order: HashMap<&Path, usize> = inputs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_path(), i))
        .collect();
    outcomes.sort_by_key(|o| order.get(o.input()).copied().unwrap_or(usize::MAX));
    let filtered = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Filtered {
                chip_id, device_id, ..
            } => Some((chip_id.clone(), device_id.clone())),
            _ => None,
        })
        .collect();
    outcomes.retain(|o| !matches!(o, Outcome::Filtered { .. }));
    let outcomes_interrupted = outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Interrupted { .. }));
    let (stdout_bytes, lines) = log.totals();
    Summary {
        mode: opts.mode,
        workers: opts.workers,
        experiments: outcomes,
        filtered,
        tasks: ctx.tasks.load(Ordering::Relaxed),
        seconds,
        time_split: ctx.time_split(),
        read_fallbacks: ctx.read_fallbacks.load(Ordering::Relaxed),
        interrupted: outcomes_interrupted,
        casualties: report.casualties,
        worker_output: (lines > 0).then(|| WorkerOutput {
            log: log.path().to_path_buf(),
            lines,
            stdout_bytes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_step_once() {
        let c = chunk_ranges(5001, 182, 1, 1);
        assert_eq!(c.first().unwrap().start, 0);
        assert_eq!(c.last().unwrap().end, 5001);
        assert!(c.windows(2).all(|w| w[0].end == w[1].start));
        assert!(c.iter().all(|r| r.len() <= 512));
        assert_eq!(chunk_ranges(0, 10, 1, 1), Vec::<Range<usize>>::new());
        assert_eq!(chunk_ranges(2, 10_000_000, 1, 1), vec![0..1, 1..2]);
        // About four chunks per worker, so that a few slow steps spread over the workers.
        assert_eq!(chunk_ranges(3, 25_000, 1, 1), vec![0..1, 1..2, 2..3]);
        assert_eq!(chunk_ranges(200, 25_000, 1, 2).len(), 20);
        assert_eq!(chunk_ranges(5001, 182, 1, 16).len(), 64);
        // Aligned to the file's 313-step chunks (h5py's choice for 5001 x 2 x 182).
        let aligned = chunk_ranges(5001, 182, 313, 1);
        assert!(aligned.iter().all(|r| r.start % 313 == 0));
        assert_eq!(aligned.last(), Some(&(4695..5001)));
        // Chunks far larger than a range are not followed.
        assert_eq!(chunk_ranges(5001, 182, 100_000, 1), c);
    }
}
