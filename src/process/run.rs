//! Running side commands to completion (the plan's hooks, drill checks, dump verify commands):
//! argv without a shell, an environment of our choosing, a timeout that ends the command's whole process group,
//! and the tail of its output kept for reports.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Bytes of output kept for a report.
pub const OUTPUT_TAIL: usize = 4096;
/// Time a command gets between SIGTERM and SIGKILL at its timeout.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What one command did.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CommandRun {
    /// The argv that ran.
    pub command: Vec<String>,
    /// Its exit code, or `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Whether cairn ended it at its timeout.
    pub timed_out: bool,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// The last [`OUTPUT_TAIL`] bytes of its standard output and error, interleaved, lossy UTF-8.
    pub output_tail: String,
}

impl CommandRun {
    /// It exited 0 in time.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// The last `n` lines of its output, oldest first.
    pub fn last_lines(&self, n: usize) -> Vec<&str> {
        let lines: Vec<&str> = self.output_tail.lines().collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// One line saying how it ended: `exit code 3`, `killed by signal 9`, `timed out after 10s`.
    pub fn describe_end(&self) -> String {
        if self.timed_out {
            return format!("timed out after {:.0}s", self.duration_secs);
        }
        match (self.exit_code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "ended in an unknown way".into(),
        }
    }
}

/// Replaces each `{name}` in `argv` with its value; other braces stay as they are.
pub fn substitute(argv: &[String], values: &[(&str, &str)]) -> Vec<String> {
    argv.iter()
        .map(|a| {
            values.iter().fold(a.clone(), |acc, (name, value)| {
                acc.replace(&format!("{{{name}}}"), value)
            })
        })
        .collect()
}

/// Runs `argv` with `env` added to cairn's environment (minus the password variables, see
/// [`crate::process`]), standard
/// input from /dev/null, and ends its process group after `timeout`.
///
/// # Errors
/// `InvalidInput` when the program cannot be started (not found, not executable).
pub fn run_command(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<CommandRun> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::invalid_input("an empty command"))?;
    let started = Instant::now();
    // A hook has no business with the repository password: `command` leaves it out.
    let mut spawn = crate::process::command(program);
    spawn
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, on_signal) = crate::signals::spawn_group(&mut spawn).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("cannot start {program:?}: {e} (is it installed and on PATH?)"),
        )
    })?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut stream| {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                if t.len() > 2 * OUTPUT_TAIL {
                    let cut = t.len() - OUTPUT_TAIL;
                    t.drain(..cut);
                }
            }
        })
    })
    .collect();
    let group = Pid::from_raw(child.id() as i32);
    let mut timed_out = false;
    let mut term_sent: Option<Instant> = None;
    loop {
        // WNOWAIT leaves the leader a zombie, so the group id stays ours until it is reaped below.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(group), flags) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("cannot wait for {program:?}: {e}"),
                ))
            }
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            match term_sent {
                None => {
                    let _ = killpg(group, Signal::SIGTERM);
                    term_sent = Some(Instant::now());
                }
                Some(t) if t.elapsed() >= KILL_GRACE => {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if timed_out {
        // Whatever the command left behind in its group goes too.
        let _ = killpg(group, Signal::SIGKILL);
    }
    drop(on_signal);
    let status = child.wait().map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("cannot wait for {program:?}: {e}"),
        )
    })?;
    for r in readers {
        let _ = r.join();
    }
    let bytes = std::mem::take(&mut *tail.lock().unwrap_or_else(|p| p.into_inner()));
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    Ok(CommandRun {
        command: argv.to_vec(),
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        duration_secs: started.elapsed().as_secs_f64(),
        output_tail: String::from_utf8_lossy(&bytes[start..]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn output_and_exit_code_are_kept() {
        let run = run_command(
            &sh("echo out; echo err >&2; echo \"$HOOK_VAR\"; exit 3"),
            &[("HOOK_VAR".into(), "given".into())],
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(run.exit_code, Some(3));
        assert!(!run.passed());
        for word in ["out", "err", "given"] {
            assert!(run.output_tail.contains(word), "{}", run.output_tail);
        }
        assert_eq!(run.describe_end(), "exit code 3");
    }

    #[test]
    fn only_the_tail_of_long_output_is_kept() {
        let run = run_command(&sh("seq 1 100000"), &[], Duration::from_secs(30)).unwrap();
        assert!(run.passed());
        assert!(run.output_tail.len() <= OUTPUT_TAIL);
        assert!(run.output_tail.ends_with("100000\n"));
        assert_eq!(run.last_lines(2), ["99999", "100000"]);
    }

    #[test]
    fn a_timeout_ends_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let run = run_command(&sh(&script), &[], Duration::from_millis(500)).unwrap();
        assert!(run.timed_out && !run.passed());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the group: it is gone (or a zombie of init, never running).
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false);
        assert!(!alive, "sleep {pid} survived the timeout");
    }

    #[test]
    fn a_missing_program_is_invalid_input() {
        let e = run_command(
            &["no-such-program-cairn".into()],
            &[],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("no-such-program-cairn"));
    }

    #[test]
    fn placeholders_are_replaced() {
        let argv = vec![
            "pg_restore".into(),
            "--list".into(),
            "{file}".into(),
            "{x}".into(),
        ];
        assert_eq!(
            substitute(&argv, &[("file", "/tmp/a.dump")]),
            vec!["pg_restore", "--list", "/tmp/a.dump", "{x}"]
        );
    }
}
