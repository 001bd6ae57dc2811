//! `cairn find PATTERN`: matching entries across the selected snapshots, with when and how big.

use anyhow::Result;

use cairn::browse::escape::escape;
use cairn::browse::find::Finder;
use cairn::browse::TreeLoader;

use super::stdout::Output;
use super::{context, entry, output, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn find '*.conf'                     # by name, in every snapshot
  cairn find '/etc/nginx/**'              # by absolute path (a pattern starting with `/`)
  cairn find 'nginx/sites-*/'             # directories, at any depth
  cairn find pg_hba.conf --host db1 --at \"2026-01-23\"
  cairn find --json 'db.sql' | jq -r '.matches[] | [.snapshot_time, .size, .mtime] | @tsv'
Each line: snapshot id, snapshot time, size, modification time, path. The same file in many
snapshots shows when it changed (size, mtime). Unchanged directories are searched once.";

#[derive(clap::Args, Debug)]
pub struct FindArgs {
    /// Glob, with the rules of `backup --exclude`: starting with `/` it matches the absolute path,
    /// otherwise any path ending so (`*.conf`, `etc/ssh`); a trailing `/` matches directories only;
    /// `*` stays within one name, `**` crosses them.
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

pub fn run(global: &GlobalArgs, args: &FindArgs) -> Result<i32> {
    let (repo, counter) = context::open_counted(global)?;
    let snapshots = args.filter.to_filter()?.apply(repo.snapshots()?);
    let repo = repo.into_indexed()?;
    let loader = TreeLoader::cached(&repo);
    let mut finder = Finder::new(&loader, &args.pattern)?;
    let mut out = Output::new();
    let mut json = Vec::new();
    let mut count = 0u64;
    let mut result = Ok(());
    for (id, snap) in &snapshots {
        let found = match finder.search(&snap.tree_id()) {
            Ok(found) => found,
            Err(e) => {
                result = Err(anyhow::Error::from(e).context(format!("snapshot {}", id.short())));
                break;
            }
        };
        let time = output::local_time(snap);
        result = found
            .for_each(|path, node| {
                count += 1;
                if global.json {
                    let mut v = entry::json(path, node);
                    v["snapshot_id"] = id.to_hex().into();
                    v["snapshot_time"] = snap.time.clone().into();
                    json.push(v);
                    Ok(())
                } else {
                    out.line(&format!(
                        "{}  {}  {:>12}  {}  {}",
                        id.short(),
                        time,
                        node.size,
                        entry::local(node.mtime),
                        escape(path)
                    ))
                }
            })
            .map_err(anyhow::Error::from);
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| {
        if global.json {
            let doc = serde_json::json!({
                "pattern": args.pattern,
                "matches": json,
                "snapshots_searched": snapshots.len(),
                "trees_loaded": finder.trees_loaded(),
                "repository_bytes_read": counter.bytes_read(),
            });
            out.line(&serde_json::to_string_pretty(&doc)?)?;
        } else if global.verbose > 0 && !global.quiet {
            errln!(
                "{count} matches in {} snapshots; {} trees loaded; read {} from the repository",
                snapshots.len(),
                finder.trees_loaded(),
                output::bytes(counter.bytes_read())
            );
        }
        Ok(super::exit::OK)
    });
    out.finish(result)
}
