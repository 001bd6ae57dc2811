//! `cairn sync`: copy the repository's objects to (`--to`) or from (`--from`) another location.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use cairn::backend::Backend;
use cairn::ops::object_lock::LockReport;
use cairn::sync::{self, SyncOptions, SyncPlan, SyncProgress, SyncReport};

use super::{context, exit, output, progress, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn -r /srv/backup sync --to s3://offsite-bucket/cairn
  cairn -r /srv/backup sync --to sftp://backup@vault.example:22/srv/cairn -O key=/root/.ssh/id_ed25519
  cairn -r /srv/backup sync --to s3://offsite-bucket/cairn --delete --verify --json
  cairn -r /srv/restore-copy sync --from s3://offsite-bucket/cairn
  cairn -r /srv/backup sync --to s3://locked-bucket/cairn --lock-mode compliance --lock-period 30d \
      --keep-daily 7 --keep-monthly 12
  cairn -r /srv/recovered sync --from s3://offsite-bucket/cairn --as-of \"2026-01-23 14:30\"
No password is needed to copy: objects are copied as they are and checked against their names.
With --as-of, the source is read as it was at that time, from its bucket's object versions.
With --delete, packs are deleted only when the password proves the source pruned them (a pack the
source lost is kept on the target, with a warning and exit code 4).
With --lock-mode (a bucket created with Object Lock), every object written to the target is
locked, and after the copy the locks of what kept snapshots need are extended as the --keep-*
rules say (FORMAT.md §17); a target locked before is locked alike without the option.
Exit code 0 only when the target holds every object of the source.";

/// Objects in flight unless `--connections` says otherwise.
pub const DEFAULT_CONNECTIONS: u16 = 8;

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("direction").required(true))]
pub struct SyncArgs {
    /// Copy the repository (-r) to this location (a directory or a URL, like -r).
    #[arg(long, value_name = "TARGET", group = "direction")]
    pub to: Option<PathBuf>,
    /// Copy this location's repository into the repository location (-r); with --as-of, as it was
    /// at that time.
    #[arg(long, value_name = "SOURCE", group = "direction")]
    pub from: Option<PathBuf>,
    /// Also remove from the target what the source no longer has (snapshots first, packs last).
    #[arg(long)]
    pub delete: bool,
    /// Read back every object on the target, written or already present, and check it against its name.
    #[arg(long)]
    pub verify: bool,
    /// Show what would be copied and deleted; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Objects transferred at once (and requests in flight per side). On SFTP each request in flight
    /// is its own ssh connection; connections the server refuses while too many start at once (sshd's
    /// MaxStartups, 10 by default) are retried after a pause, so more than about 8 rarely helps there.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONNECTIONS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: u16,
    /// Option for the --to/--from location's storage, like -o for -r (repeatable).
    #[arg(short = 'O', long = "peer-option", value_name = "KEY=VALUE")]
    pub peer_options: Vec<String>,
    /// Lock the target (S3 Object Lock), from this copy on.
    #[command(flatten)]
    pub lock: super::retention::LockArgs,
    /// On a locked target: the keep policy its locks follow (without: every snapshot one lock period).
    #[command(flatten)]
    pub keep: cairn::ops::retention::KeepPolicy,
}

struct SyncBar(indicatif::ProgressBar);

impl SyncProgress for SyncBar {
    fn start(&self, bytes: u64) {
        self.0.set_length(bytes);
    }

