//! What a hostile or damaged storage can make one command cost: every whole object is bounded by
//! its kind's maximum before it is read (a planted sparse file of gigabytes costs a stat), and the
//! key derivation work of an opening is bounded whatever key files are planted (FORMAT.md §3, §4).

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use cairn::backend::LocalBackend;
use cairn::crypto::{KdfParams, MasterKey};
use cairn::format::key::{KeyFile, KeyMetadata};
use cairn::id::KeyId;
use cairn::Repository;
use common::{exit, Env, Output};

/// Size of the planted sparse files: far above every kind's maximum, and more memory than a test
/// may take.
const PLANTED: u64 = 3_000_000_000;

/// Most memory a command may take while refusing a planted object (KiB, as `time -v` reports).
const MAX_RSS_KIB: u64 = 512 * 1024;

fn plant_sparse(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::File::create(path).unwrap().set_len(PLANTED).unwrap();
}

/// Runs `cairn -r REPO args` under `/usr/bin/time -v` when it exists, with the environment of
/// `env` and `password`, and returns the output and the peak resident set size in KiB.
fn measured(env: &Env, password: &str, args: &[&str]) -> (Output, Option<u64>) {
    let plain = env.command();
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-v").arg(plain.get_program());
        c
    } else {
        Command::new(plain.get_program())
    };
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("CAIRN_PASSWORD", password)
        .current_dir(env.root())
        .arg("-r")
        .arg(&env.repo)
        .args(args);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|n| n.trim().parse().ok());
    let output = Output {
        cmd: format!("cairn -r REPO {}", args.join(" ")),
        // `time` exits with the command's code.
        code: out.status.code().unwrap_or(-1),
        stdout_bytes: out.stdout.clone(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    };
    (output, rss)
}

fn assert_small(out: &Output, rss: Option<u64>) {
    if let Some(kib) = rss {
        assert!(
            kib < MAX_RSS_KIB,
            "peak RSS {kib} KiB: the planted object was read\n{}",
            out.describe()
        );
    }
}

fn repo_with_a_snapshot() -> Env {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"some content").unwrap();
    env.r_ok(&[OsStr::new("backup"), src.as_os_str()]);
    env
}

const NAME: &str = "abababababababababababababababababababababababababababababababab";

#[test]
fn an_oversized_object_of_each_kind_is_refused_before_it_is_read() {
    // (where, command, expected code, what the message says)
    let cases: [(&str, &[&str], i32, &str); 4] = [
        (
            "config",
            &["snapshots"],
            exit::DAMAGED,
            "the config is 3000000000 bytes, more than the 1048576 bytes any config may be",
        ),
        (
            "snapshots",
            &["snapshots"],
            exit::DAMAGED,
            "is 3000000000 bytes, more than the 67108864 bytes any snapshot may be",
        ),
        (
            "index",
            &["ls", "latest"],
            exit::DAMAGED,
            "is 3000000000 bytes, more than the 268435456 bytes any index file may be",
        ),
        // A lease that does not read is skipped like any damaged lease (FORMAT.md §12).
        ("locks", &["prune"], exit::OK, ""),
    ];
    for (dir, args, code, message) in cases {
        let env = repo_with_a_snapshot();
        let path = if dir == "config" {
            env.repo.join("config")
        } else {
            env.repo.join(dir).join(NAME)
        };
        plant_sparse(&path);
        let (out, rss) = measured(&env, &env.password, args);
        out.assert_code(code);
        assert!(out.stderr.contains(message), "{dir}\n{}", out.describe());
        assert_small(&out, rss);
    }
}

#[test]
fn an_oversized_pending_record_fails_a_backup_with_its_size() {
    let env = repo_with_a_snapshot();
    plant_sparse(&env.repo.join("pending").join(NAME));
    let src = env.path("src");
    let (out, rss) = measured(&env, &env.password, &["backup", src.to_str().unwrap()]);
    out.assert_code(exit::DAMAGED);
    assert!(
        out.stderr.contains(&format!(
            "pending-deletion record {NAME} is 3000000000 bytes, more than the 67108864"
        )),
        "{}",
        out.describe()
    );
    assert_small(&out, rss);
}

#[test]
fn an_oversized_key_file_is_listed_as_unusable_and_does_not_keep_the_others_from_opening() {
    let env = repo_with_a_snapshot();
    plant_sparse(&env.repo.join("keys").join(NAME));
    let (out, rss) = measured(&env, &env.password, &["--json", "key", "list"]);
    out.assert_success();
    assert_small(&out, rss);
    let keys = out.json();
    let planted = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == NAME)
        .unwrap_or_else(|| panic!("{keys}"));
    assert_eq!(planted["usable"], false);
    let problem = planted["problem"].as_str().unwrap();
    assert!(
        problem.contains("3000000000 bytes, more than the"),
        "{problem}"
    );
}

