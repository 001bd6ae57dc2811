//! Tree blobs (FORMAT.md §9): one directory's entries with everything needed to restore them exactly.

use crate::error::{Error, Result};
use crate::format::wire::{Reader, Writer};
use crate::id::{BlobId, TreeId};

/// Encoding version written as the first byte.
pub const TREE_VERSION: u8 = 1;
/// Longest name accepted.
pub const MAX_NAME_LEN: usize = 4095;
/// Longest symlink target accepted.
pub const MAX_TARGET_LEN: usize = 65535;
/// Largest xattr value accepted.
pub const MAX_XATTR_VALUE_LEN: usize = 64 * 1024;
/// Smallest possible encoded entry (for bounding counts).
const MIN_ENTRY_LEN: usize = 2 + 1 + 1 + 4 * 3 + 1 + 1 + 12 * 2 + 8 * 5 + 4 + 2;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix socket.
    Socket,
}

impl NodeKind {
    fn to_byte(self) -> u8 {
        match self {
            NodeKind::File => 1,
            NodeKind::Dir => 2,
            NodeKind::Symlink => 3,
            NodeKind::Fifo => 4,
            NodeKind::CharDevice => 5,
            NodeKind::BlockDevice => 6,
            NodeKind::Socket => 7,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => NodeKind::File,
            2 => NodeKind::Dir,
            3 => NodeKind::Symlink,
            4 => NodeKind::Fifo,
            5 => NodeKind::CharDevice,
            6 => NodeKind::BlockDevice,
            7 => NodeKind::Socket,
            _ => return None,
        })
    }
}

/// A point in time with nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds, below one billion.
    pub nanos: u32,
}

/// One piece of a file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentItem {
    /// A data blob of `len` bytes.
    Data {
        /// The chunk.
        id: BlobId,
        /// Its plaintext length.
        len: u32,
    },
    /// `len` bytes of hole (zeros that occupy no disk).
    Hole {
        /// Length of the hole.
        len: u64,
    },
}

impl ContentItem {
    /// Bytes of file this item covers.
    pub fn len(&self) -> u64 {
        match *self {
            ContentItem::Data { len, .. } => len as u64,
            ContentItem::Hole { len } => len,
        }
    }

    /// Whether it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk it names; `None` for a hole.
    pub fn data_id(&self) -> Option<BlobId> {
        match self {
            ContentItem::Data { id, .. } => Some(*id),
            ContentItem::Hole { .. } => None,
        }
    }
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Name bytes (no `/`, no NUL).
    pub name: Vec<u8>,
    /// Entry type.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name at backup time.
    pub user: Vec<u8>,
    /// Group name at backup time.
    pub group: Vec<u8>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time (change detection only).
    pub ctime: Timestamp,
    /// Content size (files).
    pub size: u64,
    /// st_dev at backup time.
    pub device: u64,
    /// st_ino at backup time.
    pub inode: u64,
    /// st_nlink at backup time.
    pub links: u64,
    /// Device number (device nodes).
    pub rdev: u64,
    /// Symlink target bytes.
    pub target: Vec<u8>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// File content (files only).
    pub content: Vec<ContentItem>,
    /// Subtree (directories only).
    pub subtree: Option<TreeId>,
}

impl Node {
    /// A node of `kind` named `name` with every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: Vec::new(),
            group: Vec::new(),
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            size: 0,
            device: 0,
            inode: 0,
            links: 0,
            rdev: 0,
            target: Vec::new(),
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }
}

