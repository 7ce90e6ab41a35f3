//! The supervisor of a run: it never opens an HDF5 file nor calls a plugin. It hands
//! tasks to worker processes ([`super::pool`]), collects their per-step results, writes
//! each experiment through the one writer, and decides what a lost worker cost.
//!
//! Tasks: opening a file, and computing ranges of steps (step mode: one chunk each;
//! experiment mode: all chunks of an experiment). A worker holds at most two compute tasks,
//! so reading the next overlaps computing the current one, and one open, so the next file
//! is opened while it computes (`Supervisor::pick`). When a worker dies:
//!
//! * a timeout report from its watchdog names the call (feature, step), open or read that
//!   hung; otherwise the task markers (`begin`, `step`) say what the worker was doing;
//! * a crash during an extractor call in an *isolated* task pins it on that (feature,
//!   step): the step becomes NaN with the cause, and the task resumes at that step in a
//!   fresh worker, skipping the call;
//! * a crash while computing a range in a normal task re-runs that range isolated (each
//!   call announced, each step reported), so the next crash is pinned;
//! * a crash while opening or reading a file fails that experiment alone; when another
//!   thread of the worker was busy too, the task is first re-run alone to know which one
//!   it was;
//! * work the worker had not started goes back to the queue as it was.
//!
//! Known casualties of earlier runs come from the [`Journal`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oect_plugin_api::FailureKind;

use super::compute::Part;
use super::journal::{Journal, Key};
use super::pool::{Event, Pool, Proc};
use super::protocol::{self, Activity, Reply, Request, Skip, StepRange};
use super::{Casualty, Ctx, Mode, Outcome, Phase, Prepared, Progress};
use crate::graph::{Op, Rows, Source};

/// Compute tasks a worker holds at once: one computing, one being read (an open comes on
/// top, see `Supervisor::pick`).
const DEPTH: usize = 2;
/// Workers that die before they are ready, in a row, before the run gives up.
const MAX_START_FAILURES: usize = 3;
/// Times one isolated range may lose a worker without any call announced.
const MAX_SILENT_LOSSES: usize = 2;

enum Kind {
    Open,
    Compute {
        ranges: Vec<StepRange>,
        isolate: bool,
        skip: Vec<Skip>,
        /// Normal tasks: parts of a range, committed when every node of it arrived.
        pending: HashMap<usize, Vec<(usize, Part)>>,
    },
}

struct Job {
    input: usize,
    kind: Kind,
    /// Runs on a worker that holds nothing else (so a loss is unambiguous).
    exclusive: bool,
    worker: Option<u64>,
    silent_losses: usize,
}

/// An experiment being computed.
struct Computing {
    prep: Prepared,
    /// Seconds the workers spent on it so far, by phase: whether splitting it over more
    /// workers pays (see `Supervisor::compute_bound`).
    open_s: f64,
    read_s: f64,
    compute_s: f64,
    /// node → chunk → part.
    parts: Vec<Vec<Option<Part>>>,
    missing: usize,
    /// Isolated chunks: (source, chunk) → (node, step) → one-step part.
    iso: HashMap<(Source, usize), HashMap<(usize, usize), Part>>,
    /// Known call casualties retried in this run: (node, step) → journal key.
    retried: Vec<(usize, usize, Key)>,
    /// Calls that took a worker down in this run.
    crashed: HashSet<(usize, usize)>,
}

enum State {
    Opening,
    Computing(Box<Computing>),
}

struct Exp {
    path: PathBuf,
    source_hash: String,
    /// A known file casualty is being retried.
    retried_file: Option<Key>,
    /// When it was admitted (the open was queued).
    started: Instant,
    state: State,
}

pub(super) struct Report {
    pub outcomes: Vec<Outcome>,
    pub casualties: Vec<Casualty>,
}

pub(super) fn run(ctx: &Ctx, pool: Pool, inputs: &[PathBuf], progress: &Progress) -> Report {
    let graph = &ctx.graph;
    let mut by_source: BTreeMap<Source, Vec<usize>> = BTreeMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if let (Rows::Source(s), Op::Extract(_)) = (node.rows, &node.op) {
            by_source.entry(s).or_default().push(i);
        }
    }
    let mut sup = Supervisor {
        ctx,
        pool,
        inputs,
        progress,
        by_source,
        journal: Journal::load(ctx.sink.dir()),
        next_input: 0,
        exps: HashMap::new(),
        jobs: HashMap::new(),
        queue: VecDeque::new(),
        next_task: 1,
        outcomes: Vec::new(),
        casualties: Vec::new(),
        start_failures: 0,
        fatal: None,
        steps_total: 0,
        steps_done: 0,
    };
    sup.main_loop();
    Report {
        outcomes: sup.outcomes,
        casualties: sup.casualties,
    }
}

