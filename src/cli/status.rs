//! `cairn status`: a monitoring check with plugin exit codes (0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN). Every failure to find the facts is UNKNOWN, never a cairn error code, because a
//! monitoring system reads 2 as CRITICAL.

use std::path::PathBuf;

use anyhow::Result;
use chrono::Utc;

use cairn::monitor::{self, render, StatusReport, Thresholds};
use cairn::plan::{size_of, span_of, Plan, State};
use cairn::units::{parse_size, parse_span};

use super::planned::{global_for, state_path, PlanFileArg};
use super::{context, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn status                                   # thresholds from the plan file, if there is one
  cairn status --format nagios --warn-age 26h --crit-age 50h --min-size 1G
  cairn status --offline --format nagios         # from the plan's state file, without the password
  cairn status --format prometheus > /var/lib/node_exporter/textfile/cairn.prom
  cairn status --job db --format nagios          # one job of the plan against its own objectives
Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the repository or state file could not be read).";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Lines for people.
    Text,
    /// A monitoring-plugin line with perfdata.
    Nagios,
    /// The report as JSON.
    Json,
    /// Prometheus text format (the state file's figures and the status level).
    Prometheus,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Output format (--json is the same as --format json).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// WARNING when the newest snapshot of a group is older (default: plan, else 26h).
    #[arg(long, value_name = "SPAN")]
    pub warn_age: Option<String>,
    /// CRITICAL when it is older (default: plan, else 50h).
    #[arg(long, value_name = "SPAN")]
    pub crit_age: Option<String>,
    /// CRITICAL when the newest snapshot is smaller (e.g. 1G; default: plan, else 1, so an empty
    /// snapshot is CRITICAL; 0 accepts empty snapshots).
    #[arg(long, value_name = "SIZE")]
    pub min_size: Option<String>,
    /// WARNING when the newest snapshot is smaller than the previous by more than PERCENT.
    #[arg(long, value_name = "PERCENT")]
    pub max_shrink: Option<f64>,
    /// Answer from the plan's state file only: no repository access, no password.
    #[arg(long)]
    pub offline: bool,
    /// WARNING when the newest archived PostgreSQL WAL file is older (default: plan, else 1h;
    /// only when the repository holds WAL).
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    pub wal_warn_age: Option<std::time::Duration>,
    /// CRITICAL when it is older (default: plan, else 2h).
    #[arg(long, value_name = "SPAN", value_parser = parse_span)]
    pub wal_crit_age: Option<std::time::Duration>,
    /// The state file to read (default: the plan's).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Only what concerns this plan job (`[[job]] name`): its snapshots and its steps.
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Judge as if it were TIME (as `cairn run --now`), e.g. "2026-12-08 09:00".
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[command(flatten)]
    pub plan: PlanFileArg,
}

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> Result<i32> {
    let format = if global.json {
        Format::Json
    } else {
        args.format
    };
    let (report, state) = match gather(global, args) {
        Ok((report, state)) => match &args.job {
            Some(job) => (only_job(report, job), state),
            None => (report, state),
        },
        Err(e) => (StatusReport::unknown("status", format!("{e:#}")), None),
    };
    match format {
        Format::Text => out!("{}", render::text(&report)),
        Format::Nagios => out!("{}", render::nagios(&report)),
        Format::Json => output::print_json(&report)?,
        Format::Prometheus => out!(
            "{}",
            render::prometheus(&state.unwrap_or_default(), Some(&report))
        ),
    }
    Ok(report.level.exit_code())
}

