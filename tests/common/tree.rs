//! The "everything awkward" source tree shared by the exactness tests: every file type, modes,
//! owners, nanosecond mtimes, xattrs, hardlinks, a sparse file, non-UTF-8 and long names.

use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;

use super::{random_bytes, write_file};

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn name(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Try to set a user xattr on a probe file; false if the fs refuses.
pub fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    fs::remove_file(&probe).unwrap();
    if !ok {
        println!("NOTE: filesystem refuses user xattrs; xattr coverage skipped");
    }
    ok
}

/// Builds the full "everything awkward" source tree under `src`.
struct TreeBuilder {
    src: PathBuf,
    /// (path, mode) applied after everything is created.
    modes: Vec<(PathBuf, u32)>,
    /// (path, uid, gid) applied with lchown before modes.
    owners: Vec<(PathBuf, u32, u32)>,
    /// (path, mtime) for non-directories, applied before directory mtimes.
    times: Vec<(PathBuf, FileTime)>,
    /// Directory mtimes, applied last, deepest first.
    dir_times: Vec<(PathBuf, FileTime)>,
    xattrs: Vec<(PathBuf, &'static str, Vec<u8>)>,
    counter: i64,
}

impl TreeBuilder {
    fn new(src: &Path) -> Self {
        fs::create_dir_all(src).unwrap();
        TreeBuilder {
            src: src.to_path_buf(),
            modes: vec![],
            owners: vec![],
            times: vec![],
            dir_times: vec![],
            xattrs: vec![],
            counter: 0,
        }
    }

    /// A distinct, nanosecond-precise mtime for each entry.
    fn next_time(&mut self) -> FileTime {
        self.counter += 1;
        FileTime::from_unix_time(
            1_500_000_000 + self.counter * 3_677,
            (self.counter * 7_919_113 % 1_000_000_000) as u32,
        )
    }

    fn p(&self, rel: &OsStr) -> PathBuf {
        self.src.join(rel)
    }

    fn file(&mut self, rel: impl AsRef<OsStr>, data: &[u8]) -> PathBuf {
        let p = self.p(rel.as_ref());
        write_file(&p, data);
        let t = self.next_time();
        self.times.push((p.clone(), t));
        p
    }

    fn dir(&mut self, rel: impl AsRef<OsStr>) -> PathBuf {
        let p = self.p(rel.as_ref());
        fs::create_dir_all(&p).unwrap();
        let t = self.next_time();
        self.dir_times.push((p.clone(), t));
        p
    }

    fn symlink(&mut self, target: impl AsRef<OsStr>, rel: impl AsRef<OsStr>) -> PathBuf {
        let p = self.p(rel.as_ref());
        symlink(Path::new(target.as_ref()), &p).unwrap();
        let t = self.next_time();
        self.times.push((p.clone(), t));
        p
    }

    fn finish(mut self, with_xattrs: bool) {
        if with_xattrs {
            for (p, n, v) in &self.xattrs {
                xattr::set(p, n, v).unwrap_or_else(|e| panic!("setxattr {}: {e}", p.display()));
            }
        }
        if is_root() {
            for (p, u, g) in &self.owners {
                std::os::unix::fs::lchown(p, Some(*u), Some(*g)).unwrap();
            }
        } else {
            println!("NOTE: not root; ownership coverage skipped");
        }
        // chmod after chown (chown clears setuid/setgid).
        for (p, m) in &self.modes {
            fs::set_permissions(p, fs::Permissions::from_mode(*m)).unwrap();
        }
        for (p, t) in &self.times {
            filetime::set_symlink_file_times(p, *t, *t).unwrap();
        }
        // Directories last, deepest first, so populating them cannot disturb
        // the mtimes already set.
        self.dir_times
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, t) in &self.dir_times {
            filetime::set_symlink_file_times(p, *t, *t).unwrap();
        }
        let root_t = FileTime::from_unix_time(1_650_000_000, 999_999_999);
        filetime::set_symlink_file_times(&self.src, root_t, root_t).unwrap();
    }
}

