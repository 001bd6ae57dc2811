//! A pack that disappears (lost by the storage, deleted by hand, or an older index file put back
//! after a prune) must never make a later backup depend on it, and must never hide another copy of
//! a blob from a reader: the regression tests of the data loss where backups stored a few hundred
//! bytes for megabytes of data and their snapshots could not be restored.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cairn::backend::LocalBackend;
use cairn::format::index_file::IndexFile;
use cairn::id::PackId;
use cairn::index::files;
use cairn::Repository;
use common::{exit, random_bytes, restored_path, tree_listing, write_file, Env};

/// A repository with one snapshot of `src` (two files of random data); returns the source and
/// the largest pack, the one holding the file data.
fn one_backup(env: &Env) -> (PathBuf, PathBuf) {
    env.init();
    let src = env.path("src");
    write_file(&src.join("a.bin"), &random_bytes(1, 400_000));
    write_file(&src.join("dir/b.bin"), &random_bytes(2, 300_000));
    env.backup_json(&[&src], &[]);
    (src, common::largest_pack(&env.repo))
}

fn assert_restores(env: &Env, snap: &str, src: &Path, name: &str) {
    let target = env.path(name);
    env.restore(snap, &target);
    assert_eq!(
        tree_listing(&restored_path(&target, src)),
        tree_listing(src),
        "snapshot {snap} must restore byte for byte"
    );
}

fn backup_after_loss(env: &Env, src: &Path, extra: &[&str]) -> common::Output {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--json".as_ref(), "backup".as_ref()];
    args.push(src.as_os_str());
    args.extend(extra.iter().map(|e| std::ffi::OsStr::new(*e)));
    let out = env.r(&args);
    out.assert_success();
    assert!(
        out.stderr
            .contains("pack(s) named by the index are missing from the repository"),
        "a backup that finds index entries of absent packs must say so\n{}",
        out.describe()
    );
    let added = out.json()["summary"]["bytes_added"].as_u64().unwrap();
    assert!(
        added > 600_000,
        "the lost data must be stored again ({added} bytes added)\n{}",
        out.describe()
    );
    out
}

#[test]
fn a_backup_after_a_lost_pack_stores_unchanged_files_again_with_a_warm_cache() {
    let env = Env::new();
    let (src, data_pack) = one_backup(&env);
    std::fs::remove_file(&data_pack).unwrap();
    // Unchanged files: the parent's content lists must not be reused over a missing pack.
    backup_after_loss(&env, &src, &[]);
    assert_restores(&env, "latest", &src, "restored");
}

#[test]
fn a_backup_after_a_lost_pack_stores_deduplicated_chunks_again_with_a_cold_cache() {
    let env = Env::new();
    let (_src, data_pack) = one_backup(&env);
    std::fs::remove_file(&data_pack).unwrap();
    env.remove_cache();
    // Copies under new names: no parent entry matches, every chunk goes through the dedup lookup.
    let other = env.path("other");
    write_file(&other.join("a-copy.bin"), &random_bytes(1, 400_000));
    write_file(&other.join("b-copy.bin"), &random_bytes(2, 300_000));
    backup_after_loss(&env, &other, &[]);
    assert_restores(&env, "latest", &other, "restored");
}

