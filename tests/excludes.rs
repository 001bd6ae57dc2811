//! What a backup leaves out, as restic users expect it: relative patterns resolved like the sources
//! or matching at any depth, `dir/` for directories only, patterns that matched nothing reported,
//! `--iexclude`, `--exclude-caches`, `--exclude-if-present`, `--exclude-larger-than`, and the three
//! `--files-from` formats.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{self, random_bytes, restored_path, write_file, Env};

/// Every path below `dir`, relative, as strings ("a", "a/b"), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = common::files_under(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// Restores the latest snapshot and returns what is under `src` in it.
fn restored(env: &Env, src: &Path, name: &str) -> PathBuf {
    let dst = env.path(name);
    env.restore("latest", &dst);
    restored_path(&dst, src)
}

fn unmatched(v: &serde_json::Value) -> Vec<String> {
    v["unmatched_excludes"]
        .as_array()
        .unwrap_or_else(|| panic!("no unmatched_excludes in {v}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// Regression: from a directory, `backup etc --exclude etc/ssl` and `--exclude ssl/` excluded
/// nothing and said nothing.
#[test]
fn relative_patterns_exclude_what_they_name_and_unmatched_ones_are_reported() {
    let env = Env::new();
    env.init();
    // The commands run in env.root(), so `etc` is a relative source there.
    let src = env.path("etc");
    write_file(&src.join("hosts"), b"127.0.0.1 localhost\n");
    write_file(&src.join("ssl/private/key.pem"), b"secret");
    write_file(&src.join("nginx/ssl"), b"a file named ssl, not a directory");
    write_file(&src.join("app/build/out.o"), b"object");
    write_file(&src.join("app/src/main.c"), b"int main() {}");

    let v = env.r_json(&[
        "backup",
        "etc",
        "--exclude",
        "etc/ssl",
        "--exclude",
        "nosuchname",
    ]);
    assert_eq!(unmatched(&v), vec!["nosuchname".to_string()], "{v}");
    let r = restored(&env, &src, "r1");
    assert!(!r.join("ssl").exists(), "etc/ssl must be excluded");
    assert!(r.join("nginx/ssl").is_file());

    // A trailing slash matches directories only: the file nginx/ssl stays.
    let v = env.r_json(&["backup", "etc", "--exclude", "ssl/"]);
    assert!(unmatched(&v).is_empty(), "{v}");
    let r = restored(&env, &src, "r2");
    assert!(!r.join("ssl").exists());
    assert!(
        r.join("nginx/ssl").is_file(),
        "a file does not match `ssl/`"
    );

    // `./` is taken from the current directory, as a relative source is.
    let v = env.r_json(&["backup", "etc", "--exclude", "./etc/app/build"]);
    assert!(unmatched(&v).is_empty(), "{v}");
    let r = restored(&env, &src, "r3");
    assert_eq!(
        listing(&r),
        vec![
            "app/src/main.c",
            "hosts",
            "nginx/ssl",
            "ssl/private/key.pem"
        ]
    );

    // Without --json the summary names the pattern that matched nothing, and -v says what was
    // left out and by which pattern.
    let out = env.r(&[
        "-v",
        "backup",
        "etc",
        "--exclude",
        "*.o",
        "--exclude",
        "etc/sll",
    ]);
    out.assert_success();
    assert!(
        out.stderr
            .contains("warning: exclude pattern \"etc/sll\" matched nothing"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("out.o (pattern *.o)"),
        "{}",
        out.describe()
    );
}

#[test]
fn iexclude_ignores_case_and_negation_is_refused() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("Thumbs.DB"), b"x");
    write_file(&src.join("photo.JPG"), b"y");
    write_file(&src.join("keep.txt"), b"z");
    let patterns = env.path("ipatterns");
    fs::write(&patterns, "*.jpg\n").unwrap();
    let v = env.backup_json(
        &[&src],
        &[
            "--iexclude",
            "thumbs.db",
            "--iexclude-file",
            patterns.to_str().unwrap(),
            "--exclude",
            "*.jpg",
        ],
    );
    // The case-sensitive *.jpg matched nothing; its case-insensitive twin did the work.
    assert_eq!(unmatched(&v), vec!["*.jpg".to_string()], "{v}");
    assert_eq!(listing(&restored(&env, &src, "r")), vec!["keep.txt"]);

    let out = env.r(&["backup", src.to_str().unwrap(), "--exclude", "!keep.txt"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("negated patterns"),
        "{}",
        out.describe()
    );

    // A pattern file that cannot be read is named, and nothing is backed up.
    let before = env.snapshots_json().len();
    let out = env.r(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude-file",
        "no-such-file",
    ]);
    out.assert_code(2);
    assert!(out.stderr.contains("no-such-file"), "{}", out.describe());
    assert_eq!(env.snapshots_json().len(), before);
}

#[test]
fn tagged_directories_and_large_files_are_left_out() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let tag = "Signature: 8a477f597d28d172789f06886806bc55\n# a cache directory\n";
    write_file(&src.join("cache/CACHEDIR.TAG"), tag.as_bytes());
    write_file(&src.join("cache/blob"), b"cached");
    write_file(&src.join("fake/CACHEDIR.TAG"), b"no signature here");
    write_file(&src.join("fake/data"), b"kept");
    write_file(&src.join("scratch/.nobackup"), b"");
    write_file(&src.join("scratch/tmp"), b"scratch");
    write_file(&src.join("big.iso"), &random_bytes(1, 300_000));
    write_file(&src.join("small.txt"), b"small");

    env.backup_json(
        &[&src],
        &[
            "--exclude-caches",
            "--exclude-if-present",
            ".nobackup",
            "--exclude-larger-than",
            "200K",
        ],
    );
    // A tagged directory keeps its tag file and nothing else, as restic and tar do.
    assert_eq!(
        listing(&restored(&env, &src, "r")),
        vec![
            "cache/CACHEDIR.TAG",
            "fake/CACHEDIR.TAG",
            "fake/data",
            "scratch/.nobackup",
            "small.txt"
        ]
    );

    // A header that does not match leaves the directory in.
    env.backup_json(&[&src], &["--exclude-if-present", ".nobackup:magic"]);
    assert!(restored(&env, &src, "r2").join("scratch/tmp").is_file());

    let out = env.r(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude-larger-than",
        "2X",
    ]);
    out.assert_code(2);
}

