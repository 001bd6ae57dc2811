//! `cairn retention`: the Object Lock of a repository on S3 (FORMAT.md §17): `show` reads until
//! when each needed object is locked, `extend` makes the locks follow the keep policy. Also the
//! `--lock-*` options `init` and `sync` take.

use anyhow::Result;

use cairn::backend::{LockMode, LockSettings};
use cairn::ops::forget::GroupBy;
use cairn::ops::object_lock::{self, LockReport};
use cairn::ops::retention::{system_local, KeepPolicy};
use cairn::repo::IndexedRepository;

use super::{context, exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn -r s3:backups/host retention extend --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  cairn -r s3:backups/host retention show --json

Every object a kept snapshot needs stays locked until the policy would let that snapshot go (a
daily one for 7 days, a monthly one for 12 months), plus the location's margin; without --keep-*
every snapshot counts as kept for one lock period from now. Locks are only ever extended.";

/// How objects written to a new location are locked (S3 Object Lock; the bucket must have been
/// created with Object Lock enabled).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct LockArgs {
    /// Lock every object written: governance (users with s3:BypassGovernanceRetention can still
    /// remove locks) or compliance (nobody can before they expire).
    #[arg(long, value_name = "MODE", value_parser = ["governance", "compliance"], requires = "lock_period")]
    pub lock_mode: Option<String>,
    /// How long each object stays locked at least from its write (e.g. 30d).
    #[arg(long, value_name = "SPAN", requires = "lock_mode", value_parser = cairn::units::parse_time_span)]
    pub lock_period: Option<chrono::Duration>,
    /// Added to the date the keep policy needs a snapshot until, when locks are extended (default 7d).
    #[arg(long, value_name = "SPAN", requires = "lock_mode", value_parser = cairn::units::parse_time_span)]
    pub lock_margin: Option<chrono::Duration>,
}

impl LockArgs {
    /// The settings asked for, if any.
    pub fn settings(&self) -> Result<Option<LockSettings>> {
        let (Some(mode), Some(period)) = (&self.lock_mode, self.lock_period) else {
            return Ok(None);
        };
        let margin = self
            .lock_margin
            .unwrap_or_else(|| chrono::Duration::days(7));
        Ok(Some(LockSettings::new(
            LockMode::parse(mode)?,
            period,
            margin,
        )?))
    }
}

#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    #[command(subcommand)]
    pub command: RetentionCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCommand {
    /// Extend the locks of every object a kept snapshot needs, as the keep policy says.
    Extend(PolicyArgs),
    /// Read the locks of every object a kept snapshot needs; exit 1 when one ends before it is
    /// needed.
    Show(PolicyArgs),
}

/// The keep policy the locks follow, and how many requests go out at once.
#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub keep: KeepPolicy,
    /// Group snapshots by these fields before applying the rules (as forget takes it).
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: String,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub connections: usize,
}

pub fn run(global: &GlobalArgs, args: &RetentionArgs) -> Result<i32> {
    let repo = context::open_repository(global)?.into_indexed()?;
    let (a, extending) = match &args.command {
        RetentionCommand::Extend(a) => (a, true),
        RetentionCommand::Show(a) => (a, false),
    };
    let plan = object_lock::plan(
        &repo,
        &a.keep,
        GroupBy::parse(&a.group_by)?,
        &system_local,
        chrono::Utc::now(),
    )?;
    let report = if extending {
        object_lock::extend(&repo, &plan, a.connections)?
    } else {
        object_lock::inspect(&repo, &plan, a.connections)?
    };
    print_report(global, &report, extending)?;
    Ok(if report.failed.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

/// Plans and extends the locks of `repo`'s location by `keep`.
pub fn extend(
    repo: &IndexedRepository,
    keep: &KeepPolicy,
    group_by: GroupBy,
    connections: usize,
) -> Result<LockReport> {
    let plan = object_lock::plan(repo, keep, group_by, &system_local, chrono::Utc::now())?;
    Ok(object_lock::extend(repo, &plan, connections)?)
}

pub fn print_report(global: &GlobalArgs, report: &LockReport, extending: bool) -> Result<()> {
    if global.json {
        return output::print_json(&report_json(report));
    }
    if !global.quiet {
        if report.ledger_discarded {
            errln!("warning: a lock was shorter than the local ledger said: it was discarded and every lock read again");
        }
        errln!(
            "locks: {} object(s) checked ({} vouched for by the local ledger), {} extended, {} request(s); earliest expiry {}",
            report.checked,
            report.from_ledger,
            report.extended,
            report.requests,
            report
                .earliest_expiry
                .map_or_else(|| "none".to_string(), |t| t.to_rfc3339())
        );
    }
    let failed_word = if extending {
        "cannot extend"
    } else {
        "lock too short"
    };
    for f in &report.failed {
        errln!("error: {failed_word}: {f}");
    }
    Ok(())
}

pub fn report_json(report: &LockReport) -> serde_json::Value {
    serde_json::json!({
        "checked": report.checked,
        "extended": report.extended,
        "requests": report.requests,
        "from_ledger": report.from_ledger,
        "ledger_discarded": report.ledger_discarded,
        "covered": report.covered,
        "failed": report.failed,
        "earliest_expiry": report.earliest_expiry.map(|t| t.to_rfc3339()),
    })
}
