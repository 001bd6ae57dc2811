//! `cairn diff SNAP1 SNAP2 [PATH]`: what changed between two snapshots, from their trees alone.

use anyhow::Result;

use cairn::browse::diff::{diff_entries, diff_trees, Change, DiffStats, Difference};
use cairn::browse::escape::escape;
use cairn::browse::path::parse_path;
use cairn::browse::{locate, Located, TreeLoader};
use cairn::{Error, ErrorKind, Snapshot, SnapshotId};

use super::stdout::Output;
use super::{context, output, selection, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn diff 1a2b3c4d latest
  cairn diff 1a2b3c4d latest /etc
  cairn diff --json 1a2b3c4d 5e6f7a8b | jq '.stats'
Markers: + added, - removed, M content modified, U metadata only (mode, owner, mtime, xattrs),
T type changed. File contents are never read: files compare by their chunk lists, and
directories whose trees are identical are skipped without being loaded.";

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The first (older) snapshot: `latest` or an id prefix.
    #[arg(value_name = "SNAP1")]
    pub old: String,
    /// The second snapshot.
    #[arg(value_name = "SNAP2")]
    pub new: String,
    /// Compare only this path (absolute in the snapshots; `\xNN` for other bytes).
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    #[command(flatten)]
    pub filter: selection::FilterArgs,
}

fn change_name(change: Change) -> &'static str {
    match change {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Content => "content",
        Change::Metadata => "metadata",
        Change::Type => "type",
    }
}

/// The path in one snapshot, or `None` when it does not exist there.
fn find(
    loader: &TreeLoader<'_>,
    snap: &Snapshot,
    components: &[Vec<u8>],
) -> cairn::Result<Option<Located>> {
    match locate(loader, &snap.tree_id(), components) {
        Ok(at) => Ok(Some(at)),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn run(global: &GlobalArgs, args: &DiffArgs) -> Result<i32> {
    let components = parse_path(args.path.as_deref().unwrap_or("/"))?;
    let (repo, counter) = context::open_counted(global)?;
    let filter = args.filter.to_filter()?;
    let (old_id, old) = repo.select_snapshot(&args.old, &filter)?;
    let (new_id, new) = repo.select_snapshot(&args.new, &filter)?;
    let repo = repo.into_indexed()?;
    let loader = TreeLoader::cached(&repo);
    let (a, b) = (
        find(&loader, &old, &components)?,
        find(&loader, &new, &components)?,
    );
    let path = cairn::browse::path::join(&components);
    if a.is_none() && b.is_none() {
        return Err(Error::invalid_input(format!(
            "{} is in neither snapshot {} nor {}",
            escape(&path),
            old_id.short(),
            new_id.short()
        ))
        .into());
    }
    let mut out = Output::new();
    let mut changes = Vec::new();
    let mut each = |d: &Difference<'_>| -> cairn::Result<()> {
        if global.json {
            let size = |n: Option<&cairn::format::tree::Node>| n.map(|n| n.size);
            changes.push(serde_json::json!({
                "path": escape(d.path),
                "change": change_name(d.change),
                "old_size": size(d.old),
                "new_size": size(d.new),
            }));
            Ok(())
        } else {
            out.line(&format!("{}    {}", d.change.marker(), escape(d.path)))
        }
    };
    let stats = if components.is_empty() {
        diff_trees(
            &loader,
            Some(&old.tree_id()),
            Some(&new.tree_id()),
            b"",
            &mut each,
        )
    } else {
        let node = |at: &Option<Located>| at.as_ref().and_then(|at| at.node.clone());
        diff_entries(
            &loader,
            node(&a).as_ref(),
            node(&b).as_ref(),
            &path,
            &mut each,
        )
    };
    let result = stats.map_err(anyhow::Error::from).and_then(|stats| {
        report(
            global,
            &mut out,
            (&old_id, &new_id),
            &stats,
            changes,
            counter.bytes_read(),
        )
    });
    out.finish(result)
}

fn report(
    global: &GlobalArgs,
    out: &mut Output,
    (old, new): (&SnapshotId, &SnapshotId),
    s: &DiffStats,
    changes: Vec<serde_json::Value>,
    bytes_read: u64,
) -> Result<i32> {
    if global.json {
        let doc = serde_json::json!({
            "old": old.to_hex(),
            "new": new.to_hex(),
            "changes": changes,
            "stats": s,
            "repository_bytes_read": bytes_read,
        });
        out.line(&serde_json::to_string_pretty(&doc)?)?;
    } else if !global.quiet {
        out.line(&format!(
            "\n{} -> {}: {} added ({}), {} removed ({}), {} content modified ({} -> {}), {} metadata only, {} type changed",
            old.short(),
            new.short(),
            s.added,
            output::bytes(s.bytes_added),
            s.removed,
            output::bytes(s.bytes_removed),
            s.content_modified,
            output::bytes(s.bytes_modified_before),
            output::bytes(s.bytes_modified_after),
            s.metadata_modified,
            s.type_changed,
        ))?;
    }
    Ok(super::exit::OK)
}