/// One directory: entries sorted by name bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// Sorted entries.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts entries by name bytes (the encoding requires it).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The entry named `name`, by binary search.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The plaintext of the tree blob.
    ///
    /// # Errors
    /// When an entry violates a bound (name, target, xattr sizes) or names are not strictly sorted.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer::with_capacity(64 + self.nodes.len() * 160);
        w.u8(TREE_VERSION).u32(self.nodes.len() as u32);
        let mut previous: Option<&[u8]> = None;
        for node in &self.nodes {
            check_name(&node.name).map_err(Error::invalid_input)?;
            if previous.is_some_and(|p| p >= node.name.as_slice()) {
                return Err(Error::invalid_input("tree entries are not strictly sorted"));
            }
            previous = Some(&node.name);
            encode_node(&mut w, node)?;
        }
        Ok(w.into_bytes())
    }

    /// Parses a tree blob plaintext.
    ///
    /// # Errors
    /// When the bytes are not a valid version 1 tree.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "tree");
        let version = r.u8()?;
        if version != TREE_VERSION {
            return Err(Error::new(
                crate::error::ErrorKind::UnsupportedVersion,
                format!("tree encoding version {version} is not supported (this cairn reads 1); upgrade cairn"),
            ));
        }
        let count = r.count(MIN_ENTRY_LEN)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(count);
        for _ in 0..count {
            let node = decode_node(&mut r)?;
            if nodes.last().is_some_and(|p| p.name >= node.name) {
                return Err(r.error("entries are not strictly sorted by name"));
            }
            nodes.push(node);
        }
        r.finish()?;
        Ok(Tree { nodes })
    }
}

