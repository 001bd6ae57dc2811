//! `cairn restore`: a snapshot, or one path of it, into a target directory.

use std::path::PathBuf;

use anyhow::Result;

use cairn::archive::ExcludeMatcher;
use cairn::restore::{self, RestoreOptions, RestoreRoot};

use super::{locate, output, progress, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn restore latest --target /tmp/restore        # writes /tmp/restore/<absolute source paths>
  cairn restore latest:/etc/nginx --target /tmp/nginx   # the contents of /etc/nginx land in /tmp/nginx
  cairn restore latest:/etc/passwd --target /tmp    # one file: /tmp/passwd
  cairn restore latest --include '*.conf' --exclude '/srv/cache/**' --target /tmp/r --verify
  cairn restore 1a2b3c4d --target /srv/restore --overwrite
  cairn restore latest --host db1 --tag nightly --at \"2026-01-23 14:30\" --target /tmp/r
  cairn restore latest:/srv/www --target /srv/www --overwrite --dry-run -v   # what would be written
Patterns follow the rules of `backup --exclude` over the paths in the snapshot: `/etc/ssl` is that
path, `*.conf` or `nginx/sites-enabled` match at any depth, a trailing `/` matches directories only.";

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// `latest` or a unique snapshot id prefix, optionally followed by `:PATH` to restore only that path.
    #[arg(value_name = "SNAP[:PATH]")]
    pub snapshot: String,
    /// Directory to restore into (created if missing; must be empty unless --overwrite).
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Replace existing files in the target.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore only entries matching GLOB and everything below them (repeatable).
    #[arg(long = "include", value_name = "GLOB")]
    pub includes: Vec<String>,
    /// Leave out entries matching GLOB and everything below them (repeatable).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read every written file back and check it against the snapshot's chunk ids.
    #[arg(long)]
    pub verify: bool,
    /// Write nothing: say what would be restored (with -v, every path in the target) and whether
    /// the index names every chunk needed (exit 1 if not).
    #[arg(long, short = 'n', conflicts_with = "verify")]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &RestoreArgs) -> Result<i32> {
    let options = RestoreOptions {
        overwrite: args.overwrite,
        include: if args.includes.is_empty() {
            None
        } else {
            Some(ExcludeMatcher::new(&args.includes)?)
        },
        exclude: ExcludeMatcher::new(&args.excludes)?,
        verify: args.verify,
        files_per_batch: None,
    };
    let (opened, at) = locate::open_path(global, &args.snapshot, &args.filter)?;
    let bar = progress::RestoreBar {
        // The length comes from the restore plan: the snapshot's bytes_read is only what that backup read.
        bar: progress::byte_bar(progress::wanted(global), 0),
    };
    let root = match (&at.tree, &at.node) {
        (Some(tree), dir) => RestoreRoot::Tree {
            tree: *tree,
            dir: dir.as_ref(),
        },
        (None, Some(node)) => RestoreRoot::Entry(node),
        (None, None) => {
            return Err(cairn::Error::corrupted(format!(
                "snapshot {}: {} names nothing",
                opened.id.short(),
                at.display()
            ))
            .into())
        }
    };
    // The snapshot root's entries sit at `/name`; below it, paths continue from the located one.
    let source: &[u8] = if at.node.is_none() { b"" } else { &at.path };
    if args.dry_run {
        return dry_run(global, args, &opened, &at, root, source, &options);
    }
    let stats = restore::restore_from(&opened.repo, root, source, &args.target, &options, &bar)?;
    bar.bar.finish_and_clear();
    let id = opened.id;
    if global.json {
        output::print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(),
            "path": at.display(),
            "target": args.target.display().to_string(),
            "files": stats.files,
            "dirs": stats.dirs,
            "others": stats.others,
            "bytes": stats.bytes,
            "verified": stats.verified,
            "warnings": stats.warnings,
            "repository_bytes_read": opened.counter.bytes_read(),
        }))?;
    } else if !global.quiet {
        outln!(
            "restored {} of snapshot {} to {}: {} files, {} dirs, {} other entries, {}{}",
            at.display(),
            id.short(),
            args.target.display(),
            stats.files,
            stats.dirs,
            stats.others,
            output::bytes(stats.bytes),
            if args.verify {
                format!(", {} files verified", stats.verified)
            } else {
                String::new()
            }
        );
    }
    locate::report_reads(global, &opened.counter);
    Ok(super::exit::OK)
}

/// `--dry-run`: the plan of the restore, without writing.
fn dry_run(
    global: &GlobalArgs,
    args: &RestoreArgs,
    opened: &locate::Opened,
    at: &cairn::browse::Located,
    root: RestoreRoot<'_>,
    source: &[u8],
    options: &RestoreOptions,
) -> Result<i32> {
    let list = global.verbose > 0 && !global.json;
    let report = restore::dry_run(
        &opened.repo,
        root,
        source,
        &args.target,
        options,
        |path, _| {
            if list {
                outln!("{}", path.display());
            }
        },
    )?;
    let s = &report.stats;
    if global.json {
        output::print_json(&serde_json::json!({
            "dry_run": true,
            "snapshot_id": opened.id.to_hex(),
            "path": at.display(),
            "target": args.target.display().to_string(),
            "files": s.files,
            "dirs": s.dirs,
            "others": s.others,
            "bytes": s.bytes,
            "missing_chunks": report.missing_chunks,
        }))?;
    } else if !global.quiet {
        outln!(
            "dry run: restoring {} of snapshot {} to {} would write {} files, {} dirs, {} other entries, {}",
            at.display(),
            opened.id.short(),
            args.target.display(),
            s.files,
            s.dirs,
            s.others,
            output::bytes(s.bytes)
        );
    }
    if report.missing_chunks > 0 {
        errln!(
            "error: {} chunk(s) of these files are not in the index, or are deltas whose chain lacks a link: the restore would fail; \
             run `cairn check` to find the damage",
            report.missing_chunks
        );
        return Ok(super::exit::ERROR);
    }
    Ok(super::exit::OK)
}
