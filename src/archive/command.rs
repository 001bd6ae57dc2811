//! Dump commands: runs a program whose standard output becomes one stream of a backup, and decides
//! whether it succeeded. It owns the child process from spawn to reaping; it must never let the child
//! (or anything it started in its process group) outlive the backup, and never store a failed dump as
//! a good one.
//!
//! Standard output is read directly by the stream chunker (no temporary file, no FIFO). Standard error
//! is read by a thread that passes each line to the progress callback and keeps the last 4 KiB. The
//! child runs in its own process group, so a timeout (or a failure of the backup) ends the whole tree
//! it started: SIGTERM, then SIGKILL after a grace period. A process that leaves the group (`setsid`)
//! and keeps the pipes open is beyond reach: the backup then waits for it.

use std::io::Read;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::DumpRecord;

/// How much of a command's standard error is kept for the summary and error messages.
pub const STDERR_TAIL: usize = 4096;

/// How long a command gets between SIGTERM and SIGKILL when its timeout expires.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Longest stderr line passed to the progress callback at once; longer lines come in pieces, so a
/// command writing binary noise to stderr cannot make cairn buffer without bound.
const MAX_LINE: usize = 4096;

/// A program whose standard output is backed up as one file of the snapshot (a database dump).
///
/// The backup writes its snapshot only if the command exits with status 0 and writes at least
/// `min_bytes` to standard output; otherwise it fails with [`ErrorKind::CommandFailed`] and writes no
/// snapshot.
///
/// ```
/// use std::time::Duration;
/// use cairn::archive::DumpCommand;
/// let argv = DumpCommand::new(["pg_dump", "--format=custom", "app"]).timeout(Some(Duration::from_secs(3600)));
/// let shell = DumpCommand::shell("mysqldump --single-transaction app | gzip").min_bytes(1024);
/// assert_eq!(shell.argv, ["sh", "-c", "mysqldump --single-transaction app | gzip"]);
/// assert_eq!(argv.min_bytes, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpCommand {
    /// The program (looked up in `PATH` when it has no `/`) and its arguments.
    pub argv: Vec<String>,
    /// Stop the command (its whole process group) and fail the backup after this long.
    pub timeout: Option<Duration>,
    /// Fewer bytes than this on standard output fail the backup (default 1: an empty dump is a failure).
    pub min_bytes: u64,
    /// Variables added to the command's environment (which is otherwise cairn's, without the
    /// password variables: see [`crate::process`]).
    pub env: Vec<(String, String)>,
}

impl DumpCommand {
    /// A command run directly (no shell), with no timeout and `min_bytes` 1.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        DumpCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            timeout: None,
            min_bytes: 1,
            env: Vec::new(),
        }
    }

    /// A shell command line, run as `sh -c SCRIPT`.
    pub fn shell(script: &str) -> Self {
        Self::new(["sh", "-c", script])
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the minimum number of bytes of output.
    pub fn min_bytes(mut self, min_bytes: u64) -> Self {
        self.min_bytes = min_bytes;
        self
    }

    /// The command for messages: the shell script for `sh -c`, else the words joined by spaces
    /// (JSON-quoted when they hold spaces or quotes, so word boundaries stay visible).
    pub fn display(&self) -> String {
        if let [sh, c, script] = self.argv.as_slice() {
            if sh == "sh" && c == "-c" {
                return script.clone();
            }
        }
        let words: Vec<String> = self
            .argv
            .iter()
            .map(|w| {
                if w.is_empty() || w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                {
                    serde_json::Value::from(w.as_str()).to_string()
                } else {
                    w.clone()
                }
            })
            .collect();
        words.join(" ")
    }
}

