//! `cairn dump --format tar` read back by the real GNU tar and bsdtar: the extracted tree must
//! equal the source (content, types, modes, owners, nanosecond mtimes, xattrs, hardlinks, long
//! and non-UTF-8 names).

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::compare::{compare_trees_with, Options};
use common::tree::{build_full_tree, is_root, name};
use common::*;
use filetime::FileTime;

/// Adds what the shared tree lacks and tar encodes specially: a device node, a symlink target
/// and a non-UTF-8 path both too long for ustar fields, a negative mtime.
fn add_tar_extras(src: &Path) {
    let dir = src.join("tar-extras");
    fs::create_dir(&dir).unwrap();
    let long_non_utf8 = [b"\xff-".as_slice(), &[b'n'; 150]].concat();
    write_file(&dir.join(name(&long_non_utf8)), b"long non-utf8 name\n");
    let target = "t".repeat(180);
    std::os::unix::fs::symlink(&target, dir.join("long-target")).unwrap();
    let old = dir.join("before-1970");
    write_file(&old, b"old\n");
    // Whole seconds: libarchive reads a fractional negative pax mtime (`-1.25`) as -1 s + 0.25 s,
    // unlike GNU tar and POSIX, so the two tools cannot agree on one.
    let t = FileTime::from_unix_time(-86_400 * 365, 0);
    filetime::set_file_times(&old, t, t).unwrap();
    if is_root() {
        let dev = dir.join("null-device");
        nix::sys::stat::mknod(
            &dev,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o640),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    }
    let t = FileTime::from_unix_time(1_650_000_100, 5);
    filetime::set_file_times(&dir, t, t).unwrap();
    let t = FileTime::from_unix_time(1_650_000_000, 999_999_999);
    filetime::set_file_times(src, t, t).unwrap();
}

fn require(tool: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(tool);
    assert!(
        path.exists(),
        "{tool} is needed for this test: apt-get install tar libarchive-tools"
    );
    path
}

fn extract(tool: &str, args: &[&str], archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let out = Command::new(require(tool))
        .args(args)
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dump(env: &Env, spec: &OsStr, file: &Path) {
    let out = env.r(&[
        OsStr::new("dump"),
        spec,
        OsStr::new("--format"),
        OsStr::new("tar"),
    ]);
    out.assert_success();
    assert_eq!(out.stdout_bytes.len() % 512, 0, "tar is whole blocks");
    fs::write(file, &out.stdout_bytes).unwrap();
}

fn gnu_tar(archive: &Path, into: &Path) {
    extract(
        "tar",
        &["--xattrs", "--xattrs-include=*", "--same-owner", "-xpf"],
        archive,
        into,
    );
}

fn bsdtar(archive: &Path, into: &Path) {
    extract("bsdtar", &["-xpf"], archive, into);
}

fn assert_same(src: &Path, dst: &Path, options: Options, tool: &str) {
    let differences = compare_trees_with(src, dst, options);
    assert!(
        differences.is_empty(),
        "{tool} extracted {} differently from {} in {} ways:\n  {}",
        dst.display(),
        src.display(),
        differences.len(),
        differences.join("\n  ")
    );
}

#[test]
fn gnu_tar_and_bsdtar_extract_a_dump_identically_to_the_source() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    build_full_tree(&src, false);
    add_tar_extras(&src);
    env.backup_json(&[&src], &[]);

    let archive = env.path("subtree.tar");
    let mut spec = b"latest:".to_vec();
    spec.extend_from_slice(src.as_os_str().as_bytes());
    dump(&env, OsStr::from_bytes(&spec), &archive);

    let owners = is_root();
    gnu_tar(&archive, &env.path("gnu"));
    let strict = Options {
        root_mtime: true,
        owners,
    };
    assert_same(&src, &env.path("gnu"), strict, "GNU tar");

    bsdtar(&archive, &env.path("bsd"));
    // bsdtar never changes the metadata of the directory it extracts into (the `./` member).
    let below_root = Options {
        root_mtime: false,
        owners,
    };
    assert_same(&src, &env.path("bsd"), below_root, "bsdtar");
}

