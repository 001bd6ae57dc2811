//! Independent directory-tree comparer (uses nothing from the cairn crate).
//!
//! Never follows symlinks. Compares: names (raw bytes), file type, permission
//! bits (mode & 0o7777), uid/gid, size, content, symlink targets, device
//! numbers, mtime (seconds + nanoseconds, for every entry including
//! directories and symlinks), `user.*` xattrs, hardlink structure and
//! sparseness (allocated blocks of sparse source files).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Extra 512-byte blocks a restored sparse file may have beyond the source
/// (1 MiB).
pub const SPARSE_SLACK_BLOCKS: u64 = 2048;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Compare mtimes of the two roots themselves.
    pub root_mtime: bool,
    /// Compare uid/gid.
    pub owners: bool,
}

impl Options {
    pub fn strict() -> Self {
        Options {
            root_mtime: true,
            owners: true,
        }
    }
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        format!("{:?}", rel)
    }
}

/// Short printable form of an xattr value.
fn show_value(v: &[u8]) -> String {
    if v.len() <= 64 && v.iter().all(|b| (0x20..0x7f).contains(b)) {
        format!("{:?}", String::from_utf8_lossy(v))
    } else {
        let head: String = v.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!(
            "<{} bytes: {}{}>",
            v.len(),
            head,
            if v.len() > 16 { ".." } else { "" }
        )
    }
}

fn kind(m: &Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "unknown"
    }
}

/// (st_dev, st_ino)
type DevIno = (u64, u64);

struct Walker {
    opts: Options,
    diffs: Vec<String>,
    /// rel path -> (src inode, dst inode) for non-directories.
    inodes: Vec<(PathBuf, DevIno, DevIno)>,
}

/// Compare two trees; returns human-readable differences (empty = equal).
pub fn compare_trees(src: &Path, dst: &Path) -> Vec<String> {
    compare_trees_with(src, dst, Options::strict())
}

pub fn compare_trees_with(src: &Path, dst: &Path, opts: Options) -> Vec<String> {
    let mut w = Walker {
        opts,
        diffs: Vec::new(),
        inodes: Vec::new(),
    };
    let sm = match fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) => return vec![format!("cannot stat source root {}: {e}", src.display())],
    };
    let dm = match fs::symlink_metadata(dst) {
        Ok(m) => m,
        Err(e) => return vec![format!("cannot stat restored root {}: {e}", dst.display())],
    };
    w.entry(src, dst, Path::new(""), &sm, &dm, true);
    w.check_hardlinks();
    w.diffs
}

/// Panic with every difference listed when the trees differ.
pub fn assert_trees_equal(src: &Path, dst: &Path) {
    let d = compare_trees(src, dst);
    if !d.is_empty() {
        panic!(
            "restored tree {} differs from source {} in {} ways:\n  {}",
            dst.display(),
            src.display(),
            d.len(),
            d.join("\n  ")
        );
    }
}

