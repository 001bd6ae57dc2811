//! Command-line interface: global options, the command list, and the error-to-exit-code mapping.

// First: its printing macros serve every command below.
#[macro_use]
mod stdout;

mod as_of;
mod backup;
mod cat;
mod check;
mod context;
mod diff;
mod drill;
mod dump;
mod entry;
mod find;
mod forget;
mod init;
mod key;
mod locate;
mod ls;
mod output;
mod pg;
mod plan;
mod planned;
mod progress;
mod prune;
mod repair;
mod restore;
mod retention;
mod run;
mod selection;
mod shell;
mod snapshots;
mod stats;
mod status;
mod sync;
mod unlock;
mod wal;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cairn::ErrorKind;

/// Exit codes (documented in README.md; scripts depend on them).
pub use cairn::exit;

const AFTER_HELP: &str = "\
Examples:
  cairn -r /srv/backup init
  cairn -r /srv/backup backup /etc /home --exclude '*.tmp' --tag nightly
  pg_dump app | cairn -r /srv/backup backup --stdin --stdin-name app.sql
  cairn -r /srv/backup backup /etc --command \"pg_dump --format=custom app\" --stdin-name app.dump
  cairn -r /srv/backup snapshots
  cairn -r /srv/backup restore latest --target /tmp/restore
  cairn -r /srv/backup ls -l latest:/etc
  cairn -r /srv/backup cat latest:/app.sql | psql app
  cairn -r /srv/backup dump latest:/srv/www --format tar | ssh web2 tar -x -C /srv/www
  cairn -r /srv/backup find '*.conf'
  cairn -r /srv/backup diff 1a2b3c4d latest /etc
  cairn -r /srv/backup sync --to s3://offsite-bucket/cairn
  cairn -r s3://offsite-bucket/cairn -o endpoint=https://minio.example:9000 snapshots
  cairn -r s3://offsite-bucket/cairn --as-of \"2026-01-23 14:30\" snapshots   # as it was then
  cairn run --plan /etc/cairn/plan.toml      # the nightly job: backup, retention, check, offsite, drill
  cairn status --format nagios --offline     # monitoring, exit 0-3
  cairn drill --random-within 30d            # restore drill: RTO, RPO, checks
  cairn -r /srv/backup key add --label 'second admin'
  cairn -r /srv/backup key export --paper > recovery.txt

Environment: CAIRN_REPO, CAIRN_PASSWORD, CAIRN_PASSWORD_FILE, CAIRN_CACHE_DIR.
Exit codes: 0 ok, 1 error, 2 invalid usage or input, 3 backup saved but some sources
unreadable, 4 repository data damaged, 5 a dump command failed (no snapshot written),
10 no repository, 11 another prune holds the repository (nothing changed), 12 wrong password.";

