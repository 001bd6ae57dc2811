//! `cairn drill`: a restore drill with the plan's checks and targets, its report, and its record
//! in the plan's state file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;

use cairn::drill::pitr::{pitr_drill, PitrDrillOptions, PitrDrillReport};
use cairn::drill::{self, DrillCheck, DrillReport, Verdict};
use cairn::plan::{Attempt, Outcome, Plan, SnapshotChoice, State};
use cairn::units::{describe_span, parse_span};

use super::planned::{global_for, state_path, PlanFileArg};
use super::{context, exit_code_for, output, progress, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn drill                                  # the latest snapshot, checks and targets from the plan
  cairn drill --random-within 30d --json > drill-report.json
  cairn drill 1a2b3c4d --scratch /var/tmp/drills --keep
  cairn drill --host db1 --path /srv/app --random-within 7d   # among one source's snapshots
  cairn drill --check 'sqlite3 {root}/srv/app/app.db \"PRAGMA integrity_check\"' --max-rto 1h
  cairn drill --pitr '2026-12-07 14:29:59' --check 'psql \"{conninfo}\" -c \"SELECT count(*) FROM orders\"'
Exit codes: 0 pass, 1 RTO or RPO target missed, 2 a file differs from the snapshot, a check
failed, or repository data is damaged (other cairn errors keep their usual codes).";

#[derive(clap::Args, Debug, Clone)]
pub struct DrillArgs {
    /// The snapshot to drill: `latest` (default) or an id.
    #[arg(value_name = "SNAP", conflicts_with = "random_within")]
    pub snapshot: Option<String>,
    /// Drill a random snapshot among those newer than SPAN (e.g. 30d).
    #[arg(long, value_name = "SPAN")]
    pub random_within: Option<String>,
    /// Directory in which the scratch restore is made (default: the plan's, else the temp dir).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Keep the restored tree afterwards (its path is in the report).
    #[arg(long)]
    pub keep: bool,
    /// A check to run on the restored tree, through `sh -c`; `{root}` is the restore directory (repeatable, added to the plan's).
    #[arg(long = "check", value_name = "COMMAND")]
    pub checks: Vec<String>,
    /// RTO target (restore start to all checks passing), e.g. 30min.
    #[arg(long, value_name = "SPAN")]
    pub max_rto: Option<String>,
    /// RPO target (age of the snapshot), e.g. 26h.
    #[arg(long, value_name = "SPAN")]
    pub max_rpo: Option<String>,
    /// Drill a PostgreSQL point-in-time recovery to TARGET instead (a time, `latest`,
    /// `name:POINT`, `lsn:X/Y`): restore the base backup, start PostgreSQL on a free port of
    /// 127.0.0.1, wait for its promotion, run the checks ({port}, {conninfo}, {root}). Run it as
    /// the cluster's user.
    #[arg(long, value_name = "TARGET", conflicts_with_all = ["snapshot", "random_within"])]
    pub pitr: Option<String>,
    /// The psql program of --pitr.
    #[arg(long, default_value = "psql", value_name = "PROGRAM")]
    pub psql: String,
    /// The pg_ctl program of --pitr (default: the base backup's PostgreSQL version's).
    #[arg(long, value_name = "PROGRAM")]
    pub pg_ctl: Option<PathBuf>,
    /// Longest recovery of --pitr (server start to promotion).
    #[arg(long, default_value = "1h", value_name = "SPAN", value_parser = parse_span)]
    pub recovery_timeout: Duration,
    #[command(flatten)]
    pub plan: PlanFileArg,
    #[command(flatten)]
    pub filter: super::selection::FilterArgs,
    /// The clock of the drill (`cairn run --now`): when it starts, against which the RPO is judged.
    #[arg(skip)]
    pub now: Option<chrono::DateTime<Utc>>,
}

impl Default for DrillArgs {
    /// What `cairn drill` with no argument means (the drill step of `cairn run`).
    fn default() -> Self {
        DrillArgs {
            snapshot: None,
            random_within: None,
            scratch: None,
            keep: false,
            checks: Vec::new(),
            max_rto: None,
            max_rpo: None,
            pitr: None,
            psql: "psql".into(),
            pg_ctl: None,
            recovery_timeout: DEFAULT_RECOVERY_TIMEOUT,
            plan: PlanFileArg::default(),
            filter: Default::default(),
            now: None,
        }
    }
}

/// Longest recovery of a PITR drill unless `--recovery-timeout` says otherwise.
const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn run(global: &GlobalArgs, args: &DrillArgs) -> Result<i32> {
    let plan = args.plan.optional()?;
    let global = match &plan {
        Some((_, p)) => global_for(global, p),
        None => global.clone(),
    };
    let attempt = drill_attempt(&global, args, plan.as_ref().map(|(_, p)| p));
    if let Some((path, plan)) = &plan {
        let state_file = state_path(plan, path)?;
        let mut state = State::load(&state_file)?;
        let key = match args.filter.job.as_deref().and_then(|j| plan.job(j)) {
            Some(job) => job.key("drill"),
            None => "drill".into(),
        };
        state.note(&key, attempt.clone());
        state.save(&state_file)?;
    }
    Ok(attempt.exit_code)
}

/// Runs a drill and prints its report; the attempt (exit code, report as details) is for the
/// plan's state file. `cairn run` calls this for its drill step.
pub fn drill_attempt(global: &GlobalArgs, args: &DrillArgs, plan: Option<&Plan>) -> Attempt {
    let started = args.now.unwrap_or_else(Utc::now);
    let clock = std::time::Instant::now();
    let plan_pitr = plan
        .and_then(|p| p.drill.as_ref())
        .and_then(|d| d.pitr.as_deref());
    let judged = if let Some(pitr) = args.pitr.as_deref().or(plan_pitr) {
        pitr_once(global, args, plan, pitr).map(|report| {
            if let Err(e) = print_pitr_report(global, &report) {
                errln!("error: cannot print the drill report: {e:#}");
            }
            let message =
                (report.verdict != Verdict::Pass).then(|| report.targets_missed.join("; "));
            (report.verdict, message, serde_json::to_value(&report))
        })
    } else {
        drill_once(global, args, plan).map(|report| {
            if let Err(e) = print_report(global, &report) {
                errln!("error: cannot print the drill report: {e:#}");
            }
            let message = (report.verdict != Verdict::Pass).then(|| summary_line(&report));
            (report.verdict, message, serde_json::to_value(&report))
        })
    };
    let (outcome, code, message, details) = match judged {
        Ok((verdict, message, details)) => {
            let outcome = if verdict == Verdict::Failed {
                Outcome::Failed
            } else {
                Outcome::Ok
            };
            (
                outcome,
                verdict.exit_code(),
                message,
                details.unwrap_or_default(),
            )
        }
        Err(e) => {
            errln!("error: {e:#}");
            let damaged = e
                .chain()
                .find_map(|c| c.downcast_ref::<cairn::Error>())
                .is_some_and(|c| c.is_damage());
            // Damaged data is a failed drill (2); other errors keep cairn's codes.
            let code = if damaged {
                Verdict::Failed.exit_code()
            } else {
                exit_code_for(&e)
            };
            let message = Some(format!("{e:#}"));
            (Outcome::Failed, code, message, serde_json::Value::Null)
        }
    };
    Attempt {
        started,
        duration_secs: clock.elapsed().as_secs_f64(),
        outcome,
        exit_code: code,
        message,
        details,
    }
}

fn drill_once(global: &GlobalArgs, args: &DrillArgs, plan: Option<&Plan>) -> Result<DrillReport> {
    // The plan's drill (its job's, with --job), with what the command line says on top.
    let job = match (plan, args.filter.job.as_deref()) {
        (Some(p), Some(name)) => Some(p.job(name).ok_or_else(|| {
            cairn::Error::invalid_input(format!("--job {name}: the plan has no such job"))
        })?),
        _ => None,
    };
    let mut options = cairn::plan::steps::drill_options(plan, job.as_ref())?;
    match (&args.random_within, &args.snapshot) {
        (Some(span), _) => {
            options.choice =
                SnapshotChoice::RandomWithin(parse_span(span).map_err(cairn::Error::invalid_input)?)
        }
        (None, Some(snap)) => {
            options.choice = SnapshotChoice::parse(snap).map_err(cairn::Error::invalid_input)?
        }
        (None, None) => {}
    }
    let span_arg = |v: &Option<String>| -> Result<Option<Duration>> {
        Ok(v.as_deref()
            .map(parse_span)
            .transpose()
            .map_err(cairn::Error::invalid_input)?)
    };
    for (i, command) in args.checks.iter().enumerate() {
        options.checks.push(DrillCheck {
            name: format!("--check #{}", i + 1),
            argv: vec!["sh".into(), "-c".into(), command.clone()],
            file: None,
        });
    }
    options.filter = args.filter.to_filter()?;
    if let Some(scratch) = &args.scratch {
        options.scratch_parent = scratch.clone();
    }
    options.keep = args.keep;
    options.max_rto = span_arg(&args.max_rto)?.or(options.max_rto);
    options.max_rpo = span_arg(&args.max_rpo)?.or(options.max_rpo);
    let repo = context::open_repository(global)?.into_indexed()?;
    let now = args.now.unwrap_or_else(Utc::now);
    options.now = Some(now);
    let chosen = drill::choose_snapshot(&repo, &options.choice, &options.filter, now)?;
    if !global.quiet && !global.json {
        errln!(
            "drilling snapshot {} of {} ({})",
            chosen.0.short(),
            output::local_time(&chosen.1),
            options.choice.describe()
        );
    }
    let bar = progress::RestoreBar {
        bar: progress::byte_bar(progress::wanted(global), 0),
    };
    let report = drill::drill(&repo, chosen, &options, &bar)?;
    bar.bar.finish_and_clear();
    Ok(report)
}

fn summary_line(r: &DrillReport) -> String {
    let failed_checks = r
        .checks
        .iter()
        .filter(|c| c.error.is_some() || !c.run.passed())
        .count();
    let mut parts = Vec::new();
    if r.mismatch_count > 0 {
        parts.push(format!(
            "{} entries differ from the snapshot",
            r.mismatch_count
        ));
    }
    if failed_checks > 0 {
        parts.push(format!("{failed_checks} checks failed"));
    }
    parts.extend(r.targets_missed.iter().cloned());
    if parts.is_empty() {
        "passed".into()
    } else {
        parts.join("; ")
    }
}

fn print_report(global: &GlobalArgs, r: &DrillReport) -> Result<()> {
    if global.json {
        return output::print_json(r);
    }
    if global.quiet {
        if r.verdict != Verdict::Pass {
            errln!("drill: {}", summary_line(r));
        }
        return Ok(());
    }
    let secs = |s: f64| describe_span(Duration::from_secs_f64(s.max(0.0)));
    outln!(
        "drill of snapshot {} ({}), chosen: {}",
        &r.snapshot_id[..8],
        output::local_time_of(&r.snapshot_time),
        r.chosen
    );
    outln!(
        "RPO {} (snapshot age at drill start){}",
        secs(r.rpo_secs),
        r.max_rpo_secs
            .map(|m| format!(", target {}", secs(m)))
            .unwrap_or_default()
    );
    outln!(
        "RTO {:.1}s: restore {:.1}s, verify {:.1}s, checks {:.1}s{}",
        r.rto_secs,
        r.phases.restore_secs,
        r.phases.verify_secs,
        r.phases.checks_secs,
        r.max_rto_secs
            .map(|m| format!(", target {}", secs(m)))
            .unwrap_or_default()
    );
    outln!(
        "verified {} files, {} against the snapshot; {} differ",
        r.files_verified,
        output::bytes(r.bytes_verified),
        r.mismatch_count
    );
    for m in &r.mismatches {
        outln!("  differs: {}: {}", m.path, m.problem);
    }
    print_checks(&r.checks);
    if r.kept {
        outln!("restored tree kept at {}", r.scratch.display());
    }
    outln!(
        "{}: {}",
        match r.verdict {
            Verdict::Pass => "PASS",
            Verdict::TargetMissed => "TARGET MISSED",
            Verdict::Failed => "FAILED",
        },
        summary_line(r)
    );
    Ok(())
}

fn pitr_once(
    global: &GlobalArgs,
    args: &DrillArgs,
    plan: Option<&Plan>,
    pitr: &str,
) -> Result<PitrDrillReport> {
    let plan_options = cairn::plan::steps::drill_options(plan, None)?;
    let target = super::pg::parse_target(pitr)?;
    // The plan's `[drill] checks` (its dumps' `verify` checks a restored file, which a PITR
    // drill has none of), then the command line's.
    let mut checks: Vec<DrillCheck> = plan_options
        .checks
        .iter()
        .filter(|c| c.file.is_none())
        .cloned()
        .collect();
    for (i, command) in args.checks.iter().enumerate() {
        checks.push(DrillCheck {
            name: format!("--check #{}", i + 1),
            argv: vec!["sh".into(), "-c".into(), command.clone()],
            file: None,
        });
    }
    let max_rto = match &args.max_rto {
        Some(span) => Some(parse_span(span).map_err(cairn::Error::invalid_input)?),
        None => plan_options.max_rto,
    };
    // The restored server fetches WAL through this cairn with a password file in the scratch
    // directory, which goes with it.
    let restore_command = super::pg::cairn_command(
        global,
        Some(vec!["--password-file".into(), "{password_file}".into()]),
        "wal fetch %f %p",
    )?;
    let password = context::password(global, false)?;
    let options = PitrDrillOptions {
        target,
        restore_command,
        password: Some(password),
        scratch_parent: args.scratch.clone().unwrap_or(plan_options.scratch_parent),
        keep: args.keep,
        checks,
        check_timeout: plan_options.check_timeout,
        max_rto,
        recovery_timeout: args.recovery_timeout,
        psql: args.psql.clone(),
        pg_ctl: args.pg_ctl.clone(),
    };
    let repo = context::open_repository(global)?.into_indexed()?;
    let bar = progress::RestoreBar {
        bar: progress::byte_bar(progress::wanted(global), 0),
    };
    let report = pitr_drill(&repo, &options, &bar)?;
    bar.bar.finish_and_clear();
    Ok(report)
}

fn print_pitr_report(global: &GlobalArgs, r: &PitrDrillReport) -> Result<()> {
    if global.json {
        return output::print_json(r);
    }
    if global.quiet {
        if r.verdict != Verdict::Pass {
            errln!("drill: {}", r.targets_missed.join("; "));
        }
        return Ok(());
    }
    outln!(
        "point-in-time recovery drill to {} from base backup {} (ended {})",
        r.target,
        &r.snapshot_id[..8],
        r.base_stop_time
    );
    match &r.recovered_to {
        Some(t) => outln!(
            "recovered to {t} (the last transaction replayed); RPO {}",
            describe_span(Duration::from_secs_f64(r.rpo_secs.max(0.0)))
        ),
        None => outln!("recovery point unknown: no transaction was replayed"),
    }
    outln!(
        "RTO {:.1}s: restore {:.1}s, recovery {:.1}s, checks {:.1}s{}",
        r.rto_secs,
        r.phases.restore_secs,
        r.phases.recovery_secs,
        r.phases.checks_secs,
        r.max_rto_secs
            .map(|m| format!(", target {}", describe_span(Duration::from_secs_f64(m))))
            .unwrap_or_default()
    );
    print_checks(&r.checks);
    if r.kept {
        outln!(
            "restored data directory kept at {} (stopped)",
            r.scratch.display()
        );
    }
    outln!(
        "{}{}",
        match r.verdict {
            Verdict::Pass => "PASS",
            Verdict::TargetMissed => "TARGET MISSED",
            Verdict::Failed => "FAILED",
        },
        if r.targets_missed.is_empty() {
            String::new()
        } else {
            format!(": {}", r.targets_missed.join("; "))
        }
    );
    Ok(())
}

/// Each check's command, time and end, with the last lines of a failing one's output.
fn print_checks(checks: &[drill::CheckResult]) {
    for c in checks {
        let state = match &c.error {
            Some(e) => format!("could not run: {e}"),
            None if c.run.passed() => "ok".into(),
            None => format!("FAILED, {}", c.run.describe_end()),
        };
        outln!(
            "check {} ({:.1}s): {} — {}",
            c.name,
            c.run.duration_secs,
            c.run.command.join(" "),
            state
        );
        if !c.run.passed() {
            for line in c.run.last_lines(10) {
                outln!("    | {line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        drill: DrillArgs,
    }

    /// `cairn run`'s drill step uses `DrillArgs::default()`: it must mean what no flag means.
    #[test]
    fn the_default_drill_is_the_drill_without_flags() {
        let parsed = Cli::parse_from(["cairn"]).drill;
        let default = DrillArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }
}
