//! `cairn backup`: paths, standard input and dump commands into a new snapshot.

use std::path::PathBuf;

use anyhow::Result;

use cairn::archive::DumpCommand;
use cairn::archive::{self, BackupOptions, BackupSources, ExcludeMatcher, StreamSource};
use cairn::backend::{Backend, LocalBackend};
use cairn::format::config::Config;
use cairn::repo::select::parse_point_in_time;
use cairn::{Error, Repository};

use super::{context, exit, output, progress, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn backup /etc /var/www --tag nightly
  cairn backup ~/projects --exclude target --exclude '*.o' --exclude-file ~/.cairn-excludes
  pg_dump app | cairn backup --stdin --stdin-name app.sql
  cairn backup --command \"pg_dump --format=custom app\" --stdin-name app.dump
  cairn backup /etc --command-argv '[\"pg_dump\",\"--format=custom\",\"app\"]' \\
      --stdin-name dumps/app.dump --command-timeout 2h
  cairn backup /srv/import --time \"2026-01-23 14:30\"    # record an older snapshot time

Dump commands: each --command (run by `sh -c`) or --command-argv (a JSON array: program and
arguments, no shell) is paired, in command-line order, with the next --stdin-name, the path of its
output in the snapshot. Its standard output is stored as it streams (no temporary file); its stderr
is shown and its last 4 KiB kept in the snapshot summary. The snapshot is written only if every
command exits 0 and every command and --stdin gives at least --min-bytes (default 1: an empty dump
is a failure); otherwise nothing is saved and cairn exits with 5.
Exit code 3: the snapshot was saved but some entries could not be read (listed on stderr).
Exit code 5: a dump command failed (status, signal, timeout or too little output) or standard
input gave fewer than --min-bytes: no snapshot.";

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up (stored under their absolute paths).
    #[arg(
        value_name = "PATH",
        required_unless_present_any = ["stdin", "commands", "command_argv"]
    )]
    pub paths: Vec<PathBuf>,
    /// Read the data from standard input instead of paths.
    #[arg(long, conflicts_with = "paths", requires = "stdin_name")]
    pub stdin: bool,
    /// Path in the snapshot of the standard-input data or of a command's output, e.g. app.dump
    /// (/app.dump) or dumps/app.dump. Each --stdin, --command and --command-argv takes the next
    /// one, in command-line order.
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Vec<String>,
    /// Back up the standard output of COMMAND, run by `sh -c` (repeatable; needs a --stdin-name).
    #[arg(long = "command", value_name = "COMMAND")]
    pub commands: Vec<String>,
    /// Like --command, without a shell: a JSON array of program and arguments,
    /// e.g. '["pg_dump","--format=custom","app"]' (repeatable).
    #[arg(long, value_name = "JSON_ARRAY")]
    pub command_argv: Vec<String>,
    /// Standard input or a command giving fewer bytes than SIZE fails the backup with exit code 5
    /// and no snapshot (K, M, G suffixes; 0 accepts empty input).
    #[arg(long, value_name = "SIZE", default_value = "1", value_parser = parse_size)]
    pub min_bytes: u64,
    /// Stop a command still running after DURATION (e.g. 30s, 10min, 2h) and fail the backup.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub command_timeout: Option<std::time::Duration>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Leave out entries matching GLOB (repeatable). A pattern with `/` matches the absolute path, one without any name.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Do not cross into other file systems.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Compare against this snapshot instead of the latest of the same host and paths.
    #[arg(long, value_name = "SNAP")]
    pub parent: Option<String>,
    /// Record this as the snapshot time instead of now, e.g. "2026-01-23 14:30" (local time) or
    /// "2026-01-23T14:30:00Z"; for imports of older data and for tests.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
}

fn open_or_create(global: &GlobalArgs) -> Result<Repository> {
    let (path, is_default) = context::repo_location(global);
    if is_default && !LocalBackend::new(&path).has_config()? {
        let repo = context::init_repository(global, Config::generate()?)?;
        if !global.quiet {
            errln!(
                "created a new repository at {} (the default location)",
                path.display()
            );
            errln!("{}", context::PASSWORD_WARNING);
        }
        return Ok(repo);
    }
    context::open_repository(global)
}

