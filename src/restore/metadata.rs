//! Applying saved metadata to restored entries without following symlinks: owner, xattrs, mode, then times.
//! A regular file whose contents were just written gets it through its open handle, which spares the
//! three path lookups per file that the path-based calls cost.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use filetime::FileTime;
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use crate::format::tree::{Node, NodeKind};

/// Creates a FIFO or device node.
///
/// # Errors
/// When the system refuses (device nodes need root).
pub fn make_special(path: &Path, node: &Node) -> nix::Result<()> {
    let kind = match node.kind {
        NodeKind::Fifo => SFlag::S_IFIFO,
        NodeKind::CharDevice => SFlag::S_IFCHR,
        NodeKind::BlockDevice => SFlag::S_IFBLK,
        _ => return Err(nix::errno::Errno::EINVAL),
    };
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(node.mode & 0o777),
        node.rdev as nix::libc::dev_t,
    )
}

/// Whether cairn runs as root (asked once: restore would otherwise ask for every entry).
fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| nix::unistd::geteuid().is_root())
}

/// Applies owner (when root), xattrs, permissions and times to a regular file through `file`, open
/// on `path` (named in the message); returns a message for what failed.
pub fn apply_to_open_file(file: &File, path: &Path, node: &Node) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    use xattr::FileExt;
    let mut problems = Vec::new();
    if is_root() {
        // Ownership first: chown clears setuid/setgid, which the chmod below restores.
        if let Err(e) = nix::unistd::fchown(
            file,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
        ) {
            problems.push(format!("owner: {e}"));
        }
    }
    for (name, value) in &node.xattrs {
        if let Err(e) = file.set_xattr(OsStr::from_bytes(name), value) {
            problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(name)));
        }
    }
    if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(node.mode)) {
        problems.push(format!("mode: {e}"));
    }
    let mtime = FileTime::from_unix_time(node.mtime.secs, node.mtime.nanos);
    if let Err(e) = filetime::set_file_handle_times(file, Some(mtime), Some(mtime)) {
        problems.push(format!("times: {e}"));
    }
    report(path, problems)
}

/// Applies owner (when root), xattrs, permissions and times; returns a message for what failed.
pub fn apply(path: &Path, node: &Node) -> Result<(), String> {
    let mut problems = Vec::new();
    if is_root() {
        // Ownership first: chown clears setuid/setgid, which the chmod below restores.
        if let Err(e) = fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            problems.push(format!("owner: {e}"));
        }
    }
    for (name, value) in &node.xattrs {
        if let Err(e) = xattr::set(path, OsStr::from_bytes(name), value) {
            problems.push(format!("xattr {}: {e}", String::from_utf8_lossy(name)));
        }
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode)) {
            problems.push(format!("mode: {e}"));
        }
    }
    let mtime = FileTime::from_unix_time(node.mtime.secs, node.mtime.nanos);
    if let Err(e) = filetime::set_symlink_file_times(path, mtime, mtime) {
        problems.push(format!("times: {e}"));
    }
    report(path, problems)
}

fn report(path: &Path, problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", path.display(), problems.join("; ")))
    }
}
