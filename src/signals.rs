//! The one watcher of the signals that end cairn (SIGINT, SIGTERM, SIGHUP). A signal's default action
//! ends cairn without running a destructor, so what must not outlive cairn registers here: the ssh
//! masters of SFTP backends (a cleanup function), and the process groups of dump commands, hooks and
//! drill checks (which run in groups of their own, so a Ctrl-C on the terminal does not reach them).
//! On a signal the watcher ends those groups and runs the cleanups, then lets the signal end cairn
//! as it would have. SIGKILL cannot be caught.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Set once a signal told cairn to end.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Process groups to end on a signal, by group id. A group is removed before its leader is reaped,
/// and the watcher signals them with this lock held, so it never signals a reused id.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Functions run on a signal, after the groups are told to end.
static CLEANUPS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
/// How long groups get between SIGTERM and SIGKILL when cairn is ending.
const GROUP_GRACE: Duration = Duration::from_secs(2);

/// Whether cairn is ending on a signal: nothing new (a retry, a connection) should start.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Runs `cleanup` when a terminating signal arrives (once per function, however often registered).
pub fn on_termination(cleanup: fn()) {
    let mut list = CLEANUPS.lock().unwrap_or_else(|p| p.into_inner());
    if !list.iter().any(|f| std::ptr::fn_addr_eq(*f, cleanup)) {
        list.push(cleanup);
    }
    drop(list);
    watch();
}

/// Keeps the process group `pgid` on the list of groups ended on a signal, until dropped. Drop it
/// before reaping the group's leader.
pub struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = groups.iter().position(|g| *g == self.0) {
            groups.swap_remove(i);
        }
    }
}

/// Spawns `command` as the leader of a process group of its own, ended if a terminating signal
/// arrives while the guard lives. The watcher runs before the spawn, and the group is listed under
/// the lock the watcher takes, so a signal arriving at any moment either finds the group listed or
/// comes before the child exists. Drop the guard before reaping the child.
///
/// # Errors
/// Whatever `spawn` returns.
pub fn spawn_group(command: &mut Command) -> std::io::Result<(Child, GroupGuard)> {
    watch();
    let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    let child = command.process_group(0).spawn()?;
    let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    groups.push(pgid);
    Ok((child, GroupGuard(pgid)))
}

/// Starts the watcher thread, once per process.
fn watch() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static WATCHING: Once = Once::new();
    WATCHING.call_once(|| {
        // Best effort: without the thread a killed cairn leaves its children, as any program would.
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("cairn-signals".into())
            .spawn(move || {
                let Some(signal) = signals.forever().next() else {
                    return;
                };
                STOPPING.store(true, Ordering::SeqCst);
                let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
                for &g in groups.iter() {
                    let _ = killpg(Pid::from_raw(g), Signal::SIGTERM);
                }
                let cleanups = CLEANUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
                for cleanup in cleanups {
                    cleanup();
                }
                let started = Instant::now();
                while groups.iter().any(|&g| alive(g)) && started.elapsed() < GROUP_GRACE {
                    std::thread::sleep(Duration::from_millis(20));
                }
                for &g in groups.iter() {
                    let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
                }
                // End by the same signal (default action), so the exit status says what happened.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            });
    });
}

/// Whether any process of group `g` still runs. Zombies do not count: the leader stays one until
/// the thread that started it reaps it, which waits for this watcher.
fn alive(g: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(Pid::from_raw(g), None).is_ok();
    };
    entries.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so from the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let (state, pgrp) = (fields.next(), fields.nth(1));
        state != Some("Z") && pgrp.and_then(|p| p.parse::<i32>().ok()) == Some(g)
    })
}
