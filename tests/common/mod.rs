//! Shared harness for the end-to-end tests: runs the real `cairn` binary in an
//! isolated environment (temporary HOME, cache, XDG dirs, password via env).
#![allow(dead_code)]

pub mod compare;
pub mod conformance;
pub mod failing;
pub mod mounts;
pub mod offsite;
pub mod s3;
pub mod tree;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";

/// How long a single cairn invocation may take before the test gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Exit codes from the CLI contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 2;
    pub const PARTIAL: i32 = 3;
    pub const DAMAGED: i32 = 4;
    pub const COMMAND_FAILED: i32 = 5;
    pub const UNSUPPORTED_VERSION: i32 = 6;
    pub const NO_REPO: i32 = 10;
    pub const WRONG_PASSWORD: i32 = 12;
}

/// Result of one cairn invocation.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmd: String,
    /// Exit code; -1 when killed by a signal (or by the timeout).
    pub code: i32,
    pub stdout_bytes: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }

    /// Assert a specific exit code, printing everything on mismatch.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "unexpected exit code (expected {code}, got {})\n{}",
            self.code,
            self.describe()
        );
        self
    }

    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Parse stdout as JSON, printing everything on failure.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(self.stdout.trim()) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not valid JSON: {e}\n{}", self.describe()),
        }
    }

    pub fn stderr_lower(&self) -> String {
        self.stderr.to_lowercase()
    }
}

/// One isolated test environment rooted in a temporary directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// `<tmp>/repo` — not created; `cairn init` creates it.
    pub repo: PathBuf,
    pub password: String,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("cairn-e2e-")
            .tempdir()
            .expect("create tempdir");
        // Canonicalize so that paths we compare with (restore writes
        // DIR/<absolute source path>) match what cairn records.
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("home")).unwrap();
        Env {
            repo: root.join("repo"),
            dir,
            password: PASSWORD.to_string(),
        }
    }

    /// Canonical path of the temp root.
    pub fn root(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root().join("cache")
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn xdg_data_home(&self) -> PathBuf {
        self.home().join(".local/share")
    }

    pub fn repo_str(&self) -> &str {
        self.repo.to_str().unwrap()
    }

    /// Build the command with the isolated environment applied.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        let root = self.root();
        cmd.env("CAIRN_PASSWORD", &self.password)
            .env("CAIRN_CACHE_DIR", root.join("cache"))
            .env("HOME", root.join("home"))
            .env("XDG_DATA_HOME", root.join("home/.local/share"))
            .env("XDG_CACHE_HOME", root.join("home/.cache"))
            .env_remove("CAIRN_REPO")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("XDG_CONFIG_HOME")
            .env("NO_COLOR", "1")
            .current_dir(&root);
        cmd
    }

    /// Run cairn with arbitrary args, optional stdin bytes and environment
    /// overrides (`None` removes the variable).
    pub fn run<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&[u8]>,
        envs: &[(&str, Option<&str>)],
    ) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let desc = describe_cmd(args, envs);
        run_command(cmd, stdin, desc)
    }

    /// Run cairn with exactly these args.
    pub fn cairn<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.run(args, None, &[])
    }

    /// Run cairn and require exit code 0.
    pub fn cairn_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.cairn(args);
        out.assert_success();
        out
    }

    /// Run `cairn --json <args>`, require success, parse stdout.
    pub fn cairn_json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut full: Vec<OsString> = vec!["--json".into()];
        full.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        let out = self.cairn(&full);
        out.assert_success();
        out.json()
    }

    /// Run with `-r <repo>` prepended.
    pub fn r<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut full: Vec<OsString> = vec!["-r".into(), self.repo.clone().into_os_string()];
        full.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self.cairn(&full)
    }

    pub fn r_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let out = self.r(args);
        out.assert_success();
        out
    }

    /// `cairn --json -r <repo> <args>`, must succeed.
    pub fn r_json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut full: Vec<OsString> = vec!["-r".into(), self.repo.clone().into_os_string()];
        full.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self.cairn_json(&full)
    }

    /// Run with `-r <repo>` and stdin bytes.
    pub fn r_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Output {
        let mut full: Vec<OsString> = vec!["-r".into(), self.repo.clone().into_os_string()];
        full.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self.run(&full, Some(stdin), &[])
    }

    pub fn init(&self) {
        self.r_ok(&["init"]);
        assert!(
            self.repo.join("config").is_file(),
            "after init, {}/config should exist",
            self.repo.display()
        );
    }

    /// `cairn --json -r repo backup <paths> <extra>`; returns the parsed JSON.
    pub fn backup_json(&self, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let mut args: Vec<OsString> = vec!["backup".into()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_os_string()));
        args.extend(extra.iter().map(OsString::from));
        let v = self.r_json(&args);
        check_backup_json(&v);
        v
    }

    pub fn snapshots_json(&self) -> Vec<serde_json::Value> {
        let v = self.r_json(&["snapshots"]);
        v.as_array()
            .unwrap_or_else(|| panic!("snapshots --json must print an array, got {v}"))
            .clone()
    }

    /// `restore SNAP --target DIR`, must succeed.
    pub fn restore(&self, snap: &str, target: &Path) {
        self.r_ok(&[
            OsStr::new("restore"),
            OsStr::new(snap),
            OsStr::new("--target"),
            target.as_os_str(),
        ]);
    }

    /// Restores `snap` into `<tmp>/<target_name>` and requires the restored copy of `src` to equal `src`.
    pub fn assert_restores_exactly(&self, snap: &str, src: &Path, target_name: &str) {
        let target = self.path(target_name);
        self.restore(snap, &target);
        compare::assert_trees_equal(src, &restored_path(&target, src));
    }

    /// The names of the repository's index files.
    pub fn index_files(&self) -> Vec<String> {
        use cairn::backend::Backend;
        cairn::backend::LocalBackend::new(&self.repo)
            .list(cairn::backend::ObjectKind::Index)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    pub fn remove_cache(&self) {
        let c = self.cache_dir();
        if c.exists() {
            fs::remove_dir_all(&c).unwrap();
        }
        let c = self.home().join(".cache");
        if c.exists() {
            fs::remove_dir_all(&c).unwrap();
        }
    }
}

