//! Standard output and standard error, aware that a reader which stops early (`| head`, a closed
//! terminal) is not a failure and must never panic cairn (`println!` does on EPIPE).
//!
//! Every line a command prints goes through [`outln!`]/[`out!`] (stdout) or [`errln!`] (stderr).
//! A closed stdout (EPIPE) silences later output and the command carries on to its own exit code;
//! any other stdout failure (a full disk under `> file`) is kept and turns success into an error at
//! the end ([`take_failure`]), so output is never lost silently. Stderr failures are ignored: there
//! is nowhere left to report them. Commands that stream (cat, dump, listings) use [`Output`], which
//! stops them early instead.

use std::fmt;
use std::io::{self, BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once stdout's reader went away: later lines are dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first stdout failure other than a closed pipe.
static STDOUT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// `println!` that never panics (see the module comment).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::stdout::write_out(format_args!($($arg)*), true) };
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::stdout::write_out(format_args!($($arg)*), false) };
}

/// `eprintln!` that never panics: a closed or failing stderr drops the line.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::stdout::write_err(format_args!($($arg)*)) };
}

/// Writes `args` (and a newline) to stdout; see the module comment for failures.
pub fn write_out(args: fmt::Arguments<'_>, newline: bool) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    note_stdout(written);
}

/// Flushes stdout (what `out!` left in its buffer); see the module comment for failures.
pub fn flush_out() {
    if !STDOUT_CLOSED.load(Ordering::Relaxed) {
        note_stdout(io::stdout().lock().flush());
    }
}

fn note_stdout(result: io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Err(e) => {
            let mut failure = STDOUT_FAILURE.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| e.to_string());
        }
    }
}

/// The first stdout failure other than a closed pipe, if any (taken: reported once).
pub fn take_failure() -> Option<String> {
    STDOUT_FAILURE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// Writes `args` and a newline to stderr, dropping them if stderr fails.
pub fn write_err(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Buffered stdout that remembers whether the reader went away.
pub struct Output {
    inner: BufWriter<Stdout>,
    closed: bool,
}

impl Output {
    pub fn new() -> Self {
        Output {
            inner: BufWriter::with_capacity(1 << 20, io::stdout()),
            closed: false,
        }
    }

    /// Writes one line of text, as a library error on failure.
    pub fn line(&mut self, text: &str) -> cairn::Result<()> {
        writeln!(self, "{text}").map_err(|e| {
            cairn::Error::new(cairn::ErrorKind::Other, format!("cannot write output: {e}"))
        })
    }

    /// The command's result once output is done: flushed, and a closed pipe counts as success,
    /// since the reader had what it wanted.
    pub fn finish(mut self, result: anyhow::Result<i32>) -> anyhow::Result<i32> {
        let flushed = self.flush();
        if self.closed {
            return Ok(super::exit::OK);
        }
        let code = result?;
        flushed?;
        Ok(code)
    }

    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.closed = true;
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
            }
        }
        r
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}
