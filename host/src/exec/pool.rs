//! Worker processes as the supervisor sees them: starting, talking to, watching and
//! burying them.
//!
//! A worker is `oect __worker` (or any program speaking [`super::protocol`]) with a
//! socketpair on its stdin, its stdout and stderr on pipes the pool reads, in its own
//! process group (a Ctrl-C at the terminal reaches only the supervisor, which decides what
//! to stop), and armed to die with the supervisor. Every line a worker prints goes to the
//! run's output log with what the worker was doing (experiment, steps, features and their
//! plugins); the first lines of its stderr are also shown on oect's stderr, and the last
//! ones are kept to explain a death.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::protocol::{self, Reply, Request};
use super::worker::{EXIT_FATAL, EXIT_TIMEOUT};

/// How to start a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// A worker process that is running but has not been sent `init` yet.
struct Started {
    command: WorkerCommand,
    child: Child,
    socket: UnixStream,
}

impl Started {
    fn new(command: &WorkerCommand) -> Result<Started, String> {
        let (mine, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot create a socketpair: {e}"))?;
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("OECT_SUPERVISOR_PID", std::process::id().to_string())
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", command.program.display()))?;
        Ok(Started {
            command: command.clone(),
            child,
            socket: mine,
        })
    }
}

/// Workers started by [`prestart`], waiting for a pool to adopt them.
static PRESTARTED: Mutex<Vec<Started>> = Mutex::new(Vec::new());

/// Starts `n` workers of `command` now, before the run has loaded its plugins and built its
/// graph; the run's pool adopts them instead of starting its own. A worker's start-up
/// (exec, then linking libhdf5 and the ~40 libraries it pulls in) then overlaps the
/// supervisor's own instead of following it, which on a sub-second run is most of what
/// containment costs (`docs/BENCHMARKS.md`). A worker waits for its `init`; one never
/// adopted sees its socket close when this process ends, and ends too. Failures are left
/// for the pool to report when it starts workers itself.
pub fn prestart(command: &WorkerCommand, n: usize) {
    let mut early = PRESTARTED.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..n {
        match Started::new(command) {
            Ok(w) => early.push(w),
            Err(_) => break,
        }
    }
}

impl WorkerCommand {
    /// This executable's hidden `__worker` subcommand.
    pub fn this_exe() -> std::io::Result<WorkerCommand> {
        Ok(WorkerCommand {
            program: std::env::current_exe()?,
            args: vec!["__worker".into()],
        })
    }
}

/// Something that happened to a worker.
pub enum Event {
    Reply {
        worker: u64,
        reply: Box<Reply>,
        payload: Vec<f64>,
    },
    /// The worker's socket closed: it ended or died.
    Gone { worker: u64 },
}

/// Stderr lines shown on oect's own stderr per run before the rest goes to the log only.
const ECHOED_LINES: usize = 20;
/// Stderr lines kept per worker to explain its death (enough to see past a backtrace).
const TAIL_LINES: usize = 200;

/// Where worker output goes: `<out>/<config>/.oect/worker-output.log`, created on the first line.
pub struct OutputLog {
    path: PathBuf,
    file: Mutex<Option<BufWriter<File>>>,
    echoed: AtomicUsize,
    stdout_bytes: AtomicU64,
    lines: AtomicU64,
}

impl OutputLog {
    pub fn new(out_dir: &Path) -> OutputLog {
        OutputLog {
            path: out_dir.join(".oect").join("worker-output.log"),
            file: Mutex::new(None),
            echoed: AtomicUsize::new(0),
            stdout_bytes: AtomicU64::new(0),
            lines: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes plugins wrote to stdout, and lines written to the log.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.stdout_bytes.load(Ordering::Relaxed),
            self.lines.load(Ordering::Relaxed),
        )
    }

    fn line(&self, label: &str, stream: &str, line: &str) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        if stream == "stdout" {
            self.stdout_bytes
                .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        } else if self.echoed.fetch_add(1, Ordering::Relaxed) < ECHOED_LINES {
            eprintln!("oect: worker output ({label}): {line}");
        } else if self.echoed.load(Ordering::Relaxed) == ECHOED_LINES + 1 {
            eprintln!(
                "oect: further worker output goes to {} only",
                self.path.display()
            );
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let opened = File::options().create(true).append(true).open(&self.path);
            *file = opened.ok().map(BufWriter::new);
        }
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "[{label}] {stream}: {line}");
        }
    }

    pub fn flush(&self) {
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = f.flush();
        }
    }
}

/// One worker process.
pub struct Proc {
    pub id: u64,
    child: Child,
    socket: UnixStream,
    pub ready: bool,
    /// Tasks sent and not finished, in the order sent.
    pub jobs: Vec<u64>,
    /// Files this worker has open.
    pub opened: HashSet<PathBuf>,
    /// What the I/O thread began and has not finished: (task, range; `None` = open).
    pub reading: Option<(u64, Option<usize>)>,
    /// The range the compute thread is on.
    pub computing: Option<(u64, usize)>,
    /// Since when the compute thread's time is not yet counted (its range began, or its
    /// last part came).
    pub computing_since: Option<Instant>,
    /// Isolated tasks: the last call announced, (task, node, step).
    pub calling: Option<(u64, usize, usize)>,
    /// Set when the worker's watchdog reported a timeout.
    pub timeout: Option<Reply>,
    /// Why the supervisor killed it, if it did.
    pub killed: Option<String>,
    label: Arc<Mutex<String>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the output log says this worker is doing.
    pub fn set_label(&self, label: String) {
        *self.label.lock().unwrap_or_else(|p| p.into_inner()) = label;
    }