/// Runs `command` and hands its standard output to `consume`, which returns how many bytes it stored.
/// `on_stderr` gets each line of standard error as it comes. Returns the record of a successful run.
///
/// # Errors
/// [`ErrorKind::CommandFailed`] when the command cannot start, exits with another status than 0, is
/// ended by a signal or its timeout, writes fewer than `min_bytes`, or reading its output fails; the
/// error of `consume` when storing fails (the command is then stopped).
pub(super) fn run_dump(
    command: &DumpCommand,
    path: &str,
    consume: impl FnOnce(&mut (dyn Read + Send)) -> Result<u64>,
    on_stderr: &(dyn Fn(&str) + Sync),
) -> Result<DumpRecord> {
    let started = Instant::now();
    let failure = |what: String, tail: &str| command_error(command, path, &what, tail);
    if command.argv.is_empty() {
        return Err(failure("the command is empty".into(), ""));
    }
    // Its stderr tail is stored in the snapshot: it must not see the password (`crate::process`).
    let mut spawn = crate::process::command(&command.argv[0]);
    spawn
        .args(&command.argv[1..])
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, on_signal) = crate::signals::spawn_group(&mut spawn)
        .map_err(|e| failure(format!("could not be started ({e})"), ""))?;
    let mut guard = ChildGuard::new(&mut child, on_signal);
    let (Some(mut stdout), Some(stderr)) = (guard.child.stdout.take(), guard.child.stderr.take())
    else {
        return Err(failure("has no output pipes".into(), ""));
    };
    let done = Done::default();
    let (done, pgid, timeout) = (&done, guard.pgid, command.timeout);
    let (consumed, status, timed_out, tail) = std::thread::scope(|s| {
        let tail = s.spawn(move || read_stderr(stderr, on_stderr));
        let watchdog = s.spawn(move || watch(pgid, timeout, done));
        let consumed = consume(&mut stdout);
        drop(stdout);
        if consumed.is_err() {
            // Storing failed: the output is not wanted any more.
            guard.kill(Signal::SIGKILL);
        }
        let status = guard.wait_and_end_group(done);
        let timed_out = watchdog.join().unwrap_or(false);
        let tail = tail.join().unwrap_or_default();
        (consumed, status, timed_out, tail)
    });
    let record = |bytes: u64, exit_code: i32| DumpRecord {
        path: path.to_string(),
        command: command.argv.clone(),
        exit_code,
        bytes,
        duration_secs: started.elapsed().as_secs_f64(),
        stderr: tail.clone(),
    };
    let bytes = match consumed {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::SourceIo => {
            return Err(failure(
                format!("its output could not be read ({e})"),
                &tail,
            ))
        }
        Err(e) => return Err(e.context(format!("storing the output of `{}`", command.display()))),
    };
    let status = status.map_err(|e| failure(format!("could not be waited for ({e})"), &tail))?;
    if timed_out {
        let limit = command.timeout.unwrap_or_default();
        return Err(failure(
            format!(
                "was stopped after its timeout of {} ({} bytes written)",
                humanize(limit),
                bytes
            ),
            &tail,
        ));
    }
    let Some(code) = status.code() else {
        let signal = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0);
        let name = Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.to_string());
        return Err(failure(
            format!("was killed by signal {name} after writing {bytes} bytes"),
            &tail,
        ));
    };
    if code != 0 {
        return Err(failure(
            format!("exited with status {code} after writing {bytes} bytes"),
            &tail,
        ));
    }
    if bytes < command.min_bytes {
        return Err(failure(
            format!(
                "exited with status 0 but wrote only {bytes} bytes (at least {} required)",
                command.min_bytes
            ),
            &tail,
        ));
    }
    Ok(record(bytes, code))
}

/// The error of a read stream (standard input) that gave fewer than `min_bytes`: the program
/// writing into the pipe failed, and cairn cannot see its exit status.
pub(super) fn too_short_input(path: &str, bytes: u64, min_bytes: u64) -> Error {
    Error::new(
        ErrorKind::CommandFailed,
        format!(
            "standard input for {path} gave only {bytes} bytes (at least {min_bytes} required by \
             --min-bytes); no snapshot was written. The program writing into the pipe probably \
             failed: look at its error output, fix it, then run the backup again. Prefer \
             --command \"pg_dump ...\" (cairn then sees its exit status), or `set -o pipefail`; \
             --min-bytes 0 accepts empty input"
        ),
    )
}

fn command_error(command: &DumpCommand, path: &str, what: &str, tail: &str) -> Error {
    let mut message = format!(
        "dump command `{}` for {path} {what}; no snapshot was written",
        command.display()
    );
    if tail.trim().is_empty() {
        message.push_str(" (the command wrote nothing to stderr). ");
    } else {
        message.push_str(". Its stderr ended with:\n");
        for line in tail.trim_end().lines() {
            message.push_str("  | ");
            message.push_str(line);
            message.push('\n');
        }
    }
    message.push_str(
        "Run the command by hand to see what is wrong, fix it, then run the backup again",
    );
    Error::new(ErrorKind::CommandFailed, message)
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.3}s")
    }
}