/// Content-addressed, deduplicating, encrypted backups.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Repository location: a directory, s3://BUCKET/PREFIX, sftp://USER@HOST:PORT/PATH,
    /// webdav[s]://HOST:PORT/PATH or opendal:SCHEME. Default: $CAIRN_REPO, else a directory under
    /// your data directory.
    // CAIRN_REPO is read after parsing (see `main`), not by clap: clap's usage line of an error
    // would show `--repo <REPO>` as if it had to be given.
    #[arg(short = 'r', long = "repo", global = true, value_name = "REPO")]
    pub repo: Option<PathBuf>,
    /// Option of a remote repository's storage, passed to OpenDAL (repeatable): -o endpoint=URL -o region=R.
    /// `-o timeout=SECONDS`, `-o retries=N` and `-o retry_for=SECONDS` set cairn's request policy.
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Limit the upload bandwidth to remote storage (bytes per second; K, M, G suffixes: 10M).
    #[arg(long, global = true, value_name = "RATE")]
    pub limit_upload: Option<String>,
    /// Read the password from the first line of this file. Wins over CAIRN_PASSWORD, then
    /// CAIRN_PASSWORD_FILE; without any of them cairn asks on the terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Try only the key file whose name (in keys/) starts with ID: the one to name when the password
    /// belongs to a key file with costly Argon2id parameters, which an opening does not try unasked.
    #[arg(long, env = "CAIRN_KEY_HINT", global = true, value_name = "ID")]
    pub key_hint: Option<String>,
    /// Run this shell command and take the first line it prints as the password (also
    /// CAIRN_PASSWORD_COMMAND, tried after CAIRN_PASSWORD and CAIRN_PASSWORD_FILE), e.g.
    /// --password-command 'pass show backup/cairn'. It sees no CAIRN_PASSWORD* variable.
    #[arg(long = "password-command", global = true, value_name = "COMMAND")]
    pub password_command_line: Option<String>,
    /// The password command as argv: from --password-command (through `sh -c`) or the plan's
    /// `password_command` (argv, no shell).
    #[arg(skip)]
    pub password_command: Option<Vec<String>>,
    /// Local cache directory (index database).
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Open the S3 repository read-only as it was at TIME, from the object versions its bucket keeps
    /// (bucket versioning): every object as its newest version written at or before TIME, absent if
    /// that is a delete marker. For recovery after objects were deleted or overwritten. TIME as
    /// `backup --time` takes it: "2026-01-23 14:30" (local time), "2026-01-23T14:30:00Z". Only
    /// commands that read take it; for sync it applies to the source (-r with --to, the --from
    /// location with --from). Example:
    /// cairn -r /srv/recovered sync --from s3://backups/web1 --as-of "2026-01-23 14:30"
    #[arg(long, global = true, value_name = "TIME", value_parser = as_of::parse_time)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The requests this process made to the repository's storage (`--json` of backup reports
    /// them): every command's repository backend counts into it.
    #[arg(skip)]
    pub requests: cairn::backend::RequestCounter,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository.
    #[command(
        after_help = "Example:\n  CAIRN_PASSWORD_FILE=/root/.cairn-pw cairn -r /srv/backup init"
    )]
    Init(init::InitArgs),
    /// Back up files and directories, standard input, and the output of dump commands.
    #[command(after_help = backup::EXAMPLES)]
    Backup(backup::BackupArgs),
    /// List snapshots.
    #[command(
        after_help = "Examples:\n  cairn snapshots\n  cairn snapshots --host db1 --tag nightly\n  cairn snapshots --json | jq '.[-1].time'"
    )]
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot, or one path of it, into a directory.
    #[command(after_help = restore::EXAMPLES)]
    Restore(restore::RestoreArgs),
    /// List the entries of a directory in a snapshot.
    #[command(after_help = ls::EXAMPLES)]
    Ls(ls::LsArgs),
    /// Write one file of a snapshot to standard output.
    #[command(after_help = cat::EXAMPLES)]
    Cat(cat::CatArgs),
    /// Write a snapshot subtree to standard output as a tar archive.
    #[command(after_help = dump::EXAMPLES)]
    Dump(dump::DumpArgs),
    /// Find entries matching a pattern across snapshots.
    #[command(after_help = find::EXAMPLES)]
    Find(find::FindArgs),
    /// Sizes: what the snapshots restore to, and what they take once deduplicated and compressed.
    #[command(after_help = stats::EXAMPLES)]
    Stats(stats::StatsArgs),
    /// Compare two snapshots: added, removed and modified entries.
    #[command(after_help = diff::EXAMPLES)]
    Diff(diff::DiffArgs),
    /// Copy every object of the repository to another location (offsite copy), or from one.
    #[command(after_help = sync::EXAMPLES)]
    Sync(sync::SyncArgs),
    /// Verify the repository: structure, and with --read-data every blob (or a rotating subset).
    #[command(
        after_help = "Examples:\n  cairn check\n  cairn check --read-data\n  cairn check --read-data-subset 10%   # run daily: all data verified every 10 days\n  cairn check --read-data-subset 2/7"
    )]
    Check(check::CheckArgs),
    /// Remove snapshots by keep rules (per host and paths); --prune reclaims the space.
    #[command(after_help = forget::EXAMPLES)]
    Forget(forget::ForgetArgs),
    /// Reclaim the space of data no snapshot references; safe while backups run.
    #[command(after_help = prune::EXAMPLES)]
    Prune(prune::PruneArgs),
    /// Rebuild the index from the packs, or rewrite snapshots that lost data.
    #[command(after_help = repair::EXAMPLES)]
    Repair(repair::RepairArgs),
    /// Check, show or install the nightly plan file (see `cairn run`).
    #[command(after_help = plan::EXAMPLES)]
    Plan(plan::PlanArgs),
    /// Run the plan: each due job's backup and retention, check, offsite, drills, each when due.
    #[command(after_help = run::EXAMPLES)]
    Run(run::RunArgs),
    /// Monitoring: age and size of the newest snapshots and the plan's last steps (exit 0-3 as a Nagios plugin).
    #[command(after_help = status::EXAMPLES)]
    Status(status::StatusArgs),
    /// Restore drill: restore a snapshot to scratch, re-hash it, run checks, measure RTO and RPO.
    #[command(after_help = drill::EXAMPLES)]
    Drill(drill::DrillArgs),
    /// S3 Object Lock: extend the locks of what kept snapshots need, as the keep policy says, or show them.
    #[command(after_help = retention::EXAMPLES)]
    Retention(retention::RetentionArgs),
    /// Remove leases that no longer count (crashed processes) and stale temporaries; --remove-all removes every lease.
    #[command(after_help = unlock::EXAMPLES)]
    Unlock(unlock::UnlockArgs),
    /// PostgreSQL base backups and point-in-time recovery.
    #[command(after_help = pg::EXAMPLES)]
    Pg(pg::PgArgs),
    /// PostgreSQL WAL archiving: archive_command, restore_command, and what is archived.
    #[command(after_help = wal::EXAMPLES)]
    Wal(wal::WalArgs),
    /// Manage passwords (key files) and the printable recovery key.
    #[command(after_help = key::EXAMPLES)]
    Key(key::KeyArgs),
    /// Write shell completions (bash, zsh, fish, elvish, powershell) to standard output.
    #[command(after_help = shell::COMPLETIONS_EXAMPLES)]
    Completions(shell::CompletionsArgs),
    /// Write the manual pages (roff), generated from the same definitions as --help.
    #[command(after_help = shell::MAN_EXAMPLES)]
    Man(shell::ManArgs),
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    // Before any thread exists: no child process may inherit the password variables.
    context::take_password_environment();
    // The matches are kept: `backup` pairs its streams with their names by command-line position.
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (mut cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            if code != exit::OK && std::env::args_os().any(|a| a == "--json") {
                print_json_error("usage", &e.kind().to_string(), code, None);
                stdout::flush_out();
            }
            return code;
        }
    };
    if let Some(line) = &cli.global.password_command_line {
        cli.global.password_command = Some(shell_argv(line));
    }
    if cli.global.repo.is_none() {
        cli.global.repo = std::env::var_os("CAIRN_REPO")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
    }
    progress::set_telling(&cli.global, matches.subcommand_name().unwrap_or("cairn"));
    // A panic is a bug; it still ends with a message and exit 1, never Rust's 101 alone (leased
    // operations release their lease before it gets here, see `HeldLease::hold_while`).
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(&cli, &matches)));
    let code = match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            errln!("error: {err:#}");
            if cli.global.verbose > 0 {
                // What the layer below said (OpenDAL's error with its context), kept out of the message.
                for detail in err
                    .chain()
                    .filter_map(|e| e.downcast_ref::<cairn::Error>())
                    .filter_map(cairn::Error::detail)
                {
                    errln!("  details: {detail}");
                }
            }
            let code = exit_code_for(&err);
            if cli.global.json {
                let cause = err.chain().find_map(|e| e.downcast_ref::<cairn::Error>());
                print_json_error(error_kind_name(&err), &format!("{err:#}"), code, cause);
            }
            code
        }
        Err(_) => {
            errln!("error: internal error: cairn panicked (the message above says where); please report it. Any repository change it made is complete or harmless, as after a crash: run the command again");
            exit::ERROR
        }
    };
    stdout::flush_out();
    match stdout::take_failure() {
        Some(e) => {
            errln!("error: cannot write to standard output: {e}");
            if code == exit::OK {
                exit::ERROR
            } else {
                code
            }
        }
        None => code,
    }
}

