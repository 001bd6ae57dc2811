//! Streaming a snapshot path out as an archive for other tools: `cairn dump SNAP[:PATH]`.
//!
//! Member names are relative to the dumped path, as with `tar -C PATH .`: a directory's own
//! metadata is the member `./`, its contents follow as `name`, `name/sub`, ...; the snapshot
//! root has no metadata of its own, so its dump starts with its top-level entries (`etc/`,
//! `srv/`); a file dumps as one member named after it. Contents stream one blob at a time.

pub mod tar;

use std::collections::HashMap;
use std::io::Write;

use crate::browse::content::write_content;
use crate::browse::escape::escape;
use crate::browse::walk::{walk, Descend};
use crate::browse::{Located, TreeLoader};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Node, NodeKind};

use self::tar::{EntryType, Member};

/// What a dump wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Members written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries that tar cannot hold (sockets), left out.
    pub skipped: Vec<String>,
}

/// Name of the member that ends a failed dump (see [`dump_tar`]): whoever extracts the broken
/// archive finds a file that says what happened.
pub const FAILED_MEMBER: &[u8] = b"CAIRN-DUMP-FAILED-THIS-ARCHIVE-IS-INCOMPLETE";

/// Writes `at` as a pax tar archive to `out`.
///
/// An archive that ends cleanly is whole. On any error the stream is left invalid instead, so that
/// `cairn dump | tar -x` fails rather than extracting a partial tree with exit status 0: the
/// end-of-archive blocks are never written, and a failure between members adds the header of a
/// member ([`FAILED_MEMBER`]) whose content never comes, which GNU tar and bsdtar report as a
/// truncated archive. A failure inside a file's content already leaves that member short.
///
/// # Errors
/// Repository errors; `Other` when `out` fails.
pub fn dump_tar(loader: &TreeLoader<'_>, at: &Located, out: &mut dyn Write) -> Result<DumpStats> {
    let mut dumper = TarDumper {
        loader,
        out,
        links: HashMap::new(),
        stats: DumpStats::default(),
        in_content: false,
    };
    match dumper.archive(at) {
        Ok(()) => {
            dumper.write(&tar::END)?;
            Ok(dumper.stats)
        }
        Err(e) => {
            dumper.spoil();
            Err(e)
        }
    }
}

struct TarDumper<'a, 'w> {
    loader: &'a TreeLoader<'a>,
    out: &'w mut dyn Write,
    // First member of each multiply-linked file, by (device, inode): later ones link to it.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DumpStats,
    // Between a file's header and the end of its content: the member is short if the dump stops here.
    in_content: bool,
}

impl TarDumper<'_, '_> {
    fn archive(&mut self, at: &Located) -> Result<()> {
        let loader = self.loader;
        match (&at.tree, &at.node) {
            (Some(tree), node) => {
                // Children of `/etc` are named relative to it; children of the root lose the `/`.
                let base = if node.is_some() { at.path.len() + 1 } else { 1 };
                if let Some(dir) = node {
                    self.member(b"./", dir)?;
                }
                walk(loader, tree, &at.path, |path, node| {
                    let mut name = path[base..].to_vec();
                    if node.kind == NodeKind::Dir {
                        name.push(b'/');
                    }
                    self.member(&name, node)?;
                    Ok(Descend::Yes)
                })
            }
            (None, Some(node)) => self.member(&node.name.clone(), node),
            (None, None) => Ok(()),
        }
    }

    /// Leaves the archive invalid after a failure (see [`dump_tar`]); the output may be what
    /// failed, so errors here are ignored.
    fn spoil(&mut self) {
        if self.in_content {
            return;
        }
        let member = Member {
            name: FAILED_MEMBER,
            mode: 0o600,
            size: tar::BLOCK as u64,
            ..Default::default()
        };
        let _ = self.write(&tar::header(&member, EntryType::File));
        let _ = self.out.flush();
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::new(ErrorKind::Other, format!("cannot write output: {e}")))
    }

    fn member(&mut self, name: &[u8], node: &Node) -> Result<()> {
        let mut member = Member {
            name,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            user: &node.user,
            group: &node.group,
            mtime: node.mtime,
            xattrs: &node.xattrs,
            ..Default::default()
        };
        let kind = match node.kind {
            NodeKind::File => {
                let first = (node.links > 1)
                    .then(|| self.links.get(&(node.device, node.inode)))
                    .flatten();
                match first {
                    Some(first) => {
                        let first = first.clone();
                        member.link = &first;
                        let header = tar::header(&member, EntryType::HardLink);
                        self.stats.entries += 1;
                        return self.write(&header);
                    }
                    None => {
                        if node.links > 1 {
                            self.links.insert((node.device, node.inode), name.to_vec());
                        }
                        member.size = node.size;
                        EntryType::File
                    }
                }
            }
            NodeKind::Dir => EntryType::Dir,
            NodeKind::Symlink => {
                member.link = &node.target;
                EntryType::Symlink
            }
            NodeKind::Fifo => EntryType::Fifo,
            NodeKind::CharDevice | NodeKind::BlockDevice => {
                let rdev = node.rdev as nix::libc::dev_t;
                member.dev_major = nix::sys::stat::major(rdev);
                member.dev_minor = nix::sys::stat::minor(rdev);
                if node.kind == NodeKind::CharDevice {
                    EntryType::CharDevice
                } else {
                    EntryType::BlockDevice
                }
            }
            NodeKind::Socket => {
                self.stats
                    .skipped
                    .push(format!("{}: sockets cannot be stored in tar", escape(name)));
                return Ok(());
            }
        };
        let header = tar::header(&member, kind);
        self.write(&header)?;
        self.stats.entries += 1;
        if kind == EntryType::File {
            self.in_content = true;
            let written = write_content(self.loader.repo(), node, self.out)
                .map_err(|e| e.context(escape(name)))?;
            self.stats.bytes += written;
            let pad = tar::padding(written);
            self.write(&[0u8; tar::BLOCK][..pad])?;
            self.in_content = false;
        }
        Ok(())
    }
}
