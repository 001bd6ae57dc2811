//! `cairn key`: several passwords per repository, the last usable key never removed, password
//! changes that never leave zero keys, version 1 key files still listed and opened, and recovery
//! from the printed recovery key after every key file is lost.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use cairn::backend::LocalBackend;
use cairn::crypto::KdfParams;
use common::failing::FailingBackend;
use common::{exit, Env, Output};

fn pw_file(env: &Env, name: &str, password: &str) -> PathBuf {
    let p = env.path(name);
    std::fs::write(&p, format!("{password}\n")).unwrap();
    p
}

/// `cairn -r REPO <args>` with `password` in CAIRN_PASSWORD.
fn as_user(env: &Env, password: &str, args: &[&OsStr]) -> Output {
    let mut full: Vec<&OsStr> = vec![OsStr::new("-r"), env.repo.as_os_str()];
    full.extend_from_slice(args);
    env.run(&full, None, &[("CAIRN_PASSWORD", Some(password))])
}

fn keys_json(env: &Env, password: &str) -> Vec<serde_json::Value> {
    let out = as_user(
        env,
        password,
        &[OsStr::new("--json"), OsStr::new("key"), OsStr::new("list")],
    );
    out.assert_success();
    out.json().as_array().unwrap().clone()
}

fn current(keys: &[serde_json::Value]) -> String {
    let mine: Vec<_> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(mine.len(), 1, "exactly one current key: {keys:?}");
    mine[0]["id"].as_str().unwrap().to_string()
}

fn key_files(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("keys")).unwrap().count()
}

#[test]
fn add_passwd_and_remove_never_lose_the_last_key() {
    let env = Env::new();
    env.init();
    let first = env.password.clone();

    let keys = keys_json(&env, &first);
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["current"], true);
    assert_eq!(k["version"], 2);
    assert_eq!(k["usable"], true);
    assert_eq!(k["kdf"]["memory_kib"], 65536);
    assert_eq!(k["kdf"]["time"], 3);
    assert!(k["created"].as_str().unwrap().ends_with('Z'), "{k}");
    assert!(k["host"].is_string() && k["user"].is_string(), "{k}");
    let first_id = k["id"].as_str().unwrap().to_string();

    // A second password, with a label.
    let second_file = pw_file(&env, "pw2", "second secret");
    env.r_ok(&[
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        second_file.as_os_str(),
        OsStr::new("--label"),
        OsStr::new("for bob"),
    ]);
    let keys = keys_json(&env, "second secret");
    assert_eq!(keys.len(), 2);
    let second_id = current(&keys);
    assert_ne!(second_id, first_id);
    let second = keys.iter().find(|k| k["id"] == second_id.as_str()).unwrap();
    assert_eq!(second["label"], "for bob");
    // Every password holder reads every key's metadata.
    assert!(keys.iter().all(|k| k["created"].is_string()), "{keys:?}");
    let table = as_user(&env, &first, &[OsStr::new("key"), OsStr::new("list")]);
    table.assert_success();
    assert!(table.stdout.contains("for bob"), "{}", table.describe());
    assert!(
        table.stdout.contains(&format!("* {}", &first_id[..8])),
        "{}",
        table.describe()
    );

    // A wrong old password changes nothing.
    let third_file = pw_file(&env, "pw3", "third secret");
    let passwd = [
        OsStr::new("key"),
        OsStr::new("passwd"),
        OsStr::new("--new-password-file"),
        third_file.as_os_str(),
    ];
    as_user(&env, "not a password", &passwd).assert_code(exit::WRONG_PASSWORD);
    assert_eq!(key_files(&env.repo), 2);

    // passwd replaces bob's key: the old password stops working, the label stays.
    as_user(&env, "second secret", &passwd).assert_success();
    assert_eq!(key_files(&env.repo), 2);
    as_user(&env, "second secret", &[OsStr::new("snapshots")]).assert_code(exit::WRONG_PASSWORD);
    let keys = keys_json(&env, "third secret");
    let third_id = current(&keys);
    assert!(keys.iter().all(|k| k["id"] != second_id.as_str()));
    let third = keys.iter().find(|k| k["id"] == third_id.as_str()).unwrap();
    assert_eq!(third["label"], "for bob");

    // Removing the key you are using is fine while another usable one remains.
    let out = as_user(
        &env,
        "third secret",
        &[
            OsStr::new("key"),
            OsStr::new("remove"),
            OsStr::new(&third_id[..10]),
        ],
    );
    out.assert_success();
    assert!(out.stderr.contains("no longer opens"), "{}", out.describe());
    as_user(&env, "third secret", &[OsStr::new("snapshots")]).assert_code(exit::WRONG_PASSWORD);

    // The last usable key is never removed, and the message says what to do instead.
    let out = env.r(&["key", "remove", &first_id[..8]]);
    out.assert_code(exit::USAGE);
    assert!(
        out.stderr.contains("last usable key") && out.stderr.contains("key add"),
        "{}",
        out.describe()
    );
    assert_eq!(key_files(&env.repo), 1);
    let out = env.r(&["key", "remove", "ffffffffff"]);
    out.assert_code(exit::USAGE);
    assert!(out.stderr.contains("key list"), "{}", out.describe());

    // Bad new passwords write nothing.
    let empty = pw_file(&env, "empty", "");
    let out = env.r(&[
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        empty.as_os_str(),
    ]);
    out.assert_code(exit::USAGE);
    let out = env.r(&[
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        second_file.as_os_str(),
        OsStr::new("--label"),
        OsStr::new(&"x".repeat(300)),
    ]);
    out.assert_code(exit::USAGE);
    assert_eq!(key_files(&env.repo), 1);
    env.r_ok(&["check"]);
}

