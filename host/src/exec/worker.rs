//! A worker process: the only place where HDF5 files are opened and extractors are called.
//!
//! The supervisor ([`super::supervise`]) starts `oect __worker` with one end of a
//! socketpair as standard input. The worker moves that socket off fd 0 at once (fd 0 becomes
//! `/dev/null`), so the protocol ([`super::protocol`]) has a channel no plugin writes to;
//! whatever plugins print on stdout or stderr reaches the supervisor on two other pipes.
//!
//! Three threads do the work: the main thread reads requests, an I/O thread opens files
//! and reads ranges of steps (one range ahead of the computation), and a compute thread
//! runs the extractors. A watchdog thread times what the other two are doing; when an
//! extractor call exceeds `--step-timeout` (or an open or a read exceeds the read timeout)
//! it reports what hung and ends the process, which is the only way to stop code that
//! does not return. Nothing here outlives the process: a timeout leaks no thread.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::compute::{self, Part, Recorded, Watch};
use super::protocol::{self, Activity, ConfigText, Reply, Request, Skip, StepRange};
use crate::graph::{FeatureGraph, Input, Op, Rows, Source};
use crate::plugins::Registry;
use crate::source::{Experiment, StepBlock};

/// Exit status of a worker its watchdog ended.
pub const EXIT_TIMEOUT: i32 = 75;
/// Exit status of a worker that could not start.
pub const EXIT_FATAL: i32 = 76;

/// The hidden subcommand's entry point.
pub fn main() -> u8 {
    let socket = match take_socket() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oect worker: {e}");
            return EXIT_FATAL as u8;
        }
    };
    die_with_supervisor();
    // A panic in the worker's own code (not a plugin's: the SDK contains those) would end
    // one thread and leave the others waiting; ending the process lets the supervisor
    // see it and account for the work.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let out = Arc::new(Out(Mutex::new(
        socket.try_clone().expect("clone of the worker socket"),
    )));
    let mut input = BufReader::new(socket);
    let init = match protocol::read_frame::<Request>(&mut input) {
        Ok(Some((init @ Request::Init { .. }, _))) => init,
        // The supervisor ended before it sent `init` (a prestarted worker never adopted).
        Ok(None) => return EXIT_FATAL as u8,
        Ok(Some(_)) => return fatal(&out, "the first message was not init".into()),
        Err(e) => return fatal(&out, format!("unreadable init message: {e}")),
    };
    let worker = match Worker::new(init) {
        Ok(w) => Arc::new(w),
        Err(message) => return fatal(&out, message),
    };
    out.send(
        &Reply::Ready {
            pid: std::process::id(),
        },
        &[],
    );
    let slots = Arc::new([Slot::default(), Slot::default()]);
    let (io_tx, io_rx) = unbounded::<Request>();
    let (compute_tx, compute_rx) = bounded::<Block>(1);
    {
        let (worker, out, slots) = (Arc::clone(&worker), Arc::clone(&out), Arc::clone(&slots));
        std::thread::spawn(move || io_thread(&worker, &out, &slots[IO], io_rx, compute_tx));
    }
    // Only a worker with a config computes (one for `inspect` or `status` only opens files;
    // its I/O thread refuses compute requests).
    if let Some(graph) = worker.graph.clone() {
        let (out, slots) = (Arc::clone(&out), Arc::clone(&slots));
        std::thread::spawn(move || compute_thread(&graph, &out, &slots[COMPUTE], compute_rx));
    }
    {
        let (worker, out, slots) = (Arc::clone(&worker), Arc::clone(&out), Arc::clone(&slots));
        std::thread::spawn(move || watchdog(&worker, &out, &slots));
    }
    while let Ok(Some((request, _))) = protocol::read_frame::<Request>(&mut input) {
        if io_tx.send(request).is_err() {
            break;
        }
    }
    // The supervisor closed the channel (or is gone). `_exit` skips the C library's exit
    // handlers, which could wait on HDF5 state held by a thread still running.
    quit(0)
}

