//! `cairn key rotate` (FORMAT.md §15): new objects are sealed under a new data-key epoch, old and
//! new snapshots restore, a key file from before the rotation is refused for new objects by name,
//! other key files are removed only when asked, an interrupted rotation is finished by a rerun,
//! and prune seals the blobs it repacks from an older epoch again.

use crate::common;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use cairn::backend::LocalBackend;
use cairn::crypto::{KdfParams, MasterKey};
use cairn::id::PackId;
use cairn::Repository;
use common::failing::FailingBackend;
use common::{exit, random_bytes, write_file, Env, Output, PASSWORD};

fn as_user(env: &Env, password: &str, args: &[&str]) -> Output {
    let mut full: Vec<&OsStr> = vec![OsStr::new("-r"), env.repo.as_os_str()];
    full.extend(args.iter().map(OsStr::new));
    env.run(&full, None, &[("CAIRN_PASSWORD", Some(password))])
}

fn key_files(repo: &Path) -> Vec<PathBuf> {
    common::files_under(&repo.join("keys"))
}

/// `(version, epoch)` from an object's first 14 bytes (epoch 0 for version 1).
fn version_and_epoch(path: &Path) -> (u16, u32) {
    let bytes = std::fs::read(path).unwrap();
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let epoch = if version == 1 {
        0
    } else {
        u32::from_le_bytes(bytes[10..14].try_into().unwrap())
    };
    (version, epoch)
}

fn source(env: &Env, name: &str, seed: u64) -> PathBuf {
    let dir = env.path(name);
    write_file(&dir.join("a.bin"), &random_bytes(seed, 200_000));
    write_file(
        &dir.join("sub/b.txt"),
        format!("text {seed}\n").repeat(500).as_bytes(),
    );
    dir
}

