//! The tamper matrix: every kind of repository object (config, key file, data pack, tree pack, index
//! file, snapshot) flipped, truncated, swapped with another of its kind, deleted, or replaced by an
//! older authentic copy (one that a forget and prune removed), each with a warm and a cold cache,
//! then run through `check`, `check --read-data`, `restore`, `cat` and `backup`. Whatever the
//! damage: no panic, `check --read-data` reports it and names the object (or the snapshots it
//! hurts), a command that succeeds gives exactly the right bytes, and a backup that succeeds is
//! whole on its own (its snapshot restores exactly).

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cairn::backend::LocalBackend;
use cairn::crypto::KdfParams;
use cairn::format::config::Config;
use cairn::Repository;
use common::{exit, random_bytes, restored_path, tree_listing, write_file, Env, Output, PASSWORD};

type Listing = BTreeMap<PathBuf, Vec<u8>>;

/// A repository with history: snapshots B, C, D kept; A forgotten and its data pruned (a copy of
/// the repository from before that forget holds A's snapshot, the old index files and the packs
/// prune deleted).
struct Template {
    env: Env,
    src: PathBuf,
    /// Snapshot id -> the source as it was backed up, oldest first.
    kept: Vec<(String, Listing)>,
    /// The repository before `forget` and `prune`.
    old: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    common::files_under(dir)
}

impl Template {
    fn build() -> Template {
        let env = Env::new();
        // The cheapest key derivation: every command of the matrix opens the repository.
        Repository::init(
            Box::new(LocalBackend::new(&env.repo)),
            PASSWORD.as_bytes(),
            KdfParams::MINIMUM,
            Config::generate().unwrap(),
            &env.cache_dir(),
        )
        .unwrap();
        let src = env.path("src");
        write_file(&src.join("a.bin"), &random_bytes(1, 300_000));
        write_file(&src.join("dir/b.txt"), b"hello");
        write_file(&src.join("c.bin"), &random_bytes(3, 200_000));
        let mut all = Vec::new();
        let backup = |env: &Env, all: &mut Vec<(String, Listing)>| {
            let v = env.backup_json(&[&src], &[]);
            let id = v["snapshot_id"].as_str().unwrap().to_string();
            all.push((id, tree_listing(&src)));
        };
        backup(&env, &mut all); // A
        write_file(&src.join("c.bin"), &random_bytes(4, 250_000));
        backup(&env, &mut all); // B
        write_file(&src.join("d.bin"), &random_bytes(5, 100_000));
        backup(&env, &mut all); // C
        let old = env.path("old");
        copy_dir(&env.repo, &old);
        env.r_ok(&["forget", "--keep-last", "2"]);
        for _ in 0..2 {
            env.r_ok(&["prune", "--grace", "0h", "--clock-skew", "0h", "-q"]);
        }
        write_file(&src.join("e.bin"), &random_bytes(6, 50_000));
        backup(&env, &mut all); // D
        all.remove(0);
        env.r_ok(&["check", "--read-data"]);
        Template {
            env,
            src,
            kept: all,
            old,
        }
    }

    /// Objects of `dir` (`data`, `index`, `snapshots`, `keys`) in the repository now.
    fn objects(&self, dir: &str) -> Vec<PathBuf> {
        files_in(&self.env.repo.join(dir))
    }

    /// Objects of `dir` the old copy holds and the repository no longer does.
    fn removed(&self, dir: &str) -> Vec<PathBuf> {
        let now: Vec<String> = self.objects(dir).iter().map(|p| name(p)).collect();
        files_in(&self.old.join(dir))
            .into_iter()
            .filter(|p| !now.contains(&name(p)))
            .collect()
    }
}

fn name(p: &Path) -> String {
    common::file_name_str(p)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Config,
    Key,
    DataPack,
    TreePack,
    Index,
    Snapshot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    Flip,
    Truncate,
    Swap,
    Delete,
    Replay,
}

const TAMPERS: [Tamper; 5] = [
    Tamper::Flip,
    Tamper::Truncate,
    Tamper::Swap,
    Tamper::Delete,
    Tamper::Replay,
];