pub fn run(global: &GlobalArgs, args: &BackupArgs, matches: &clap::ArgMatches) -> Result<i32> {
    // Checked before the repository is opened: a typo must not cost a password prompt.
    let stream_specs = streams(args, matches)?;
    let mut patterns = args.excludes.clone();
    for file in &args.exclude_file {
        patterns.extend(ExcludeMatcher::patterns_from_file(file)?);
    }
    let excludes = ExcludeMatcher::new(&patterns)?;
    let repo = open_or_create(global)?;
    let parent = match &args.parent {
        Some(spec) => Some(repo.find_snapshot(spec)?.0),
        None => None,
    };
    // archive::backup brings the index up to date once it holds its lease (FORMAT.md §12).
    let repo = repo.into_indexed_unsynced()?;
    let options = BackupOptions {
        host: args.host.clone(),
        tags: args.tags.clone(),
        excludes: excludes.clone(),
        one_file_system: args.one_file_system,
        parent,
        time: args.time.as_deref().map(parse_point_in_time).transpose()?,

        ..Default::default()
    };
    let bar = progress::BackupBar::new(progress::wanted(global), global.verbose > 0, global.quiet);
    let paths = archive::normalize_sources(&args.paths)?;
    bar.scan(paths.clone(), excludes);
    let sources = BackupSources {
        paths,
        streams: stream_specs
            .into_iter()
            .map(|(name, input)| {
                match input {
                    None => StreamSource::reader(name, Box::new(std::io::stdin())),
                    Some(command) => StreamSource::command(name, command),
                }
                .min_bytes(args.min_bytes)
            })
            .collect(),
    };
    let outcome = archive::backup(&repo, sources, &options, &bar);
    bar.bar.finish_and_clear();
    let outcome = outcome?;
    report(global, &outcome)?;
    Ok(if outcome.snapshot.summary.errors.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

pub fn report(global: &GlobalArgs, outcome: &archive::BackupOutcome) -> Result<()> {
    let (id, snap) = (&outcome.snapshot_id, &outcome.snapshot);
    let s = &snap.summary;
    let absent: Vec<String> = outcome.absent_packs.iter().map(|p| p.to_hex()).collect();
    if let Some(first) = absent.first() {
        // The new snapshot is whole (their blobs were stored again); older ones are not.
        errln!(
            "warning: {} pack(s) named by the index are missing from the repository or cut short (first: {first}); \
             this backup stored their blobs again, but older snapshots that used them are damaged: \
             run `cairn check`, then `cairn repair index` and `cairn repair snapshots`",
            absent.len()
        );
    }
    if global.json {
        return output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "short_id": id.short(),
            "parent": snap.parent,
            "summary": s,
            "absent_packs": absent,
        }));
    }
    if !s.errors.is_empty() {
        // Each one was printed as a warning when it happened.
        errln!(
            "{} entries could not be read (warnings above); the snapshot was saved without them",
            s.errors.len()
        );
    }
    if global.quiet {
        return Ok(());
    }
    outln!("snapshot {} saved", id.short());
    outln!(
        "files: {} new, {} changed, {} unchanged",
        s.files_new,
        s.files_changed,
        s.files_unchanged
    );
    outln!(
        "dirs:  {} new, {} changed, {} unchanged",
        s.dirs_new,
        s.dirs_changed,
        s.dirs_unchanged
    );
    outln!(
        "read {}, added {} in {} blobs, {:.1}s",
        output::bytes(s.bytes_read),
        output::bytes(s.bytes_added),
        s.blobs_added,
        s.duration_secs
    );
    for d in &s.dumps {
        outln!(
            "dump {}: `{}` exited {}, wrote {} in {:.1}s",
            d.path,
            DumpCommand::new(d.command.clone()).display(),
            d.exit_code,
            output::bytes(d.bytes),
            d.duration_secs
        );
    }
    Ok(())
}

/// The streams of the command line in order: `(name, None)` for standard input, `(name, Some(command))`
/// for a dump command. Each `--stdin`, `--command` and `--command-argv` takes the next `--stdin-name`.
fn streams(
    args: &BackupArgs,
    matches: &clap::ArgMatches,
) -> Result<Vec<(String, Option<DumpCommand>)>> {
    let indices = |id: &str| -> Vec<usize> {
        matches
            .indices_of(id)
            .map(Iterator::collect)
            .unwrap_or_default()
    };
    let configure = |c: DumpCommand| c.timeout(args.command_timeout);
    let mut inputs: Vec<(usize, Option<DumpCommand>)> = Vec::new();
    if args.stdin {
        inputs.extend(indices("stdin").first().map(|&i| (i, None)));
    }
    for (i, script) in indices("commands").into_iter().zip(&args.commands) {
        inputs.push((i, Some(configure(DumpCommand::shell(script)))));
    }
    for (i, json) in indices("command_argv").into_iter().zip(&args.command_argv) {
        inputs.push((i, Some(configure(DumpCommand::new(parse_argv(json)?)))));
    }
    inputs.sort_by_key(|(i, _)| *i);
    if inputs.len() < args.stdin_name.len() {
        return Err(Error::invalid_input(format!(
            "--stdin-name {:?} names nothing: each --stdin-name names the output of one --stdin, \
             --command or --command-argv, in order ({} given, {} names)",
            args.stdin_name[inputs.len()],
            inputs.len(),
            args.stdin_name.len()
        ))
        .into());
    }
    if let Some((_, input)) = inputs.get(args.stdin_name.len()) {
        let what = match input {
            None => "--stdin".to_string(),
            Some(c) => format!("the command `{}`", c.display()),
        };
        return Err(Error::invalid_input(format!(
            "{what} has no --stdin-name: give each --stdin, --command and --command-argv a \
             --stdin-name, in order (e.g. --command \"pg_dump app\" --stdin-name app.sql)"
        ))
        .into());
    }
    Ok(args
        .stdin_name
        .iter()
        .cloned()
        .zip(inputs.into_iter().map(|(_, c)| c))
        .collect())
}

/// `--command-argv`: a JSON array of at least one string.
fn parse_argv(json: &str) -> Result<Vec<String>> {
    match serde_json::from_str::<Vec<String>>(json) {
        Ok(argv) if !argv.is_empty() => Ok(argv),
        _ => Err(Error::invalid_input(format!(
            "--command-argv {json:?} is not a JSON array of strings holding the program and its \
             arguments, e.g. '[\"pg_dump\",\"--format=custom\",\"app\"]'"
        ))
        .into()),
    }
}

/// `--min-bytes`: the sizes plan files take (`512`, `64K`, `10M`, `2G`).
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    cairn::plan::units::parse_size(text)
}

/// `--command-timeout`: the spans plan files take (`90s`, `10min`, `1h30min`), but not zero.
fn parse_timeout(text: &str) -> std::result::Result<std::time::Duration, String> {
    match cairn::plan::units::parse_span(text)? {
        d if d.is_zero() => Err(format!(
            "{text:?}: a timeout of zero would stop every command at once"
        )),
        d => Ok(d),
    }
}