/// Tells the supervisor why this worker cannot start; the worker's exit status.
fn fatal(out: &Out, message: String) -> u8 {
    out.send(&Reply::Fatal { message }, &[]);
    EXIT_FATAL as u8
}

/// Ends the process at once.
pub fn quit(status: i32) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; no Rust invariant depends on destructors
    // running, every reply was already written with `write_all`.
    unsafe { libc::_exit(status) }
}

/// Moves the protocol socket off fd 0 and puts `/dev/null` there.
pub fn take_socket() -> Result<UnixStream, String> {
    let socket: OwnedFd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("no protocol socket on stdin: {e}"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    // SAFETY: both descriptors are open; dup2 atomically replaces fd 0, which std's stdin
    // handle only ever passes to read(2), so nothing holds a borrow of the old file.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(format!(
            "cannot move the socket off stdin: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(UnixStream::from(socket))
}

/// Asks the kernel to kill this process when the supervisor dies (SIGKILL included), so a
/// worker stuck in a plugin is never left behind.
pub fn die_with_supervisor() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and changes only this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    let expected = std::env::var("OECT_SUPERVISOR_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    if expected.is_some_and(|p| p != parent) {
        quit(EXIT_FATAL); // the supervisor died before the death signal was armed
    }
}

/// The socket's writing half, shared by the threads; one frame is written at a time.
struct Out(Mutex<UnixStream>);

impl Out {
    fn send(&self, reply: &Reply, payload: &[f64]) {
        let mut socket = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if protocol::write_frame(&mut *socket, reply, payload).is_err() {
            quit(0); // the supervisor is gone: nobody wants the result
        }
    }
}

/// What the worker was set up with.
struct Worker {
    graph: Option<Arc<FeatureGraph>>,
    step_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
}

impl Worker {
    fn new(init: Request) -> Result<Worker, String> {
        let Request::Init {
            config,
            plugins,
            content_hash,
            library_hashes,
            step_timeout,
            read_timeout,
        } = init
        else {
            return Err("the first message was not init".into());
        };
        crate::plugins::trust_hashes(library_hashes);
        let graph = match config {
            Some(ConfigText { name, origin, text }) => {
                // The same libraries in the same order shadow alike (the supervisor has
                // shown the warnings); the graph hash below checks the outcome.
                let registry = Registry::from_libraries(&plugins);
                let config =
                    crate::config::parse(&name, &origin, &text).map_err(|e| e.to_string())?;
                let graph = FeatureGraph::build(&config, &registry).map_err(|e| e.to_string())?;
                if content_hash.is_some_and(|h| h != graph.content_hash) {
                    return Err(
                        "the plugins changed since the run started (the config hash differs)"
                            .into(),
                    );
                }
                Some(Arc::new(graph))
            }
            None => None,
        };
        let secs = |s: Option<f64>| s.map(Duration::from_secs_f64);
        Ok(Worker {
            graph,
            step_timeout: secs(step_timeout),
            read_timeout: secs(read_timeout),
        })
    }
}

/// What one of the working threads is doing, for the watchdog.
#[derive(Default)]
struct Slot(Mutex<Option<Doing>>);

const IO: usize = 0;
const COMPUTE: usize = 1;

#[derive(Clone, Copy)]
struct Doing {
    what: Activity,
    task: u64,
    range: Option<usize>,
    node: Option<usize>,
    step: Option<usize>,
    since: Instant,
}

impl Slot {
    fn set(&self, doing: Option<Doing>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = doing;
    }