fn user_xattrs(p: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(format!("listxattr failed: {e}")),
    };
    for n in names {
        let nb = n.as_bytes();
        if !nb.starts_with(b"user.") {
            continue;
        }
        match xattr::get(p, &n) {
            Ok(v) => {
                out.insert(nb.to_vec(), v.unwrap_or_default());
            }
            Err(e) => return Err(format!("getxattr {:?} failed: {e}", n)),
        }
    }
    Ok(out)
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, String> {
    let mut v: Vec<OsString> = fs::read_dir(dir)
        .map_err(|e| format!("read_dir {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(v)
}

fn files_equal(a: &Path, b: &Path) -> Result<Option<u64>, String> {
    let mut fa = File::open(a).map_err(|e| format!("open {}: {e}", a.display()))?;
    let mut fb = File::open(b).map_err(|e| format!("open {}: {e}", b.display()))?;
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| format!("read {}: {e}", a.display()))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| format!("read {}: {e}", b.display()))?;
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(off + i as u64));
        }
        if na != nb {
            return Ok(Some(off + n as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        off += na as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

impl Walker {
    fn diff(&mut self, rel: &Path, msg: String) {
        self.diffs.push(format!("{}: {}", show(rel), msg));
    }

    fn entry(
        &mut self,
        src: &Path,
        dst: &Path,
        rel: &Path,
        sm: &Metadata,
        dm: &Metadata,
        is_root: bool,
    ) {
        let (sk, dk) = (kind(sm), kind(dm));
        if sk != dk {
            self.diff(rel, format!("type differs: source {sk}, restored {dk}"));
            return;
        }
        let ft = sm.file_type();

        // Permission bits (symlink modes are meaningless on Linux).
        if !ft.is_symlink() && (sm.mode() & 0o7777) != (dm.mode() & 0o7777) {
            self.diff(
                rel,
                format!(
                    "mode differs: source {:04o}, restored {:04o}",
                    sm.mode() & 0o7777,
                    dm.mode() & 0o7777
                ),
            );
        }
        if self.opts.owners && (sm.uid(), sm.gid()) != (dm.uid(), dm.gid()) {
            self.diff(
                rel,
                format!(
                    "owner differs: source {}:{}, restored {}:{}",
                    sm.uid(),
                    sm.gid(),
                    dm.uid(),
                    dm.gid()
                ),
            );
        }
        if (!is_root || self.opts.root_mtime)
            && (sm.mtime(), sm.mtime_nsec()) != (dm.mtime(), dm.mtime_nsec())
        {
            self.diff(
                rel,
                format!(
                    "mtime differs: source {}.{:09}, restored {}.{:09}",
                    sm.mtime(),
                    sm.mtime_nsec(),
                    dm.mtime(),
                    dm.mtime_nsec()
                ),
            );
        }

        match (user_xattrs(src), user_xattrs(dst)) {
            (Ok(a), Ok(b)) => {
                if a != b {
                    let fmt = |m: &BTreeMap<Vec<u8>, Vec<u8>>| {
                        m.iter()
                            .map(|(k, v)| {
                                format!("{}={}", String::from_utf8_lossy(k), show_value(v))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    self.diff(
                        rel,
                        format!(
                            "user xattrs differ: source {{{}}}, restored {{{}}}",
                            fmt(&a),
                            fmt(&b)
                        ),
                    );
                }
            }
            (Err(e), _) => self.diff(rel, format!("source: {e}")),
            (_, Err(e)) => self.diff(rel, format!("restored: {e}")),
        }

        if (ft.is_char_device() || ft.is_block_device()) && sm.rdev() != dm.rdev() {
            self.diff(
                rel,
                format!(
                    "device number differs: {:#x} vs {:#x}",
                    sm.rdev(),
                    dm.rdev()
                ),
            );
        }

        if !ft.is_dir() {
            self.inodes.push((
                rel.to_path_buf(),
                (sm.dev(), sm.ino()),
                (dm.dev(), dm.ino()),
            ));
            if sm.nlink() != dm.nlink() {
                self.diff(
                    rel,
                    format!(
                        "link count differs: source {}, restored {}",
                        sm.nlink(),
                        dm.nlink()
                    ),
                );
            }
        }

        if ft.is_symlink() {
            match (fs::read_link(src), fs::read_link(dst)) {
                (Ok(a), Ok(b)) => {
                    if a.as_os_str().as_bytes() != b.as_os_str().as_bytes() {
                        self.diff(
                            rel,
                            format!("symlink target differs: source {a:?}, restored {b:?}"),
                        );
                    }
                }
                (a, b) => self.diff(rel, format!("read_link failed: {a:?} / {b:?}")),
            }
        } else if ft.is_file() {
            if sm.len() != dm.len() {
                self.diff(
                    rel,
                    format!("size differs: source {}, restored {}", sm.len(), dm.len()),
                );
            } else {
                match files_equal(src, dst) {
                    Ok(None) => {}
                    Ok(Some(off)) => {
                        self.diff(rel, format!("content differs, first at byte offset {off}"))
                    }
                    Err(e) => self.diff(rel, e),
                }
            }
            // Sparse source: restored file must not be (much) more allocated.
            let sparse = sm.blocks() * 512 < sm.len();
            if sparse && dm.blocks() > sm.blocks() + SPARSE_SLACK_BLOCKS {
                self.diff(
                    rel,
                    format!(
                        "sparse file not restored sparse: source allocates {} blocks of 512 B \
                         for {} bytes, restored allocates {} blocks",
                        sm.blocks(),
                        sm.len(),
                        dm.blocks()
                    ),
                );
            }
        } else if ft.is_dir() {
            let sn = match sorted_names(src) {
                Ok(v) => v,
                Err(e) => return self.diff(rel, e),
            };
            let dn = match sorted_names(dst) {
                Ok(v) => v,
                Err(e) => return self.diff(rel, e),
            };
            let dset: HashMap<&[u8], &OsString> = dn.iter().map(|n| (n.as_bytes(), n)).collect();
            let sset: HashMap<&[u8], &OsString> = sn.iter().map(|n| (n.as_bytes(), n)).collect();
            for n in &dn {
                if !sset.contains_key(n.as_bytes()) {
                    self.diff(&rel.join(n), "extra entry in restored tree".to_string());
                }
            }
            for n in &sn {
                let child_rel = rel.join(n);
                if !dset.contains_key(n.as_bytes()) {
                    self.diff(&child_rel, "missing from restored tree".to_string());
                    continue;
                }
                let (s, d) = (src.join(n), dst.join(n));
                let (csm, cdm) = match (fs::symlink_metadata(&s), fs::symlink_metadata(&d)) {
                    (Ok(a), Ok(b)) => (a, b),
                    (a, b) => {
                        self.diff(
                            &child_rel,
                            format!("stat failed: {:?} / {:?}", a.err(), b.err()),
                        );
                        continue;
                    }
                };
                self.entry(&s, &d, &child_rel, &csm, &cdm, false);
            }
        }
    }

    /// Hardlink structure: the partition of non-directory entries by inode
    /// must be the same in source and restore.
    fn check_hardlinks(&mut self) {
        let mut s_rep: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let mut d_rep: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let mut msgs = Vec::new();
        for (rel, si, di) in &self.inodes {
            let s_first = s_rep.entry(*si).or_insert_with(|| rel.clone()).clone();
            let d_first = d_rep.entry(*di).or_insert_with(|| rel.clone()).clone();
            if s_first != d_first {
                // Either rel shares an inode with s_first in the source but
                // not in the restore, or vice versa.
                if &s_first != rel {
                    msgs.push(format!(
                        "{}: hardlinked to {} in source but not in restore",
                        show(rel),
                        show(&s_first)
                    ));
                }
                if &d_first != rel {
                    msgs.push(format!(
                        "{}: shares an inode with {} in restore but not in source",
                        show(rel),
                        show(&d_first)
                    ));
                }
            }
        }
        self.diffs.extend(msgs);
    }
}