/// A key file exactly as cairn 0.1 wrote it (FORMAT.md §4, version 1), for `password`.
fn write_v1_key(env: &Env, password: &[u8]) -> String {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let backend = cairn::backend::LocalBackend::new(&env.repo);
    let repo =
        cairn::Repository::open(Box::new(backend), env.password.as_bytes(), &env.cache_dir())
            .unwrap();
    let params = cairn::crypto::KdfParams::MINIMUM;
    let salt = [9u8; 32];
    let mut header = b"CAIRNKEY".to_vec();
    header.extend_from_slice(&1u16.to_le_bytes());
    header.push(1);
    for v in [params.memory_kib, params.time, params.parallelism] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&salt);
    let wrapping = cairn::crypto::derive_wrapping_key(password, &salt, params).unwrap();
    let nonce = [3u8; 24];
    let sealed = XChaCha20Poly1305::new(wrapping.as_ref().into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: repo.key().to_bytes().as_ref(),
                aad: &header,
            },
        )
        .unwrap();
    let bytes = [header, nonce.to_vec(), sealed].concat();
    assert_eq!(bytes.len(), 159);
    let name = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(env.repo.join("keys").join(&name), &bytes).unwrap();
    name
}

#[test]
fn version_1_key_files_list_open_and_count_as_usable() {
    let env = Env::new();
    env.init();
    let v1 = write_v1_key(&env, b"old password");
    let keys = keys_json(&env, "old password");
    assert_eq!(current(&keys), v1);
    let old = keys.iter().find(|k| k["id"] == v1.as_str()).unwrap();
    assert_eq!(old["version"], 1);
    assert_eq!(old["usable"], true);
    assert!(old["created"].is_null() && old["label"].is_null(), "{old}");
    assert_eq!(old["kdf"]["memory_kib"], 8192);
    let new_id = keys.iter().find(|k| k["version"] == 2).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    as_user(
        &env,
        "old password",
        &[OsStr::new("key"), OsStr::new("remove"), OsStr::new(&new_id)],
    )
    .assert_success();
    as_user(&env, "old password", &[OsStr::new("check")]).assert_success();
    let out = as_user(
        &env,
        "old password",
        &[OsStr::new("key"), OsStr::new("remove"), OsStr::new(&v1)],
    );
    out.assert_code(exit::USAGE);
}

#[test]
fn a_damaged_key_file_is_listed_as_unusable_and_does_not_count() {
    let env = Env::new();
    env.init();
    std::fs::write(env.repo.join("keys").join("0".repeat(64)), b"CAIRNKEY junk").unwrap();
    let keys = keys_json(&env, &env.password.clone());
    let junk = keys.iter().find(|k| k["usable"] == false).unwrap();
    assert!(
        junk["problem"].as_str().unwrap().contains("key file"),
        "{junk}"
    );
    let mine = current(&keys);
    env.r(&["key", "remove", &mine]).assert_code(exit::USAGE);
    env.r_ok(&["key", "remove", "00000000"]);

    // Damaged metadata (the last bytes are its tag) makes a key unusable for others to count on,
    // but the key the password just opened stays the last usable one: never removed.
    let path = env.repo.join("keys").join(&mine);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let keys = keys_json(&env, &env.password.clone());
    assert!(
        keys[0]["problem"].as_str().unwrap().contains("metadata"),
        "{keys:?}"
    );
    assert_eq!(keys[0]["usable"], true);
    env.r(&["key", "remove", &mine]).assert_code(exit::USAGE);
    assert_eq!(key_files(&env.repo), 1);
}