    fn get(&self) -> Option<Doing> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn doing(what: Activity, task: u64, range: Option<usize>) -> Option<Doing> {
    Some(Doing {
        what,
        task,
        range,
        node: None,
        step: None,
        since: Instant::now(),
    })
}

/// Ends the worker when a call, an open or a read takes longer than its limit.
fn watchdog(worker: &Worker, out: &Out, slots: &[Slot; 2]) {
    let limits = [worker.step_timeout, worker.read_timeout];
    let Some(shortest) = limits.iter().flatten().min().copied() else {
        return;
    };
    let tick = (shortest / 20).clamp(Duration::from_millis(2), Duration::from_millis(100));
    loop {
        std::thread::sleep(tick);
        for slot in slots {
            let Some(d) = slot.get() else { continue };
            let limit = match d.what {
                Activity::Call => worker.step_timeout,
                Activity::Open | Activity::Read => worker.read_timeout,
                Activity::Compute => None,
            };
            if limit.is_some_and(|l| d.since.elapsed() > l) {
                out.send(
                    &Reply::Timeout {
                        task: d.task,
                        what: d.what,
                        range: d.range,
                        node: d.node,
                        step: d.step,
                        seconds: limit.map_or(0.0, |l| l.as_secs_f64()),
                    },
                    &[],
                );
                quit(EXIT_TIMEOUT);
            }
        }
    }
}

/// An experiment this worker has open.
struct OpenExp {
    exp: Experiment,
}

impl OpenExp {
    fn open(path: &std::path::Path) -> Result<OpenExp, String> {
        let exp = Experiment::open(path).map_err(|e| e.message)?;
        Ok(OpenExp { exp })
    }

    /// What the file records about the steps of `source`, for the step contexts;
    /// `experiment` is `chip-device`.
    fn recorded<'a>(&'a self, experiment: &'a str, source: Source) -> Recorded<'a> {
        Recorded {
            experiment,
            steps: match source {
                Source::Transfer => &self.exp.transfer_steps,
                Source::Transient => &self.exp.transient_steps,
            },
            attributes: &self.exp.attrs,
        }
    }
}

/// A compute request as the compute thread sees it.
struct Job {
    task: u64,
    experiment: String,
    ranges: Vec<StepRange>,
    isolate: bool,
    skip: Vec<Skip>,
}

/// One range of steps, read, on its way to the compute thread.
struct Block {
    job: Arc<Job>,
    range: usize,
    block: StepBlock,
    exp: Arc<OpenExp>,
}

fn io_thread(
    worker: &Worker,
    out: &Out,
    slot: &Slot,
    requests: Receiver<Request>,
    compute: Sender<Block>,
) {
    let mut open: HashMap<PathBuf, Arc<OpenExp>> = HashMap::new();
    let get = |open: &mut HashMap<PathBuf, Arc<OpenExp>>,
               task: u64,
               path: &PathBuf|
     -> Result<Arc<OpenExp>, String> {
        if let Some(e) = open.get(path) {
            return Ok(Arc::clone(e));
        }
        slot.set(doing(Activity::Open, task, None));
        let opened = OpenExp::open(path);
        slot.set(None);
        let e = Arc::new(opened?);
        open.insert(path.clone(), Arc::clone(&e));
        Ok(e)
    };
    for request in requests {
        match request {
            Request::Open { task, path } => {
                out.send(
                    &Reply::Begin {
                        task,
                        range: None,
                        what: Activity::Open,
                    },
                    &[],
                );
                let start = Instant::now();
                match get(&mut open, task, &path) {
                    Ok(e) => out.send(
                        &Reply::Opened {
                            task,
                            info: e.exp.info(),
                            seconds: start.elapsed().as_secs_f64(),
                        },
                        &[],
                    ),
                    Err(message) => out.send(&Reply::OpenFailed { task, message }, &[]),
                }
            }
            Request::Inspect { task, path } => {
                out.send(
                    &Reply::Begin {
                        task,
                        range: None,
                        what: Activity::Open,
                    },
                    &[],
                );
                slot.set(doing(Activity::Open, task, None));
                let result = Experiment::open(&path).and_then(|e| e.overview());
                slot.set(None);
                match result {
                    Ok(overview) => out.send(&Reply::Inspected { task, overview }, &[]),
                    Err(e) => out.send(
                        &Reply::OpenFailed {
                            task,
                            message: e.message,
                        },
                        &[],
                    ),
                }
            }
            Request::Close { path } => {
                open.remove(&path);
            }
            Request::Compute {
                task,
                path,
                experiment,
                ranges,
                isolate,
                skip,
            } => {
                let job = Arc::new(Job {
                    task,
                    experiment,
                    ranges,
                    isolate,
                    skip,
                });
                if worker.graph.is_none() {
                    let message = "this worker was started without a config".to_string();
                    out.send(
                        &Reply::ReadFailed {
                            task,
                            range: 0,
                            message,
                            fallbacks: 0,
                        },
                        &[],
                    );
                    continue;
                }
                out.send(
                    &Reply::Begin {
                        task,
                        range: Some(0),
                        what: Activity::Read,
                    },
                    &[],
                );
                let graph = worker.graph.as_ref().expect("checked above");
                let exp = match get(&mut open, task, &path) {
                    Ok(e) => e,
                    Err(message) => {
                        out.send(
                            &Reply::ReadFailed {
                                task,
                                range: 0,
                                message,
                                fallbacks: 0,
                            },
                            &[],
                        );
                        continue;
                    }
                };
                for (k, r) in job.ranges.iter().enumerate() {
                    if k > 0 {
                        out.send(
                            &Reply::Begin {
                                task,
                                range: Some(k),
                                what: Activity::Read,
                            },
                            &[],
                        );
                    }
                    slot.set(doing(Activity::Read, task, Some(k)));
                    let start = Instant::now();
                    // This thread is the only one reading `exp`, so the difference of its
                    // counter is this read's.
                    let before = exp.exp.read_fallbacks();
                    let block =
                        super::read_block(&exp.exp, r.source, r.steps(), &graph.channels(r.source));
                    let fallbacks = exp.exp.read_fallbacks().saturating_sub(before);
                    let seconds = start.elapsed().as_secs_f64();
                    slot.set(None);
                    match block {
                        Ok(block) => {
                            out.send(
                                &Reply::ReadDone {
                                    task,
                                    range: k,
                                    seconds,
                                    fallbacks,
                                },
                                &[],
                            );
                            let block = Block {
                                job: Arc::clone(&job),
                                range: k,
                                block,
                                exp: Arc::clone(&exp),
                            };
                            if compute.send(block).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let message = e.message;
                            out.send(
                                &Reply::ReadFailed {
                                    task,
                                    range: k,
                                    message,
                                    fallbacks,
                                },
                                &[],
                            );
                            break;
                        }
                    }
                }
            }
            Request::Init { .. } => {}
        }
    }
}

/// The watch of the compute thread: times each call; in isolated tasks it also reports
/// each call before making it.
struct CallWatch<'a> {
    slot: &'a Slot,
    out: &'a Out,
    task: u64,
    range: usize,
    isolate: bool,
}