/// The object of `kind` in `repo` that the matrix damages, and another one of its kind to swap with.
fn victim(t: &Template, repo: &Path, kind: Kind) -> (PathBuf, Option<PathBuf>) {
    let rel = |p: &Path| repo.join(p.strip_prefix(&t.env.repo).unwrap());
    let by_size = |dir: &str| {
        let mut v = t.objects(dir);
        v.sort_by_key(|p| fs::metadata(p).unwrap().len());
        v
    };
    match kind {
        Kind::Config => (repo.join("config"), None),
        Kind::Key => (rel(&t.objects("keys")[0]), None),
        Kind::DataPack => {
            let packs = by_size("data");
            (rel(packs.last().unwrap()), Some(rel(&packs[0])))
        }
        Kind::TreePack => {
            let packs = by_size("data");
            (rel(&packs[0]), Some(rel(&packs[1])))
        }
        Kind::Index => {
            let files = t.objects("index");
            (rel(&files[0]), files.get(1).map(|p| rel(p)))
        }
        Kind::Snapshot => {
            let oldest = repo.join("snapshots").join(&t.kept[0].0);
            let newest = repo.join("snapshots").join(&t.kept[2].0);
            (oldest, Some(newest))
        }
    }
}

/// Damages the case's repository; returns the names the damage report should mention (any one
/// of them), or `None` when the tamper does not apply to this kind.
fn tamper(t: &Template, repo: &Path, kind: Kind, how: Tamper) -> Option<Vec<String>> {
    let (target, other) = victim(t, repo, kind);
    let short = |p: &Path| name(p).chars().take(8).collect::<String>();
    match how {
        Tamper::Flip => {
            let len = fs::metadata(&target).unwrap().len();
            common::flip_byte(&target, len / 2);
        }
        Tamper::Truncate => {
            let len = fs::metadata(&target).unwrap().len();
            fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        Tamper::Swap => {
            let other = other?;
            let (a, b) = (fs::read(&target).unwrap(), fs::read(&other).unwrap());
            fs::write(&target, b).unwrap();
            fs::write(&other, a).unwrap();
            return Some(vec![short(&target), short(&other)]);
        }
        Tamper::Delete => fs::remove_file(&target).unwrap(),
        Tamper::Replay => {
            // Put back what forget and prune removed: the objects are authentic, only stale.
            let dir = match kind {
                Kind::DataPack => "data",
                Kind::Index => "index",
                Kind::Snapshot => "snapshots",
                _ => return None,
            };
            let removed = t.removed(dir);
            assert!(!removed.is_empty(), "prune removed no {dir} object");
            // Stale index files name packs prune deleted: those are what check reports missing.
            let mut names: Vec<String> = match kind {
                Kind::Index => t.removed("data").iter().map(|p| short(p)).collect(),
                _ => Vec::new(),
            };
            for old in removed {
                let to = repo.join(old.strip_prefix(&t.old).unwrap());
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::copy(&old, &to).unwrap();
                names.push(short(&old));
            }
            return Some(names);
        }
    }
    Some(match kind {
        Kind::Config => vec!["config".to_string()],
        // With its only key file gone the repository cannot be opened at all: the message says so.
        Kind::Key => vec![short(&target), "no key files".to_string()],
        _ => vec![short(&target)],
    })
}

/// Fails the test on a panic or a kill; returns the output.
fn no_crash(out: Output) -> Output {
    assert!(
        out.code >= 0 && out.code != 101 && !out.stderr.contains("panicked"),
        "a command crashed\n{}",
        out.describe()
    );
    out
}

/// Runs one cell of the matrix and returns a line describing what happened.
fn run_case(t: &Template, kind: Kind, how: Tamper, warm: bool) -> Option<String> {
    let env = Env::new();
    copy_dir(&t.env.repo, &env.repo);
    if warm {
        copy_dir(&t.env.cache_dir(), &env.cache_dir());
    }
    let names = tamper(t, &env.repo, kind, how)?;
    let case = format!(
        "{kind:?} {how:?} {} cache",
        if warm { "warm" } else { "cold" }
    );
    let mut line = format!("{case}:");

    let check = no_crash(env.r(&["check"]));
    let full = no_crash(env.r(&["check", "--read-data"]));
    line += &format!(" check={} read-data={}", check.code, full.code);
    let report = format!("{}{}", full.stdout, full.stderr);
    let harmless = matches!(
        (kind, how),
        // Deleting a snapshot is what forget does; a pack prune deleted is unreferenced data.
        (Kind::Snapshot, Tamper::Delete) | (Kind::DataPack, Tamper::Replay)
    );
    if harmless {
        assert_eq!(
            full.code,
            exit::OK,
            "{case}: nothing is damaged\n{}",
            full.describe()
        );
    } else {
        assert_ne!(
            full.code,
            exit::OK,
            "{case}: check --read-data must report the damage\n{}",
            full.describe()
        );
        let affected: Vec<String> = t.kept.iter().map(|(id, _)| id[..8].to_string()).collect();
        assert!(
            names.iter().chain(&affected).any(|n| report.contains(n.as_str())),
            "{case}: check --read-data must name the object ({names:?}) or the snapshots it hurts\n{}",
            full.describe()
        );
    }
    assert!(
        check.code == exit::OK || check.code == full.code,
        "{case}: check and check --read-data disagree on what kind of failure this is\n{}\n{}",
        check.describe(),
        full.describe()
    );

    // Restores: exactly right, or an error.
    let mut restores = Vec::new();
    for (i, (id, listing)) in t.kept.iter().enumerate() {
        let target = env.path(&format!("restore-{i}"));
        let out = no_crash(env.r(&["restore", id.as_str(), "--target", target.to_str().unwrap()]));
        if out.code == exit::OK {
            let got = tree_listing(&restored_path(&target, &t.src));
            assert!(
                &got == listing,
                "{case}: restore of {id} succeeded with wrong content: {:?}",
                common::listing_diff(listing, &got)
            );
        } else {
            assert!(
                !out.stderr.trim().is_empty(),
                "{case}: a failed restore says why\n{}",
                out.describe()
            );
        }
        restores.push(out.code.to_string());
    }
    line += &format!(" restore={}", restores.join(","));

    // cat of the newest snapshot's largest file.
    let cat_path = format!("latest:{}", t.src.join("a.bin").display());
    let cat = no_crash(env.r(&["cat", cat_path.as_str()]));
    if cat.code == exit::OK {
        assert!(
            cat.stdout_bytes == random_bytes(1, 300_000),
            "{case}: cat succeeded with wrong bytes ({} bytes)",
            cat.stdout_bytes.len()
        );
    }
    line += &format!(" cat={}", cat.code);

    // A later backup is whole on its own, or fails.
    let backup = no_crash(env.r(&["--json", "backup", t.src.to_str().unwrap()]));
    line += &format!(" backup={}", backup.code);
    if backup.code == exit::OK {
        let id = backup.json()["snapshot_id"].as_str().unwrap().to_string();
        let target = env.path("restore-new");
        let out = no_crash(env.r(&["restore", id.as_str(), "--target", target.to_str().unwrap()]));
        // A backup cannot tell a flipped byte in a pack without reading every pack, so it may
        // deduplicate against a damaged blob; then check --read-data must say so. (A truncated
        // or swapped pack could be told by its listed size; see the harness report.)
        let reuses_damage = matches!(kind, Kind::DataPack | Kind::TreePack)
            && matches!(how, Tamper::Flip | Tamper::Truncate | Tamper::Swap);
        if out.code != exit::OK && reuses_damage {
            let after = no_crash(env.r(&["check", "--read-data"]));
            let report = format!("{}{}", after.stdout, after.stderr);
            assert!(
                after.code == exit::DAMAGED && names.iter().any(|n| report.contains(n.as_str())),
                "{case}: the new snapshot uses damaged data, and check must name it\n{}",
                after.describe()
            );
            line += " new-snapshot-uses-damaged-pack";
            return Some(line);
        }
        assert_eq!(
            out.code,
            exit::OK,
            "{case}: the backup that succeeded after the damage must restore\n{}",
            out.describe()
        );
        let got = tree_listing(&restored_path(&target, &t.src));
        let expected = &t.kept[2].1;
        assert!(
            &got == expected,
            "{case}: the backup after the damage restored wrong content: {:?}",
            common::listing_diff(expected, &got)
        );
    }
    Some(line)
}

/// Runs every cell of `kind`'s row; reports every failing cell, not only the first.
fn matrix(kind: Kind) {
    let t = Template::build();
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for how in TAMPERS {
        for warm in [true, false] {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_case(&t, kind, how, warm)
            })) {
                Ok(line) => lines.extend(line),
                Err(_) => failed.push(format!("{kind:?} {how:?} warm={warm}")),
            }
        }
    }
    eprintln!("{}", lines.join("\n"));
    assert!(
        failed.is_empty(),
        "failing cells (messages above): {failed:?}"
    );
    assert!(!lines.is_empty());
}

#[test]
fn a_damaged_config_is_reported_and_nothing_restores_wrong() {
    matrix(Kind::Config);
}

#[test]
fn a_damaged_key_file_is_reported_and_nothing_restores_wrong() {
    matrix(Kind::Key);
}

#[test]
fn a_damaged_data_pack_is_named_and_nothing_restores_wrong() {
    matrix(Kind::DataPack);
}

#[test]
fn a_damaged_tree_pack_is_named_and_nothing_restores_wrong() {
    matrix(Kind::TreePack);
}

#[test]
fn a_damaged_or_stale_index_file_is_reported_and_nothing_restores_wrong() {
    matrix(Kind::Index);
}

#[test]
fn a_damaged_or_replayed_snapshot_is_named_and_nothing_restores_wrong() {
    matrix(Kind::Snapshot);
}
