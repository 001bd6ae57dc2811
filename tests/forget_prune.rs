//! `forget` and `prune` end to end: keep rules per group, refusal to empty a group, dry runs that change
//! nothing, and two prunes that reclaim the space while every kept snapshot still restores exactly.

use crate::common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{exit, files_under, random_bytes, tree_listing, write_file, Env};

/// Prune flags that make a record ripe at once: safe here because nothing else runs.
const NOW: [&str; 4] = ["--grace", "0h", "--clock-skew", "0h"];

fn repo_bytes(env: &Env) -> u64 {
    files_under(&env.repo.join("data"))
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

/// Backs up `src` after writing generation `g` of its content; returns the snapshot id.
fn backup_generation(env: &Env, src: &Path, g: u64) -> String {
    write_file(&src.join("stable.bin"), &random_bytes(1, 1_500_000));
    write_file(&src.join("gen.bin"), &random_bytes(100 + g, 1_500_000));
    let v = env.backup_json(&[src], &[]);
    v["snapshot_id"].as_str().unwrap().to_string()
}

fn prune(env: &Env) -> serde_json::Value {
    let mut args = vec!["prune"];
    args.extend(NOW);
    env.r_json(&args)
}

#[test]
fn forget_and_two_prunes_reclaim_space_and_keep_snapshots_restorable() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let mut ids = Vec::new();
    for g in 0..4 {
        ids.push(backup_generation(&env, &src, g));
    }
    let expected_last = tree_listing(&src);
    let before = repo_bytes(&env);

    let plan = env.r_json(&["forget", "--keep-last", "2", "--dry-run"]);
    let decisions = plan[0]["snapshots"].as_array().unwrap();
    let kept: Vec<&str> = decisions
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, vec![ids[2].as_str(), ids[3].as_str()]);
    assert_eq!(decisions[3]["reasons"][0], "last 1");
    assert_eq!(env.snapshots_json().len(), 4, "a dry run removes nothing");

    env.r_ok(&["forget", "--keep-last", "2"]);
    assert_eq!(env.snapshots_json().len(), 2);

    // First prune condemns (nothing deleted yet), second deletes.
    let first = prune(&env);
    assert_eq!(first["outcome"]["deleted_packs"], 0, "{first}");
    assert!(
        first["condemn"].as_array().unwrap().len() + first["repack"].as_array().unwrap().len() > 0,
        "{first}"
    );
    let second = prune(&env);
    assert!(
        second["outcome"]["deleted_packs"].as_u64().unwrap() > 0,
        "{second}"
    );
    let after = repo_bytes(&env);
    assert!(
        after + 2_500_000 < before,
        "prune should free two generations: {before} -> {after}"
    );
    assert!(
        files_under(&env.repo.join("pending")).is_empty(),
        "ripe records are removed"
    );
    assert!(
        files_under(&env.repo.join("locks")).is_empty(),
        "no lease is left behind"
    );
    // Regression: the shard directories of deleted packs stayed behind, empty.
    let shards: BTreeSet<PathBuf> = std::fs::read_dir(env.repo.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let holding_packs: BTreeSet<PathBuf> = common::pack_files(&env.repo)
        .iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    assert_eq!(
        shards, holding_packs,
        "every shard directory left holds a pack"
    );

    env.r_ok(&["check", "--read-data"]);
    let out = env.path("restore-last");
    env.restore(&ids[3], &out);
    assert_eq!(
        tree_listing(&common::restored_path(&out, &src)),
        expected_last
    );
    let out = env.path("restore-older");
    env.restore(&ids[2], &out);
    let restored = common::restored_path(&out, &src);
    assert_eq!(
        std::fs::read(restored.join("gen.bin")).unwrap(),
        random_bytes(102, 1_500_000)
    );

    // A third prune has nothing left to do.
    let third = prune(&env);
    assert_eq!(third["delete"].as_array().unwrap().len(), 0, "{third}");
    assert_eq!(third["condemn"].as_array().unwrap().len(), 0, "{third}");
}

