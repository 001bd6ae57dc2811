//! `cairn ls SNAP[:PATH]`: the entries of a directory in a snapshot, or one entry.

use anyhow::Result;

use cairn::browse::escape::escape;
use cairn::browse::{ls, TreeLoader};

use super::stdout::Output;
use super::{entry, locate, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn ls latest                      # the top of the latest snapshot
  cairn ls -l latest:/etc/nginx        # mode, owner, size and mtime
  cairn ls --recursive 1a2b3c4d:/srv/app
  cairn ls --at \"2026-01-23 14:30\" latest:/var/lib/postgresql
  cairn ls 'latest:/srv/caf\\xe9'        # a name with the byte 0xe9 (not UTF-8)
Paths: everything after the first `:` is the path; bytes that are not printable UTF-8 are
written \\xNN and a backslash \\\\, as ls prints them.";

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// `latest` or a snapshot id prefix, optionally followed by `:PATH`.
    #[arg(value_name = "SNAP[:PATH]")]
    pub target: String,
    /// Show mode, owner, size and modification time.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// List everything below the path.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &LsArgs) -> Result<i32> {
    let (opened, at) = locate::open_path(global, &args.target, &args.filter)?;
    let loader = TreeLoader::cached(&opened.repo);
    let mut out = Output::new();
    let result = if global.json {
        let mut entries = Vec::new();
        ls::list(&loader, &at, args.recursive, |path, node| {
            entries.push(entry::json(path, node));
            Ok(())
        })
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let doc = serde_json::json!({
                "snapshot_id": opened.id.to_hex(),
                "path": at.display(),
                "entries": entries,
                "repository_bytes_read": opened.counter.bytes_read(),
            });
            out.line(&serde_json::to_string_pretty(&doc)?)?;
            Ok(super::exit::OK)
        })
    } else {
        ls::list(&loader, &at, args.recursive, |path, node| {
            let text = if args.long {
                entry::long_line(path, node)
            } else if args.recursive {
                escape(path)
            } else {
                escape(&node.name)
            };
            out.line(&text)
        })
        .map(|()| super::exit::OK)
        .map_err(anyhow::Error::from)
    };
    locate::report_reads(global, &opened.counter);
    out.finish(result)
}
