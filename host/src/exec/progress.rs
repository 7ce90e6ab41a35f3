//! How a run reports progress while it works: a bar on a terminal, or one JSON object
//! per line on stderr for programs that drive `oect` (the Python package).
//!
//! The JSON lines are a contract (README "Progress as JSON lines"): every line is one
//! object with an `"event"` key; readers ignore events and keys they do not know, so
//! new events (e.g. step counts) can be added without breaking them.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Outcome;

/// Which progress display a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Nothing.
    None,
    /// An experiment bar on stderr.
    Bar,
    /// One JSON object per event on stderr.
    Json,
}

/// The progress display of one run.
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
    json: bool,
    total: usize,
    done: AtomicUsize,
}

impl Progress {
    /// Starts the display for a run over `total` input files.
    pub(super) fn start(mode: ProgressMode, total: usize) -> Progress {
        let bar = if mode == ProgressMode::Bar {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} experiments {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let progress = Progress {
            bar,
            json: mode == ProgressMode::Json,
            total,
            done: AtomicUsize::new(0),
        };
        progress.emit(serde_json::json!({ "event": "start", "experiments": total }));
        progress
    }

    /// One input file is settled (written, skipped, failed, filtered out or interrupted).
    pub(super) fn settled(&self, outcome: &Outcome) {
        self.bar.inc(1);
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let status = match outcome {
            Outcome::Written { .. } => "written",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed { .. } => "failed",
            Outcome::Filtered { .. } => "filtered",
            Outcome::Interrupted { .. } => "interrupted",
        };
        self.emit(serde_json::json!({
            "event": "experiment",
            "done": done,
            "total": self.total,
            "input": outcome.input(),
            "status": status,
        }));
    }

    /// `done` of the `total` steps of the experiments opened so far are computed (shown
    /// on the bar; a later JSON event may carry it too).
    pub(super) fn steps(&self, done: usize, total: usize) {
        self.bar
            .set_message(format!("{done} / {total} steps computed"));
    }

    /// The run is over; `seconds` is its wall time.
    pub(super) fn finish(&self, seconds: f64) {
        self.bar.finish_and_clear();
        self.emit(serde_json::json!({
            "event": "finish",
            "done": self.done.load(Ordering::Relaxed),
            "total": self.total,
            "seconds": seconds,
        }));
    }

    fn emit(&self, event: serde_json::Value) {
        if self.json {
            // One write per line, so lines from concurrent threads never interleave.
            let line = format!("{event}\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}