/// Owns the child until it is reaped; on any early exit (an error, a panic) it kills the process
/// group and reaps the child, so no dump outlives the backup.
struct ChildGuard<'c> {
    child: &'c mut Child,
    pgid: Pid,
    reaped: bool,
    // Ends the group if cairn is killed by a signal; dropped before the leader is reaped.
    on_signal: Option<crate::signals::GroupGuard>,
}

impl<'c> ChildGuard<'c> {
    fn new(child: &'c mut Child, on_signal: crate::signals::GroupGuard) -> Self {
        // `spawn_group` made the child the leader of a group named by its pid.
        let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        ChildGuard {
            child,
            pgid,
            reaped: false,
            on_signal: Some(on_signal),
        }
    }

    fn kill(&self, signal: Signal) {
        // Only while the leader is unreaped: its pid (the group's id) cannot name anything else then.
        if !self.reaped {
            let _ = killpg(self.pgid, signal);
        }
    }

    /// Waits until the leader exits, kills what is left of its group (a background process it
    /// started), stops the watchdog, then reaps the leader.
    fn wait_and_end_group(&mut self, done: &Done) -> std::io::Result<ExitStatus> {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::wait::{waitid, Id, WaitPidFlag};
            // WNOWAIT leaves the leader a zombie, so the group id stays ours while we kill the rest.
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(self.pgid), flags) {}
            self.kill(Signal::SIGKILL);
        }
        // Before reaping: once the leader is reaped its pid may name another process group.
        done.set();
        self.on_signal = None;
        let status = self.child.wait();
        self.reaped = status.is_ok();
        status
    }
}

impl Drop for ChildGuard<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill(Signal::SIGKILL);
            self.on_signal = None;
            let _ = self.child.wait();
        }
    }
}

/// Set once the command is over, so the watchdog stops waiting.
#[derive(Default)]
struct Done {
    over: Mutex<bool>,
    changed: Condvar,
}

impl Done {
    fn set(&self) {
        *self.over.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Waits up to `limit`; true when the command is over. The group may be signalled only while this
    /// lock is held and the command is not over (then its leader is not reaped yet).
    fn wait_then(&self, limit: Duration, act: impl FnOnce()) -> bool {
        let deadline = Instant::now() + limit;
        let mut over = self.over.lock().unwrap_or_else(|p| p.into_inner());
        while !*over {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                act();
                return false;
            }
            over = self
                .changed
                .wait_timeout(over, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// Ends the group when the timeout expires: SIGTERM, then SIGKILL after the grace. True if it did.
fn watch(pgid: Pid, timeout: Option<Duration>, done: &Done) -> bool {
    let Some(timeout) = timeout else {
        return false;
    };
    if done.wait_then(timeout, || {
        let _ = killpg(pgid, Signal::SIGTERM);
    }) {
        return false;
    }
    done.wait_then(KILL_GRACE, || {
        let _ = killpg(pgid, Signal::SIGKILL);
    });
    true
}

/// Passes stderr on line by line and returns its last `STDERR_TAIL` bytes (lossy UTF-8).
fn read_stderr(mut stderr: impl Read, on_line: &(dyn Fn(&str) + Sync)) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        on_line(text.trim_end_matches(['\n', '\r']));
        line.clear();
    };
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
        for &b in &buf[..n] {
            line.push(b);
            if b == b'\n' || line.len() >= MAX_LINE {
                emit(&mut line);
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
    let start = tail.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_end_and_splits_lines() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nlast line\n");
        let lines = Mutex::new(Vec::new());
        let tail = read_stderr(&input[..], &|l: &str| {
            lines.lock().unwrap().push(l.len());
        });
        assert_eq!(tail.len(), STDERR_TAIL);
        assert!(tail.ends_with("x\nlast line\n"));
        // 10,000 bytes without a newline come as pieces of at most MAX_LINE.
        assert_eq!(*lines.lock().unwrap(), vec![4096, 4096, 1808, 9]);
    }

    #[test]
    fn display_shows_word_boundaries() {
        assert_eq!(DumpCommand::shell("a | b").display(), "a | b");
        assert_eq!(
            DumpCommand::new(["pg_dump", "-d", "my db"]).display(),
            "pg_dump -d \"my db\""
        );
    }
}