fn add_key(env: &Env, password: &str, label: &str) {
    let file = env.path(&format!("pw-{label}"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    env.r_ok(&[
        OsStr::new("key"),
        OsStr::new("add"),
        OsStr::new("--new-password-file"),
        file.as_os_str(),
        OsStr::new("--label"),
        OsStr::new(label),
    ]);
}

#[test]
fn rotation_seals_new_objects_under_a_new_epoch_and_old_keys_are_refused_by_name() {
    let env = Env::new();
    env.init();
    let first = source(&env, "first", 1);
    let snap1 = env.backup_json(&[&first], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    add_key(&env, "old secret", "departing");
    let keys_before: HashSet<PathBuf> = key_files(&env.repo).into_iter().collect();
    assert_eq!(keys_before.len(), 2);

    // Refused while another key file exists: it names the file, and nothing changes.
    let out = env.r(&["key", "rotate"]);
    out.assert_code(exit::USAGE);
    assert!(out.stderr.contains("departing"), "{}", out.describe());
    assert!(
        out.stderr.contains("--remove-other-keys"),
        "{}",
        out.describe()
    );
    assert_eq!(
        key_files(&env.repo).into_iter().collect::<HashSet<_>>(),
        keys_before
    );

    // Keep the departing key file aside, as someone who copied it would.
    let aside = env.path("kept-key");
    std::fs::create_dir_all(&aside).unwrap();
    for k in &keys_before {
        std::fs::copy(k, aside.join(k.file_name().unwrap())).unwrap();
    }
    let packs_before: HashSet<PathBuf> = common::pack_files(&env.repo).into_iter().collect();

    let done = env.r_json(&["key", "rotate", "--remove-other-keys"]);
    assert_eq!(done["epoch"], 1, "{done}");
    assert_eq!(done["resumed"], false, "{done}");
    assert_eq!(
        done["removed_others"].as_array().unwrap().len(),
        1,
        "{done}"
    );
    assert_eq!(done["removed_own"].as_array().unwrap().len(), 1, "{done}");
    let now = key_files(&env.repo);
    assert_eq!(now.len(), 1);
    assert!(
        !keys_before.contains(&now[0]),
        "a new key file replaces the old one"
    );
    assert_eq!(version_and_epoch(&now[0]).0, 2, "key files stay version 2");
    as_user(&env, "old secret", &["snapshots"]).assert_code(exit::WRONG_PASSWORD);
    let listed = env.r_json(&["key", "list"]);
    assert_eq!(listed[0]["epoch"], 1, "{listed}");

    // New data after the rotation: version 2 objects of epoch 1; the unchanged source dedups.
    let second = source(&env, "second", 2);
    let backup = env.backup_json(&[&first, &second], &[]);
    let snap2 = backup["snapshot_id"].as_str().unwrap().to_string();
    let new_packs: Vec<PathBuf> = common::pack_files(&env.repo)
        .into_iter()
        .filter(|p| !packs_before.contains(p))
        .collect();
    assert!(!new_packs.is_empty());
    for p in &new_packs {
        assert_eq!(&std::fs::read(p).unwrap()[..8], b"CAIRNPAK");
        assert_eq!(version_and_epoch(p), (2, 1), "{}", p.display());
    }
    for p in &packs_before {
        assert_eq!(version_and_epoch(p), (1, 0), "old packs are untouched");
    }
    let snap2_file = env.repo.join("snapshots").join(&snap2);
    assert_eq!(version_and_epoch(&snap2_file), (2, 1));
    assert_eq!(
        version_and_epoch(&env.repo.join("snapshots").join(&snap1)),
        (1, 0)
    );
    assert_eq!(
        version_and_epoch(&env.repo.join("config")),
        (1, 0),
        "the config is never rewritten"
    );

    // Both snapshots restore exactly; the whole repository reads back.
    env.assert_restores_exactly(&snap1, &first, "r1");
    env.assert_restores_exactly(&snap2, &first, "r2");
    compare_second(&env, "r2", &second);
    env.r_ok(&["check", "--read-data"]);

    // The departing key file, put back: it still opens the repository (config and old objects are
    // epoch 0), but every object of epoch 1 is refused with the §15 message.
    for k in &keys_before {
        let name = k.file_name().unwrap();
        std::fs::copy(aside.join(name), env.repo.join("keys").join(name)).unwrap();
    }
    let out = as_user(&env, "old secret", &["snapshots"]);
    assert_ne!(out.code, 0, "{}", out.describe());
    let err = out.stderr_lower();
    assert!(err.contains("epoch 1"), "{}", out.describe());
    assert!(err.contains("rotated"), "{}", out.describe());
    assert!(
        err.contains(&snap2[..16]),
        "names the object: {}",
        out.describe()
    );
    // The current password still picks its own, newest-epoch file; key list shows both epochs.
    let listed = env.r_json(&["key", "list"]);
    let epochs: HashSet<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, HashSet::from([0, 1]), "{listed}");
}

fn compare_second(env: &Env, target: &str, second: &Path) {
    let restored = common::restored_path(&env.path(target), second);
    common::compare::assert_trees_equal(second, &restored);
}

/// A crash between writing the rotated key file and removing the old one leaves both; the password
/// opens the newer, and a rerun removes the old one instead of making another epoch.
#[test]
fn an_interrupted_rotation_is_finished_by_a_rerun() {
    let env = Env::new();
    env.init();
    let src = source(&env, "src", 3);
    env.backup_json(&[&src], &[]);
    let old = key_files(&env.repo);
    for (budget, files) in [(0, 1), (1, 2)] {
        let backend = FailingBackend::new(LocalBackend::new(&env.repo), budget, true);
        let repo =
            Repository::open(Box::new(backend), PASSWORD.as_bytes(), &env.cache_dir()).unwrap();
        let err = cairn::ops::keys::rotate(&repo, PASSWORD.as_bytes(), KdfParams::MINIMUM, false)
            .expect_err("the injected failure must surface");
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(key_files(&env.repo).len(), files, "budget {budget}");
        env.r_ok(&["snapshots"]);
    }
    // The password now opens the epoch-1 file, so a backup writes epoch 1.
    let listed = env.r_json(&["key", "list"]);
    let current: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["current"] == true)
        .collect();
    assert_eq!(current[0]["epoch"], 1, "{listed}");
    let done = env.r_json(&["key", "rotate"]);
    assert_eq!(done["resumed"], true, "{done}");
    assert_eq!(done["epoch"], 1, "no second epoch: {done}");
    assert_eq!(
        done["removed_own"][0].as_str().unwrap(),
        common::file_name_str(&old[0])
    );
    assert_eq!(key_files(&env.repo).len(), 1);
    // A rotation after that one makes epoch 2.
    let again = env.r_json(&["key", "rotate"]);
    assert_eq!(again["epoch"], 2, "{again}");
    assert_eq!(again["resumed"], false, "{again}");
    env.backup_json(&[&src], &[]);
    env.r_ok(&["check", "--read-data"]);
}

/// Prune's repack moves blobs of an epoch-0 pack into an epoch-1 pack: they are sealed again under
/// the new key (an epoch-0 keyring cannot open them), not copied byte for byte.
#[test]
fn prune_after_rotation_reseals_what_it_repacks() {
    let env = Env::new();
    let src = one_snapshot_and_a_half_used_pack(&env);
    env.r_ok(&["key", "rotate"]);
    let before: HashSet<PathBuf> = common::pack_files(&env.repo).into_iter().collect();

    let pruned = env.r_json(&["prune", "--max-unused", "0"]);
    assert!(
        pruned["outcome"]["repacked_blobs"].as_u64().unwrap() >= 1,
        "{pruned}"
    );
    let written: Vec<PathBuf> = common::pack_files(&env.repo)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!written.is_empty(), "{pruned}");

    let repo = Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap();
    let current = repo.key();
    assert_eq!(current.epochs(), vec![0, 1]);
    // The keyring as it was before the rotation: epoch 0 only.
    let old = MasterKey::from_bytes(&current.to_bytes());
    for path in &written {
        assert_eq!(version_and_epoch(path), (2, 1));
        let id = PackId::from_hex(&common::file_name_str(path)).unwrap();
        let bytes = std::fs::read(path).unwrap();
        let (prefix, entries) = cairn::pack::parse_pack(current, &id, &bytes).unwrap();
        assert_eq!(prefix.epoch, 1);
        for e in &entries {
            let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            cairn::blob::open_blob(current, e, sealed, None).unwrap();
            assert!(
                cairn::blob::open_blob(&old, e, sealed, None).is_err(),
                "blob {} was copied under epoch 0 into an epoch-1 pack",
                e.id
            );
        }
    }
    env.r_ok(&["check", "--read-data"]);
    env.assert_restores_exactly("latest", &src, "restored");
    // Regression: a fully used version 2 pack (4 bytes more prefix) is not taken for a wasteful one.
    let again = env.r_json(&["prune", "--max-unused", "0", "--dry-run"]);
    assert_eq!(again["repack"].as_array().unwrap().len(), 0, "{again}");
}