    fn transferred(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

pub fn run(global: &GlobalArgs, args: &SyncArgs) -> Result<i32> {
    run_with_locks(global, args).map(|(code, _)| code)
}

/// [`run`], and the report of the lock extension when the target is locked (for `cairn run`'s
/// offsite step, which records it for `status`).
pub fn run_with_locks(global: &GlobalArgs, args: &SyncArgs) -> Result<(i32, Option<LockReport>)> {
    let connections = usize::from(args.connections);
    let (repo_path, _) = context::repo_location(global);
    let open = |path: &PathBuf,
                options: &[String],
                limit: Option<&str>,
                as_of: Option<DateTime<Utc>>|
     -> Result<Box<dyn Backend>> {
        let options = context::backend_options(options, limit, connections)?;
        let location = context::parse_location(path)?;
        context::open_backend(&location, &options, as_of)
    };
    // The upload limit applies to whichever side is written; `--as-of` to the side read.
    let limit = global.limit_upload.as_deref();
    let (source, target) = match (&args.to, &args.from) {
        (Some(to), _) => (
            open(&repo_path, &global.options, None, global.as_of)?,
            open(to, &args.peer_options, limit, None)?,
        ),
        (None, Some(from)) => (
            open(from, &args.peer_options, None, global.as_of)?,
            open(&repo_path, &global.options, limit, None)?,
        ),
        (None, None) => unreachable!("clap requires --to or --from"),
    };
    let mut plan = sync::plan(source.as_ref(), target.as_ref(), connections)
        .with_context(|| format!("cannot sync {} to {}", source.location(), target.location()))?;
    let source_lost_packs = args.delete
        && plan.deletes_packs()
        && protect_lost_packs(global, args, &repo_path, &mut plan)?;
    if args.dry_run {
        return print_plan(global, &plan, args.delete).map(|code| (code, None));
    }
    if let Some(settings) = args.lock.settings()? {
        if target.lock_settings()? != Some(settings) {
            target
                .enable_lock(&settings)
                .with_context(|| format!("cannot lock {}", target.location()))?;
        }
    }
    let options = SyncOptions {
        delete: args.delete,
        verify: args.verify,
        connections,
    };
    let bar = SyncBar(progress::byte_bar(progress::wanted(global), 0));
    let report = sync::execute(source.as_ref(), target.as_ref(), &plan, &options, &bar)?;
    bar.0.finish_and_clear();
    let locks = if report.complete && target.lock_settings()?.is_some() {
        Some(extend_target_locks(
            global,
            args,
            &target_location(args, &repo_path),
        )?)
    } else {
        None
    };
    print_report(
        global,
        &report,
        locks.as_ref(),
        source.location(),
        target.location(),
    )?;
    let locks_failed = locks.as_ref().is_some_and(|l| !l.failed.is_empty());
    let code = if !report.complete || locks_failed {
        exit::ERROR
    } else if source_lost_packs {
        // The source is damaged: a script must not read this sync as a clean one.
        exit::DAMAGED
    } else {
        exit::OK
    };
    Ok((code, locks))
}

fn target_location(args: &SyncArgs, repo_path: &std::path::Path) -> (PathBuf, bool) {
    match &args.to {
        Some(to) => (to.clone(), true),
        None => (repo_path.to_path_buf(), false),
    }
}

/// Extends the locks of the target (a copy of the same repository, so the same password opens
/// it) as `args.keep` says.
fn extend_target_locks(
    global: &GlobalArgs,
    args: &SyncArgs,
    (location, peer): &(PathBuf, bool),
) -> Result<LockReport> {
    let options = if *peer {
        &args.peer_options
    } else {
        &global.options
    };
    let options = context::backend_options(options, None, usize::from(args.connections))?;
    let backend = cairn::backend::open(&context::parse_location(location)?, &options)?;
    let password = context::password(global, false)
        .context("extending the target's locks needs the repository password")?;
    // The source's cache: after a complete sync the copy holds the same index files (and
    // perhaps extras), so the index cache barely changes, and tree blobs are verified by id
    // whichever copy they came from; the walk then reads only trees new since the last sync.
    let repo = cairn::Repository::open(backend, &password, &context::cache_root(global))?
        .into_indexed()?;
    let group_by = cairn::ops::forget::GroupBy::default();
    super::retention::extend(&repo, &args.keep, group_by, usize::from(args.connections))
}

/// Keeps the target's copy of every pack the source lost (its index still names it): only packs
/// the source pruned are deleted. Without the password nothing proves that, so no pack is deleted.
/// True when the source lost packs.
fn protect_lost_packs(
    global: &GlobalArgs,
    args: &SyncArgs,
    repo_path: &std::path::Path,
    plan: &mut SyncPlan,
) -> Result<bool> {
    let (source, options) = match &args.to {
        Some(_) => (repo_path.to_path_buf(), &global.options),
        None => (args.from.clone().unwrap_or_default(), &args.peer_options),
    };
    let needed = match context::password(global, false) {
        Ok(password) => {
            let options = context::backend_options(options, None, usize::from(args.connections))?;
            let location = context::parse_location(&source)?;
            let backend = context::open_backend(&location, &options, global.as_of)?;
            let repo = cairn::Repository::open(backend, &password, &context::cache_root(global))?;
            Some(sync::packs_the_source_indexes(repo)?)
        }
        Err(_) => None,
    };
    plan.protect_packs(needed.as_ref());
    if let Some(first) = plan.protected.first() {
        let why = if needed.is_some() {
            "the source's index still names them: the source has lost them, and the target may hold their last copy (run `cairn check` on the source; copy them back with `cairn sync --from`)"
        } else {
            "without the repository password cairn cannot tell packs the source pruned from packs it lost: give the password to delete them"
        };
        errln!(
            "warning: {} pack(s) the source lacks were kept on the target (first: {}): {why}",
            plan.protected.len(),
            first.name
        );
    }
    Ok(needed.is_some() && !plan.protected.is_empty())
}

fn print_plan(global: &GlobalArgs, plan: &SyncPlan, delete: bool) -> Result<i32> {
    let delete_list = if delete { &plan.extra[..] } else { &[] };
    if global.json {
        output::print_json(&serde_json::json!({
            "dry_run": true,
            "copy": plan.copy,
            "replace": plan.replace,
            "present": plan.present.len(),
            "delete": delete_list,
            "extra_kept": if delete { 0 } else { plan.extra.len() },
            "protected": plan.protected,
            "bytes_to_copy": plan.bytes_to_copy(),
        }))?;
        return Ok(exit::OK);
    }
    for o in &plan.copy {
        outln!(
            "copy    {} {} ({})",
            o.kind.label(),
            o.name,
            output::bytes(o.size)
        );
    }
    for o in &plan.replace {
        outln!(
            "replace {} {} ({})",
            o.kind.label(),
            o.name,
            output::bytes(o.size)
        );
    }
    for o in delete_list {
        outln!(
            "delete  {} {} ({})",
            o.kind.label(),
            o.name,
            output::bytes(o.size)
        );
    }
    if !global.quiet {
        errln!(
            "dry run: would copy {} objects ({}), leave {} in place, delete {}",
            plan.copy.len() + plan.replace.len(),
            output::bytes(plan.bytes_to_copy()),
            plan.present.len(),
            delete_list.len()
        );
    }
    Ok(exit::OK)
}

/// The copy's report, and on a locked target the extension's (`locks`).
fn print_report(
    global: &GlobalArgs,
    report: &SyncReport,
    locks: Option<&LockReport>,
    from: String,
    to: String,
) -> Result<()> {
    if global.json {
        let mut value = serde_json::to_value(report)?;
        value["source"] = from.into();
        value["target"] = to.into();
        if let Some(locks) = locks {
            value["locks"] = super::retention::report_json(locks);
        }
        return output::print_json(&value);
    }
    if let Some(locks) = locks {
        super::retention::print_report(global, locks, true)?;
    }
    for e in &report.errors {
        errln!("error: {e}");
    }
    if global.quiet {
        return Ok(());
    }
    let secs = report.duration.as_secs_f64().max(1e-3);
    errln!(
        "{}: copied {} objects ({}, {}/s), {} replaced, {} already present, {} deleted{}{}",
        if report.complete {
            "complete"
        } else {
            "INCOMPLETE"
        },
        report.copied.objects,
        output::bytes(report.copied.bytes),
        output::bytes((report.copied.bytes as f64 / secs) as u64),
        report.replaced.objects,
        report.skipped.objects,
        report.deleted.objects,
        if report.verified.objects > 0 {
            format!(", {} verified", report.verified.objects)
        } else {
            String::new()
        },
        if report.failed.objects > 0 {
            format!(", {} FAILED", report.failed.objects)
        } else {
            String::new()
        },
    );
    if report.temporaries_removed > 0 {
        errln!(
            "removed {} stale temporaries that interrupted writes left in the target's tmp/",
            report.temporaries_removed
        );
    }
    if report.locked.objects > 0 && !global.quiet && !global.json {
        errln!(
            "{} pack(s) ({}) the source no longer has stay on the target until their locks expire; a later sync --delete removes them",
            report.locked.objects,
            output::bytes(report.locked.bytes)
        );
    }
    if report.extra.objects > 0 {
        errln!(
            "note: the target has {} objects the source lacks; --delete removes them",
            report.extra.objects
        );
    }
    Ok(())
}