#[test]
fn readers_use_another_copy_when_the_first_indexed_pack_is_gone() {
    let env = Env::new();
    let (src, data_pack) = one_backup(&env);
    let first = env.snapshots_json()[0]["id"].as_str().unwrap().to_string();
    let old_index: Vec<String> = env.index_files();
    std::fs::remove_file(&data_pack).unwrap();
    backup_after_loss(&env, &src, &[]);
    // The index now names each data blob twice: in the lost pack and in the new one. Make the
    // lost pack the first location the cache gives (as an index file read last would), so the
    // readers below must fall back on the other copy.
    {
        let repo = Repository::open(
            Box::new(LocalBackend::new(&env.repo)),
            common::PASSWORD.as_bytes(),
            &env.cache_dir(),
        )
        .unwrap()
        .into_indexed()
        .unwrap();
        let lost = PackId::from_hex(&common::file_name_str(&data_pack)).unwrap();
        let files: Vec<(String, IndexFile)> = old_index
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    files::read(repo.repo().backend(), repo.repo().key(), name).unwrap(),
                )
            })
            .collect();
        repo.index().insert_files(&files).unwrap();
        let blob = files
            .iter()
            .flat_map(|(_, f)| &f.packs)
            .find(|p| p.pack == lost)
            .unwrap()
            .blobs[0]
            .id;
        assert_eq!(repo.index().lookup(&blob).unwrap().unwrap().pack, lost);
    }
    // The first snapshot's trees are shared, so it is whole again, whichever copy comes first.
    for cache in ["warm", "cold"] {
        if cache == "cold" {
            env.remove_cache();
        }
        assert_restores(&env, &first, &src, &format!("restored-{cache}"));
        let cat = env.r(&[
            "cat".to_string(),
            format!("{first}:{}/a.bin", src.display()),
        ]);
        cat.assert_success();
        assert_eq!(
            cat.stdout_bytes,
            random_bytes(1, 400_000),
            "cat ({cache} cache)"
        );
        let dump = env.r(&["dump".to_string(), format!("{first}:{}", src.display())]);
        dump.assert_success();
    }
    // The index still names a pack that is gone: damage, with the remedy.
    let pack = common::file_name_str(&data_pack);
    let out = env.r(&["check"]);
    out.assert_code(exit::DAMAGED);
    assert!(
        out.stderr.contains(&format!(
            "pack {pack} is listed in the index but missing from the repository"
        )) && out.stderr.contains("cairn repair index"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("file /"),
        "every file has a readable copy: no snapshot is damaged\n{}",
        out.describe()
    );
    env.r_ok(&["repair", "index"]);
    let out = env.r_ok(&["check", "--read-data"]);
    assert!(out.stdout.contains("no problems"), "{}", out.describe());
}

#[test]
fn check_never_calls_a_pack_that_snapshots_need_harmless() {
    let env = Env::new();
    let (_src, data_pack) = one_backup(&env);
    for entry in std::fs::read_dir(env.repo.join("index")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let out = env.r(&["check"]);
    out.assert_code(exit::DAMAGED);
    let pack = common::file_name_str(&data_pack);
    let about_pack: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains(&format!("pack {pack} is in no index file")))
        .collect();
    assert!(
        !about_pack.is_empty() && about_pack.iter().all(|l| !l.contains("harmless")),
        "a pack holding blobs that snapshots use is damage, never harmless\n{}",
        out.describe()
    );
    assert!(
        about_pack.iter().any(|l| l.contains("cairn repair index")),
        "{}",
        out.describe()
    );
    env.r_ok(&["repair", "index"]);
    env.r_ok(&["check"]);
}

#[test]
fn check_still_calls_a_pack_no_snapshot_uses_harmless() {
    let env = Env::new();
    let (_src, _) = one_backup(&env);
    // What an interrupted backup leaves: a pack stored but never indexed, used by no snapshot.
    let listed = |dir: &str| -> HashSet<PathBuf> {
        common::files_under(&env.repo.join(dir))
            .into_iter()
            .collect()
    };
    let (packs, indexes, snapshots) = (listed("data"), listed("index"), listed("snapshots"));
    let other = env.path("other");
    write_file(&other.join("c.bin"), &random_bytes(3, 200_000));
    env.backup_json(&[&other], &[]);
    for p in listed("index")
        .difference(&indexes)
        .chain(listed("snapshots").difference(&snapshots))
    {
        std::fs::remove_file(p).unwrap();
    }
    let new_packs: Vec<PathBuf> = listed("data").difference(&packs).cloned().collect();
    assert!(!new_packs.is_empty());
    let out = env.r_ok(&["check"]);
    for p in new_packs {
        let name = common::file_name_str(&p);
        assert!(
            out.stdout
                .lines()
                .chain(out.stderr.lines())
                .any(|l| l.contains(&format!("pack {name} is in no index file"))
                    && l.contains("harmless")),
            "{}",
            out.describe()
        );
    }
}