/// A source backed up twice, a file removed in between, the first snapshot forgotten: the data
/// pack is half unused.
fn one_snapshot_and_a_half_used_pack(env: &Env) -> PathBuf {
    env.init();
    let src = env.path("src");
    write_file(&src.join("keep.bin"), &random_bytes(10, 300_000));
    write_file(&src.join("drop.bin"), &random_bytes(11, 300_000));
    env.backup_json(&[&src], &[]);
    std::fs::remove_file(src.join("drop.bin")).unwrap();
    env.backup_json(&[&src], &[]);
    env.r_ok(&["forget", "--keep-last", "1"]);
    src
}

/// Objects of every kind in epoch 0: two snapshots (the second the first's child), a pending
/// record with a condemned pack, a verification record. Returns the source.
fn repository_with_every_kind(env: &Env) -> PathBuf {
    let src = one_snapshot_and_a_half_used_pack(env);
    env.r_ok(&["prune", "--max-unused", "0"]);
    write_file(&src.join("new.txt"), b"third\n");
    env.backup_json(&[&src], &[]);
    env.r_ok(&["check", "--read-data"]);
    for dir in ["pending", "verified", "index", "snapshots"] {
        assert!(
            !common::files_under(&env.repo.join(dir)).is_empty(),
            "{dir}"
        );
    }
    src
}

/// Every object of `dir` is of `epoch`.
fn all_of_epoch(repo: &Path, dir: &str, epoch: u32) -> bool {
    common::files_under(&repo.join(dir))
        .iter()
        .all(|p| version_and_epoch(p).1 == epoch)
}

