//! Snapshot filter options shared by every command that picks snapshots.

use cairn::repo::select::parse_point_in_time;
use cairn::SnapshotFilter;

/// `--host`, `--tag`, `--path`, `--at`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Snapshot selection")]
pub struct FilterArgs {
    /// Only snapshots of this host (repeat for several).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with all these comma-separated tags (repeat: any of the sets).
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Only snapshots whose source paths include this absolute path (repeat: all of them).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Point in time: the newest snapshot at or before it, e.g. "2026-01-23 14:30" (local time),
    /// "2026-01-23 14:30 +01:00", "2026-01-23" (end of that day).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Only snapshots of this plan job (`[[job]] name`).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
}

impl FilterArgs {
    /// The library filter.
    pub fn to_filter(&self) -> cairn::Result<SnapshotFilter> {
        Ok(SnapshotFilter {
            hosts: self.hosts.clone(),
            tag_sets: self
                .tags
                .iter()
                .map(|set| {
                    set.split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect(),
            paths: self.paths.clone(),
            at: self.at.as_deref().map(parse_point_in_time).transpose()?,
            job: match &self.job {
                Some(name) => cairn::repo::JobFilter::Named(name.clone()),
                None => cairn::repo::JobFilter::Any,
            },
        })
    }
}
