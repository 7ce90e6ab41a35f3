//! Opening files without computing anything (`oect inspect`, `oect status`), in a worker
//! process as well: libhdf5 crashes on damaged metadata, and such a file must cost one
//! line, not the command.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::{Event, OutputLog, Pool, WorkerCommand};
use super::protocol::{Reply, Request};
use crate::source::{ExperimentInfo, Overview};

/// How long one file may take to open (and, for inspect, to read every transfer step).
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// A one-worker pool for probing files; its output log is under the system's temp folder.
struct Prober {
    pool: Pool,
    next_task: u64,
}

impl Prober {
    fn new() -> std::io::Result<Prober> {
        let init = Request::Init {
            config: None,
            plugins: Vec::new(),
            content_hash: None,
            library_hashes: Vec::new(),
            step_timeout: None,
            read_timeout: Some(PROBE_TIMEOUT.as_secs_f64()),
        };
        let log = Arc::new(OutputLog::new(
            &std::env::temp_dir().join(format!("oect-probe-{}", std::process::id())),
        ));
        Ok(Prober {
            pool: Pool::new(WorkerCommand::this_exe()?, init, 1, log),
            next_task: 1,
        })
    }

    /// Sends `make(task)` to the worker and waits for its answer; a lost worker is an
    /// error saying why, and the next request gets a fresh one.
    fn ask(&mut self, path: &Path, make: impl Fn(u64) -> Request) -> Result<Reply, String> {
        crate::source::check_regular(path).map_err(|e| e.message)?;
        if self.pool.procs[0].is_none() {
            self.pool.spawn(0)?;
        }
        let task = self.next_task;
        self.next_task += 1;
        if let Some(p) = self.pool.procs[0].as_mut() {
            p.send(&make(task));
        }
        // The watchdog ends the worker at the read timeout; this is a backstop.
        let deadline = Instant::now() + PROBE_TIMEOUT + Duration::from_secs(5);
        loop {
            if super::stopping() {
                self.pool.shutdown();
                return Err("interrupted".into());
            }
            if Instant::now() > deadline {
                if let Some(p) = self.pool.procs[0].as_mut() {
                    p.kill(Some(format!(
                        "no answer within {} s",
                        PROBE_TIMEOUT.as_secs()
                    )));
                }
            }
            match self.pool.next_event(Duration::from_millis(50)) {
                Some(Event::Reply { reply, .. }) => match *reply {
                    Reply::Ready { .. } => {}
                    Reply::Timeout { seconds, .. } => {
                        if let Some(p) = self.pool.procs[0].as_mut() {
                            p.kill(Some(format!(
                                "opening the file: no answer within {seconds} s; the worker was ended"
                            )));
                        }
                    }
                    Reply::Opened { task: t, .. }
                    | Reply::Inspected { task: t, .. }
                    | Reply::OpenFailed { task: t, .. }
                        if t == task =>
                    {
                        return match *reply {
                            Reply::OpenFailed { message, .. } => Err(message),
                            r => Ok(r),
                        };
                    }
                    _ => {}
                },
                Some(Event::Gone { .. }) => {
                    let proc = self.pool.procs[0].take().expect("worker");
                    let cause = proc.bury();
                    return Err(format!(
                        "opening the file took the worker process down: {cause}"
                    ));
                }
                None => {}
            }
        }
    }
}

/// Overviews of several files by one worker, one after the other; per file its overview
/// or why not.
pub fn inspect_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Result<Overview, String>>> {
    let mut prober = Prober::new()?;
    Ok(paths
        .iter()
        .map(|path| {
            let p = path.clone();
            match prober.ask(path, |task| Request::Inspect {
                task,
                path: p.clone(),
            }) {
                Ok(Reply::Inspected { overview, .. }) => Ok(overview),
                Ok(_) => Err("unexpected answer from the worker".into()),
                Err(message) => Err(message),
            }
        })
        .collect())
}

/// Opens every file (one worker, one after the other); per file its metadata or why not.
pub fn open_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Result<ExperimentInfo, String>>> {
    let mut prober = Prober::new()?;
    Ok(paths
        .iter()
        .map(|path| {
            let p = path.clone();
            match prober.ask(path, |task| Request::Open {
                task,
                path: p.clone(),
            }) {
                Ok(Reply::Opened { info, .. }) => {
                    if let Some(w) = prober.pool.procs[0].as_mut() {
                        w.send(&Request::Close { path: p });
                    }
                    Ok(info)
                }
                Ok(_) => Err("unexpected answer from the worker".into()),
                Err(message) => Err(message),
            }
        })
        .collect())
}