#[test]
fn sync_delete_keeps_the_targets_copy_of_a_pack_the_source_lost() {
    let env = Env::new();
    let (src, data_pack) = one_backup(&env);
    let copy = env.path("copy");
    let copy_arg = copy.to_str().unwrap();
    env.r_ok(&["sync", "--to", copy_arg]);
    let pack = common::file_name_str(&data_pack);
    std::fs::remove_file(&data_pack).unwrap();
    let in_copy = || {
        common::pack_files(&copy)
            .iter()
            .any(|p| common::file_name_str(p) == pack)
    };

    // Without the password nothing proves the pack was pruned: it stays, the sync succeeds.
    let no_password = env.run(
        &["-r", env.repo_str(), "sync", "--delete", "--to", copy_arg],
        None,
        &[("CAIRN_PASSWORD", None)],
    );
    no_password.assert_success();
    assert!(
        no_password.stderr.contains("kept on the target"),
        "{}",
        no_password.describe()
    );
    assert!(in_copy());

    // With it, the source's index names the pack: the source lost it, the target keeps it.
    let out = env.r(&["sync", "--delete", "--to", copy_arg]);
    out.assert_code(exit::DAMAGED);
    assert!(
        out.stderr.contains(&pack) && out.stderr.contains("the source has lost them"),
        "{}",
        out.describe()
    );
    assert!(
        in_copy(),
        "the last copy of a lost pack must never be deleted"
    );
    let copied = env.cairn(&["-r", copy_arg, "check", "--read-data"]);
    copied.assert_success();

    // A wrong password proves nothing either: the sync stops before it changes anything.
    let wrong = env.run(
        &["-r", env.repo_str(), "sync", "--delete", "--to", copy_arg],
        None,
        &[("CAIRN_PASSWORD", Some("not the password"))],
    );
    wrong.assert_code(common::exit::WRONG_PASSWORD);
    assert!(in_copy());

    // The copy gives it back.
    env.r_ok(&["sync", "--from", copy_arg]);
    env.r_ok(&["check", "--read-data"]);
    assert_restores(&env, "latest", &src, "restored");
}

#[test]
fn a_backup_goes_on_when_the_pack_of_its_parent_snapshots_trees_is_lost() {
    // Regression: the backup loaded its parent's trees to compare against, and one lost tree pack
    // made every later backup of these paths fail ("tree blob ... is indexed only in pack ...").
    let env = Env::new();
    let (src, _) = one_backup(&env);
    let tree_pack = common::pack_files(&env.repo)
        .into_iter()
        .min_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    std::fs::remove_file(&tree_pack).unwrap();
    for cold in [false, true] {
        if cold {
            env.remove_cache();
        }
        let out = env.r(&["backup".as_ref(), src.as_os_str()]);
        out.assert_success();
        assert_restores(&env, "latest", &src, &format!("restored-{cold}"));
    }
    env.r(&["check"]).assert_code(exit::DAMAGED);
}

#[test]
fn a_backup_after_a_pack_was_cut_short_stores_its_blobs_again() {
    let env = Env::new();
    let (src, data_pack) = one_backup(&env);
    // A torn copy: the pack's first half only, so its later blobs are gone.
    let bytes = std::fs::read(&data_pack).unwrap();
    std::fs::write(&data_pack, &bytes[..bytes.len() / 2]).unwrap();
    let out = backup_after_loss(&env, &src, &[]);
    assert!(out.stderr.contains("cut short"), "{}", out.describe());
    assert_restores(&env, "latest", &src, "restored");
}
