//! Everything the commands print goes through here.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`oect run … | head -1`:
//! "failed printing to stdout: Broken pipe"). The process keeps SIGPIPE ignored (Rust's
//! default), so a plugin or a child writing to a closed pipe cannot kill it; instead a broken
//! pipe here ends the printing quietly, as other Unix tools do, and the command finishes with
//! the status it would have had. Any other failure to write stdout (a full disk behind `>`)
//! is reported once on stderr and makes the exit status non-zero. Failures to write stderr
//! are ignored: there is nowhere left to report them.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Set when stdout cannot be written any more; later output is dropped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// Set when that was not a broken pipe.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Prints like `print!`, see the module docs.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(format_args!($($arg)*))
    };
}

/// Prints like `println!`, see the module docs.
macro_rules! outln {
    () => {
        $crate::cli::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints like `eprintln!`, ignoring failures.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `error: …` on stderr (the label coloured where colour is on); always shown.
macro_rules! error {
    ($($arg:tt)*) => {
        errln!("{}: {}", $crate::cli::output::label("error"), format_args!($($arg)*))
    };
}

/// `FAILED …` on stderr: an input that could not be done (the batch went on); always shown.
macro_rules! failed {
    ($($arg:tt)*) => {
        errln!("{} {}", $crate::cli::output::label("FAILED"), format_args!($($arg)*))
    };
}

/// `warning: …` on stderr, unless `-q`.
macro_rules! warning {
    ($($arg:tt)*) => {
        if $crate::cli::output::verbosity() > $crate::cli::output::Verbosity::Quiet {
            errln!("{}: {}", $crate::cli::output::label("warning"), format_args!($($arg)*))
        }
    };
}

/// A note on stderr (what happened besides the result), unless `-q`.
macro_rules! noteln {
    ($($arg:tt)*) => {
        if $crate::cli::output::verbosity() > $crate::cli::output::Verbosity::Quiet {
            errln!($($arg)*)
        }
    };
}

pub(super) fn stdout(text: fmt::Arguments<'_>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    // Flushed at once, so that a failure is seen here and not at exit, where it is lost.
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            stderr(format_args!("error: cannot write to stdout: {e}\n"));
        }
    }
}

pub(super) fn stderr(text: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(text).and_then(|()| err.flush());
}

/// True if something could not be written to stdout for another reason than a reader
/// that went away.
pub(super) fn failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// How much the commands say: `-q` leaves errors and the command's results, `-v` adds
/// detail (per-experiment lines of a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// 0 quiet, 1 normal, 2 verbose.
static VERBOSITY: AtomicU8 = AtomicU8::new(1);
/// Whether `error:`, `warning:` and `FAILED` are coloured on stderr.
static COLOR: AtomicBool = AtomicBool::new(false);

/// Sets the verbosity and whether stderr is coloured, once, before anything is printed.
pub(super) fn configure(verbosity: Verbosity, color: bool) {
    VERBOSITY.store(verbosity as u8, Ordering::Relaxed);
    COLOR.store(color, Ordering::Relaxed);
}

pub(super) fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// `label` in bold red (`error`, `FAILED`) or yellow (`warning`) when colour is on.
pub(super) fn label(label: &str) -> String {
    if !COLOR.load(Ordering::Relaxed) {
        return label.to_string();
    }
    let code = if label.starts_with("warning") {
        "33"
    } else {
        "31"
    };
    format!("\x1b[1;{code}m{label}\x1b[0m")
}

/// Whether to colour: `--color always|never`, else (auto) not when `NO_COLOR` is set
/// to anything non-empty (no-color.org), else only when stderr is a terminal.
pub(super) fn use_color(choice: clap::ColorChoice) -> bool {
    match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::IsTerminal::is_terminal(&std::io::stderr())
        }
    }
}
