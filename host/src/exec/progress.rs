//! How a run reports progress while it works: a bar on a terminal, or one JSON object
//! per line on stderr for programs that drive `oect` (the Python package).
//!
//! The bar counts steps, not experiments, so that it moves during one large experiment
//! (what step mode is for) as much as during thousands of small ones: the supervisor
//! reports every finished chunk of steps. Its length is the steps of the experiments
//! opened so far (later ones are not read yet), so the rate and ETA that `indicatif`
//! derives from it cover the work known at the time. A steady tick redraws it, so the
//! clock moves even while a slow chunk is computed.
//!
//! The JSON lines are a contract (README "Progress as JSON lines"): every line is one
//! object with an `"event"` key; readers ignore events and keys they do not know, so
//! new events can be added without breaking them.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Outcome;

/// Which progress display a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Nothing.
    None,
    /// A bar on stderr: steps done / known, experiments, rate, ETA and the file in progress.
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

/// How often the bar is redrawn without news (the clock and the spinner).
const TICK: Duration = Duration::from_millis(250);

impl Progress {
    /// Starts the display for a run over `total` input files.
    pub(super) fn start(mode: ProgressMode, total: usize) -> Progress {
        let bar = if mode == ProgressMode::Bar {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{bar:25}] {human_pos}/{human_len} steps, {prefix} experiments, {per_sec}, ETA {eta} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("0/{total}"));
            bar.enable_steady_tick(TICK);
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
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_prefix(format!("{done}/{}", self.total));
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

    /// `done` of the `total` steps of the experiments opened so far are computed; the
    /// last chunk was one of `input`'s.
    pub(super) fn steps(&self, done: usize, total: usize, input: &Path) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        let name = input.file_name().unwrap_or(input.as_os_str());
        self.bar.set_message(name.to_string_lossy().into_owned());
        self.emit(serde_json::json!({
            "event": "steps",
            "done": done,
            "total": total,
            "input": input,
        }));
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