#[test]
fn dumps_of_the_whole_snapshot_and_of_one_file() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a/file.txt"), b"alpha\n");
    write_file(&src.join("b.bin"), &random_bytes(9, 3 << 20));
    env.backup_json(&[&src], &[]);

    // The whole snapshot: members carry the absolute paths without the leading `/`.
    let whole = env.path("whole.tar");
    dump(&env, OsStr::new("latest"), &whole);
    gnu_tar(&whole, &env.path("whole"));
    let options = Options {
        root_mtime: true,
        owners: is_root(),
    };
    assert_same(
        &src,
        &restored_path(&env.path("whole"), &src),
        options,
        "GNU tar",
    );

    // One file: one member named after it.
    let one = env.path("one.tar");
    let spec = format!("latest:{}/b.bin", src.display());
    dump(&env, OsStr::new(&spec), &one);
    bsdtar(&one, &env.path("one"));
    assert_eq!(
        fs::read(env.path("one/b.bin")).unwrap(),
        fs::read(src.join("b.bin")).unwrap()
    );
    assert_eq!(fs::read_dir(env.path("one")).unwrap().count(), 1);
}

#[test]
fn dump_refuses_to_write_an_archive_to_a_terminal() {
    let script = require("script");
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.txt"), b"hello");
    env.backup_json(&[&src], &[]);
    // `script` gives the command a pseudo-terminal as its stdout, as an interactive shell would.
    let line = format!(
        "{} -r {} dump latest; echo \"exit=$?\"",
        env!("CARGO_BIN_EXE_cairn"),
        env.repo_str()
    );
    let out = env_command(&env, &script, &["-q", "-e", "-c", &line, "/dev/null"]);
    assert!(
        out.contains("refusing to write a tar archive to a terminal") && out.contains("exit=2"),
        "{out}"
    );
    assert!(
        !out.contains("ustar"),
        "no archive bytes on the terminal: {out}"
    );
}

/// Runs `program` with the test environment (password, cache) and returns its output.
fn env_command(env: &Env, program: &Path, args: &[&str]) -> String {
    let cmd = env.command();
    let out = Command::new(program)
        .args(args)
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .current_dir(env.root())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `tool` on `archive` and returns whether it succeeded, with its stderr.
fn extract_status(tool: &str, archive: &Path, into: &Path) -> (bool, String) {
    fs::create_dir_all(into).unwrap();
    let out = Command::new(require(tool))
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A dump that failed on a tree error used to end its stream cleanly between members, so
/// `cairn dump | tar -x` extracted a partial tree and exited 0.
#[test]
fn a_dump_that_fails_midway_is_an_archive_tar_refuses() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("b-dir/inner.txt"), b"inner\n");
    env.backup_json(&[&src.join("b-dir")], &[]);
    let first_packs = pack_files(&env.repo);
    write_file(&src.join("a-first.txt"), b"first\n");
    env.backup_json(&[&src], &[]);
    // The second snapshot reuses the tree of b-dir from the first backup's packs: without them the
    // dump fails after writing `./`, `a-first.txt` and `b-dir/`, between members.
    for pack in first_packs {
        fs::remove_file(pack).unwrap();
    }
    env.remove_cache();
    let spec = format!("latest:{}", src.display());
    let out = env.r(&["dump", &spec, "--format", "tar"]);
    assert_eq!(out.code, exit::DAMAGED, "{}", out.describe());
    assert!(out.stderr.contains("missing"), "{}", out.describe());
    let archive = env.path("partial.tar");
    fs::write(&archive, &out.stdout_bytes).unwrap();
    assert!(
        out.stdout_bytes.len() >= 3 * 512,
        "members came before the failure: {} bytes",
        out.stdout_bytes.len()
    );
    for tool in ["tar", "bsdtar"] {
        let into = env.path(&format!("out-{tool}"));
        let (ok, stderr) = extract_status(tool, &archive, &into);
        assert!(!ok, "{tool} accepted the archive of a failed dump");
        assert!(
            stderr.to_lowercase().contains("eof") || stderr.contains("Truncated"),
            "{tool}: {stderr}"
        );
        assert!(
            into.join("a-first.txt").exists(),
            "{tool} read the members before the failure"
        );
    }
}