impl Watch for CallWatch<'_> {
    fn calling(&self, node: usize, step: usize) {
        if self.isolate {
            let (task, range) = (self.task, self.range);
            self.out.send(
                &Reply::Step {
                    task,
                    range,
                    node,
                    step,
                },
                &[],
            );
        }
        self.slot.set(Some(Doing {
            what: Activity::Call,
            task: self.task,
            range: Some(self.range),
            node: Some(node),
            step: Some(step),
            since: Instant::now(),
        }));
    }

    fn returned(&self) {
        self.slot
            .set(doing(Activity::Compute, self.task, Some(self.range)));
    }
}

fn compute_thread(graph: &Arc<FeatureGraph>, out: &Out, slot: &Slot, blocks: Receiver<Block>) {
    for Block {
        job,
        range,
        block,
        exp,
    } in blocks
    {
        let task = job.task;
        out.send(
            &Reply::Begin {
                task,
                range: Some(range),
                what: Activity::Compute,
            },
            &[],
        );
        slot.set(doing(Activity::Compute, task, Some(range)));
        let watch = CallWatch {
            slot,
            out,
            task,
            range,
            isolate: job.isolate,
        };
        let r = &job.ranges[range];
        let skips: Vec<&Skip> = job
            .skip
            .iter()
            .filter(|s| r.steps().contains(&s.step))
            .collect();
        let started = std::cell::Cell::new(Instant::now());
        let send = |node: usize, part: Part| {
            let seconds = started.replace(Instant::now()).elapsed().as_secs_f64();
            let (reply, payload) = protocol::part_reply(task, range, node, part, seconds);
            out.send(&reply, &payload);
        };
        if job.isolate || !skips.is_empty() {
            let mut parts: HashMap<usize, Part> = HashMap::new();
            for step in r.steps() {
                for (node, part) in step_by_step(graph, r, &block, step, &job, &exp, &skips, &watch)
                {
                    if job.isolate {
                        send(node, part);
                    } else {
                        match parts.get_mut(&node) {
                            Some(p) => p.append(&part),
                            None => {
                                parts.insert(node, part);
                            }
                        }
                    }
                }
            }
            let mut nodes: Vec<usize> = parts.keys().copied().collect();
            nodes.sort_unstable();
            for node in nodes {
                send(node, parts.remove(&node).expect("present"));
            }
        } else {
            let mut done: Vec<Option<Part>> = vec![None; graph.nodes.len()];
            for node in nodes_of(graph, r) {
                let part = node_part(graph, node, r, &block, &job, &exp, &done, &watch);
                let needed = graph
                    .nodes
                    .iter()
                    .any(|n| n.inputs.contains(&Input::Feature(node)));
                if needed {
                    done[node] = Some(part.clone());
                }
                send(node, part);
            }
        }
        slot.set(None);
        if range + 1 == job.ranges.len() {
            out.send(&Reply::Done { task }, &[]);
        }
    }
}

