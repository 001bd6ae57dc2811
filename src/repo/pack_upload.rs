//! Stores finished packs on a thread of their own, so compression and sealing go on while a pack
//! is written (a 32 MiB write took up to 0.13 s, a quarter of a dump backup's wall time, when the
//! worker that filled the pack wrote it itself).

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::backend::{Backend, ObjectKind};
use crate::error::{Error, ErrorKind, Result};
use crate::format::index_file::PackEntries;
use crate::pack::FinishedPack;

/// The writer thread and its two channels: packs in, stored packs' entries (or errors) out.
struct Running {
    packs: SyncSender<FinishedPack>,
    stored: Receiver<Result<PackEntries>>,
    thread: JoinHandle<()>,
}

/// Hands packs to a writer thread, started with the first pack. At most one pack waits while
/// another is written: a worker that finishes a pack meanwhile waits for the writer, which bounds
/// memory at two packs beyond those being filled, plus one written pack's buffer kept for the next
/// pack (a fresh 32 MiB buffer per pack was half of a dump backup's page faults).
pub struct PackUploader {
    backend: Arc<dyn Backend>,
    running: Mutex<Option<Running>>,
    spare: Arc<Mutex<Option<Vec<u8>>>>,
    /// The failed write that stopped the writer: every later caller is told that, not only the
    /// first one to collect it (the storage's cause must reach the user whichever thread reports).
    failure: Mutex<Option<Error>>,
}

impl PackUploader {
    /// An uploader to `backend`; no thread runs until the first pack.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        PackUploader {
            backend,
            running: Mutex::new(None),
            spare: Arc::new(Mutex::new(None)),
            failure: Mutex::new(None),
        }
    }

    /// The buffer of a pack already written, emptied, when the backend handed one back.
    pub fn spare_buffer(&self) -> Option<Vec<u8>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `pack` for writing, starting the writer thread if needed.
    ///
    /// # Errors
    /// When the thread cannot be started, or the writer stopped after a failed write: that write's
    /// error (taken from what [`PackUploader::stored`] would return).
    pub fn submit(&self, pack: FinishedPack) -> Result<()> {
        let packs = {
            let mut running = self.lock();
            if running.is_none() {
                *running = Some(self.start()?);
            }
            running.as_ref().map(|r| r.packs.clone())
        };
        // Sent outside the lock: a full channel blocks this worker only, not those collecting results.
        if let Some(Ok(())) = packs.map(|p| p.send(pack)) {
            return Ok(());
        }
        // The writer stops only after a failed write, whose error waits among the results, or was
        // collected already by another thread.
        let failure = self.stored().into_iter().find_map(|r| r.err());
        let failure = failure.or_else(|| {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        });
        Err(failure.unwrap_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                "the pack writer stopped after a failed write",
            )
        }))
    }

    fn start(&self) -> Result<Running> {
        let (packs, incoming) = mpsc::sync_channel::<FinishedPack>(0);
        let (report, stored) = mpsc::channel();
        let backend = Arc::clone(&self.backend);
        let spare = Arc::clone(&self.spare);
        let thread = std::thread::Builder::new()
            .name("cairn-pack-writer".into())
            .spawn(move || {
                for pack in incoming {
                    let name = pack.id.to_hex();
                    let result = backend
                        .write_owned(ObjectKind::Pack, &name, pack.bytes)
                        .map(|buffer| {
                            if let Some(mut buffer) = buffer {
                                buffer.clear();
                                *spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(buffer);
                            }
                            PackEntries {
                                pack: pack.id,
                                blobs: pack.entries,
                            }
                        });
                    let failed = result.is_err();
                    // Nobody listening means the saver is gone: nothing left to report to.
                    if report.send(result).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot start the pack writer thread: {e}"),
                )
            })?;
        Ok(Running {
            packs,
            stored,
            thread,
        })
    }

    /// The packs stored since the last call, in the order written; a failed write is an error.
    pub fn stored(&self) -> Vec<Result<PackEntries>> {
        let results = match self.lock().as_ref() {
            Some(running) => running.stored.try_iter().collect(),
            None => Vec::new(),
        };
        self.remember_failure(results)
    }

    fn remember_failure(&self, results: Vec<Result<PackEntries>>) -> Vec<Result<PackEntries>> {
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.clone());
        }
        results
    }

    /// Waits until every queued pack is written and stops the thread; returns what
    /// [`PackUploader::stored`] has not returned yet.
    pub fn finish(&self) -> Vec<Result<PackEntries>> {
        let Some(running) = self.lock().take() else {
            return Vec::new();
        };
        drop(running.packs);
        let mut out: Vec<Result<PackEntries>> = running.stored.iter().collect();
        if running.thread.join().is_err() {
            out.push(Err(Error::new(
                ErrorKind::Other,
                "the pack writer thread panicked",
            )));
        }
        out
    }
}

impl Drop for PackUploader {
    fn drop(&mut self) {
        // A saver abandoned on an error path: let the current write end, so no thread outlives it.
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use crate::id::PackId;

    fn pack(n: u8) -> FinishedPack {
        let bytes = vec![n; 1000];
        FinishedPack {
            id: PackId::hash_of(&bytes),
            bytes,
            entries: Vec::new(),
        }
    }

    #[test]
    fn every_submitted_pack_is_stored_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("repo"));
        backend.create().unwrap();
        let uploader = PackUploader::new(Arc::new(backend));
        let ids: Vec<PackId> = (0..5).map(|n| pack(n).id).collect();
        let mut reported = Vec::new();
        for n in 0..5 {
            uploader.submit(pack(n)).unwrap();
            reported.extend(uploader.stored());
        }
        reported.extend(uploader.finish());
        let reported: Vec<PackId> = reported.into_iter().map(|r| r.unwrap().pack).collect();
        assert_eq!(reported, ids);
        let spare = uploader
            .spare_buffer()
            .expect("a local write hands its buffer back");
        assert!(spare.is_empty() && spare.capacity() >= 1000);
        assert!(
            uploader.spare_buffer().is_none(),
            "a buffer is handed out once"
        );
        let backend = LocalBackend::new(dir.path().join("repo"));
        assert_eq!(backend.list(ObjectKind::Pack).unwrap().len(), 5);
        assert!(
            uploader.finish().is_empty(),
            "a second finish has nothing left"
        );
    }

    #[test]
    fn a_failed_write_is_reported_and_stops_later_submissions() {
        let dir = tempfile::tempdir().unwrap();
        // Never created: every write fails.
        let backend = LocalBackend::new(dir.path().join("missing/repo"));
        std::fs::write(dir.path().join("missing"), b"a file, not a directory").unwrap();
        let uploader = PackUploader::new(Arc::new(backend));
        uploader.submit(pack(1)).unwrap();
        // The writer ends after its failure, so the next hand-over finds nobody to take it and
        // returns the failure itself, not a message about the writer.
        let err = uploader.submit(pack(2)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        assert!(!err.to_string().contains("pack writer"), "{err}");
        assert!(
            uploader.finish().is_empty(),
            "the failure was reported once"
        );
    }
}