/// `key rotate --reencrypt` leaves no index file, snapshot or record of epoch 0, repacks and
/// condemns every epoch-0 pack, and keeps the chain of parents.
#[test]
fn reencrypt_seals_every_older_object_again() {
    let env = Env::new();
    let src = repository_with_every_kind(&env);
    let old_pending = common::files_under(&env.repo.join("pending"));
    let out = env.r_json(&["key", "rotate", "--reencrypt"]);
    assert_eq!(out["epoch"], 1, "{out}");
    let re = &out["reencrypted"];
    assert_eq!(re["snapshots"].as_array().unwrap().len(), 2, "{out}");
    assert!(
        re["prune"]["repacked_packs"].as_u64().unwrap() >= 2,
        "{out}"
    );
    for dir in ["index", "snapshots", "pending", "verified"] {
        assert!(all_of_epoch(&env.repo, dir, 1), "{dir} after --reencrypt");
    }
    assert!(
        old_pending.iter().all(|p| !p.exists()),
        "old records replaced"
    );
    // Every epoch-0 pack is condemned now; the rest are epoch 1.
    let repo = Repository::open(
        Box::new(LocalBackend::new(&env.repo)),
        PASSWORD.as_bytes(),
        &env.cache_dir(),
    )
    .unwrap();
    let condemned = cairn::repo::pending::condemned_packs(&repo).unwrap();
    for p in common::pack_files(&env.repo) {
        let id = PackId::from_hex(&common::file_name_str(&p)).unwrap();
        assert!(
            version_and_epoch(&p).1 == 1 || condemned.contains(&id),
            "{} is epoch 0 and not condemned",
            p.display()
        );
    }
    // The parent link follows the rewritten ids.
    let snaps = env.snapshots_json();
    assert_eq!(snaps.len(), 2);
    let ids: Vec<&str> = snaps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(
        snaps
            .iter()
            .any(|s| s["parent"].as_str().is_some_and(|p| ids.contains(&p))),
        "{snaps:?}"
    );
    env.r_ok(&["check", "--read-data"]);
    env.assert_restores_exactly("latest", &src, "restored");
    // Nothing older is left to do: a second run changes nothing.
    let again = env.r_json(&["key", "rotate", "--reencrypt-only"]);
    assert_eq!(
        again["reencrypted"]["snapshots"].as_array().unwrap().len(),
        0,
        "{again}"
    );
    assert_eq!(
        again["reencrypted"]["prune"]["repacked_packs"], 0,
        "{again}"
    );
}

/// Re-encryption interrupted at each of its changes in turn (a fresh copy of the repository each
/// time): the repository checks and restores after the interruption, and `key rotate
/// --reencrypt-only` then finishes the job.
#[test]
fn an_interrupted_reencryption_loses_nothing_and_a_rerun_finishes_it() {
    let env = Env::new();
    let src = repository_with_every_kind(&env);
    env.r_ok(&["key", "rotate"]);
    let template = env.path("template");
    copy_dir(&env.repo, &template);
    let mut interruptions = 0;
    for budget in 0..200 {
        std::fs::remove_dir_all(&env.repo).unwrap();
        copy_dir(&template, &env.repo);
        env.remove_cache();
        let backend = FailingBackend::new(LocalBackend::new(&env.repo), budget, true);
        let repo =
            Repository::open(Box::new(backend), PASSWORD.as_bytes(), &env.cache_dir()).unwrap();
        let options = cairn::ops::prune::PruneOptions::default();
        let result =
            cairn::repo::lease::acquire_exclusive(&repo, options.clock_skew).and_then(|held| {
                let repo = repo.into_indexed()?;
                held.hold_while(repo.repo(), |held| {
                    cairn::ops::reencrypt::reencrypt(&repo, held, &options)
                })
            });
        if result.is_ok() {
            break;
        }
        let e = result.unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        interruptions += 1;
        // A crashed run's lease would block the rerun until it expires: let it expire.
        for lease in common::files_under(&env.repo.join("locks")) {
            std::fs::remove_file(lease).unwrap();
        }
        env.r_ok(&["check"]);
        env.assert_restores_exactly("latest", &src, &format!("restored-{budget}"));
        let rerun = env.r_json(&["key", "rotate", "--reencrypt-only"]);
        assert_eq!(rerun["epoch"], 1, "{rerun}");
        for dir in ["index", "snapshots", "pending", "verified"] {
            assert!(
                all_of_epoch(&env.repo, dir, 1),
                "{dir} after the rerun, budget {budget}"
            );
        }
        env.r_ok(&["check", "--read-data"]);
        env.assert_restores_exactly("latest", &src, &format!("rerun-{budget}"));
    }
    // Lease, packs, index files, record, index files, snapshots, records: more than ten changes.
    assert!(interruptions >= 10, "only {interruptions} interruptions");
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
