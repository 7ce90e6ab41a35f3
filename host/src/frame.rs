//! Frames of the worker protocol (`docs/WORKER_PROTOCOL.md`): a JSON header and raw
//! little-endian f64 values, each length-prefixed. Worker processes and Python plugin
//! children speak them, so this sits below both `plugins` and `exec`.
//!
//! Also how a child process ended, in words, for the messages of both.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

/// Largest header accepted (a part's shapes and errors for 512 steps are a few kB).
const MAX_HEADER: usize = 64 << 20;
/// Largest payload accepted.
const MAX_PAYLOAD: usize = 1 << 30;

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, header: &impl Serialize, payload: &[f64]) -> io::Result<()> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(8 + json.len() + 8 * payload.len());
    frame.extend_from_slice(&(json.len() as u32).to_le_bytes());
    frame.extend_from_slice(&((8 * payload.len()) as u32).to_le_bytes());
    frame.extend_from_slice(&json);
    for v in payload {
        frame.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&frame)
}

/// Reads one frame: `Ok(None)` at a clean end of stream.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
) -> io::Result<Option<(T, Vec<f64>)>> {
    let mut lens = [0u8; 8];
    match r.read_exact(&mut lens[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut lens[1..])?;
    let h = u32::from_le_bytes(lens[..4].try_into().expect("4 bytes")) as usize;
    let p = u32::from_le_bytes(lens[4..].try_into().expect("4 bytes")) as usize;
    if h > MAX_HEADER || p > MAX_PAYLOAD || p % 8 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame lengths: header {h}, payload {p}"),
        ));
    }
    let mut header = vec![0u8; h];
    r.read_exact(&mut header)?;
    let mut bytes = vec![0u8; p];
    r.read_exact(&mut bytes)?;
    let message = serde_json::from_slice(&header)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad header: {e}")))?;
    let payload = bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Ok(Some((message, payload)))
}

/// Why a child process ended, in words: the signal by name, or the exit status.
pub fn ended(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        let name = match sig {
            libc::SIGSEGV => "SIGSEGV (segmentation fault)",
            libc::SIGABRT => "SIGABRT (abort)",
            libc::SIGBUS => "SIGBUS (bus error)",
            libc::SIGILL => "SIGILL (illegal instruction)",
            libc::SIGFPE => "SIGFPE (arithmetic error)",
            libc::SIGKILL => "SIGKILL",
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGSYS => "SIGSYS",
            _ => return format!("killed by signal {sig}"),
        };
        return format!("killed by {name}");
    }
    match status.code() {
        Some(code) => format!("exited with status {code} (exit() was called)"),
        None => "it ended".into(),
    }
}
