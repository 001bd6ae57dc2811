//! `cairn backup`: paths, standard input and dump commands into a new snapshot.

use std::path::PathBuf;

use anyhow::Result;

use cairn::archive::DumpCommand;
use cairn::archive::{self, BackupOptions, BackupSources, ExcludeOptions, StreamSource};
use cairn::backend::{Backend, LocalBackend};
use cairn::format::config::Config;
use cairn::repo::select::parse_point_in_time;
use cairn::{Error, Repository};

use super::{context, exit, output, progress, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn backup /etc /var/www --tag nightly
  cairn backup ~/projects --exclude target/ --exclude '*.o' --exclude-caches
  cairn backup /home --exclude-file /etc/cairn/excludes --exclude-larger-than 2G
  cairn backup --files-from /etc/cairn/paths.txt
  find /srv -name '*.conf' -print0 | cairn backup --files-from-raw -
  pg_dump app | cairn backup --stdin --stdin-name app.sql
  cairn backup --command \"pg_dump --format=custom app\" --stdin-name app.dump
  cairn backup /etc --command-argv '[\"pg_dump\",\"--format=custom\",\"app\"]' \\
      --stdin-name dumps/app.dump --command-timeout 2h
  cairn backup /srv/import --time \"2026-01-23 14:30\"    # record an older snapshot time
  cairn backup /srv --exclude-caches --dry-run -v          # what would be stored, changing nothing

Dump commands: each --command (run by `sh -c`) or --command-argv (a JSON array: program and
arguments, no shell) is paired, in command-line order, with the next --stdin-name, the path of its
output in the snapshot. Its standard output is stored as it streams (no temporary file); its stderr
is shown and its last 4 KiB kept in the snapshot summary. The snapshot is written only if every
command exits 0 and every command and --stdin gives at least --min-bytes (default 1: an empty dump
is a failure); otherwise nothing is saved and cairn exits with 5.
Exclude patterns: `/var/cache` is that absolute path; `./build` and `../x` are taken from the
current directory, as relative sources are; any other pattern matches at any depth (`*.tmp` any
name, `etc/ssl` any path ending so); a trailing `/` matches directories only; `*` stays within one
name, `**` crosses names. Patterns that matched nothing are named in the summary (`-v` also lists
every entry left out and why).
Exit code 3: the snapshot was saved but some entries could not be read (listed on stderr).
Exit code 5: a dump command failed (status, signal, timeout or too little output) or standard
input gave fewer than --min-bytes: no snapshot.";

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up (stored under their absolute paths).
    #[arg(
        value_name = "PATH",
        required_unless_present_any = [
            "stdin", "commands", "command_argv", "files_from", "files_from_verbatim", "files_from_raw"
        ]
    )]
    pub paths: Vec<PathBuf>,
    /// Read the data from standard input instead of paths.
    #[arg(
        long,
        conflicts_with_all = ["paths", "files_from", "files_from_verbatim", "files_from_raw"],
        requires = "stdin_name"
    )]
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
    /// Record the snapshot as one of this plan job's (`[[job]] name`): its retention, status and
    /// drill then count it, and its parent is that job's latest snapshot.
    #[arg(long, value_name = "NAME", value_parser = parse_job_name)]
    pub job: Option<String>,
    /// Back up the paths listed in FILE, one per line (blank lines and `#` comments skipped,
    /// surrounding blanks trimmed; `-` reads standard input); repeatable, adds to PATH arguments.
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Like --files-from, but every line is a path exactly as written (no comments, no trimming).
    #[arg(long, value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Like --files-from, but paths are separated by NUL bytes (`find -print0`): any name works.
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Leave out entries matching GLOB (repeatable): `/abs/path`, `./rel/path`, `name`, `dir/`,
    /// `*.tmp`, `**/cache/**` (see the rules below).
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long = "iexclude", value_name = "GLOB")]
    pub iexcludes: Vec<String>,
    /// Read exclude patterns from FILE, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Like --exclude-file, ignoring case.
    #[arg(long, value_name = "FILE")]
    pub iexclude_file: Vec<PathBuf>,
    /// Leave out the contents of directories tagged as caches by a CACHEDIR.TAG file
    /// (bford.info/cachedir); the directory and its tag stay.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out the contents of directories that hold a file NAME (starting with HEADER, when
    /// given), except that file; repeatable.
    #[arg(long, value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Leave out regular files larger than SIZE (e.g. 500M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Do not cross into other file systems.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Compare against this snapshot instead of the latest of the same host and paths.
    #[arg(long, value_name = "SNAP")]
    pub parent: Option<String>,
    /// Read everything and say how much would be added (with -v: which files are new or changed),
    /// but write nothing to the repository: no pack, index or snapshot.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Record this as the snapshot time instead of now, e.g. "2026-01-23 14:30" (local time) or
    /// "2026-01-23T14:30:00Z"; for imports of older data and for tests.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
}