/// Creates the full awkward tree under `src`; `with_sparse` adds a 64 MiB sparse file (left out
/// where a consumer writes holes out in full, as tar does).
pub fn build_full_tree(src: &Path, with_sparse: bool) {
    let with_xattrs = xattrs_supported(src.parent().unwrap());
    let mut b = TreeBuilder::new(src);

    // Regular files of several sizes.
    b.file("empty", b"");
    b.file("one-byte", b"x");
    b.file("hundred-k", &random_bytes(1, 100 * 1024));
    let big = random_bytes(2, 5 * 1024 * 1024 + 12_345);
    b.file("big.bin", &big);
    // Same content as big.bin but an independent file (must not become a hardlink).
    b.file("big-copy.bin", &big);
    // Shares a long prefix with big.bin then diverges.
    let mut variant = big[..3 * 1024 * 1024].to_vec();
    variant.extend_from_slice(&random_bytes(3, 1024 * 1024));
    b.file("big-variant.bin", &variant);
    // Compressible text.
    let text: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i} of a compressible text file\n").into_bytes())
        .collect();
    b.file("text.txt", &text);

    // Directories.
    b.dir("empty-dir");
    b.dir("only-empty-dirs/a/b");
    b.dir("only-empty-dirs/a");
    b.dir("only-empty-dirs");
    let sub = b.dir("sub");
    b.file("sub/inner.txt", b"inner file\n");
    b.dir("sub/deeper");
    b.file("sub/deeper/leaf", &random_bytes(4, 3000));

    // Symlinks: relative, absolute, dangling, to a directory, symlink to symlink.
    b.symlink("one-byte", "link-relative");
    b.symlink(sub.join("inner.txt"), "link-absolute");
    b.symlink("does/not/exist", "link-dangling");
    b.symlink("sub", "link-to-dir");
    b.symlink("../hundred-k", "sub/link-up");
    b.symlink("link-relative", "link-to-link");
    b.symlink(name(b"target-\xff-not-utf8"), "link-non-utf8-target");

    // Hardlinks: a pair and a triple (across directories).
    let hp = b.file("hard-pair-a", b"pair content\n");
    fs::hard_link(&hp, src.join("hard-pair-b")).unwrap();
    let ht = b.file("hard-triple-1", &random_bytes(5, 70_000));
    fs::hard_link(&ht, src.join("hard-triple-2")).unwrap();
    fs::hard_link(&ht, src.join("sub/hard-triple-3")).unwrap();
    // Identical content to the pair, but its own inode.
    b.file("not-hardlinked-same-content", b"pair content\n");

    // FIFO.
    let fifo = src.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    let t = b.next_time();
    b.times.push((fifo.clone(), t));

    // Permissions.
    let suid = b.file("setuid-bin", b"#!/bin/sh\necho hi\n");
    b.modes.push((suid.clone(), 0o4755));
    let sgid_file = b.file("setgid-file", b"sgid\n");
    b.modes.push((sgid_file, 0o2711));
    let sgid_dir = b.dir("setgid-dir");
    b.file("setgid-dir/child", b"child\n");
    b.modes.push((sgid_dir.clone(), 0o2755));
    let sticky = b.dir("sticky-dir");
    b.file("sticky-dir/f", b"f\n");
    b.modes.push((sticky, 0o1777));
    let private = b.file("private", b"secret\n");
    b.modes.push((private, 0o600));
    let none = b.file("no-perms", b"nobody may read me\n");
    b.modes.push((none, 0o000));
    let ro_dir = b.dir("read-only-dir");
    b.file("read-only-dir/ro-child", b"ro\n");
    b.modes.push((ro_dir, 0o555));
    b.modes.push((fifo.clone(), 0o620));

    // Ownership (applied only when root).
    b.owners.push((suid, 1234, 5678));
    b.owners.push((sgid_dir, 1234, 5678));
    b.owners.push((src.join("hundred-k"), 1234, 5678));
    b.owners.push((src.join("link-relative"), 4321, 8765));
    b.owners.push((fifo, 1234, 0));
    b.owners.push((src.join("empty-dir"), 0, 5678));

    // Xattrs.
    b.xattrs.push((
        src.join("one-byte"),
        "user.comment",
        b"hello xattr".to_vec(),
    ));
    b.xattrs.push((
        src.join("one-byte"),
        "user.binary",
        vec![0, 1, 2, 0xff, 0xfe],
    ));
    b.xattrs
        .push((src.join("one-byte"), "user.empty", Vec::new()));
    b.xattrs
        .push((src.join("sub"), "user.dir-attr", b"on a directory".to_vec()));
    b.xattrs
        .push((src.join("big.bin"), "user.big", random_bytes(6, 2000)));

    // Sparse file: 64 MiB with data at 0, 10 MiB and the end.
    let sparse = src.join("sparse.img");
    if with_sparse {
        let mut f = fs::File::create(&sparse).unwrap();
        f.set_len(64 * 1024 * 1024).unwrap();
        f.write_all(b"start of sparse file").unwrap();
        f.seek(SeekFrom::Start(10 * 1024 * 1024)).unwrap();
        f.write_all(&random_bytes(7, 5000)).unwrap();
        f.seek(SeekFrom::Start(64 * 1024 * 1024 - 7)).unwrap();
        f.write_all(b"the end").unwrap();
    }
    if with_sparse {
        let t = b.next_time();
        b.times.push((sparse, t));
    }

    // Awkward names.
    b.file(name(b"caf\xe9"), b"latin-1 name\n");
    b.dir(name(b"dir-\xff\xfe"));
    b.file(name(b"dir-\xff\xfe/inside-\x80"), b"non-utf8 dir\n");
    b.file("new\nline", b"newline in name\n");
    b.file("-dash leading name with spaces", b"dash\n");
    b.file("tab\there", b"tab\n");
    b.file("back\\slash", b"\\\n");
    b.file("ünïcödé-名前", b"unicode\n");
    let long: String = "L".repeat(251) + ".txt";
    assert_eq!(long.len(), 255);
    b.file(&long, b"255-byte name\n");

    // Deep nesting: 60 levels.
    let mut rel = PathBuf::from("deep");
    b.dir(&rel);
    for i in 1..60 {
        rel.push(format!("d{i:02}"));
        b.dir(&rel);
    }
    b.file(rel.join("bottom.txt").into_os_string(), b"60 levels down\n");

    // Special mtimes (set in the normal pass; later entries win).
    let special = [
        (
            "nanos",
            FileTime::from_unix_time(1_600_000_000, 123_456_789),
        ),
        ("epoch", FileTime::from_unix_time(0, 0)),
        ("future-2100", FileTime::from_unix_time(4_102_444_800, 1)),
        (
            "max-nanos",
            FileTime::from_unix_time(1_700_000_000, 999_999_999),
        ),
    ];
    for (n, t) in special {
        let p = b.file(format!("mtime-{n}"), n.as_bytes());
        b.times.push((p, t));
    }

    b.finish(with_xattrs);
}
