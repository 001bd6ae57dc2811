//! Standard output for commands that stream (cat, dump, listings): buffered, and aware that a
//! reader which stops early (`| head`) is not a failure.

use std::io::{self, BufWriter, Stdout, Write};

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