#[test]
fn the_recovery_key_restores_access_after_every_key_file_is_lost() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    common::write_file(&src.join("a.txt"), b"precious");
    common::write_file(&src.join("sub/b.bin"), &common::random_bytes(7, 300_000));
    env.backup_json(&[&src], &[]);

    let out = env.r_ok(&["key", "export", "--paper"]);
    assert!(
        out.stdout.starts_with("# cairn recovery key"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains("key import"), "{}", out.describe());
    let paper = env.path("recovery.txt");
    std::fs::write(&paper, &out.stdout).unwrap();
    let json = env.r_json(&["key", "export", "--paper"]);
    assert!(out.stdout.contains(json["recovery_key"].as_str().unwrap()));
    env.r(&["key", "export"]).assert_code(exit::USAGE);

    // A typo is caught and located before anything is written.
    let lines: Vec<&str> = out.stdout.lines().collect();
    let first_group_line = lines.iter().position(|l| !l.starts_with('#')).unwrap();
    let mut typo_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let line = &mut typo_lines[first_group_line + 1];
    let c = line.as_bytes()[2];
    let replacement = if c == b'7' { "8" } else { "7" };
    line.replace_range(2..3, replacement);
    let typo = env.path("typo.txt");
    std::fs::write(&typo, typo_lines.join("\n")).unwrap();

    // Every key file lost.
    for entry in std::fs::read_dir(env.repo.join("keys")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    env.r(&["snapshots"]).assert_code(exit::DAMAGED);

    let new_pw = pw_file(&env, "newpw", "recovered password");
    let import = |file: &Path| {
        env.r(&[
            OsStr::new("key"),
            OsStr::new("import"),
            file.as_os_str(),
            OsStr::new("--new-password-file"),
            new_pw.as_os_str(),
        ])
    };
    let out = import(&typo);
    out.assert_code(exit::USAGE);
    assert!(
        out.stderr
            .contains("group 7 (line 2, group 1 of that line)"),
        "{}",
        out.describe()
    );
    assert_eq!(key_files(&env.repo), 0);

    // The page of another repository is refused.
    let other = Env::new();
    other.init();
    let foreign = other.r_ok(&["key", "export", "--paper"]);
    let foreign_file = env.path("foreign.txt");
    std::fs::write(&foreign_file, &foreign.stdout).unwrap();
    let out = import(&foreign_file);
    out.assert_code(exit::USAGE);
    assert!(
        out.stderr.contains("another repository"),
        "{}",
        out.describe()
    );
    assert_eq!(key_files(&env.repo), 0);

    // Typed back sloppily (lowercase, other breaks) from standard input.
    let sloppy: String = out_groups(&std::fs::read_to_string(&paper).unwrap())
        .to_lowercase()
        .replace(' ', "\n");
    let out = env.run(
        &[
            OsStr::new("-r"),
            env.repo.as_os_str(),
            OsStr::new("key"),
            OsStr::new("import"),
            OsStr::new("-"),
            OsStr::new("--new-password-file"),
            new_pw.as_os_str(),
        ],
        Some(sloppy.as_bytes()),
        &[("CAIRN_PASSWORD", None)],
    );
    out.assert_success();
    assert_eq!(key_files(&env.repo), 1);

    let restored = env.path("restored");
    as_user(
        &env,
        "recovered password",
        &[
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            restored.as_os_str(),
        ],
    )
    .assert_success();
    common::compare::assert_trees_equal(&src, &common::restored_path(&restored, &src));
    as_user(
        &env,
        "recovered password",
        &[OsStr::new("check"), OsStr::new("--read-data")],
    )
    .assert_success();
}

fn out_groups(page: &str) -> String {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key passwd` interrupted at each of its two changes: before the new key file is written
/// nothing changed; between the write and the removal both passwords open the repository.
#[test]
fn an_interrupted_password_change_never_leaves_zero_keys() {
    let env = Env::new();
    env.init();
    for (budget, files, new_opens) in [(0, 1, false), (1, 2, true)] {
        let backend = FailingBackend::new(LocalBackend::new(&env.repo), budget, true);
        let repo =
            cairn::Repository::open(Box::new(backend), env.password.as_bytes(), &env.cache_dir())
                .unwrap();
        let err = cairn::ops::keys::change_password(&repo, b"new secret", KdfParams::MINIMUM, None)
            .expect_err("the injected failure must surface");
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(key_files(&env.repo), files, "budget {budget}");
        env.r_ok(&["snapshots"]);
        let out = as_user(&env, "new secret", &[OsStr::new("snapshots")]);
        assert_eq!(out.code == 0, new_opens, "{}", out.describe());
    }
    env.r_ok(&["check"]);
}