/// A key file no password opens, whose clear header asks for Argon2id at the format's limits (4
/// GiB, 64 passes), and which claims the newest epoch so that it would be tried first.
fn plant_absurd_key_file(repo: &Path) -> String {
    let mut file = KeyFile::wrap(
        &MasterKey::generate().unwrap(),
        b"nobody's",
        KdfParams::MINIMUM,
        &KeyMetadata::new(None).unwrap(),
    )
    .unwrap();
    file.params = KdfParams {
        memory_kib: 4 * 1024 * 1024,
        time: 64,
        parallelism: 64,
    };
    assert!(file.params.validate().is_ok(), "within the format's bounds");
    if let Some((epoch, _)) = &mut file.sealed_metadata {
        *epoch = 1000;
    }
    let bytes = file.encode();
    let name = KeyId::hash_of(&bytes).to_hex();
    fs::write(repo.join("keys").join(&name), bytes).unwrap();
    name
}

#[test]
fn a_planted_key_file_with_absurd_kdf_parameters_is_not_run() {
    let env = repo_with_a_snapshot();
    let planted = plant_absurd_key_file(&env.repo);
    // Running its KDF would take 4 GiB: the command would not stay small (or would be killed).
    let (out, rss) = measured(&env, &env.password, &["snapshots"]);
    out.assert_success();
    assert_small(&out, rss);
    let (out, rss) = measured(&env, "not the password", &["snapshots"]);
    out.assert_code(exit::WRONG_PASSWORD);
    assert_small(&out, rss);
    for needle in [
        "none of the 1 key file(s) tried of the 2",
        "1 key file(s) were not tried",
        &format!(
            "{} (4096 MiB, 64 passes, above what runs unnamed)",
            &planted[..8]
        ),
        "--key-hint",
    ] {
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
    }
}

#[test]
fn key_hint_picks_one_key_file_and_opens_a_costly_one_nobody_else_runs() {
    let env = repo_with_a_snapshot();
    let own = fs::read_dir(env.repo.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    // A legitimate key file above what an opening runs unnamed (4.5 GiB-passes), small enough for
    // a test: 72 MiB, 64 passes.
    let costly = KdfParams {
        memory_kib: 72 * 1024,
        time: 64,
        parallelism: 4,
    };
    assert!(!costly.runs_unnamed());
    let repo = Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        env.password.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap();
    let bytes = KeyFile::wrap(
        repo.key(),
        b"strong",
        costly,
        &KeyMetadata::new(Some("costly".into())).unwrap(),
    )
    .unwrap()
    .encode();
    let strong = KeyId::hash_of(&bytes).to_hex();
    fs::write(env.repo.join("keys").join(&strong), bytes).unwrap();

    let out = env.run(
        &["-r", env.repo_str(), "snapshots"],
        None,
        &[("CAIRN_PASSWORD", Some("strong"))],
    );
    out.assert_code(exit::WRONG_PASSWORD);
    assert!(
        out.stderr
            .contains(&format!("{} (72 MiB, 64 passes", &strong[..8])),
        "{}",
        out.describe()
    );

    let hint = &strong[..10];
    env.run(
        &["-r", env.repo_str(), "--key-hint", hint, "snapshots"],
        None,
        &[("CAIRN_PASSWORD", Some("strong"))],
    )
    .assert_success();
    let listed = env.run(
        &["-r", env.repo_str(), "--json", "key", "list"],
        None,
        &[
            ("CAIRN_PASSWORD", Some("strong")),
            ("CAIRN_KEY_HINT", Some(hint)),
        ],
    );
    listed.assert_success();
    let current: Vec<_> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["current"] == true)
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(current, std::slice::from_ref(&strong));

    // The hint names one file: the other password does not open it, and is not tried elsewhere.
    let out = env.r(&["--key-hint", &strong[..8], "snapshots"]);
    out.assert_code(exit::WRONG_PASSWORD);
    assert!(
        out.stderr.contains("none of the 1 key file(s) tried"),
        "{}",
        out.describe()
    );
    env.r_ok(&["--key-hint", &own[..8], "snapshots"]);
    for (bad, why) in [("zz", "no key file"), ("", "no key file")] {
        let out = env.r(&["--key-hint", bad, "snapshots"]);
        out.assert_code(exit::USAGE);
        assert!(out.stderr.contains(why), "{}", out.describe());
    }
}
