//! Mount points made for a test and removed when it ends (root only; `None` where mounting is refused).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted file system or bind mount; unmounted on drop.
pub struct Mount(pub PathBuf);

impl Mount {
    /// A tmpfs of `size` (e.g. "2m") at `at`, created if missing.
    pub fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).ok()?;
        Self::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size}"))
                .arg("tmpfs")
                .arg(at),
            at,
        )
    }

    /// `source` bind-mounted onto `at` (which must exist).
    pub fn bind(source: &Path, at: &Path) -> Option<Mount> {
        Self::run(Command::new("mount").arg("--bind").arg(source).arg(at), at)
    }

    fn run(cmd: &mut Command, at: &Path) -> Option<Mount> {
        let ok = cmd.status().is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