#[test]
fn prune_dry_run_changes_nothing_and_reports_what_it_would_free() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for g in 0..3 {
        backup_generation(&env, &src, g);
    }
    env.r_ok(&["forget", "--keep-last", "1"]);
    let listing = |env: &Env| {
        let mut v: Vec<_> = files_under(&env.repo)
            .into_iter()
            .filter(|p| !p.starts_with(env.repo.join("locks")))
            .collect();
        v.sort();
        v
    };
    let before = listing(&env);
    let mut args = vec!["prune", "--dry-run"];
    args.extend(NOW);
    let plan = env.r_json(&args);
    assert_eq!(plan["dry_run"], true);
    assert!(
        plan["bytes_freed_later"].as_u64().unwrap() >= 2_900_000,
        "{plan}"
    );
    assert_eq!(listing(&env), before);
}

#[test]
fn forget_refuses_to_empty_a_group_unless_told() {
    let env = Env::new();
    env.init();
    let a = env.path("a");
    let b = env.path("b");
    write_file(&a.join("f"), b"a");
    write_file(&b.join("f"), b"b");
    env.backup_json(&[&a], &["--tag", "keepme"]);
    env.backup_json(&[&b], &[]);
    // Group of b has no snapshot with the tag: forget must refuse and remove nothing.
    let out = env.r(&["forget", "--keep-tag", "keepme"]);
    out.assert_code(exit::USAGE);
    assert!(
        out.stderr.contains("refusing to remove all"),
        "{}",
        out.stderr
    );
    assert_eq!(env.snapshots_json().len(), 2);
    // Selection filters narrow what forget considers.
    env.r_ok(&[
        OsStr::new("forget"),
        OsStr::new("--keep-tag"),
        OsStr::new("keepme"),
        OsStr::new("--path"),
        a.as_os_str(),
    ]);
    assert_eq!(env.snapshots_json().len(), 2);
    env.r_ok(&["forget", "--keep-tag", "keepme", "--allow-remove-all"]);
    let left = env.snapshots_json();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["tags"][0], "keepme");
    // No rule at all empties every group, so it needs the flag as well.
    env.r(&["forget"]).assert_code(exit::USAGE);
}

