//! Reading one entry's metadata from the file system into a tree node (never following symlinks).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use crate::format::tree::{Node, NodeKind, Timestamp};

/// Caches uid/gid -> name look-ups (one passwd/group query per id per backup).
#[derive(Default)]
pub struct NameCache {
    users: Mutex<HashMap<u32, Vec<u8>>>,
    groups: Mutex<HashMap<u32, Vec<u8>>>,
}

impl NameCache {
    fn user(&self, uid: u32) -> Vec<u8> {
        cached(&self.users, uid, || {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
        })
    }

    fn group(&self, gid: u32) -> Vec<u8> {
        cached(&self.groups, gid, || {
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                .ok()
                .flatten()
                .map(|g| g.name)
        })
    }
}

/// The name for `id` from `map`, looked up once; empty when the system has none.
fn cached(
    map: &Mutex<HashMap<u32, Vec<u8>>>,
    id: u32,
    lookup: impl FnOnce() -> Option<String>,
) -> Vec<u8> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(id)
        .or_insert_with(|| lookup().map(String::into_bytes).unwrap_or_default())
        .clone()
}

/// The node kind of a file type, `None` for types cairn does not know.
pub fn kind_of(meta: &Metadata) -> Option<NodeKind> {
    let t = meta.file_type();
    Some(if t.is_file() {
        NodeKind::File
    } else if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        return None;
    })
}

/// A node with every field the metadata gives; content and subtree are filled in by the caller.
///
/// Symlink targets and xattrs are read here; a failure to read xattrs is not fatal (the file system may not support them).
pub fn node_from(
    name: &[u8],
    path: &Path,
    meta: &Metadata,
    kind: NodeKind,
    names: &NameCache,
) -> std::io::Result<Node> {
    let mut node = Node::new(name.to_vec(), kind);
    node.mode = meta.mode() & 0o7777;
    node.uid = meta.uid();
    node.gid = meta.gid();
    node.user = names.user(meta.uid());
    node.group = names.group(meta.gid());
    node.mtime = Timestamp {
        secs: meta.mtime(),
        nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
    };
    node.ctime = Timestamp {
        secs: meta.ctime(),
        nanos: meta.ctime_nsec().clamp(0, 999_999_999) as u32,
    };
    node.device = meta.dev();
    node.inode = meta.ino();
    node.links = meta.nlink();
    if kind == NodeKind::File {
        // The stat size, for change detection; replaced by the bytes actually read.
        node.size = meta.size();
    }
    if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        node.rdev = meta.rdev();
    }
    if kind == NodeKind::Symlink {
        node.target = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec();
    }
    node.xattrs = read_xattrs(path);
    Ok(node)
}

fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    // `xattr::list` uses llistxattr: the attributes of a symlink itself, never its target.
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names
        .filter_map(|name| {
            let value = xattr::get(path, &name).ok().flatten()?;
            (value.len() <= crate::format::tree::MAX_XATTR_VALUE_LEN)
                .then(|| (name.as_bytes().to_vec(), value))
        })
        .collect();
    out.sort();
    out
}