fn gather(global: &GlobalArgs, args: &StatusArgs) -> Result<(StatusReport, Option<State>)> {
    let plan = args.plan.optional()?;
    let plan_ref = plan.as_ref().map(|(_, p)| p);
    let thresholds = thresholds(args, plan_ref)?;
    let state_file = match (&args.state_file, &plan) {
        (Some(f), _) => Some(f.clone()),
        (None, Some((path, p))) => Some(state_path(p, path)?),
        (None, None) => None,
    };
    let state = state_file.as_deref().map(State::load).transpose()?;
    let offsite: Vec<String> = plan_ref
        .map(|p| p.offsite.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default();
    let now = match &args.now {
        Some(t) => cairn::repo::select::parse_point_in_time(t)?,
        None => Utc::now(),
    };
    if let (Some(job), Some((path, p))) = (&args.job, &plan) {
        if p.job(job).is_none() {
            return Err(cairn::Error::invalid_input(format!(
                "--job {job}: the plan {} has no such job",
                path.display()
            ))
            .into());
        }
    }
    if args.offline {
        let state = state.ok_or_else(|| {
            cairn::Error::invalid_input(
                "--offline reads the plan's state file: give --plan or --state-file",
            )
        })?;
        let groups = monitor::groups_from_state(&state);
        let report = monitor::evaluate(
            "state file",
            &groups,
            Some(&state),
            &offsite,
            &thresholds,
            now,
        );
        return Ok((report, Some(state)));
    }
    let global = match plan_ref {
        Some(p) => global_for(global, p),
        None => global.clone(),
    };
    let repo = context::open_repository(&global)?;
    let snapshots = repo.snapshots()?;
    let groups = monitor::groups_from_snapshots(&snapshots);
    let mut report = monitor::evaluate(
        "repository",
        &groups,
        state.as_ref(),
        &offsite,
        &thresholds,
        now,
    );
    let catalog = cairn::wal::Catalog::load(&repo)?;
    if let Some(wal) = monitor::wal::facts(&catalog, &snapshots) {
        let defaults = monitor::wal::WalThresholds::default();
        let m = plan_ref.map(|p| p.monitor.clone()).unwrap_or_default();
        let th = monitor::wal::WalThresholds {
            warn_age: args
                .wal_warn_age
                .or_else(|| span_of(&m.wal_warn_age))
                .unwrap_or(defaults.warn_age),
            crit_age: args
                .wal_crit_age
                .or_else(|| span_of(&m.wal_crit_age))
                .unwrap_or(defaults.crit_age),
        };
        if th.warn_age > th.crit_age {
            return Err(cairn::Error::invalid_input(
                "the WAL warning age is longer than the WAL critical age",
            )
            .into());
        }
        monitor::wal::judge(&mut report, &wal, &th, now);
    }
    Ok((report, state))
}

fn thresholds(args: &StatusArgs, plan: Option<&Plan>) -> Result<Thresholds> {
    let invalid = cairn::Error::invalid_input;
    let span = |v: &Option<String>| -> Result<_> {
        Ok(v.as_deref().map(parse_span).transpose().map_err(invalid)?)
    };
    let (plan_warn, plan_crit) = plan
        .map(Plan::age_thresholds)
        .unwrap_or((cairn::plan::DEFAULT_WARN_AGE, cairn::plan::DEFAULT_CRIT_AGE));
    let m = plan.map(|p| p.monitor.clone()).unwrap_or_default();
    let mut th = Thresholds {
        warn_age: span(&args.warn_age)?.unwrap_or(plan_warn),
        crit_age: span(&args.crit_age)?.unwrap_or(plan_crit),
        min_size: match &args.min_size {
            Some(s) => parse_size(s).map_err(invalid)?,
            None => size_of(&m.min_size).unwrap_or(monitor::DEFAULT_MIN_SIZE),
        },
        max_shrink: args.max_shrink.or(m.max_shrink),
        check_max_age: span_of(&m.check_max_age),
        offsite_max_age: span_of(&m.offsite_max_age),
        drill_max_age: span_of(&m.drill_max_age),
        lock_left: (
            span_of(&m.lock_warn_left).unwrap_or(monitor::LOCK_WARN_LEFT),
            span_of(&m.lock_crit_left).unwrap_or(monitor::LOCK_CRIT_LEFT),
        ),
        base_backup_ages: plan.and_then(|p| p.postgres.as_ref()).map(|pg| {
            (
                span_of(&pg.warn_age).unwrap_or(plan_warn),
                span_of(&pg.crit_age).unwrap_or(plan_crit),
            )
        }),
        jobs: Default::default(),
    };
    if let Some(plan) = plan {
        for job in &plan.jobs {
            let m = job.monitor.clone().unwrap_or_default();
            let (warn_age, crit_age) = plan.job_age_thresholds(job.monitor.as_ref());
            th.jobs.insert(
                job.name.clone(),
                monitor::JobThresholds {
                    warn_age,
                    crit_age,
                    min_size: size_of(&m.min_size).unwrap_or(th.min_size),
                    max_shrink: m.max_shrink.or(th.max_shrink),
                },
            );
        }
    }
    if let Some(p) = th.max_shrink.filter(|p| !(0.0..=100.0).contains(p)) {
        return Err(cairn::Error::invalid_input(format!(
            "--max-shrink {p}: a percentage from 0 to 100"
        ))
        .into());
    }
    if th.warn_age > th.crit_age {
        return Err(
            cairn::Error::invalid_input("the warning age is longer than the critical age").into(),
        );
    }
    Ok(th)
}

/// The report cut to one job: its findings and its metrics, and the level they make.
fn only_job(mut report: StatusReport, job: &str) -> StatusReport {
    report.findings.retain(|f| f.job.as_deref() == Some(job));
    let tag = format!("job_{}", monitor::metric_tag(job));
    report
        .metrics
        .retain(|m| m.label.contains(&format!("{tag}_")) || m.label.ends_with(&tag));
    if report.findings.is_empty() {
        report.findings.push(monitor::Finding {
            subject: format!("job {job}"),
            level: monitor::Level::Critical,
            message: "no snapshot of this job and no record of its steps".into(),
            job: Some(job.to_string()),
        });
    }
    report.level = report
        .findings
        .iter()
        .fold(monitor::Level::Ok, |l, f| l.worst(f.level));
    report
}