fn open_or_create(global: &GlobalArgs, dry_run: bool) -> Result<Repository> {
    let (path, is_default) = context::repo_location(global);
    if is_default && !dry_run && !LocalBackend::new(&path).has_config()? {
        let repo = context::init_repository(global, Config::generate()?, None)?;
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
    let since = global.requests.requests();
    // Checked before the repository is opened: a typo must not cost a password prompt.
    let stream_specs = streams(args, matches)?;
    let mut options = BackupOptions {
        host: args.host.clone(),
        tags: args.tags.clone(),
        job: args.job.clone(),
        one_file_system: args.one_file_system,
        time: args.time.as_deref().map(parse_point_in_time).transpose()?,
        dry_run: args.dry_run,
        ..Default::default()
    };
    args.exclude_options().apply_to(&mut options)?;
    let listed = files_from(args)?;
    let repo = open_or_create(global, args.dry_run)?;
    options.parent = match &args.parent {
        Some(spec) => Some(repo.find_snapshot(spec)?.0),
        None => None,
    };
    // archive::backup brings the index up to date once it holds its lease (FORMAT.md §12).
    let repo = repo.into_indexed_unsynced()?;
    let bar = progress::BackupBar::new(progress::wanted(global), global.verbose > 0, global.quiet)
        .dry_run(args.dry_run);
    let mut paths = args.paths.clone();
    paths.extend(listed);
    let paths = archive::normalize_sources(&paths)?;
    bar.scan(paths.clone(), options.excludes.clone());
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
    report(global, &outcome, since)?;
    Ok(exit_code(&outcome))
}

/// A backup's exit code: 0, or 3 when the snapshot was saved without entries it could not read.
pub fn exit_code(outcome: &archive::BackupOutcome) -> i32 {
    if outcome.snapshot.summary.errors.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    }
}

/// Prints what a backup did; `since` is the count of storage requests when it began, so `--json`
/// reports its own.
pub fn report(
    global: &GlobalArgs,
    outcome: &archive::BackupOutcome,
    since: cairn::backend::Requests,
) -> Result<()> {
    let snap = &outcome.snapshot;
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
    if outcome.unreadable_bases > 0 {
        errln!(
            "warning: {} changed chunk(s) could not be stored as deltas because their base could not be read; \
             they were stored whole and this snapshot is complete, but the repository is damaged: run `cairn check --read-data`",
            outcome.unreadable_bases
        );
    }
    if global.json {
        return output::print_json(&serde_json::json!({
            "dry_run": outcome.snapshot_id.is_none(),
            "snapshot_id": outcome.snapshot_id.map(|id| id.to_hex()),
            "short_id": outcome.snapshot_id.map(|id| id.short()),
            "parent": snap.parent,
            "summary": s,
            "absent_packs": absent,
            "unmatched_excludes": outcome.unmatched_excludes,
            "unreadable_bases": outcome.unreadable_bases,
            "dedup_lookups": outcome.dedup_lookups,
            "requests": global.requests.requests().since(&since),
        }));
    }
    for pattern in &outcome.unmatched_excludes {
        // Not an error (a cache directory may simply be absent today), but often a typo or a
        // pattern written for another layout: said every time, so it is not missed.
        errln!("warning: exclude pattern {pattern:?} matched nothing");
    }
    if !s.errors.is_empty() {
        // Each one was printed as a warning when it happened.
        errln!(
            "{} entries could not be read (warnings above); the snapshot {} without them",
            s.errors.len(),
            if outcome.snapshot_id.is_some() {
                "was saved"
            } else {
                "would be saved"
            }
        );
    }
    if global.quiet {
        return Ok(());
    }
    match outcome.snapshot_id {
        Some(id) => outln!("snapshot {} saved", id.short()),
        None => outln!("dry run: nothing was written; a backup would store what follows"),
    }
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
    let deltas = match s.deltas_added {
        0 => String::new(),
        n => format!(" ({n} as deltas)"),
    };
    outln!(
        "read {}, added {} in {} blobs{deltas}, {:.1}s",
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

impl BackupArgs {
    /// The exclude options of the command line.
    pub fn exclude_options(&self) -> ExcludeOptions {
        ExcludeOptions {
            patterns: self.excludes.clone(),
            pattern_files: self.exclude_file.clone(),
            ipatterns: self.iexcludes.clone(),
            ipattern_files: self.iexclude_file.clone(),
            caches: self.exclude_caches,
            if_present: self.exclude_if_present.clone(),
            larger_than: self.exclude_larger_than,
        }
    }
}

/// The paths of `--files-from`, `--files-from-verbatim` and `--files-from-raw`. A list that names
/// nothing is an error: a backup of nothing would look like success.
fn files_from(args: &BackupArgs) -> Result<Vec<PathBuf>> {
    use cairn::archive::ListFormat;
    let lists = [
        (&args.files_from, ListFormat::Lines, "--files-from"),
        (
            &args.files_from_verbatim,
            ListFormat::Verbatim,
            "--files-from-verbatim",
        ),
        (&args.files_from_raw, ListFormat::Nul, "--files-from-raw"),
    ];
    let mut out = Vec::new();
    for (files, format, flag) in lists {
        for file in files {
            let paths = archive::read_path_list(file, format)
                .map_err(|e| e.context(format!("{flag} {}", file.display())))?;
            if paths.is_empty() {
                return Err(Error::invalid_input(format!(
                    "{flag} {}: the list names no path; refusing to back up nothing \
                     (an empty list usually means the command that wrote it failed)",
                    file.display()
                ))
                .into());
            }
            out.extend(paths);
        }
    }
    Ok(out)
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
    cairn::units::parse_size(text)
}

/// `--command-timeout`: the spans plan files take (`90s`, `10min`, `1h30min`), but not zero.
fn parse_timeout(text: &str) -> std::result::Result<std::time::Duration, String> {
    match cairn::units::parse_span(text)? {
        d if d.is_zero() => Err(format!(
            "{text:?}: a timeout of zero would stop every command at once"
        )),
        d => Ok(d),
    }
}

/// A job name as `--job` takes it: what `[[job]] name` allows.
fn parse_job_name(text: &str) -> std::result::Result<String, String> {
    if cairn::plan::valid_job_name(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?}: a job name is 1 to 64 letters, digits, - and _"
        ))
    }
}
