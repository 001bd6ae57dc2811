//! `cairn forget`: remove snapshots that no keep rule keeps, per group; optionally prune afterwards.

use anyhow::Result;

use cairn::ops::forget::{self, describe_group, ForgetPlan, GroupBy};
use cairn::ops::retention::{system_local, KeepPolicy};
use cairn::SnapshotFilter;

use super::{context, exit, output, prune, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
  cairn forget --keep-last 3 --host db1 --prune
  cairn forget --keep-within 30d --keep-tag release --group-by host,paths,tags
  cairn forget --json --keep-daily 7 --dry-run | jq '.[].snapshots[] | select(.keep|not) | .id'
  cairn forget 1a2b3c4d 5e6f7a8b               # these snapshots, whatever the rules

Snapshots are grouped by host and source paths (change with --group-by) and each group gets the
rules separately; a snapshot is kept when any rule keeps it. Calendar rules use the local time zone
and keep the newest snapshot of each of the last N hours/days/ISO weeks/months/years that have one.
A group is never emptied unless --allow-remove-all is given. forget only removes snapshot files;
the space is reclaimed by prune (or --prune).";

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Remove exactly these snapshots (ids or unique prefixes) instead of applying keep rules.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub policy: KeepPolicy,
    /// Group snapshots by these fields: any of host, paths, tags (empty: one group).
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: String,
    /// Print each group's decisions and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow removing every snapshot of a group.
    #[arg(long)]
    pub allow_remove_all: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
    #[command(flatten)]
    pub prune_options: prune::PruneTuning,
}

/// One forget, however it was asked for: by the command line or by the plan's `[retention]`.
pub struct ForgetRequest<'a> {
    pub policy: KeepPolicy,
    pub group_by: GroupBy,
    pub filter: SnapshotFilter,
    pub dry_run: bool,
    pub allow_remove_all: bool,
    /// Prune afterwards, with these options.
    pub prune: Option<&'a prune::PruneTuning>,
}

pub fn run(global: &GlobalArgs, args: &ForgetArgs) -> Result<i32> {
    if !args.snapshots.is_empty() {
        return forget_named(global, args);
    }
    forget(
        global,
        &ForgetRequest {
            policy: args.policy.clone(),
            group_by: GroupBy::parse(&args.group_by)?,
            filter: args.filter.to_filter()?,
            dry_run: args.dry_run,
            allow_remove_all: args.allow_remove_all,
            prune: args.prune.then_some(&args.prune_options),
        },
    )
}

/// `forget ID...`: the named snapshots go, with no rule involved.
fn forget_named(global: &GlobalArgs, args: &ForgetArgs) -> Result<i32> {
    if !args.policy.is_empty() {
        return Err(cairn::Error::invalid_input(
            "give either snapshot ids or --keep-* rules, not both",
        )
        .into());
    }
    let repo = context::open_repository(global)?;
    let mut ids = Vec::new();
    for spec in &args.snapshots {
        let (id, _) = repo.find_snapshot(spec)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let removed = if args.dry_run {
        0
    } else {
        forget::remove(&repo, &ids)?
    };
    if global.json {
        output::print_json(&serde_json::json!({
            "dry_run": args.dry_run,
            "removed": ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        }))?;
    } else if !global.quiet {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for id in &ids {
            outln!("{verb} snapshot {}", id.short());
        }
        if !args.dry_run {
            outln!("removed {removed} snapshot(s)");
        }
    }
    match args.prune && !args.dry_run {
        true => prune::prune_repository(global, &args.prune_options, false, repo),
        false => Ok(exit::OK),
    }
}

/// Plans, reports and (unless a dry run) executes a forget, then prunes when asked.
pub fn forget(global: &GlobalArgs, request: &ForgetRequest<'_>) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let plan = forget::plan(
        &repo,
        &request.filter,
        request.group_by,
        &request.policy,
        &system_local,
    )?;
    let removed = if request.dry_run {
        0
    } else {
        forget::execute(&repo, &plan, request.allow_remove_all)?
    };
    report(global, &plan, request.dry_run, removed)?;
    match request.prune {
        Some(tuning) if !request.dry_run => prune::prune_repository(global, tuning, false, repo),
        _ => Ok(exit::OK),
    }
}

fn report(global: &GlobalArgs, plan: &ForgetPlan, dry_run: bool, removed: usize) -> Result<()> {
    if global.json {
        let groups: Vec<serde_json::Value> = plan
            .groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "group": g.key,
                    "snapshots": g.snapshots.iter().map(|d| serde_json::json!({
                        "id": d.id.to_hex(),
                        "time": d.snapshot.time,
                        "keep": d.keep(),
                        "reasons": d.reasons,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return output::print_json(&groups);
    }
    if global.quiet {
        return Ok(());
    }
    for g in &plan.groups {
        outln!("group {}:", describe_group(&g.key));
        for d in g.snapshots.iter().rev() {
            outln!(
                "  {}  {}  {:<6}  {}",
                d.id.short(),
                output::local_time(&d.snapshot),
                if d.keep() { "keep" } else { "remove" },
                d.reasons.join(", ")
            );
        }
    }
    for s in &plan.set_aside {
        outln!(
            "kept aside: snapshot {} claims {} but its file was written at {}: its time is not trusted on a locked repository, so no rule counts it (remove it by id if it is yours)",
            s.id.short(),
            s.snapshot.time,
            s.written.to_rfc3339()
        );
    }
    let total = plan.removals().count();
    if dry_run {
        outln!("would remove {total} snapshot(s)");
    } else {
        outln!("removed {removed} snapshot(s)");
    }
    Ok(())
}
