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
use std::sync::atomic::{AtomicBool, Ordering};

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