fn check_name(name: &[u8]) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("entry name of {} bytes", name.len()));
    }
    if name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(format!(
            "entry name {:?} is not a single path component",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

fn encode_node(w: &mut Writer, n: &Node) -> Result<()> {
    if n.target.len() > MAX_TARGET_LEN {
        return Err(Error::invalid_input("symlink target too long"));
    }
    if n.xattrs.len() > u16::MAX as usize {
        return Err(Error::invalid_input("too many xattrs"));
    }
    w.bytes16(&n.name)
        .u8(n.kind.to_byte())
        .u32(n.mode)
        .u32(n.uid)
        .u32(n.gid)
        .bytes8(&n.user)
        .bytes8(&n.group)
        .i64(n.mtime.secs)
        .u32(n.mtime.nanos)
        .i64(n.ctime.secs)
        .u32(n.ctime.nanos)
        .u64(n.size)
        .u64(n.device)
        .u64(n.inode)
        .u64(n.links)
        .u64(n.rdev)
        .bytes32(&n.target)
        .u16(n.xattrs.len() as u16);
    for (name, value) in &n.xattrs {
        if name.len() > u16::MAX as usize || value.len() > MAX_XATTR_VALUE_LEN {
            return Err(Error::invalid_input("xattr too large"));
        }
        w.bytes16(name).bytes32(value);
    }
    match n.kind {
        NodeKind::File => {
            w.u32(n.content.len() as u32);
            for item in &n.content {
                match *item {
                    ContentItem::Data { id, len } => {
                        w.u8(0).bytes(&id.0).u32(len);
                    }
                    ContentItem::Hole { len } => {
                        w.u8(1).u64(len);
                    }
                }
            }
        }
        NodeKind::Dir => {
            let id = n
                .subtree
                .ok_or_else(|| Error::invalid_input("directory entry without subtree"))?;
            w.bytes(&id.0);
        }
        _ => {}
    }
    Ok(())
}

fn decode_time(r: &mut Reader<'_>) -> Result<Timestamp> {
    let secs = r.i64()?;
    let nanos = r.u32()?;
    if nanos >= 1_000_000_000 {
        return Err(r.error(format!("nanoseconds {nanos} out of range")));
    }
    Ok(Timestamp { secs, nanos })
}

fn decode_node(r: &mut Reader<'_>) -> Result<Node> {
    let name = r.bytes16(MAX_NAME_LEN)?.to_vec();
    check_name(&name).map_err(|e| r.error(e))?;
    let kind_byte = r.u8()?;
    let kind = NodeKind::from_byte(kind_byte)
        .ok_or_else(|| r.error(format!("unknown entry kind {kind_byte}")))?;
    let mut n = Node::new(name, kind);
    n.mode = r.u32()?;
    if n.mode > 0o7777 {
        return Err(r.error(format!("mode {:o} has bits beyond 0o7777", n.mode)));
    }
    n.uid = r.u32()?;
    n.gid = r.u32()?;
    n.user = r.bytes8()?.to_vec();
    n.group = r.bytes8()?.to_vec();
    n.mtime = decode_time(r)?;
    n.ctime = decode_time(r)?;
    n.size = r.u64()?;
    n.device = r.u64()?;
    n.inode = r.u64()?;
    n.links = r.u64()?;
    n.rdev = r.u64()?;
    n.target = r.bytes32(MAX_TARGET_LEN)?.to_vec();
    if kind != NodeKind::Symlink && !n.target.is_empty() {
        return Err(r.error("a symlink target on an entry that is not a symlink"));
    }
    let xattr_count = r.u16()? as usize;
    for _ in 0..xattr_count {
        let name = r.bytes16(u16::MAX as usize)?.to_vec();
        let value = r.bytes32(MAX_XATTR_VALUE_LEN)?.to_vec();
        n.xattrs.push((name, value));
    }
    match kind {
        NodeKind::File => {
            let count = r.count(9)?;
            let mut total: u64 = 0;
            for _ in 0..count {
                let item = match r.u8()? {
                    0 => ContentItem::Data {
                        id: BlobId(r.array()?),
                        len: r.u32()?,
                    },
                    1 => ContentItem::Hole { len: r.u64()? },
                    other => return Err(r.error(format!("unknown content item tag {other}"))),
                };
                total = total
                    .checked_add(item.len())
                    .ok_or_else(|| r.error("content length overflows"))?;
                n.content.push(item);
            }
            if total != n.size {
                return Err(r.error(format!(
                    "file content adds up to {total} bytes but its size is {}",
                    n.size
                )));
            }
        }
        NodeKind::Dir => n.subtree = Some(BlobId(r.array()?)),
        _ => {}
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Tree {
        let mut file = Node::new(b"a\xffb".to_vec(), NodeKind::File);
        file.mode = 0o4755;
        file.size = 15;
        file.content = vec![
            ContentItem::Data {
                id: BlobId([1; 32]),
                len: 5,
            },
            ContentItem::Hole { len: 10 },
        ];
        file.xattrs = vec![(b"user.x".to_vec(), b"v".to_vec())];
        file.mtime = Timestamp {
            secs: -5,
            nanos: 999_999_999,
        };
        let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
        dir.subtree = Some(BlobId([2; 32]));
        let mut link = Node::new(b"l".to_vec(), NodeKind::Symlink);
        link.target = b"../x".to_vec();
        Tree {
            nodes: vec![file, dir, link],
        }
    }

    #[test]
    fn round_trip() {
        let tree = sample();
        let bytes = tree.encode().unwrap();
        assert_eq!(Tree::decode(&bytes).unwrap(), tree);
        assert!(tree.find(b"d").is_some());
        assert!(tree.find(b"zz").is_none());
    }

    #[test]
    fn refuses_unsorted_bad_names_and_truncation() {
        let mut tree = sample();
        tree.nodes.swap(0, 1);
        assert!(tree.encode().is_err());
        let mut tree = sample();
        tree.nodes[1].name = b"..".to_vec();
        assert!(tree.encode().is_err());
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(Tree::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Tree::decode(&bytes);
        }

        #[test]
        fn flipped_byte_is_refused_or_different(pos in 0usize..200, bit in 0u8..8) {
            let bytes = sample().encode().unwrap();
            let mut bad = bytes.clone();
            let pos = pos % bad.len();
            bad[pos] ^= 1 << bit;
            if let Ok(tree) = Tree::decode(&bad) {
                prop_assert_ne!(tree, sample());
            }
        }
    }
}
