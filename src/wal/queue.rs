//! The archive queue: the WAL files PostgreSQL has marked ready (`pg_wal/archive_status/*.ready`)
//! and not yet seen archived. Its size goes into every WAL record, so `status` on any host sees
//! an archiver falling behind; and with a limit (`--queue-max`) the oldest files beyond it are
//! dropped unarchived, as pgBackRest's `archive-push-queue-max` does, so that a repository out of
//! reach cannot fill the primary's disk. A drop is never silent: it is journaled in the spool,
//! written into the next record, and `status` reports it CRITICAL.

use std::path::{Path, PathBuf};

use crate::format::wal::{WalBacklog, WalDrop, WalKind, WalName};

/// The files waiting to be archived, in the order PostgreSQL archives them.
#[derive(Clone, Debug, Default)]
pub struct Queue {
    /// Each file's name, path and size.
    pub files: Vec<(WalName, PathBuf, u64)>,
}

impl Queue {
    /// The queue of the `pg_wal` directory `dir` (the directory of PostgreSQL's `%p`). Files that
    /// vanished or whose name is not a WAL file name are not counted.
    pub fn scan(dir: &Path) -> Queue {
        let Ok(entries) = std::fs::read_dir(dir.join("archive_status")) else {
            return Queue::default();
        };
        let mut files: Vec<(WalName, PathBuf, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_suffix(".ready")?.to_string();
                let name = WalName::parse(&name).ok()?;
                let path = dir.join(name.as_str());
                let size = std::fs::metadata(&path).ok().filter(|m| m.is_file())?.len();
                Some((name, path, size))
            })
            .collect();
        // History files first, then by name: the order PostgreSQL's archiver follows.
        files.sort_by(|a, b| {
            (a.0.kind() != WalKind::History, &a.0).cmp(&(b.0.kind() != WalKind::History, &b.0))
        });
        Queue { files }
    }

    /// Its bytes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    /// What a record says of it.
    pub fn backlog(&self, queue_max: Option<u64>) -> WalBacklog {
        WalBacklog {
            files: self.files.len() as u64,
            bytes: self.bytes(),
            queue_max,
        }
    }

    /// The oldest files to drop so that at most `queue_max` bytes wait: none while the queue
    /// fits. History files are never dropped (recovery cannot follow a timeline without its
    /// history, and they are tiny).
    pub fn over(&self, queue_max: u64) -> Vec<(WalName, PathBuf)> {
        let mut excess = self.bytes().saturating_sub(queue_max);
        let mut out = Vec::new();
        for (name, path, size) in &self.files {
            if excess == 0 {
                break;
            }
            if name.kind() == WalKind::History {
                continue;
            }
            excess = excess.saturating_sub(*size);
            out.push((name.clone(), path.clone()));
        }
        out
    }

    /// The drops of `names`, now, for the journal.
    pub fn drops(&self, names: &[(WalName, PathBuf)], queue_max: u64) -> Vec<WalDrop> {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        names
            .iter()
            .map(|(name, _)| WalDrop {
                name: name.as_str().to_string(),
                time: time.clone(),
                backlog_bytes: self.bytes(),
                queue_max,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_in(dir: &Path, files: &[(&str, usize)]) -> Queue {
        std::fs::create_dir_all(dir.join("archive_status")).unwrap();
        for (name, size) in files {
            std::fs::write(dir.join(name), vec![0u8; *size]).unwrap();
            std::fs::write(
                dir.join("archive_status").join(format!("{name}.ready")),
                b"",
            )
            .unwrap();
        }
        Queue::scan(dir)
    }

    #[test]
    fn the_queue_is_in_archive_order_and_drops_only_the_oldest_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue_in(
            dir.path(),
            &[
                ("000000020000000000000005", 100),
                ("000000010000000000000004", 100),
                ("00000002.history", 10),
                ("000000020000000000000006", 100),
            ],
        );
        // A .done file and a stray are not part of it.
        std::fs::write(
            dir.path()
                .join("archive_status/000000010000000000000003.done"),
            b"",
        )
        .unwrap();
        let names: Vec<&str> = q.files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "00000002.history",
                "000000010000000000000004",
                "000000020000000000000005",
                "000000020000000000000006"
            ]
        );
        assert_eq!(q.bytes(), 310);
        assert!(q.over(310).is_empty());
        let dropped: Vec<String> = q.over(150).iter().map(|d| d.0.to_string()).collect();
        assert_eq!(
            dropped,
            ["000000010000000000000004", "000000020000000000000005"]
        );
        // Never the history file, even when the limit is below it.
        assert_eq!(q.over(0).len(), 3);
    }

    #[test]
    fn a_missing_archive_status_is_an_empty_queue() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::scan(dir.path());
        assert_eq!(
            q.backlog(Some(5)),
            WalBacklog {
                files: 0,
                bytes: 0,
                queue_max: Some(5)
            }
        );
    }
}