/// Per-step extractor nodes of the range's source, in topological order.
fn nodes_of(graph: &FeatureGraph, r: &StepRange) -> Vec<usize> {
    (0..graph.nodes.len())
        .filter(|&i| {
            graph.nodes[i].rows == Rows::Source(r.source)
                && matches!(graph.nodes[i].op, Op::Extract(_))
        })
        .collect()
}

/// Node `node` over all of `block` (whose steps are `r`), given the parts of the nodes
/// before it.
#[allow(clippy::too_many_arguments)]
fn node_part(
    graph: &Arc<FeatureGraph>,
    node: usize,
    r: &StepRange,
    block: &StepBlock,
    job: &Job,
    exp: &OpenExp,
    done: &[Option<Part>],
    watch: &dyn Watch,
) -> Part {
    if graph.nodes[node].inputs == [Input::Source(r.source)] {
        let recorded = exp.recorded(&job.experiment, r.source);
        compute::source_chunk(graph, node, r.source, block, recorded, watch)
    } else {
        let inputs: Vec<&Part> = graph.nodes[node]
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Feature(j) => done[*j].as_ref(),
                Input::Source(_) => None,
            })
            .collect();
        let recorded = exp.recorded(&job.experiment, r.source);
        compute::derived_chunk(graph, node, &inputs, r.steps(), recorded, watch)
    }
}

/// Every node of the range's source on one step, skipping known casualties.
#[allow(clippy::too_many_arguments)]
fn step_by_step(
    graph: &Arc<FeatureGraph>,
    r: &StepRange,
    block: &StepBlock,
    step: usize,
    job: &Job,
    exp: &OpenExp,
    skips: &[&Skip],
    watch: &dyn Watch,
) -> Vec<(usize, Part)> {
    let one = block.single(step - block.first_step);
    let single = StepRange {
        source: r.source,
        index: r.index,
        start: step,
        end: step + 1,
    };
    let mut done: Vec<Option<Part>> = vec![None; graph.nodes.len()];
    let mut parts = Vec::new();
    for node in nodes_of(graph, r) {
        let part = match skips.iter().find(|s| s.node == node && s.step == step) {
            Some(s) => Part::failed(step, s.kind, s.message.clone()),
            None => node_part(graph, node, &single, &one, job, exp, &done, watch),
        };
        done[node] = Some(part.clone());
        parts.push((node, part));
    }
    parts
}
