//! `cairn pg backup|restore|setup`: PostgreSQL base backups and point-in-time recovery.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use cairn::pg::{self, PgBackupOptions, PitrOptions, RecoveryTarget};
use cairn::NoRestoreProgress;

use super::planned::PlanFileArg;
use super::{backup, context, exit, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn pg setup                                   # the postgresql.conf lines for archiving
  cairn pg setup --plan /etc/cairn/plan.toml       # ... through the plan's repository and [postgres]
  cairn pg backup --plan /etc/cairn/plan.toml      # what `cairn run` does for [postgres]
  cairn pg backup                                  # base backup (libpq's PGHOST, PGUSER, ... apply)
  cairn pg backup --conn 'host=db1 user=backup' --pgdata /var/lib/postgresql/15/main
  cairn pg restore --to '2026-12-07 14:29:59' --target /var/lib/postgresql/15/restored
  cairn pg restore --to latest --target /srv/pg-drill --archive-off

A base backup runs on the database host (it reads the data directory) and is written only once
the WAL that makes it consistent is archived by `wal push` into the same repository.
`pg restore` picks the newest base backup that ended before the target, restores it, and writes
backup_label, recovery.signal and the recovery settings (restore_command through `cairn wal
fetch`, the target, promote); then start PostgreSQL on the directory.";

#[derive(clap::Args, Debug)]
pub struct PgArgs {
    #[command(subcommand)]
    pub command: PgCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum PgCommand {
    /// Take a base backup of a running cluster through its backup API.
    Backup(PgBackupArgs),
    /// Restore a base backup for point-in-time recovery.
    Restore(PgRestoreArgs),
    /// Print the postgresql.conf lines that archive WAL into this repository.
    Setup(PgSetupArgs),
}

/// How to reach the server.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// libpq connection string or URI ('host=db1 user=backup', postgresql://...); without it
    /// PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE apply.
    #[arg(long = "conn", value_name = "CONNINFO")]
    pub conninfo: Option<String>,
    /// The psql program to connect with (default `psql`).
    #[arg(long, value_name = "PROGRAM")]
    pub psql: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PgBackupArgs {
    /// Take the repository and the [postgres] section's settings from this plan file; flags
    /// given here win.
    #[command(flatten)]
    pub plan: PlanFileArg,
    #[command(flatten)]
    pub connection: Connection,
    /// The data directory (default: what the server says).
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Wait for a spread checkpoint instead of asking for an immediate one.
    #[arg(long)]
    pub spread_checkpoint: bool,
    /// How long to wait for the backup's last WAL file to be archived (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = cairn::units::parse_span)]
    pub archive_timeout: Option<Duration>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PgSetupArgs {
    /// Archive through this plan file: the commands name the plan, which gives the repository,
    /// its password and the archiver's settings ([postgres]).
    #[command(flatten)]
    pub plan: PlanFileArg,
}

#[derive(clap::Args, Debug)]
pub struct PgRestoreArgs {
    /// Take the repository from this plan file, and write a restore_command that names it.
    #[command(flatten)]
    pub plan: PlanFileArg,
    /// Where recovery stops: a time ("2026-12-07 14:29:59", local unless a zone is given),
    /// `latest` (all archived WAL), `name:RESTORE_POINT`, or `lsn:16/B374D848`.
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// The new data directory (absent or empty).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Start from this base backup (snapshot id) instead of the newest before the target.
    #[arg(long, value_name = "SNAPSHOT")]
    pub base: Option<String>,
    /// Turn archiving off in the restored cluster (drills and copies must not archive into the
    /// production repository).
    #[arg(long)]
    pub archive_off: bool,
    /// Restore the tablespace backed up at OLD into NEW (repeatable); without it a tablespace
    /// goes back to its own directory, which must then be absent or empty.
    #[arg(long, value_name = "OLD=NEW", value_parser = parse_mapping)]
    pub tablespace_mapping: Vec<(String, PathBuf)>,
    /// The restore_command to write (default: this cairn with this repository, cache directory
    /// and password file or command).
    #[arg(long, value_name = "COMMAND")]
    pub restore_command: Option<String>,
    /// Then start PostgreSQL on the restored directory, on 127.0.0.1:PORT (and a socket in the
    /// directory), wait until recovery reached the target and promoted, and leave it running.
    #[arg(long, value_name = "PORT")]
    pub start: Option<u16>,
    /// The pg_ctl of --start (default: the base backup's PostgreSQL version's).
    #[arg(long, value_name = "PROGRAM")]
    pub pg_ctl: Option<PathBuf>,
    /// The psql of --start.
    #[arg(long, default_value = "psql", value_name = "PROGRAM")]
    pub psql: String,
    /// Longest recovery of --start (server start to promotion).
    #[arg(long, default_value = "1h", value_name = "SPAN", value_parser = cairn::units::parse_span)]
    pub recovery_timeout: Duration,
}

pub fn run(global: &GlobalArgs, args: &PgArgs) -> Result<i32> {
    match &args.command {
        PgCommand::Backup(a) => run_backup(global, a),
        PgCommand::Restore(a) => run_restore(global, a),
        PgCommand::Setup(a) => run_setup(global, a),
    }
}

fn run_backup(global: &GlobalArgs, args: &PgBackupArgs) -> Result<i32> {
    let (global, plan) = args.plan.global_for(global)?;
    let mut options = match &plan {
        Some(plan) => cairn::plan::steps::pg_backup_options(plan)?,
        None => PgBackupOptions::default(),
    };
    let c = &args.connection;
    if let Some(conn) = &c.conninfo {
        options.conninfo = Some(conn.clone());
    }
    if let Some(psql) = &c.psql {
        options.psql = psql.clone();
    }
    if let Some(dir) = &args.pgdata {
        options.data_directory = Some(dir.clone());
    }
    if args.spread_checkpoint {
        options.fast_checkpoint = false;
    }
    if let Some(t) = args.archive_timeout {
        options.archive_timeout = t;
    }
    options.backup.tags.extend(args.tags.iter().cloned());
    let since = global.requests.requests();
    let repo = context::open_repository(&global)?.into_indexed_unsynced()?;
    let outcome = base_backup(&global, &repo, &options, since)?;
    Ok(backup::exit_code(&outcome))
}

/// Takes a base backup and reports it as `pg backup` does (also `cairn run`'s postgres step).
pub(super) fn base_backup(
    global: &GlobalArgs,
    repo: &cairn::repo::IndexedRepository,
    options: &PgBackupOptions,
    since: cairn::backend::Requests,
) -> Result<cairn::BackupOutcome> {
    let outcome = pg::base_backup(repo, options, &cairn::NoProgress)?;
    backup::report(global, &outcome, since)?;
    if let (Some(pg), false) = (&outcome.snapshot.postgres, global.json || global.quiet) {
        outln!(
            "base backup of {} from {} ({}) to {} ({}), WAL archived",
            pg.data_directory,
            pg.start_lsn,
            pg.start_wal,
            pg.stop_lsn,
            pg.stop_wal
        );
    }
    Ok(outcome)
}

/// The command line of this cairn with the repository options of `global`, for PostgreSQL; the
/// password from `password_args` when given, else from where this process got it.
pub(super) fn cairn_command(
    global: &GlobalArgs,
    password_args: Option<Vec<String>>,
    what: &str,
) -> Result<String> {
    let exe = std::env::current_exe()?;
    let (location, _) = context::repo_location(global);
    let location = match context::parse_location(&location)? {
        cairn::backend::Location::Local(p) => context::absolute(&p).display().to_string(),
        _ => location.display().to_string(),
    };
    let mut argv = vec![exe.display().to_string(), "-r".into(), location];
    if let Some(dir) = &global.cache_dir {
        argv.push("--cache-dir".into());
        argv.push(context::absolute(dir).display().to_string());
    }
    for o in &global.options {
        argv.push("-o".into());
        argv.push(o.clone());
    }
    match password_args.or_else(|| context::password_source_args(global)) {
        Some(args) => argv.extend(args),
        None => bail!(cairn::Error::invalid_input(
            "PostgreSQL runs cairn without this shell's CAIRN_PASSWORD: give the password as --password-file \
             (a file PostgreSQL's user can read) or --password-command, or write the command yourself with --restore-command"
        )),
    }
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    Ok(format!("{} {what}", quoted.join(" ")))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `OLD=NEW` of `--tablespace-mapping`.
fn parse_mapping(text: &str) -> std::result::Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((old, new)) if old.starts_with('/') && !new.is_empty() => {
            Ok((old.trim_end_matches('/').to_string(), PathBuf::from(new)))
        }
        _ => Err(format!(
            "{text:?}: give OLD=NEW, the tablespace's directory in the backup and where it goes"
        )),
    }
}

/// A recovery target as written on the command line: a time, `latest`, `name:POINT`, `lsn:X/Y`.
pub(super) fn parse_target(text: &str) -> Result<RecoveryTarget> {
    Ok(RecoveryTarget::parse(text)?)
}

fn run_restore(global: &GlobalArgs, args: &PgRestoreArgs) -> Result<i32> {
    let target = parse_target(&args.to)?;
    let restore_command = match &args.restore_command {
        Some(c) => c.clone(),
        None => wal_command(global, &args.plan, "fetch", "%f %p")?,
    };
    let (planned, _) = args.plan.global_for(global)?;
    let global = &planned;
    let repo = context::open_repository(global)?;
    let base = match &args.base {
        Some(spec) => Some(repo.find_snapshot(spec)?.0),
        None => None,
    };
    let repo = repo.into_indexed()?;
    let options = PitrOptions {
        target,
        restore_command,
        base,
        archive_off: args.archive_off,
        tablespace_mapping: args.tablespace_mapping.clone(),
        tablespaces_under: None,
    };
    let outcome = pg::restore::restore(&repo, &options, &args.target, &NoRestoreProgress)?;
    let pg = outcome.snapshot.postgres.as_ref();
    let recovered = match args.start {
        Some(port) => {
            let pg_ctl = args
                .pg_ctl
                .clone()
                .unwrap_or_else(|| pg::server::pg_ctl_for(pg.map_or(0, |p| p.server_version)));
            let server = pg::server::Server::start(&args.target, &pg_ctl, port)?;
            let recovered = server.wait_promoted(&args.psql, args.recovery_timeout)?;
            server.keep();
            Some(recovered)
        }
        None => None,
    };
    if global.json {
        output::print_json(&serde_json::json!({
            "base": outcome.base.to_hex(),
            "base_stop_time": pg.map(|p| p.stop_time.clone()),
            "target": args.target,
            "settings": outcome.settings.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
            "newest_wal": outcome.newest_wal.as_ref().map(|(n, t)| serde_json::json!({"name": n.as_str(), "archived": t.to_rfc3339()})),
            "files": outcome.stats.files,
            "bytes": outcome.stats.bytes,
            "tablespaces": outcome.tablespaces.iter().map(|(oid, dir)| serde_json::json!({"oid": oid, "directory": dir})).collect::<Vec<_>>(),
            "started": recovered.as_ref().map(|r| serde_json::json!({
                "port": args.start,
                "recovered_to": r.last_replayed,
                "recovery_secs": r.duration.as_secs_f64(),
            })),
        }))?;
    } else if !global.quiet {
        outln!(
            "restored base backup {} (ended {}) into {}: {} files, {}",
            outcome.base.short(),
            pg.map(|p| p.stop_time.as_str()).unwrap_or("?"),
            args.target.display(),
            outcome.stats.files,
            output::bytes(outcome.stats.bytes)
        );
        for (oid, dir) in &outcome.tablespaces {
            outln!("tablespace {oid} restored into {}", dir.display());
        }
        if let Some((name, at)) = &outcome.newest_wal {
            outln!(
                "newest archived WAL of its timeline: {name}, archived {}",
                at.to_rfc3339()
            );
        }
        outln!("recovery settings appended to postgresql.auto.conf:");
        for (k, v) in &outcome.settings {
            outln!("  {k} = '{v}'");
        }
        match &recovered {
            Some(r) => outln!(
                "PostgreSQL recovered in {:.1}s to {} and promoted; it runs on 127.0.0.1:{} (pg_ctl -D {} stop)",
                r.duration.as_secs_f64(),
                r.last_replayed.as_deref().unwrap_or("the base backup (no transaction replayed)"),
                args.start.unwrap_or_default(),
                args.target.display()
            ),
            None => outln!(
                "next: start PostgreSQL on it (pg_ctl -D {} start, as the cluster's user); it replays WAL to the target and promotes",
                args.target.display()
            ),
        }
    }
    Ok(exit::OK)
}

fn run_setup(global: &GlobalArgs, args: &PgSetupArgs) -> Result<i32> {
    let push = wal_command(global, &args.plan, "push", "%p")?;
    let fetch = wal_command(global, &args.plan, "fetch", "%f %p")?;
    outln!("# postgresql.conf (restart PostgreSQL after changing archive_mode):");
    outln!("archive_mode = on");
    outln!("wal_level = replica");
    outln!("archive_command = '{}'", push.replace('\'', "''"));
    outln!("# written by `cairn pg restore` when recovering:");
    outln!("# restore_command = '{}'", fetch.replace('\'', "''"));
    match &args.plan.plan {
        Some(path) => outln!(
            "# PostgreSQL runs these as its own user: it must be able to read {} and the\n\
             # password file or command it names, and write the plan's cache directory.",
            context::absolute(path).display()
        ),
        None => outln!(
            "# PostgreSQL runs these as its own user: it must be able to read the password file and\n\
             # write the cache directory (give --cache-dir to choose one)."
        ),
    }
    Ok(exit::OK)
}

/// The `wal SUB ARGS` command line PostgreSQL runs: through the plan file when `--plan` names
/// one (so that changing the plan's repository or password changes archiving too), else with
/// this process's repository options spelled out.
fn wal_command(global: &GlobalArgs, plan: &PlanFileArg, sub: &str, args: &str) -> Result<String> {
    match &plan.plan {
        Some(path) => {
            // Loaded to refuse a plan that does not validate before PostgreSQL runs it.
            plan.required()?;
            let exe = std::env::current_exe()?;
            let path = context::absolute(path);
            Ok(format!(
                "{} wal {sub} --plan {} {args}",
                shell_quote(&exe.display().to_string()),
                shell_quote(&path.display().to_string())
            ))
        }
        None => cairn_command(global, None, &format!("wal {sub} {args}")),
    }
}
