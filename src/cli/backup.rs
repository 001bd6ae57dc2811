//! `cairn backup`: paths or standard input into a new snapshot.

use std::path::PathBuf;

use anyhow::Result;

use cairn::archive::{self, BackupOptions, BackupSource, ExcludeMatcher};
use cairn::backend::{Backend, LocalBackend};
use cairn::format::config::Config;
use cairn::repo::select::parse_point_in_time;
use cairn::{Error, Repository, SnapshotId};

use super::{context, exit, output, progress, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn backup /etc /var/www --tag nightly
  cairn backup ~/projects --exclude target --exclude '*.o' --exclude-file ~/.cairn-excludes
  pg_dump app | cairn backup --stdin --stdin-name app.sql
  cairn backup /srv/import --time \"2026-01-23 14:30\"    # record an older snapshot time
Exit code 3: the snapshot was saved but some entries could not be read (listed on stderr).";

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up (stored under their absolute paths).
    #[arg(value_name = "PATH", required_unless_present = "stdin")]
    pub paths: Vec<PathBuf>,
    /// Read the data from standard input instead of paths.
    #[arg(long, conflicts_with = "paths", requires = "stdin_name")]
    pub stdin: bool,
    /// File name of the standard-input data in the snapshot.
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Option<String>,
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
            eprintln!(
                "created a new repository at {} (the default location)",
                path.display()
            );
            eprintln!("{}", context::PASSWORD_WARNING);
        }
        return Ok(repo);
    }
    context::open_repository(global)
}

pub fn run(global: &GlobalArgs, args: &BackupArgs) -> Result<i32> {
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
    };
    let bar = progress::BackupBar::new(progress::wanted(global), global.verbose > 0);
    let source = if args.stdin {
        let name = args
            .stdin_name
            .clone()
            .ok_or_else(|| Error::invalid_input("--stdin needs --stdin-name NAME"))?;
        BackupSource::Stdin {
            name,
            reader: Box::new(std::io::stdin()),
        }
    } else {
        let paths = archive::normalize_sources(&args.paths)?;
        bar.scan(paths.clone(), excludes);
        BackupSource::Paths(paths)
    };
    let outcome = archive::backup(&repo, source, &options, &bar)?;
    bar.bar.finish_and_clear();
    report(global, &outcome.snapshot_id, &outcome.snapshot)?;
    Ok(if outcome.snapshot.summary.errors.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

pub fn report(global: &GlobalArgs, id: &SnapshotId, snap: &cairn::Snapshot) -> Result<()> {
    let s = &snap.summary;
    if global.json {
        return output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "short_id": id.short(),
            "parent": snap.parent,
            "summary": s,
        }));
    }
    if !s.errors.is_empty() {
        // Each one was printed as a warning when it happened.
        eprintln!(
            "{} entries could not be read (warnings above); the snapshot was saved without them",
            s.errors.len()
        );
    }
    if global.quiet {
        return Ok(());
    }
    println!("snapshot {} saved", id.short());
    println!(
        "files: {} new, {} changed, {} unchanged",
        s.files_new, s.files_changed, s.files_unchanged
    );
    println!(
        "dirs:  {} new, {} changed, {} unchanged",
        s.dirs_new, s.dirs_changed, s.dirs_unchanged
    );
    println!(
        "read {}, added {} in {} blobs, {:.1}s",
        output::bytes(s.bytes_read),
        output::bytes(s.bytes_added),
        s.blobs_added,
        s.duration_secs
    );
    Ok(())
}