/// A shell command line as the argv that runs it.
fn shell_argv(line: &str) -> Vec<String> {
    vec!["sh".to_string(), "-c".to_string(), line.to_string()]
}

/// With `--json`, an error is a JSON object on stdout too, so a script reading stdout never
/// takes a failure for an empty result (`cairn snapshots --json | jq length`).
fn print_json_error(kind: &str, message: &str, exit_code: i32, cause: Option<&cairn::Error>) {
    let mut error = serde_json::json!({
        "error": { "kind": kind, "message": message, "exit_code": exit_code }
    });
    if let Some(o) = cause.and_then(cairn::Error::object) {
        error["error"]["object"] = serde_json::json!({ "kind": o.kind, "name": o.name });
    }
    if let Some(e) = cause.filter(|e| e.kind() == ErrorKind::Backend) {
        error["error"]["retryable"] = e.is_retryable().into();
    }
    outln!("{error}");
}

/// The name of an error's kind in `--json` error objects.
fn error_kind_name(err: &anyhow::Error) -> &'static str {
    let kind = err
        .chain()
        .find_map(|e| e.downcast_ref::<cairn::Error>())
        .map(cairn::Error::kind);
    match kind {
        Some(ErrorKind::WrongPassword) => "wrong_password",
        Some(ErrorKind::NotARepository) => "no_repository",
        Some(ErrorKind::Corrupted) => "damaged",
        Some(ErrorKind::NotFound) => "not_found",
        Some(ErrorKind::Backend) => "storage",
        Some(ErrorKind::SourceIo) => "source",
        Some(ErrorKind::InvalidInput) => "usage",
        Some(ErrorKind::UnsupportedVersion) => "unsupported_version",
        Some(ErrorKind::CommandFailed) => "command_failed",
        _ => "error",
    }
}

