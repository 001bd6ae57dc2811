//! A fault-injecting backend: lets a budget of changes (writes, and removals when asked) through,
//! then fails every later one, as a crash or a full disk would.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use cairn::backend::{Backend, LocalBackend, ObjectKind};
use cairn::ErrorKind;

pub struct FailingBackend {
    pub inner: LocalBackend,
    pub budget: Arc<AtomicI64>,
    /// Whether removals spend the budget too (prune); backups only write.
    pub count_removes: bool,
    /// The next listing of this kind shows, instead of the real objects, one that is gone by the
    /// time it is read: what a reader sees when a prune replaces objects (writing the new ones
    /// before removing the old) between the reader's listing and its reads. Shared, so a test can
    /// arm it after the backend went into a repository.
    pub vanishing: Arc<Mutex<Option<ObjectKind>>>,
    /// Keeps `vanishing` armed: every other listing of that kind shows the object that is gone, the
    /// listings between show the real ones (a reader listing again sees it vanish, every time).
    pub vanishing_repeats: bool,
    vanishing_shown: AtomicBool,
    /// Runs once, just before the first whole read (or size) of this kind: to change the repository
    /// (run a prune) between a reader's listing and its reads.
    pub before_first_read: Arc<Mutex<Option<(ObjectKind, Hook)>>>,
}

/// Work run inside a read, see [`FailingBackend::before_first_read`].
pub type Hook = Box<dyn FnOnce() + Send>;

impl FailingBackend {
    pub fn new(inner: LocalBackend, budget: i64, count_removes: bool) -> Self {
        FailingBackend {
            inner,
            budget: Arc::new(AtomicI64::new(budget)),
            count_removes,
            vanishing: Arc::new(Mutex::new(None)),
            vanishing_repeats: false,
            vanishing_shown: AtomicBool::new(false),
            before_first_read: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs the hook armed for `kind`, once; other readers go on meanwhile.
    fn run_hook(&self, kind: ObjectKind) {
        let hook = {
            let mut armed = self.before_first_read.lock().unwrap();
            match armed.as_ref() {
                Some((k, _)) if *k == kind => armed.take().map(|(_, hook)| hook),
                _ => None,
            }
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    fn spend(&self, what: &str, kind: ObjectKind, name: &str) -> cairn::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(cairn::Error::new(
                ErrorKind::Backend,
                format!("injected failure {what} {} {name}", kind.label()),
            ));
        }
        Ok(())
    }
}

impl Backend for FailingBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn has_config(&self) -> cairn::Result<bool> {
        self.inner.has_config()
    }
    fn create(&self) -> cairn::Result<()> {
        self.inner.create()
    }
    fn list_all(&self, kind: ObjectKind) -> cairn::Result<Vec<(String, u64)>> {
        let mut vanishing = self.vanishing.lock().unwrap();
        if *vanishing == Some(kind) {
            if !self.vanishing_repeats {
                *vanishing = None;
                return Ok(vec![("ab".repeat(32), 100)]);
            }
            if !self.vanishing_shown.fetch_xor(true, Ordering::SeqCst) {
                return Ok(vec![("ab".repeat(32), 100)]);
            }
        }
        drop(vanishing);
        self.inner.list_all(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> cairn::Result<Vec<u8>> {
        self.run_hook(kind);
        self.inner.read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> cairn::Result<Vec<u8>> {
        // No hook here: check reads packs whole to verify them while its snapshot walk reads tree
        // ranges beside it, and the hook must land between the listing and the whole reads, not
        // wherever the walk happens to be first.
        self.inner.read_range(kind, name, offset, len)
    }
    fn size(&self, kind: ObjectKind, name: &str) -> cairn::Result<u64> {
        self.run_hook(kind);
        self.inner.size(kind, name)
    }
    fn write(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> cairn::Result<()> {
        self.spend("writing", kind, name)?;
        self.inner.write(kind, name, bytes)
    }
    fn remove(&self, kind: ObjectKind, name: &str) -> cairn::Result<()> {
        if self.count_removes {
            self.spend("removing", kind, name)?;
        }
        self.inner.remove(kind, name)
    }
    fn remove_stale_temporaries(&self, idle: std::time::Duration) -> cairn::Result<u64> {
        self.inner.remove_stale_temporaries(idle)
    }
}
