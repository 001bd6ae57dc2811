//! `repair`: rebuilds what can be rebuilt after damage (FORMAT.md §12, "Repair").
//!
//! `repair index` rewrites the index from the pack headers; `repair snapshots` writes, for each snapshot
//! that references lost blobs, a new snapshot without what cannot be restored. Neither ever deletes a pack
//! or a pending-deletion record; both plan first and execute second, so `--dry-run` prints the plan.

mod index;
mod snapshots;

pub use index::{execute_index, plan_index, IndexRepairOutcome, IndexRepairPlan, UnreadablePack};
pub use snapshots::{
    repair_snapshots, RemovedPath, SnapshotRepair, SnapshotRepairOptions, SnapshotRepairReport,
    REPAIRED_TAG,
};

/// Progress of a repair that reads packs: the total once, then each pack done.
pub trait RepairProgress: Sync {
    /// How many packs will be read.
    fn total(&self, packs: u64);
    /// One more pack was read.
    fn pack_done(&self);
}

/// Reports nothing.
pub struct NoRepairProgress;

impl RepairProgress for NoRepairProgress {
    fn total(&self, _packs: u64) {}
    fn pack_done(&self) {}
}
