//! The first steps every browsing command shares: open the repository (counting bytes read),
//! pick the snapshot of a `SNAP[:PATH]` argument under the selection filters, find the path.

use anyhow::{Context, Result};

use cairn::backend::RequestCounter;
use cairn::browse::{locate, Located, SnapPath, TreeLoader};
use cairn::{IndexedRepository, Snapshot, SnapshotId};

use super::{context, selection, GlobalArgs};

/// An open repository with the snapshot a command works on.
pub struct Opened {
    pub repo: IndexedRepository,
    pub counter: RequestCounter,
    pub id: SnapshotId,
    pub snapshot: Snapshot,
}

/// Opens the snapshot of `arg` (`SNAP[:PATH]`) and finds its path. `latest` is the newest
/// snapshot holding the path; a bare `latest` that passed over other sources' snapshots says so.
pub fn open_path(
    global: &GlobalArgs,
    arg: &str,
    filter: &selection::FilterArgs,
) -> Result<(Opened, Located)> {
    let snap_path = SnapPath::parse(arg)?;
    let path: Vec<u8> = if snap_path.components.is_empty() {
        b"/".to_vec()
    } else {
        snap_path
            .components
            .iter()
            .flat_map(|c| std::iter::once(&b'/').chain(c))
            .copied()
            .collect()
    };
    let (repo, counter) = context::open_counted(global)?;
    let ((id, snapshot), passed_over) =
        repo.select_snapshot_holding(&snap_path.snapshot, &filter.to_filter()?, &path)?;
    if !passed_over.is_empty() && !global.quiet {
        let others: Vec<String> = passed_over
            .iter()
            .take(3)
            .map(|(id, s)| format!("{} ({})", id.short(), s.paths.join(" ")))
            .collect();
        errln!(
            "note: latest is {} ({}); the newest snapshots of other sources are {}: choose with --path or a snapshot id, or name a path (latest:/etc)",
            id.short(),
            snapshot.paths.join(" "),
            others.join(", ")
        );
    }
    let opened = Opened {
        repo: repo.into_indexed()?,
        counter,
        id,
        snapshot,
    };
    let loader = TreeLoader::cached(&opened.repo);
    let located = locate(&loader, &opened.snapshot.tree_id(), &snap_path.components)
        .with_context(|| format!("snapshot {}", opened.id.short()))?;
    Ok((opened, located))
}

/// With `-v`, says on stderr how much was read from the repository.
pub fn report_reads(global: &GlobalArgs, counter: &RequestCounter) {
    if global.verbose > 0 && !global.quiet {
        errln!(
            "read {} bytes ({}) from the repository",
            counter.bytes_read(),
            super::output::bytes(counter.bytes_read())
        );
    }
}