    pub fn send(&mut self, request: &Request) -> bool {
        protocol::write_frame(&mut self.socket, request, &[]).is_ok()
    }

    pub fn kill(&mut self, why: Option<String>) {
        if self.killed.is_none() {
            self.killed = why;
        }
        let _ = self.child.kill();
    }

    /// Resident memory in bytes, from `/proc` (`None` where it cannot be read).
    pub fn rss(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid())).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * page.max(1) as u64)
    }

    /// Waits for the process (its socket is closed, so it has ended or is ending) and says
    /// why it ended.
    pub fn bury(mut self) -> String {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        let status = self.child.wait();
        let mut cause = match (&self.killed, &status) {
            (Some(why), _) => why.clone(),
            (None, Ok(s)) => describe(*s),
            (None, Err(e)) => format!("lost ({e})"),
        };
        // The readers of its pipes finish at its end; give them a moment for the last lines.
        std::thread::sleep(Duration::from_millis(5));
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if self.killed.is_none() {
            if let Some(last) = last_message(tail.iter()) {
                cause.push_str(&format!("; its last output: \"{}\"", clip(last, 200)));
            }
        }
        cause
    }
}

/// The last line of `lines` that says something: backtrace frames, their locations and
/// `note:` lines are skipped.
pub fn last_message<'a>(lines: impl DoubleEndedIterator<Item = &'a String>) -> Option<&'a str> {
    lines.rev().map(String::as_str).find(|l| {
        let t = l.trim_start();
        !t.is_empty()
            && !l.starts_with(char::is_whitespace)
            && !t.starts_with("note:")
            && !t.starts_with("stack backtrace:")
    })
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Why a worker process ended, in words: its own exit statuses by meaning, else as
/// [`crate::frame::ended`] says.
pub fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(EXIT_TIMEOUT) => "ended by its watchdog".into(),
        Some(EXIT_FATAL) => "it could not start".into(),
        _ => crate::frame::ended(status),
    }
}

/// The supervisor's set of workers.
pub struct Pool {
    command: WorkerCommand,
    init: Request,
    pub procs: Vec<Option<Proc>>,
    next_id: u64,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    pub log: Arc<OutputLog>,
}

impl Pool {
    pub fn new(command: WorkerCommand, init: Request, size: usize, log: Arc<OutputLog>) -> Pool {
        let (events_tx, events) = unbounded();
        Pool {
            command,
            init,
            procs: (0..size.max(1)).map(|_| None).collect(),
            next_id: 1,
            events_tx,
            events,
            log,
        }
    }

    /// Starts a worker in slot `slot` (adopting one [`prestart`] started, if any).
    pub fn spawn(&mut self, slot: usize) -> Result<(), String> {
        let adopted = {
            let mut early = PRESTARTED.lock().unwrap_or_else(|p| p.into_inner());
            let at = early.iter().position(|w| w.command == self.command);
            at.map(|i| early.swap_remove(i))
        };
        let Started {
            mut child,
            socket: mine,
            ..
        } = match adopted {
            Some(w) => w,
            None => Started::new(&self.command)?,
        };
        let id = self.next_id;
        self.next_id += 1;
        let label = Arc::new(Mutex::new(format!("worker {id}, pid {}", child.id())));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        for (stream, pipe) in [
            (
                "stdout",
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ),
            (
                "stderr",
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let (log, label, tail) = (Arc::clone(&self.log), Arc::clone(&label), Arc::clone(&tail));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    let shown = label.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    log.line(&shown, stream, line);
                    if stream == "stderr" {
                        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                        t.push_back(line.to_string());
                        if t.len() > TAIL_LINES {
                            t.pop_front();
                        }
                    }
                }
            });
        }
        let reader = mine
            .try_clone()
            .map_err(|e| format!("cannot clone the worker socket: {e}"))?;
        let events = self.events_tx.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            while let Ok(Some((reply, payload))) = protocol::read_frame::<Reply>(&mut reader) {
                let event = Event::Reply {
                    worker: id,
                    reply: Box::new(reply),
                    payload,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::Gone { worker: id });
        });
        let mut proc = Proc {
            id,
            child,
            socket: mine,
            ready: false,
            jobs: Vec::new(),
            opened: HashSet::new(),
            reading: None,
            computing: None,
            computing_since: None,
            calling: None,
            timeout: None,
            killed: None,
            label,
            tail,
        };
        if !proc.send(&self.init) {
            proc.kill(None);
        }
        self.procs[slot] = Some(proc);
        Ok(())
    }

    /// The slot of worker `id`, if it is still in the pool.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        self.procs
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.id == id))
    }

    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        match self.events.recv_timeout(timeout) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Kills every worker and waits for them, so none outlives the run.
    pub fn shutdown(&mut self) {
        for proc in self.procs.iter_mut().flatten() {
            let _ = proc.socket.shutdown(std::net::Shutdown::Both);
            let _ = proc.child.kill();
        }
        for proc in self.procs.iter_mut().filter_map(Option::take) {
            let mut child = proc.child;
            let _ = child.wait();
        }
        self.log.flush();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}