struct Supervisor<'a> {
    ctx: &'a Ctx,
    pool: Pool,
    inputs: &'a [PathBuf],
    progress: &'a Progress,
    by_source: BTreeMap<Source, Vec<usize>>,
    journal: Journal,
    next_input: usize,
    exps: HashMap<usize, Exp>,
    jobs: HashMap<u64, Job>,
    queue: VecDeque<u64>,
    next_task: u64,
    outcomes: Vec<Outcome>,
    casualties: Vec<Casualty>,
    start_failures: usize,
    fatal: Option<String>,
    /// Steps of the experiments admitted so far, and of those computed (per data source).
    steps_total: usize,
    steps_done: usize,
}

impl Supervisor<'_> {
    /// Step-level progress: the bar shows experiments, its message the steps.
    fn steps_computed(&mut self, n: usize, input: usize) {
        self.steps_done += n;
        self.progress
            .steps(self.steps_done, self.steps_total, &self.inputs[input]);
    }

    fn main_loop(&mut self) {
        let opts = &self.ctx.opts;
        let tick = Duration::from_millis(20);
        while self.outcomes.len() < self.inputs.len() {
            if super::stopping() || self.fatal.is_some() {
                self.abandon();
                break;
            }
            self.admit_more();
            if let Err(e) = self.fill_pool() {
                self.fatal = Some(e);
                continue;
            }
            self.dispatch();
            if self.outcomes.len() == self.inputs.len() {
                break;
            }
            match self.pool.next_event(tick) {
                Some(Event::Reply {
                    worker,
                    reply,
                    payload,
                }) => self.reply(worker, *reply, payload),
                Some(Event::Gone { worker }) => self.gone(worker),
                None => {}
            }
            if let Some(limit) = opts.max_memory {
                for proc in self.pool.procs.iter_mut().flatten() {
                    if let Some(rss) = proc.rss().filter(|&r| r > limit) {
                        proc.kill(Some(format!(
                            "memory limit: the worker process used {} MiB, over --max-memory {} MiB",
                            rss >> 20,
                            limit >> 20
                        )));
                    }
                }
            }
        }
        self.pool.shutdown();
    }

    /// Stops: every worker is killed, and what is not done is interrupted (or, after a
    /// fatal error, failed with it).
    fn abandon(&mut self) {
        self.pool.shutdown();
        let settled: HashSet<PathBuf> = self
            .outcomes
            .iter()
            .map(|o| o.input().to_path_buf())
            .collect();
        for path in self.inputs {
            if settled.contains(path) {
                continue;
            }
            let input = path.clone();
            let outcome = match &self.fatal {
                Some(reason) => Outcome::Failed {
                    input,
                    reason: reason.clone(),
                },
                None => Outcome::Interrupted { input },
            };
            self.outcomes.push(outcome);
        }
        self.exps.clear();
        self.jobs.clear();
        self.queue.clear();
    }

    fn settle(&mut self, outcome: Outcome) {
        self.progress.settled(&outcome);
        self.outcomes.push(outcome);
    }

    /// Experiments open (or opening) at once.
    fn open_limit(&self) -> usize {
        let opts = &self.ctx.opts;
        match opts.mode {
            Mode::Step => opts.in_flight.max(1),
            Mode::Experiment => opts.in_flight.max(opts.workers + 1),
        }
    }

    fn admit_more(&mut self) {
        while self.next_input < self.inputs.len() && self.exps.len() < self.open_limit() {
            let input = self.next_input;
            self.next_input += 1;
            let path = self.inputs[input].clone();
            let failed = |reason: String| Outcome::Failed {
                input: path.clone(),
                reason,
            };
            if let Err(e) = crate::source::check_regular(&path) {
                self.settle(failed(e.message));
                continue;
            }
            let source_hash = match super::source_hash(&path) {
                Ok(h) => h,
                Err(e) => {
                    self.settle(failed(format!("cannot read file: {e}")));
                    continue;
                }
            };
            let key = file_key(&source_hash);
            let known = self.journal.get(&key).cloned();
            if let Some(k) = known
                .as_ref()
                .filter(|k| k.runs >= 2 && !self.ctx.opts.force)
            {
                self.settle(failed(format!(
                    "not opened: it took a worker down in {} earlier runs ({}); --force retries it",
                    k.runs, k.cause
                )));
                continue;
            }
            self.exps.insert(
                input,
                Exp {
                    path,
                    source_hash,
                    retried_file: known.map(|_| key),
                    started: Instant::now(),
                    state: State::Opening,
                },
            );
            let exclusive = self.exps[&input].retried_file.is_some();
            self.push(Job {
                input,
                kind: Kind::Open,
                exclusive,
                worker: None,
                silent_losses: 0,
            });
        }
    }

    fn push(&mut self, job: Job) -> u64 {
        let task = self.next_task;
        self.next_task += 1;
        self.jobs.insert(task, job);
        self.queue.push_back(task);
        task
    }

    /// Starts workers in empty slots while the queue holds more work a new worker could
    /// take (see [`Self::may_join`]) than there are idle workers: a worker costs its start
    /// and its own open of each file, which a read-bound experiment does not repay.
    fn fill_pool(&mut self) -> Result<(), String> {
        if self.jobs.is_empty() && self.next_input >= self.inputs.len() {
            return Ok(());
        }
        let mut idle = (self.pool.procs.iter().flatten())
            .filter(|p| p.jobs.is_empty())
            .count();
        let mut takeable = HashSet::new();
        for t in &self.queue {
            let job = &self.jobs[t];
            if job.exclusive || matches!(job.kind, Kind::Open) {
                takeable.insert((job.input, *t));
            } else if self.may_join(None, job.input) {
                takeable.insert((job.input, 0));
            }
        }
        for slot in 0..self.pool.procs.len() {
            if self.pool.procs[slot].is_none() && takeable.len() > idle {
                self.pool.spawn(slot)?;
                idle += 1;
            }
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        for slot in 0..self.pool.procs.len() {
            while let Some(proc) = self.pool.procs[slot].as_ref() {
                if !proc.ready || proc.jobs.iter().any(|t| self.jobs[t].exclusive) {
                    break;
                }
                let Some(&head) = self.queue.front() else {
                    return;
                };
                let pick = if self.jobs[&head].exclusive {
                    // Let this worker drain for the exclusive task.
                    proc.jobs.is_empty().then_some(0)
                } else {
                    self.pick(proc)
                };
                let Some(index) = pick else { break };
                let task = self.queue.remove(index).expect("queued task");
                self.send_job(slot, task);
            }
        }
    }

    /// The queued task (up to the first exclusive one) that `proc` should take next, if
    /// any. A worker with nothing to compute takes a range of a file it has open first;
    /// then an open, one at a time and outside [`DEPTH`], so that its I/O thread opens the
    /// next file while its compute thread is busy instead of after the last range of the
    /// open files was handed out; then more computes up to `DEPTH`, its own files' first.
    /// Another file's compute (which the worker must open first) only when it is not
    /// opening a file, and only where that is worth it (`may_join`).
    fn pick(&self, proc: &Proc) -> Option<usize> {
        let end = self
            .queue
            .iter()
            .position(|t| self.jobs[t].exclusive)
            .unwrap_or(self.queue.len());
        let queued = || self.queue.iter().take(end);
        let is_open = |t: &u64| matches!(self.jobs[t].kind, Kind::Open);
        let file_open = |t: &u64| {
            self.exps
                .get(&self.jobs[t].input)
                .is_some_and(|e| proc.opened.contains(&e.path))
        };
        let opening = proc.jobs.iter().any(is_open);
        let computes = proc.jobs.iter().filter(|t| !is_open(t)).count();
        let own = queued().position(|t| !is_open(t) && file_open(t));
        if computes == 0 && own.is_some() {
            return own;
        }
        if !opening {
            if let Some(i) = queued().position(is_open) {
                return Some(i);
            }
        }
        if computes >= DEPTH {
            return None;
        }
        let other = |t: &u64| !is_open(t) && self.may_join(Some(proc), self.jobs[t].input);
        own.or_else(|| (!opening).then(|| queued().position(other))?)
    }

    /// Whether a worker (`proc`, or a new one) may take a range of experiment `input` that
    /// it does not have open: when no other worker holds work of it, or when it is
    /// compute-bound. A worker's reads already use every core, so a second worker on a
    /// read-bound experiment only adds its open of the file (with `-j2`, one 5 001-step
    /// transfer file took 1.6x as long split over two workers as on one,
    /// `docs/BENCHMARKS.md`).
    fn may_join(&self, proc: Option<&Proc>, input: usize) -> bool {
        let held_elsewhere = self.pool.procs.iter().flatten().any(|p| {
            proc.is_none_or(|me| p.id != me.id)
                && p.jobs.iter().any(|t| {
                    self.jobs
                        .get(t)
                        .is_some_and(|j| j.input == input && !matches!(j.kind, Kind::Open))
                })
        });
        !held_elsewhere || self.compute_bound(input)
    }

    /// Whether the workers spent longer computing experiment `input` (the ranges running
    /// now included) than opening and reading it.
    fn compute_bound(&self, input: usize) -> bool {
        let Some(State::Computing(c)) = self.exps.get(&input).map(|e| &e.state) else {
            return false;
        };
        let running: f64 = (self.pool.procs.iter().flatten())
            .filter(|p| {
                p.computing
                    .is_some_and(|(t, _)| self.jobs.get(&t).is_some_and(|j| j.input == input))
            })
            .filter_map(|p| p.computing_since)
            .map(|since| since.elapsed().as_secs_f64())
            .sum();
        c.compute_s + running > c.open_s + c.read_s
    }

    /// The experiment that compute task `task` belongs to.
    fn computing_of(&mut self, task: u64) -> Option<&mut Computing> {
        let input = self.jobs.get(&task)?.input;
        match &mut self.exps.get_mut(&input)?.state {
            State::Computing(c) => Some(c),
            State::Opening => None,
        }
    }

    fn send_job(&mut self, slot: usize, task: u64) {
        let job = self.jobs.get_mut(&task).expect("job");
        let Some(exp) = self.exps.get(&job.input) else {
            self.jobs.remove(&task);
            return;
        };
        let proc = self.pool.procs[slot].as_mut().expect("worker");
        let request = match &job.kind {
            Kind::Open => Request::Open {
                task,
                path: exp.path.clone(),
            },
            Kind::Compute {
                ranges,
                isolate,
                skip,
                ..
            } => {
                let State::Computing(c) = &exp.state else {
                    unreachable!("compute tasks exist only for open experiments")
                };
                proc.opened.insert(exp.path.clone());
                Request::Compute {
                    task,
                    path: exp.path.clone(),
                    experiment: c.prep.id.clone(),
                    ranges: ranges.clone(),
                    isolate: *isolate,
                    skip: skip.clone(),
                }
            }
        };
        job.worker = Some(proc.id);
        proc.jobs.push(task);
        // A failed send means the worker is gone; its `Gone` event requeues the task.
        proc.send(&request);
        self.refresh_label(slot);
    }

    /// Labels the output of the worker in `slot` with the tasks it holds (the one being
    /// computed first): its pipes are read apart from its protocol frames, so a line is
    /// attributed to what the worker holds when the line arrives.
    fn refresh_label(&self, slot: usize) {
        let Some(proc) = self.pool.procs[slot].as_ref() else {
            return;
        };
        let mut tasks = proc.jobs.clone();
        if let Some((t, _)) = proc.computing {
            tasks.sort_by_key(|&x| x != t);
        }
        let described: Vec<String> = tasks.iter().filter_map(|&t| self.describe(t)).collect();
        proc.set_label(format!(
            "worker {}, pid {}: {}",
            proc.id,
            proc.pid(),
            if described.is_empty() {
                "idle".to_string()
            } else {
                described.join(" | ")
            }
        ));
    }

    /// What a task is about, for the output log.
    fn describe(&self, task: u64) -> Option<String> {
        let mut label = String::new();
        let job = self.jobs.get(&task)?;
        let exp = self.exps.get(&job.input)?;
        if let (State::Computing(c), Kind::Compute { ranges, .. }) = (&exp.state, &job.kind) {
            label.push_str(&c.prep.id);
            if let Some(r) = ranges.first() {
                let nodes: Vec<String> = self.by_source[&r.source]
                    .iter()
                    .map(|&n| {
                        let node = &self.ctx.graph.nodes[n];
                        let plugin = self
                            .ctx
                            .graph
                            .plugins
                            .iter()
                            .find(|p| p.extractors.contains(&node.definition));
                        match plugin {
                            Some(p) => format!("{} ({}, {})", node.name, node.definition, p.name),
                            None => format!("{} ({})", node.name, node.definition),
                        }
                    })
                    .collect();
                label.push_str(&format!(
                    ", {} steps {}..{}, features {}",
                    r.source.name(),
                    r.start,
                    ranges.last().map_or(r.end, |l| l.end),
                    nodes.join(", ")
                ));
            }
        } else {
            label.push_str(&format!("opening {}", exp.path.display()));
        }
        Some(label)
    }

    fn reply(&mut self, worker: u64, reply: Reply, payload: Vec<f64>) {
        let Some(slot) = self.pool.slot_of(worker) else {
            return;
        };
        let timed = |ctx: &Ctx, phase: Phase, seconds: f64| {
            ctx.phase_ns[phase as usize].fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        };
        match reply {
            Reply::Ready { .. } => {
                self.start_failures = 0;
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.ready = true;
                }
            }
            Reply::Fatal { message } => {
                self.fatal = Some(format!("a worker process could not start: {message}"));
            }
            Reply::Begin { task, range, what } => {
                let Some(proc) = self.pool.procs[slot].as_mut() else {
                    return;
                };
                match (what, range) {
                    (Activity::Open, _) => proc.reading = Some((task, None)),
                    (Activity::Read, Some(r)) => proc.reading = Some((task, Some(r))),
                    (Activity::Compute, Some(r)) => {
                        proc.computing = Some((task, r));
                        proc.computing_since = Some(Instant::now());
                        proc.calling = None;
                        self.refresh_label(slot);
                    }
                    _ => {}
                }
            }
            Reply::ReadDone {
                task,
                seconds,
                fallbacks,
                ..
            } => {
                timed(self.ctx, Phase::Read, seconds);
                if let Some(c) = self.computing_of(task) {
                    c.read_s += seconds;
                }
                self.ctx
                    .read_fallbacks
                    .fetch_add(fallbacks, Ordering::Relaxed);
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.reading = None;
                }
            }
            Reply::Step {
                task, node, step, ..
            } => {
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.calling = Some((task, node, step));
                }
            }
            Reply::Timeout { .. } => {
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.timeout = Some(reply);
                }
            }
            Reply::Opened {
                task,
                info,
                seconds,
            } => {
                timed(self.ctx, Phase::Read, seconds);
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.reading = None;
                    p.opened.insert(info.path.clone());
                }
                if let Some(job) = self.finish_job(slot, task) {
                    self.opened(job.input, info, seconds);
                }
            }
            Reply::Inspected { task, .. } => {
                self.finish_job(slot, task);
            }
            Reply::OpenFailed { task, message } => {
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.reading = None;
                }
                if let Some(job) = self.finish_job(slot, task) {
                    if let Some(exp) = self.exps.get(&job.input) {
                        if let Some(key) = exp.retried_file.clone() {
                            let path = exp.path.clone();
                            self.journal.recovered(&key, &path);
                        }
                    }
                    self.fail(job.input, message, false);
                }
            }
            Reply::ReadFailed {
                task,
                message,
                fallbacks,
                ..
            } => {
                self.ctx
                    .read_fallbacks
                    .fetch_add(fallbacks, Ordering::Relaxed);
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.reading = None;
                }
                if let Some(job) = self.finish_job(slot, task) {
                    self.fail(job.input, message, false);
                }
            }
            Reply::Part {
                task,
                range,
                node,
                first,
                shapes,
                failures,
                seconds,
            } => {
                timed(self.ctx, Phase::Extract, seconds);
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.computing_since = Some(Instant::now());
                }
                if let Some(c) = self.computing_of(task) {
                    c.compute_s += seconds;
                }
                let Some(part) = protocol::part_from(first, shapes, failures, payload) else {
                    return;
                };
                self.part(slot, task, range, node, part);
            }
            Reply::Done { task } => {
                if let Some(p) = self.pool.procs[slot].as_mut() {
                    p.computing = None;
                    p.computing_since = None;
                    p.calling = None;
                }
                if let Some(job) = self.finish_job(slot, task) {
                    if let Kind::Compute {
                        isolate: true,
                        ranges,
                        ..
                    } = &job.kind
                    {
                        self.isolated_done(job.input, &ranges[0]);
                    }
                }
            }
        }
    }

    /// Removes `task` from its worker and from the table.
    fn finish_job(&mut self, slot: usize, task: u64) -> Option<Job> {
        if let Some(p) = self.pool.procs[slot].as_mut() {
            p.jobs.retain(|&t| t != task);
        }
        let job = self.jobs.remove(&task);
        self.refresh_label(slot);
        job
    }

    fn opened(&mut self, input: usize, info: crate::source::ExperimentInfo, open_s: f64) {
        if !self.exps.contains_key(&input) {
            return;
        }
        let source_hash = self.exps[&input].source_hash.clone();
        let started = self.exps[&input].started;
        let prep = match self.ctx.admit(info, source_hash.clone(), started) {
            Ok(p) => p,
            Err(outcome) => {
                if let Some(key) = self.exps[&input].retried_file.clone() {
                    let path = self.exps[&input].path.clone();
                    self.journal.recovered(&key, &path);
                }
                self.exps.remove(&input);
                self.close(&outcome_input(&outcome));
                self.settle(*outcome);
                return;
            }
        };
        let graph = &self.ctx.graph;
        let parts: Vec<Vec<Option<Part>>> = graph
            .nodes
            .iter()
            .map(|n| match (n.rows, &n.op) {
                (Rows::Source(s), Op::Extract(_)) => {
                    vec![None; prep.chunks.get(&s).map_or(0, Vec::len)]
                }
                _ => Vec::new(),
            })
            .collect();
        let missing = parts.iter().map(Vec::len).sum();
        self.steps_total += prep.table.steps.values().sum::<usize>();
        self.steps_computed(0, input);
        // Known call casualties of this experiment and config.
        let mut isolated: HashMap<(Source, usize), Vec<Skip>> = HashMap::new();
        let mut retried = Vec::new();
        let known = self.journal.steps_of(&source_hash, &graph.content_hash);
        for (feature, step, k) in known {
            let Some(node) = graph.nodes.iter().position(|n| n.name == feature) else {
                continue;
            };
            let Rows::Source(source) = graph.nodes[node].rows else {
                continue;
            };
            let Some(chunk) = prep
                .chunks
                .get(&source)
                .and_then(|c| c.iter().position(|r| r.contains(&step)))
            else {
                continue;
            };
            let skips = isolated.entry((source, chunk)).or_default();
            if k.runs >= 2 && !self.ctx.opts.force {
                skips.push(Skip {
                    node,
                    step,
                    kind: k.kind,
                    message: format!(
                        "not run: this call took a worker down in {} earlier runs ({}); --force retries it",
                        k.runs, k.cause
                    ),
                });
            } else {
                retried.push((
                    node,
                    step,
                    Key {
                        source_hash: source_hash.clone(),
                        config_hash: Some(graph.content_hash.clone()),
                        feature: Some(feature),
                        step: Some(step),
                    },
                ));
            }
        }
        let mut normal: Vec<StepRange> = Vec::new();
        let mut jobs = Vec::new();
        for (&source, ranges) in &prep.chunks {
            for (index, r) in ranges.iter().enumerate() {
                let range = StepRange {
                    source,
                    index,
                    start: r.start,
                    end: r.end,
                };
                if let Some(skip) = isolated.remove(&(source, index)) {
                    jobs.push((vec![range], true, skip));
                } else if self.ctx.opts.mode == Mode::Step {
                    jobs.push((vec![range], false, Vec::new()));
                } else {
                    normal.push(range);
                }
            }
        }
        if !normal.is_empty() {
            jobs.insert(0, (normal, false, Vec::new()));
        }
        let exp = self.exps.get_mut(&input).expect("opening experiment");
        exp.state = State::Computing(Box::new(Computing {
            prep,
            open_s,
            read_s: 0.0,
            compute_s: 0.0,
            parts,
            missing,
            iso: HashMap::new(),
            retried,
            crashed: HashSet::new(),
        }));
        for (ranges, isolate, skip) in jobs {
            self.ctx.tasks.fetch_add(ranges.len(), Ordering::Relaxed);
            self.push(Job {
                input,
                kind: Kind::Compute {
                    ranges,
                    isolate,
                    skip,
                    pending: HashMap::new(),
                },
                exclusive: isolate,
                worker: None,
                silent_losses: 0,
            });
        }
        self.maybe_finish(input);
    }

    fn part(&mut self, slot: usize, task: u64, range: usize, node: usize, part: Part) {
        let Some(job) = self.jobs.get_mut(&task) else {
            return;
        };
        let Kind::Compute {
            ranges,
            isolate,
            pending,
            ..
        } = &mut job.kind
        else {
            return;
        };
        let input = job.input;
        let Some(State::Computing(c)) = self.exps.get_mut(&input).map(|e| &mut e.state) else {
            return;
        };
        let r = ranges[range].clone();
        if *isolate {
            let steps = c.iso.entry((r.source, r.index)).or_default();
            steps.entry((node, part.first)).or_insert(part);
            return;
        }
        let nodes = self.by_source[&r.source].len();
        let got = pending.entry(range).or_default();
        got.push((node, part));
        if got.len() == nodes {
            for (node, part) in pending.remove(&range).expect("pending range") {
                c.parts[node][r.index] = Some(part);
                c.missing -= 1;
            }
            self.steps_computed(r.end - r.start, input);
            if let Some(p) = self.pool.procs[slot].as_mut() {
                if p.computing == Some((task, range)) {
                    p.computing = None;
                }
            }
            self.maybe_finish(input);
        }
    }

    /// An isolated range is complete: its one-step parts become the chunk's parts.
    fn isolated_done(&mut self, input: usize, r: &StepRange) {
        let Some(State::Computing(c)) = self.exps.get_mut(&input).map(|e| &mut e.state) else {
            return;
        };
        let full = c.prep.chunks[&r.source][r.index].clone();
        let mut steps = c.iso.remove(&(r.source, r.index)).unwrap_or_default();
        for &node in &self.by_source[&r.source] {
            let mut column: Option<Part> = None;
            for step in full.clone() {
                let one = steps.remove(&(node, step)).unwrap_or_else(|| {
                    Part::failed(
                        step,
                        FailureKind::Crashed,
                        "lost: the worker ended before computing it".into(),
                    )
                });
                match column.as_mut() {
                    Some(col) => col.append(&one),
                    None => column = Some(one),
                }
            }
            if c.parts[node][r.index].is_none() {
                c.parts[node][r.index] = column;
                c.missing -= 1;
            }
        }
        self.steps_computed(full.len(), input);
        // Retried known casualties of this chunk that did not fall again have recovered.
        let path = self.exps[&input].path.clone();
        let Some(State::Computing(c)) = self.exps.get_mut(&input).map(|e| &mut e.state) else {
            return;
        };
        let recovered: Vec<Key> = c
            .retried
            .iter()
            .filter(|(node, step, _)| full.contains(step) && !c.crashed.contains(&(*node, *step)))
            .map(|(_, _, key)| key.clone())
            .collect();
        for key in recovered {
            self.journal.recovered(&key, &path);
        }
        self.maybe_finish(input);
    }

    fn maybe_finish(&mut self, input: usize) {
        let done = matches!(
            self.exps.get(&input).map(|e| &e.state),
            Some(State::Computing(c)) if c.missing == 0
        );
        if !done {
            return;
        }
        let exp = self.exps.remove(&input).expect("experiment");
        let State::Computing(c) = exp.state else {
            unreachable!()
        };
        let columns: Vec<Option<Part>> = c
            .parts
            .into_iter()
            .map(|chunks| {
                let mut chunks = chunks.into_iter().map(|p| p.expect("complete"));
                let mut column = chunks.next()?;
                for part in chunks {
                    column.append(&part);
                }
                Some(column)
            })
            .collect();
        let outcome = self.ctx.finish(&c.prep, columns);
        if let (Outcome::Written { .. }, Some(key)) = (&outcome, &exp.retried_file) {
            self.journal.recovered(key, &exp.path);
        }
        self.queue
            .retain(|t| self.jobs.get(t).is_some_and(|j| j.input != input));
        self.close(&exp.path);
        self.settle(outcome);
    }

    /// Fails experiment `input`; `casualty`: a worker was lost on it (journal and summary).
    fn fail(&mut self, input: usize, reason: String, casualty: bool) {
        let Some(exp) = self.exps.remove(&input) else {
            return;
        };
        if casualty {
            self.journal.record(
                file_key(&exp.source_hash),
                &exp.path,
                FailureKind::Crashed,
                &reason,
            );
            self.casualties.push(Casualty {
                input: exp.path.clone(),
                feature: None,
                step: None,
                cause: reason.clone(),
            });
        }
        let orphans: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.input == input && j.worker.is_none())
            .map(|(&t, _)| t)
            .collect();
        for t in orphans {
            self.jobs.remove(&t);
        }
        self.queue.retain(|t| self.jobs.contains_key(t));
        self.close(&exp.path);
        self.settle(Outcome::Failed {
            input: exp.path,
            reason,
        });
    }

    fn close(&mut self, path: &Path) {
        for proc in self.pool.procs.iter_mut().flatten() {
            if proc.opened.remove(path) {
                proc.send(&Request::Close {
                    path: path.to_path_buf(),
                });
            }
        }
    }

    /// A worker's socket closed: find out why and what it cost.
    fn gone(&mut self, worker: u64) {
        let Some(slot) = self.pool.slot_of(worker) else {
            return;
        };
        let proc = self.pool.procs[slot].take().expect("worker");
        let (ready, jobs) = (proc.ready, proc.jobs.clone());
        let (reading, computing, calling) = (proc.reading, proc.computing, proc.calling);
        let timeout = proc.timeout.clone();
        let cause = proc.bury();
        if !ready {
            self.start_failures += 1;
            if self.start_failures >= MAX_START_FAILURES {
                self.fatal = Some(format!("worker processes die as they start: {cause}"));
                return;
            }
        }
        let ambiguous = timeout.is_none() && reading.is_some() && computing.is_some();
        for task in jobs {
            let Some(job) = self.jobs.remove(&task) else {
                continue;
            };
            if !self.exps.contains_key(&job.input) {
                continue;
            }
            let timed_out = match &timeout {
                Some(Reply::Timeout {
                    task: t,
                    what,
                    range,
                    node,
                    step,
                    seconds,
                }) if *t == task => Some((*what, *range, *node, *step, *seconds)),
                _ => None,
            };
            match job.kind {
                Kind::Open => {
                    let in_progress = reading == Some((task, None));
                    if let Some((_, _, _, _, s)) = timed_out {
                        let reason = format!("opening the file: no answer within {s} s (--read-timeout); the worker was ended");
                        self.fail(job.input, reason, true);
                    } else if in_progress && (!ambiguous || job.exclusive) {
                        self.fail(
                            job.input,
                            format!("opening the file took the worker process down: {cause}"),
                            true,
                        );
                    } else {
                        self.push(Job {
                            exclusive: job.exclusive || in_progress,
                            worker: None,
                            ..job
                        });
                    }
                }
                Kind::Compute {
                    ranges,
                    isolate,
                    skip,
                    ..
                } => {
                    let mut rest = Vec::new();
                    for (k, r) in ranges.iter().enumerate() {
                        let Some(State::Computing(c)) = self.exps.get(&job.input).map(|e| &e.state)
                        else {
                            break;
                        };
                        // Normal ranges are committed whole (see `part`).
                        let complete =
                            !isolate && c.parts[self.by_source[&r.source][0]][r.index].is_some();
                        if complete {
                            continue;
                        }
                        if reading == Some((task, Some(k))) {
                            if let Some((Activity::Read | Activity::Open, _, _, _, s)) = timed_out {
                                let reason = format!(
                                    "reading {} steps {}..{}: no answer within {s} s (--read-timeout); the worker was ended",
                                    r.source.name(), r.start, r.end
                                );
                                self.fail(job.input, reason, true);
                                break;
                            }
                            if !ambiguous || job.exclusive {
                                let reason = format!(
                                    "reading {} steps {}..{} took the worker process down: {cause}",
                                    r.source.name(),
                                    r.start,
                                    r.end
                                );
                                self.fail(job.input, reason, true);
                                break;
                            }
                            self.requeue_isolated(job.input, r.clone(), skip.clone(), 0);
                        } else if computing == Some((task, k)) {
                            let culprit = match timed_out {
                                Some((Activity::Call, _, Some(n), Some(s), secs)) => Some((
                                    n,
                                    s,
                                    FailureKind::Timeout,
                                    format!("no answer within {secs} s (--step-timeout); the worker was ended"),
                                )),
                                _ => calling
                                    .filter(|(t, _, _)| isolate && *t == task)
                                    .map(|(_, n, s)| (n, s, FailureKind::Crashed, format!("took the worker process down: {cause}"))),
                            };
                            match culprit {
                                Some((node, step, kind, message)) => {
                                    self.casualty(job.input, node, step, kind, &message);
                                    let mut skip = skip.clone();
                                    skip.push(Skip {
                                        node,
                                        step,
                                        kind,
                                        message,
                                    });
                                    let mut resumed = r.clone();
                                    if isolate {
                                        resumed.start = step;
                                    }
                                    self.requeue_isolated(job.input, resumed, skip, 0);
                                }
                                None => {
                                    let losses = job.silent_losses + usize::from(isolate);
                                    if losses > MAX_SILENT_LOSSES {
                                        let reason = format!(
                                            "computing {} steps {}..{} took the worker process down before any call: {cause}",
                                            r.source.name(), r.start, r.end
                                        );
                                        self.fail(job.input, reason, true);
                                        break;
                                    }
                                    self.requeue_isolated(
                                        job.input,
                                        r.clone(),
                                        skip.clone(),
                                        losses,
                                    );
                                }
                            }
                        } else {
                            rest.push(r.clone());
                        }
                    }
                    if !rest.is_empty() && self.exps.contains_key(&job.input) {
                        self.push(Job {
                            input: job.input,
                            kind: Kind::Compute {
                                ranges: rest,
                                isolate,
                                skip,
                                pending: HashMap::new(),
                            },
                            exclusive: job.exclusive,
                            worker: None,
                            silent_losses: job.silent_losses,
                        });
                    }
                }
            }
        }
    }

    fn requeue_isolated(&mut self, input: usize, r: StepRange, skip: Vec<Skip>, losses: usize) {
        self.push(Job {
            input,
            kind: Kind::Compute {
                ranges: vec![r],
                isolate: true,
                skip,
                pending: HashMap::new(),
            },
            exclusive: true,
            worker: None,
            silent_losses: losses,
        });
    }

    /// An extractor call took a worker down (or hung).
    fn casualty(&mut self, input: usize, node: usize, step: usize, kind: FailureKind, cause: &str) {
        let Some(exp) = self.exps.get_mut(&input) else {
            return;
        };
        let State::Computing(c) = &mut exp.state else {
            return;
        };
        c.crashed.insert((node, step));
        let feature = self.ctx.graph.nodes[node].name.clone();
        let key = Key {
            source_hash: exp.source_hash.clone(),
            config_hash: Some(self.ctx.graph.content_hash.clone()),
            feature: Some(feature.clone()),
            step: Some(step),
        };
        self.journal.record(key, &exp.path, kind, cause);
        self.casualties.push(Casualty {
            input: exp.path.clone(),
            feature: Some(feature),
            step: Some(step),
            cause: cause.to_string(),
        });
    }
}

fn file_key(source_hash: &str) -> Key {
    Key {
        source_hash: source_hash.to_string(),
        config_hash: None,
        feature: None,
        step: None,
    }
}

fn outcome_input(o: &Outcome) -> PathBuf {
    o.input().to_path_buf()
}