fn describe_cmd<S: AsRef<OsStr>>(args: &[S], envs: &[(&str, Option<&str>)]) -> String {
    let mut s = String::new();
    for (k, v) in envs {
        match v {
            Some(v) => s.push_str(&format!("{k}={v:?} ")),
            None => s.push_str(&format!("(unset {k}) ")),
        }
    }
    s.push_str("cairn");
    for a in args {
        s.push_str(&format!(" {:?}", a.as_ref()));
    }
    s
}

fn run_command(mut cmd: Command, stdin: Option<&[u8]>, desc: String) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {desc}: {e}"));

    let stdin_thread = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            // The child may legitimately stop reading early (e.g. on error).
            let _ = pipe.write_all(&bytes);
            drop(pipe);
        })
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });

    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None => {
                if start.elapsed() > COMMAND_TIMEOUT {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().expect("wait after kill");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    if let Some(t) = stdin_thread {
        let _ = t.join();
    }
    let stdout_bytes = out_thread.join().unwrap();
    let stderr_bytes = err_thread.join().unwrap();
    let out = Output {
        cmd: desc,
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
    };
    if timed_out {
        panic!(
            "command timed out after {:?} and was killed\n{}",
            COMMAND_TIMEOUT,
            out.describe()
        );
    }
    // No command may ever panic, whatever its exit code.
    assert!(
        !out.stderr.contains("panicked"),
        "cairn panicked\n{}",
        out.describe()
    );
    if out.code == -1 {
        panic!(
            "cairn was killed by a signal: {status:?}\n{}",
            out.describe()
        );
    }
    out
}

/// A variable `tests/servers/start.sh` exports, or `None` (the test is skipped) when the servers are
/// not running; with `CAIRN_TEST_SERVERS=1` set, a missing one is a failure.
pub fn server_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if std::env::var_os("CAIRN_TEST_SERVERS").is_some() => {
            panic!("CAIRN_TEST_SERVERS is set but {name} is not: did tests/servers/start.sh run?")
        }
        Err(_) => {
            eprintln!("skipped: {name} is not set (start the servers with tests/servers/start.sh)");
            None
        }
    }
}

/// Check the shape of `cairn --json backup` output from the contract.
pub fn check_backup_json(v: &serde_json::Value) {
    let id = v["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot_id in {v}"));
    assert!(is_hex(id, 64), "snapshot_id must be 64 hex chars: {v}");
    let short = v["short_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no short_id in {v}"));
    assert!(is_hex(short, 8), "short_id must be 8 hex chars: {v}");
    assert!(
        id.starts_with(short),
        "short_id must be a prefix of snapshot_id: {v}"
    );
    assert!(
        v.get("parent").is_some() && (v["parent"].is_null() || v["parent"].is_string()),
        "parent must be null or a string: {v}"
    );
    let s = &v["summary"];
    for k in [
        "files_new",
        "files_changed",
        "files_unchanged",
        "dirs_new",
        "dirs_changed",
        "dirs_unchanged",
        "bytes_read",
        "bytes_added",
        "blobs_added",
    ] {
        assert!(
            s[k].is_u64(),
            "summary.{k} must be a non-negative integer: {v}"
        );
    }
    assert!(
        s["duration_secs"].is_number(),
        "summary.duration_secs must be a number: {v}"
    );
    assert!(
        s["errors"].is_array(),
        "summary.errors must be an array: {v}"
    );
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Where `restore --target target` puts an absolute source path.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    assert!(src.is_absolute());
    target.join(src.strip_prefix("/").unwrap())
}

/// All regular files below `dir` (recursive, not following symlinks).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Relative path -> content for every file below `dir` (directories are
/// recorded with empty content and a trailing marker).
pub fn tree_listing(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut map = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                map.insert(rel.join("<dir>"), Vec::new());
                stack.push(p);
            } else if ft.is_symlink() {
                map.insert(
                    rel,
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                map.insert(rel, fs::read(&p).unwrap_or_default());
            }
        }
    }
    map
}

/// Describe the difference between two listings (for assertion messages).
pub fn listing_diff(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => d.push(format!("removed: {}", k.display())),
            Some(w) if w != v => d.push(format!("changed: {}", k.display())),
            _ => {}
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            d.push(format!("added: {}", k.display()));
        }
    }
    d
}

/// XOR one byte at `offset` with 0xFF.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0xFF;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// The largest pack file of the repository: the data pack of a small test's backup (the tree
/// pack is smaller), which tests remove or damage to lose data.
pub fn largest_pack(repo: &Path) -> PathBuf {
    pack_files(repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

/// Pack files: regular files under `<repo>/data/` (recursive).
pub fn pack_files(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("data"))
}

pub fn file_name_str(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The test repository opened through the library, with its index, for writing what the CLI
/// never would (hostile trees signed with the real key).
pub fn open_indexed(env: &Env) -> cairn::IndexedRepository {
    cairn::Repository::open(
        Box::new(cairn::backend::LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap()
    .into_indexed()
    .unwrap()
}

/// A TCP port of the loopback interface that was free a moment ago, for a test's own server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
