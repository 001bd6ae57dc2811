//! The first steps every browsing command shares: open the repository (counting bytes read),
//! pick the snapshot of a `SNAP[:PATH]` argument under the selection filters, find the path.

use anyhow::{Context, Result};

use cairn::backend::ReadCounter;
use cairn::browse::{locate, Located, SnapPath, TreeLoader};
use cairn::{IndexedRepository, Snapshot, SnapshotId};

use super::{context, selection, GlobalArgs};

/// An open repository with the snapshot a command works on.
pub struct Opened {
    pub repo: IndexedRepository,
    pub counter: ReadCounter,
    pub id: SnapshotId,
    pub snapshot: Snapshot,
}

/// Opens the repository and selects `spec` among the snapshots passing `filter`.
pub fn open(global: &GlobalArgs, spec: &str, filter: &selection::FilterArgs) -> Result<Opened> {
    let (repo, counter) = context::open_counted(global)?;
    let (id, snapshot) = repo.select_snapshot(spec, &filter.to_filter()?)?;
    let repo = repo.into_indexed()?;
    Ok(Opened {
        repo,
        counter,
        id,
        snapshot,
    })
}

/// Opens the snapshot of `arg` (`SNAP[:PATH]`) and finds its path.
pub fn open_path(
    global: &GlobalArgs,
    arg: &str,
    filter: &selection::FilterArgs,
) -> Result<(Opened, Located)> {
    let snap_path = SnapPath::parse(arg)?;
    let opened = open(global, &snap_path.snapshot, filter)?;
    let loader = TreeLoader::cached(&opened.repo);
    let located = locate(&loader, &opened.snapshot.tree_id(), &snap_path.components)
        .with_context(|| format!("snapshot {}", opened.id.short()))?;
    Ok((opened, located))
}

/// With `-v`, says on stderr how much was read from the repository.
pub fn report_reads(global: &GlobalArgs, counter: &ReadCounter) {
    if global.verbose > 0 && !global.quiet {
        errln!(
            "read {} bytes ({}) from the repository",
            counter.get(),
            super::output::bytes(counter.get())
        );
    }
}
