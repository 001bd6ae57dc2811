//! Progress bars on a terminal (indicatif), silent otherwise; the library reports through callbacks.
//! With `--json`, the bars are not drawn but said as JSON status lines on stderr (restic's
//! `message_type: status`), one a second (`CAIRN_PROGRESS_FPS` sets the rate), so stdout keeps
//! holding one JSON document: the result.
//! Retries of remote requests are said too: in the bar's message while a bar is drawn, else (and with
//! `-v`) as a line each on stderr; never under `--quiet`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cairn::archive::{BackupProgress, ExcludeMatcher};
use cairn::backend::{OnRetry, RetryNotice};
use cairn::format::snapshot::SourceError;
use cairn::ops::prune::{PruneProgress, PruneStep};
use cairn::restore::RestoreProgress;

/// Whether bars should be drawn.
pub fn wanted(global: &super::GlobalArgs) -> bool {
    !global.quiet && !global.json && std::io::stderr().is_terminal()
}

/// How retry notices are said: set once from the global options of the command line.
#[derive(Clone, Copy, Default)]
struct Telling {
    verbose: bool,
    quiet: bool,
}

static TELLING: OnceLock<Telling> = OnceLock::new();

/// With `--json` (and not `--quiet`): the command named in status lines, and how often they come.
struct JsonStatus {
    action: String,
    every: Duration,
}

static JSON_STATUS: OnceLock<JsonStatus> = OnceLock::new();

/// The bar drawn last, which retry notices go into.
static DRAWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Sets how retries are said, from the global options (the first call wins).
pub fn set_telling(global: &super::GlobalArgs, action: &str) {
    let _ = TELLING.set(Telling {
        verbose: global.verbose > 0,
        quiet: global.quiet,
    });
    if global.json && !global.quiet {
        let fps = std::env::var("CAIRN_PROGRESS_FPS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f > 0.0)
            .unwrap_or(1.0)
            .min(60.0);
        let _ = JSON_STATUS.set(JsonStatus {
            action: action.to_string(),
            every: Duration::from_secs_f64(1.0 / fps),
        });
    }
}

/// Says a hidden bar's state as a JSON line on stderr at the `--json` rate, until every handle of
/// the bar is dropped or it is finished. Nothing without `--json`.
fn json_status(bar: &ProgressBar, unit: &'static str) {
    let Some(status) = JSON_STATUS.get() else {
        return;
    };
    let weak = bar.downgrade();
    std::thread::spawn(move || loop {
        std::thread::sleep(status.every);
        let Some(bar) = weak.upgrade() else {
            return;
        };
        if bar.is_finished() {
            return;
        }
        errln!("{}", status_line(&status.action, &bar, unit));
    });
}

/// One status line: `{"message_type":"status","action":"backup","seconds_elapsed":..,...}`.
fn status_line(action: &str, bar: &ProgressBar, unit: &str) -> String {
    let done = bar.position();
    let mut line = serde_json::json!({
        "message_type": "status",
        "action": action,
        "seconds_elapsed": bar.elapsed().as_secs_f64(),
        "unit": unit,
        "done": done,
    });
    if let Some(total) = bar.length().filter(|t| *t > 0) {
        line["total"] = total.into();
        line["percent_done"] = (done as f64 / total as f64).min(1.0).into();
    }
    let message = bar.message();
    if !message.is_empty() {
        line["message"] = message.into();
    }
    line.to_string()
}

fn drawn(bar: &ProgressBar) {
    if let Ok(mut drawn) = DRAWN.lock() {
        *drawn = Some(bar.clone());
    }
}

/// The callback that says each retry of a remote request.
pub fn on_retry() -> OnRetry {
    OnRetry(Arc::new(|notice: &RetryNotice<'_>| {
        let telling = TELLING.get().copied().unwrap_or_default();
        if telling.quiet {
            return;
        }
        let line = format!(
            "{}; retry {} of {} in {:.1} s",
            notice.message,
            notice.retry,
            notice.retries,
            notice.delay.as_secs_f64()
        );
        let bar = DRAWN
            .lock()
            .ok()
            .and_then(|d| d.clone())
            .filter(|b| !b.is_hidden() && !b.is_finished());
        match bar {
            Some(bar) if !telling.verbose => bar.set_message(line),
            Some(bar) => bar.suspend(|| errln!("warning: {line}")),
            None => errln!("warning: {line}"),
        }
    }))
}