#[test]
fn files_from_in_three_formats() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    write_file(&src.join("a"), b"a");
    write_file(&src.join(" spaced "), b"spaced");
    write_file(&src.join("new\nline"), b"newline");
    write_file(&src.join("not-listed"), b"no");

    let lines = env.path("list.txt");
    fs::write(&lines, "# the app\n\n  src/a  \n").unwrap();
    let verbatim = env.path("verbatim.txt");
    fs::write(&verbatim, format!("{}\n", src.join(" spaced ").display())).unwrap();
    let raw = env.path("raw.bin");
    fs::write(&raw, format!("{}\0", src.join("new\nline").display())).unwrap();

    env.r_ok(&[
        "backup",
        "--files-from",
        lines.to_str().unwrap(),
        "--files-from-verbatim",
        verbatim.to_str().unwrap(),
        "--files-from-raw",
        raw.to_str().unwrap(),
    ]);
    assert_eq!(
        listing(&restored(&env, &src, "r")),
        vec![" spaced ", "a", "new\nline"]
    );

    // A list from standard input, its relative paths taken from the current directory.
    let out = env.r_stdin(&["--json", "backup", "--files-from-raw", "-"], b"src/a\0");
    out.assert_success();
    let latest = env.snapshots_json().pop().unwrap();
    assert_eq!(
        latest["paths"],
        serde_json::json!([src.join("a").display().to_string()])
    );

    // An empty list is an error, not a backup of nothing: the command that wrote it likely failed.
    let empty = env.path("empty.txt");
    fs::write(&empty, "# nothing\n").unwrap();
    let before = env.snapshots_json().len();
    let out = env.r(&["backup", "--files-from", empty.to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("names no path"), "{}", out.describe());
    assert_eq!(env.snapshots_json().len(), before);
}

#[test]
fn a_plan_takes_the_same_exclude_options() {
    let env = Env::new();
    let src = env.path("src");
    write_file(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55",
    );
    write_file(&src.join("cache/x"), b"x");
    write_file(&src.join("Big.bin"), &random_bytes(2, 100_000));
    write_file(&src.join("keep"), b"k");
    let plan = env.path("plan.toml");
    fs::write(
        &plan,
        format!(
            "[repository]\nlocation = \"{}\"\n\n[backup]\npaths = [\"{}\"]\nexclude_caches = true\n\
             iexcludes = [\"big.BIN\"]\nexclude_larger_than = \"1M\"\n",
            env.repo_str(),
            src.display()
        ),
    )
    .unwrap();
    env.init();
    env.cairn_ok(&["run", "--plan", plan.to_str().unwrap(), "--only", "backup"]);
    assert_eq!(
        listing(&restored(&env, &src, "r")),
        vec!["cache/CACHEDIR.TAG", "keep"]
    );

    fs::write(
        &plan,
        format!(
            "[repository]\nlocation = \"{}\"\n\n[backup]\npaths = [\"/x\"]\nexclude_larger_than = \"lots\"\n",
            env.repo_str()
        ),
    )
    .unwrap();
    let out = env.cairn(&["plan", "validate", "--plan", plan.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("exclude_larger_than"),
        "{}",
        out.describe()
    );
}