/// Runs one parsed command line (`cairn run` calls this for its steps).
fn dispatch(cli: &Cli, matches: &clap::ArgMatches) -> anyhow::Result<i32> {
    if cli.global.as_of.is_some() {
        as_of::refuse_writers(&cli.command)?;
    }
    match &cli.command {
        Command::Init(args) => init::run(&cli.global, args),
        Command::Backup(args) => match matches.subcommand_matches("backup") {
            Some(m) => backup::run(&cli.global, args, m),
            None => Ok(exit::ERROR),
        },
        Command::Snapshots(args) => snapshots::run(&cli.global, args),
        Command::Restore(args) => restore::run(&cli.global, args),
        Command::Check(args) => check::run(&cli.global, args),
        Command::Ls(args) => ls::run(&cli.global, args),
        Command::Cat(args) => cat::run(&cli.global, args),
        Command::Dump(args) => dump::run(&cli.global, args),
        Command::Find(args) => find::run(&cli.global, args),
        Command::Stats(args) => stats::run(&cli.global, args),
        Command::Diff(args) => diff::run(&cli.global, args),
        Command::Sync(args) => sync::run(&cli.global, args),
        Command::Forget(args) => forget::run(&cli.global, args),
        Command::Prune(args) => prune::run(&cli.global, args),
        Command::Repair(args) => repair::run(&cli.global, args),
        Command::Plan(args) => plan::run(&cli.global, args),
        Command::Run(args) => run::run(&cli.global, args),
        Command::Status(args) => status::run(&cli.global, args),
        Command::Drill(args) => drill::run(&cli.global, args),
        Command::Key(args) => key::run(&cli.global, args),
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
        Command::Unlock(args) => unlock::run(&cli.global, args),
        Command::Retention(args) => retention::run(&cli.global, args),
        Command::Wal(args) => wal::run(&cli.global, args),
        Command::Pg(args) => pg::run(&cli.global, args),
    }
}

/// The exit code for an error, from the library error kind it carries.
fn exit_code_for(err: &anyhow::Error) -> i32 {
    let kind = err
        .chain()
        .find_map(|e| e.downcast_ref::<cairn::Error>())
        .map(cairn::Error::kind);
    kind.map_or(exit::ERROR, exit::for_kind)
}