#[test]
fn forget_groups_by_host_and_paths_and_prune_runs_after() {
    let env = Env::new();
    env.init();
    let a = env.path("a");
    write_file(&a.join("f"), &random_bytes(7, 100_000));
    for host in ["h1", "h1", "h2"] {
        env.backup_json(&[&a], &["--host", host]);
    }
    let mut args = vec!["forget", "--keep-last", "1", "--prune"];
    args.extend(NOW);
    let out = env.r_ok(&args);
    assert!(out.stdout.contains("group host h1"), "{}", out.stdout);
    assert!(out.stdout.contains("group host h2"), "{}", out.stdout);
    assert!(out.stdout.contains("condemn"), "prune ran: {}", out.stdout);
    let hosts: Vec<String> = env
        .snapshots_json()
        .iter()
        .map(|s| s["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts, vec!["h1", "h2"]);
    env.r_ok(&["check"]);
}

/// `prune --grace 10m` and `--clock-skew 10m` meant ten months: every span flag refuses a bare `m`
/// (exit 2, naming min and mo) and takes seconds and minutes with one meaning.
#[test]
fn a_bare_m_in_a_span_is_refused_by_every_command() {
    let env = Env::new();
    env.init();
    for args in [
        &["prune", "--dry-run", "--grace", "10m"][..],
        &["prune", "--dry-run", "--clock-skew", "10m"][..],
        &["forget", "--dry-run", "--keep-within", "6m"][..],
        &["repair", "index", "--clock-skew", "10m"][..],
    ] {
        let out = env.r(args);
        out.assert_code(exit::USAGE);
        assert!(
            out.stderr.contains("ambiguous") && out.stderr.contains("mo for months"),
            "{}",
            out.describe()
        );
    }
    env.r_ok(&[
        "prune",
        "--dry-run",
        "--grace",
        "90s",
        "--clock-skew",
        "10min",
    ]);
    env.r_ok(&[
        "forget",
        "--dry-run",
        "--keep-within",
        "1y6mo",
        "--allow-remove-all",
    ]);
}

/// The plan's `[retention]` gives the same rules as `forget`'s flags, through one keep policy:
/// `keep_tag` and `group_by` included (the plan file lacked both).
#[test]
fn the_plan_retention_takes_keep_tag_and_group_by() {
    let env = Env::new();
    env.init();
    let a = env.path("a");
    let b = env.path("b");
    write_file(&a.join("f"), b"a");
    write_file(&b.join("f"), b"b");
    env.backup_json(&[&a], &["--tag", "release"]);
    env.backup_json(&[&a], &[]);
    env.backup_json(&[&b], &[]);
    let plan = env.path("plan.toml");
    std::fs::write(
        &plan,
        format!(
            "[repository]\nlocation = \"{}\"\n\n[retention]\nkeep_last = 1\nkeep_tag = [\"release\"]\n\
             group_by = \"\"\nprune = false\n",
            env.repo_str()
        ),
    )
    .unwrap();
    env.cairn_ok(&[
        "run",
        "--plan",
        plan.to_str().unwrap(),
        "--only",
        "retention",
    ]);
    // One group for all (group_by = ""): the newest snapshot (of b) and the tagged one stay.
    let left: Vec<(String, Vec<String>)> = env
        .snapshots_json()
        .iter()
        .map(|s| {
            (
                s["paths"][0].as_str().unwrap().to_string(),
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&(a.display().to_string(), vec!["release".to_string()])));
    assert!(left.contains(&(b.display().to_string(), vec![])));

    std::fs::write(
        &plan,
        format!(
            "[repository]\nlocation = \"{}\"\n\n[retention]\nkeep_last = 1\ngroup_by = \"hosts\"\n",
            env.repo_str()
        ),
    )
    .unwrap();
    let out = env.cairn(&["plan", "validate", "--plan", plan.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}", out.describe());
    assert!(out.stderr.contains("group_by"), "{}", out.describe());
}

#[test]
fn forget_by_id_removes_exactly_the_named_snapshots_and_refuses_rules_beside_them() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let ids: Vec<String> = (0..3).map(|g| backup_generation(&env, &src, g)).collect();
    let out = env.r(&["forget", &ids[0][..8], "--keep-last", "1"]);
    assert_eq!(out.code, exit::USAGE, "{}", out.describe());
    let dry = env.r_json(&["forget", "--dry-run", &ids[1][..8]]);
    assert_eq!(dry["removed"], serde_json::json!([ids[1]]));
    assert_eq!(env.snapshots_json().len(), 3);
    env.r_ok(&["forget", &ids[0][..8], &ids[2]]);
    let left: Vec<String> = env
        .snapshots_json()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![ids[1].clone()]);
    let out = env.r(&["forget", &ids[0]]);
    assert_eq!(out.code, exit::USAGE, "{}", out.describe());
}

/// Each backup writes an index file of its own; once they are many more than their entries
/// need, prune rewrites them into as few as hold the entries, with no pack to delete, and every
/// snapshot still restores exactly.
#[test]
fn prune_consolidates_an_index_of_many_small_files() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for g in 0..40 {
        write_file(&src.join(format!("f{g}")), &random_bytes(g, 5_000));
        env.backup_json(&[&src], &[]);
    }
    let index_files = || files_under(&env.repo.join("index")).len();
    assert!(index_files() >= 40, "{} index files", index_files());
    let planned = env.r_json(&["prune", "--dry-run"]);
    assert_eq!(planned["consolidate_index"], true, "{planned}");
    assert!(index_files() >= 40, "a dry run changed the index");
    let done = prune(&env);
    assert_eq!(done["outcome"]["index_files_written"], 1, "{done}");
    assert_eq!(index_files(), 1);
    env.r_ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.r_ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(
        tree_listing(&out.join(src.strip_prefix("/").unwrap())),
        tree_listing(&src)
    );
    // Consolidated, it is not rewritten again.
    assert_eq!(
        env.r_json(&["prune", "--dry-run"])["consolidate_index"],
        false
    );
}