/// A byte bar with throughput and ETA, hidden when not wanted.
pub fn byte_bar(show: bool, total: u64) -> ProgressBar {
    if !show {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        json_status(&bar, "bytes");
        return bar;
    }
    let bar = ProgressBar::new(total);
    drawn(&bar);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A bar counting items (`what`: e.g. "packs"), hidden when not wanted; set its length when known.
pub fn count_bar(show: bool, what: &'static str) -> ProgressBar {
    if !show {
        let bar = ProgressBar::hidden();
        // The prune bar's unit is its message, relabelled at each step.
        json_status(&bar, if what.starts_with('{') { "items" } else { what });
        return bar;
    }
    let bar = ProgressBar::new(0);
    drawn(&bar);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Backup progress: bytes against a total counted by a background scan, files in the message.
pub struct BackupBar {
    pub bar: ProgressBar,
    files: std::sync::atomic::AtomicU64,
    verbose: bool,
    quiet: bool,
    dry_run: bool,
}

impl BackupBar {
    pub fn new(show: bool, verbose: bool, quiet: bool) -> Self {
        BackupBar {
            bar: byte_bar(show, 0),
            files: Default::default(),
            verbose,
            quiet,
            dry_run: false,
        }
    }

    /// A dry run's bar: with -v it lists the files that would be stored, on stdout.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Counts files and bytes below `paths` in a background thread to give the bar a length.
    pub fn scan(&self, paths: Vec<PathBuf>, excludes: ExcludeMatcher) {
        if self.bar.is_hidden() && JSON_STATUS.get().is_none() {
            return;
        }
        let bar = self.bar.clone();
        std::thread::spawn(move || {
            let mut total = 0u64;
            let mut stack = paths;
            while let Some(p) = stack.pop() {
                let Ok(meta) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if excludes.is_excluded(&p, meta.is_dir()) {
                    continue;
                }
                if meta.is_dir() {
                    if let Ok(rd) = std::fs::read_dir(&p) {
                        stack.extend(rd.flatten().map(|e| e.path()));
                    }
                } else if meta.is_file() {
                    total += meta.len();
                    bar.set_length(total);
                }
            }
        });
    }
}

impl BackupProgress for BackupBar {
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn entry(&self, path: &Path) {
        let n = self
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n % 64 == 0 {
            self.bar.set_message(format!("{n} entries"));
        }
        if self.verbose && !self.dry_run {
            self.bar.suspend(|| errln!("{}", path.display()));
        }
    }

    fn file_read(&self, path: &Path, new: bool) {
        // A dry run's purpose: which files a backup would read and store.
        if self.dry_run && self.verbose {
            let what = if new { "new" } else { "changed" };
            self.bar.suspend(|| outln!("{what} {}", path.display()));
        }
    }

    fn excluded(&self, path: &Path, why: &str) {
        if self.verbose {
            self.bar
                .suspend(|| errln!("excluded {} ({why})", path.display()));
        }
    }

    fn warning(&self, error: &SourceError) {
        self.bar
            .suspend(|| errln!("warning: {}: {}", error.path, error.message));
    }

    fn command_stderr(&self, path: &str, line: &str) {
        // Passed on as the command wrote it, prefixed with whose it is; the tail is kept in the
        // summary (and in the error when the command fails) even under --quiet.
        if !self.quiet {
            self.bar.suspend(|| errln!("[{path}] {line}"));
        }
    }
}

/// Restore progress.
pub struct RestoreBar {
    pub bar: ProgressBar,
}

impl RestoreProgress for RestoreBar {
    fn planned(&self, _files: u64, bytes: u64) {
        self.bar.inc_length(bytes);
    }

    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn warning(&self, message: &str) {
        self.bar.suspend(|| errln!("warning: {message}"));
    }
}

/// Prune progress: one count bar, relabelled at each step.
pub struct PruneBar {
    bar: ProgressBar,
}

impl PruneBar {
    pub fn new(show: bool) -> Self {
        PruneBar {
            bar: count_bar(show, "{msg}"),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl PruneProgress for PruneBar {
    fn step(&self, step: PruneStep, total: u64) {
        let what = match step {
            PruneStep::IndexFiles => "index files read",
            PruneStep::Snapshots => "snapshots walked",
            PruneStep::Repack => "packs repacked",
            PruneStep::Delete => "packs deleted",
        };
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.bar.set_message(what);
    }

    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
}
