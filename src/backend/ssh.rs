//! The `ssh` control masters behind OpenDAL's SFTP service: cairn adopts them and stops any still running
//! once its last SFTP backend is gone. It never touches an ssh process it did not start.
//!
//! Why: the `openssh` crate starts each connection as `ssh -M -f -o ControlPersist=yes`, which forks into
//! the background and lives until someone sends it `-O exit`. Only the crate's `Session` destructor does,
//! and that destructor runs inside a task of the SFTP client; a connection abandoned while it is being set
//! up (OpenDAL's 10 s pool timeout, a request timeout) has no `Session` yet, so its master outlives cairn.
//! On Linux cairn becomes a child subreaper, so daemonized masters are re-parented to it rather than to
//! init: they are then known to be cairn's own, and are stopped when the last SFTP backend is dropped.
//!
//! A cairn killed by SIGINT, SIGTERM or SIGHUP runs no destructor, so once an SFTP backend exists the
//! process-wide signal watcher ([`crate::signals`]) stops the masters before the signal ends cairn. SIGKILL
//! cannot be caught: its masters are init's and live on (`ssh -O exit` on their control socket stops them).

use std::sync::Mutex;

/// SFTP backends alive in this process.
static LIVE: Mutex<usize> = Mutex::new(0);

/// Whether cairn is ending on a signal: from then on no failed connection is tried again, or a retry
/// would start a master after the masters were stopped.
pub fn stopping() -> bool {
    crate::signals::stopping()
}

/// Held by each SFTP backend; dropped after its operator and runtime, when its connections are closed.
pub(super) struct MasterGuard(());

impl MasterGuard {
    pub(super) fn adopt() -> Self {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if *live == 0 {
            become_subreaper();
        }
        watch_signals();
        *live += 1;
        MasterGuard(())
    }
}

impl Drop for MasterGuard {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            stop_masters();
        }
    }
}

#[cfg(target_os = "linux")]
fn become_subreaper() {
    // Best effort: without it, masters that leak go back to being init's, as before.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

#[cfg(not(target_os = "linux"))]
fn become_subreaper() {}

/// Has the process-wide signal watcher stop the masters when cairn is told to end by a signal.
#[cfg(target_os = "linux")]
fn watch_signals() {
    crate::signals::on_termination(stop_masters_until_quiet);
}

/// Stops masters until none shows up for a while: requests failing on the stopped connections make
/// the pool start new ones, and a master being started is found only once it exists.
#[cfg(target_os = "linux")]
fn stop_masters_until_quiet() {
    let started = std::time::Instant::now();
    let mut quiet = 0;
    while quiet < 5 && started.elapsed() < std::time::Duration::from_secs(3) {
        quiet = if stop_masters() == 0 { quiet + 1 } else { 0 };
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(not(target_os = "linux"))]
fn watch_signals() {}

/// Stops the `ssh -M` processes below cairn (adopted masters, and masters still being started), reaps
/// those that are its children and removes their control directories. Returns how many it stopped.
#[cfg(target_os = "linux")]
fn stop_masters() -> usize {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let mut stopped = 0;
    for (pid, args) in ssh_descendants(nix::unistd::getpid().as_raw()) {
        let pid = Pid::from_raw(pid);
        let master = args.iter().any(|a| a == "-M");
        if master {
            let _ = kill(pid, Signal::SIGTERM);
            stopped += 1;
        }
        // Reap it (and any master that already exited after its `-O exit`), waiting briefly for the TERM.
        // A grandchild is not ours to reap: waitpid fails at once for it.
        for _ in 0..50 {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if master => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
        let control = args
            .iter()
            .position(|a| a == "-S")
            .and_then(|i| args.get(i + 1))
            .map(std::path::PathBuf::from);
        if let Some(dir) = control.as_deref().and_then(std::path::Path::parent) {
            if master
                && dir
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".ssh-connection"))
            {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    stopped
}

#[cfg(not(target_os = "linux"))]
fn stop_masters() -> usize {
    0
}

/// `(pid, argv)` of every `ssh` process descending from `root`. Descendants, not only children: a master
/// started with `-f` forks after authenticating, and until the `ssh` that forked it exits, its parent is
/// that `ssh`, not cairn.
#[cfg(target_os = "linux")]
fn ssh_descendants(root: i32) -> Vec<(i32, Vec<String>)> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so split after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let Some(ppid) = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        processes.push((pid, ppid, head.ends_with("(ssh")));
    }
    let mut below = std::collections::HashSet::from([root]);
    // Parents may be listed after their children: repeat until no process joins.
    loop {
        let before = below.len();
        for (pid, ppid, _) in &processes {
            if below.contains(ppid) {
                below.insert(*pid);
            }
        }
        if below.len() == before {
            break;
        }
    }
    let mut out = Vec::new();
    for (pid, _, is_ssh) in processes {
        if pid == root || !is_ssh || !below.contains(&pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, args));
    }
    out
}
