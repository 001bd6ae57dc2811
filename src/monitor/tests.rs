//! Unit tests of the status verdicts and their renderings.

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn hours_ago(h: i64) -> DateTime<Utc> {
    now() - chrono::Duration::hours(h)
}

fn thresholds() -> Thresholds {
    Thresholds {
        warn_age: Duration::from_secs(26 * 3600),
        crit_age: Duration::from_secs(50 * 3600),
        min_size: 1000,
        max_shrink: Some(20.0),
        check_max_age: Some(Duration::from_secs(8 * 86_400)),
        offsite_max_age: Some(Duration::from_secs(2 * 86_400)),
        drill_max_age: None,
        lock_left: (LOCK_WARN_LEFT, LOCK_CRIT_LEFT),
        base_backup_ages: Some((
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(9 * 86_400),
        )),
        jobs: Default::default(),
    }
}

fn group(age_h: i64, bytes: Option<u64>, previous: Option<u64>) -> GroupFacts {
    GroupFacts {
        label: "db1:/srv".into(),
        snapshots: 2,
        newest_id: Some("ab".repeat(32)),
        newest_time: hours_ago(age_h),
        newest_bytes: bytes,
        newest_added: Some(10),
        previous_bytes: previous,
        base_backup: false,
        job: None,
    }
}

fn attempt(outcome: Outcome, started: DateTime<Utc>, exit_code: i32) -> Attempt {
    Attempt {
        started,
        duration_secs: 30.0,
        outcome,
        exit_code,
        message: (outcome == Outcome::Failed).then(|| "it broke".to_string()),
        details: serde_json::json!({"rto_secs": 42.5, "rpo_secs": 3600}),
    }
}

fn level_of(groups: &[GroupFacts], state: Option<&State>) -> (Level, StatusReport) {
    let r = evaluate(
        "repository",
        groups,
        state,
        &["s3".into()],
        &thresholds(),
        now(),
    );
    (r.level, r)
}

#[test]
fn age_thresholds_give_ok_warning_critical() {
    assert_eq!(level_of(&[group(3, Some(5000), None)], None).0, Level::Ok);
    assert_eq!(
        level_of(&[group(30, Some(5000), None)], None).0,
        Level::Warning
    );
    assert_eq!(
        level_of(&[group(60, Some(5000), None)], None).0,
        Level::Critical
    );
    assert_eq!(level_of(&[], None).0, Level::Critical);
}

#[test]
fn a_small_or_shrunken_snapshot_is_flagged() {
    let (level, r) = level_of(&[group(3, Some(500), None)], None);
    assert_eq!(level, Level::Critical);
    assert!(r.findings[0].message.contains("minimum 1000 B"));
    let (level, r) = level_of(&[group(3, Some(5000), Some(10_000))], None);
    assert_eq!(level, Level::Warning);
    assert!(
        r.findings[0].message.contains("50.0% smaller"),
        "{:?}",
        r.findings
    );
    assert_eq!(
        level_of(&[group(3, Some(9000), Some(10_000))], None).0,
        Level::Ok
    );
}

/// Regression: status said "41711538 bytes"; sizes are for people, as everywhere else.
#[test]
fn sizes_in_messages_are_for_people() {
    let (_, r) = level_of(&[group(3, Some(41_711_538), Some(90_000_000))], None);
    let message = &r.findings[0].message;
    assert!(message.contains("39.8 MiB"), "{message}");
    assert!(message.contains("(85.8 MiB; at most"), "{message}");
    assert!(!message.contains("bytes"), "{message}");
}

#[test]
fn steps_from_the_state_file_are_judged() {
    let mut state = State::default();
    state.note("check", attempt(Outcome::Ok, hours_ago(24), 0));
    state.note("offsite.s3", attempt(Outcome::Ok, hours_ago(72), 0));
    let (level, r) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Warning);
    let offsite = r
        .findings
        .iter()
        .find(|f| f.subject == "offsite s3")
        .unwrap();
    assert_eq!(offsite.level, Level::Warning);
    assert!(offsite.message.contains("older than 2d 0h"));

    // A drill that found damage (exit code 2) is critical.
    state.note("offsite.s3", attempt(Outcome::Ok, hours_ago(1), 0));
    state.note("drill", attempt(Outcome::Failed, hours_ago(2), 2));
    let (level, r) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Critical);
    assert!(r
        .findings
        .iter()
        .any(|f| f.subject == "drill" && f.message.contains("it broke")));
}

#[test]
fn unknown_ranks_between_warning_and_critical() {
    assert_eq!(Level::Warning.worst(Level::Unknown), Level::Unknown);
    assert_eq!(Level::Unknown.worst(Level::Critical), Level::Critical);
    assert_eq!(Level::Critical.worst(Level::Unknown), Level::Critical);
}

#[test]
fn nagios_output_has_one_status_line_and_perfdata() {
    let (_, r) = level_of(&[group(30, Some(5000), None)], None);
    let text = render::nagios(&r);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("CAIRN WARNING - backup db1:/srv: newest snapshot 30h 0min ago"),
        "{first}"
    );
    assert!(
        first.contains("| 'age_db1_srv'=108000s;93600;180000;0; 'size_db1_srv'=5000B;;1000;0;"),
        "{first}"
    );
}

#[test]
fn prometheus_output_names_steps_and_drill_figures() {
    let mut state = State::default();
    let mut backup = attempt(Outcome::Ok, hours_ago(1), 0);
    backup.details = serde_json::json!({
        "total_bytes": 5000, "bytes_added": 10,
        "dumps": [{"path": "/db/a\"b.dump", "bytes": 77}]
    });
    state.note("backup", backup);
    state.note("drill", attempt(Outcome::Ok, hours_ago(2), 0));
    let text = render::prometheus(&state, None);
    for line in [
        "cairn_last_success_timestamp_seconds{step=\"backup\"} 1795258800",
        "cairn_snapshot_bytes 5000",
        "cairn_dump_bytes{path=\"/db/a\\\"b.dump\"} 77",
        "cairn_drill_rto_seconds 42.5",
        "cairn_drill_rpo_seconds 3600",
        "# TYPE cairn_build_info gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn the_state_file_stands_in_for_the_repository_offline() {
    let mut state = State::default();
    let mut backup = attempt(Outcome::Ok, hours_ago(5), 0);
    backup.details = serde_json::json!({
        "snapshot_id": "cd".repeat(32), "snapshot_time": hours_ago(5).to_rfc3339(),
        "group": "db1:/srv", "total_bytes": 800, "previous_total_bytes": 900
    });
    state.note("backup", backup);
    let g = groups_from_state(&state).remove(0);
    assert_eq!(g.label, "db1:/srv");
    assert_eq!((g.newest_bytes, g.previous_bytes), (Some(800), Some(900)));
    assert_eq!(level_of(&[g], None).0, Level::Critical);
}

/// `pg_dump nosuchdb | cairn backup --stdin --min-bytes 0` leaves an empty newest snapshot:
/// CRITICAL with no `--min-size` given, accepted only with `--min-size 0`.
#[test]
fn an_empty_newest_snapshot_is_critical_by_default() {
    let th = Thresholds {
        min_size: DEFAULT_MIN_SIZE,
        max_shrink: None,
        ..thresholds()
    };
    let r = evaluate(
        "repository",
        &[group(3, Some(0), None)],
        None,
        &[],
        &th,
        now(),
    );
    assert_eq!(r.level, Level::Critical);
    assert!(r.findings[0].message.contains("empty"), "{:?}", r.findings);
    let accepting = Thresholds { min_size: 0, ..th };
    let r = evaluate(
        "repository",
        &[group(3, Some(0), None)],
        None,
        &[],
        &accepting,
        now(),
    );
    assert_eq!(r.level, Level::Ok, "{:?}", r.findings);
}

/// A plan whose dump fails: `cairn run` exits 5 and records it; status must not stay OK until
/// the newest snapshot ages out.
#[test]
fn a_failed_backup_attempt_is_a_warning_naming_step_time_and_message() {
    let mut state = State::default();
    state.note("backup", attempt(Outcome::Ok, hours_ago(25), 0));
    let mut failed = attempt(Outcome::Failed, hours_ago(1), 5);
    failed.message = Some("dump command `pg_dump app` for /app.dump exited with status 1".into());
    state.note("backup", failed);
    let (level, r) = level_of(&[group(25, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Warning, "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.subject == "backup").unwrap();
    assert_eq!(f.level, Level::Warning);
    for part in [
        "last attempt failed 60min ago",
        "2026-11-21T11:00:00Z",
        "exit code 5",
        "pg_dump app",
    ] {
        assert!(f.message.contains(part), "{part:?} not in {:?}", f.message);
    }
    // The backup comes first among the steps.
    let steps: Vec<&str> = r.findings.iter().map(|f| f.subject.as_str()).collect();
    assert!(steps.iter().position(|s| *s == "backup") < steps.iter().position(|s| *s == "check"));

    // A backup whose last attempt succeeded adds no step finding (the group judges it).
    let mut good = State::default();
    good.note("backup", attempt(Outcome::Ok, hours_ago(1), 0));
    let (_, r) = level_of(&[group(1, Some(5000), None)], Some(&good));
    assert!(
        r.findings.iter().all(|f| f.subject != "backup"),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_failed_retention_attempt_is_a_warning() {
    let mut state = State::default();
    state.note("retention", attempt(Outcome::Failed, hours_ago(2), 1));
    let (level, r) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Warning, "{:?}", r.findings);
    let f = r
        .findings
        .iter()
        .find(|f| f.subject == "retention")
        .unwrap();
    assert!(f.message.contains("never succeeded") && f.message.contains("it broke"));
}

/// A `before` hook that fails stops the run before any step: only the run record knows.
#[test]
fn a_run_failed_by_its_before_hook_is_a_warning() {
    let mut state = State::default();
    let mut run = attempt(Outcome::Failed, hours_ago(3), 9);
    run.message = Some("failed: before hook".into());
    state.last_run = Some(crate::plan::state::RunRecord {
        run_id: "r1".into(),
        attempt: run,
        ran: Vec::new(),
        failed: vec!["before hook".into()],
    });
    let (level, r) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Warning, "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.subject == "run").unwrap();
    assert!(
        f.message.contains("last run r1 failed 3h 0min ago") && f.message.contains("before hook"),
        "{}",
        f.message
    );
    // A run failed by a step is reported once, by the step.
    let mut state = State::default();
    state.note("check", attempt(Outcome::Failed, hours_ago(3), 4));
    state.last_run = Some(crate::plan::state::RunRecord {
        run_id: "r2".into(),
        attempt: attempt(Outcome::Failed, hours_ago(3), 4),
        ran: vec!["check".into()],
        failed: vec!["check".into()],
    });
    let (_, r) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert!(
        r.findings.iter().all(|f| f.subject != "run"),
        "{:?}",
        r.findings
    );
}

/// Regression: a backup that saved a snapshot without some entries (exit 3) counted as a plain
/// success, so `status` said OK about a snapshot that lacks files.
#[test]
fn a_partial_backup_is_a_warning() {
    let mut state = State::default();
    let mut partial = attempt(Outcome::Partial, hours_ago(1), 3);
    partial.message = Some("2 entries could not be read".into());
    state.note("backup", partial);
    let (level, r) = level_of(&[group(1, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Warning, "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.subject == "backup").unwrap();
    assert!(
        f.message.contains("without some entries") && f.message.contains("2 entries"),
        "{}",
        f.message
    );
}

/// Regression: the README says a check that finds damage is CRITICAL, but it was a WARNING like
/// a check that could not run.
#[test]
fn a_check_that_found_damage_is_critical_one_that_could_not_run_a_warning() {
    let mut state = State::default();
    state.note("check", attempt(Outcome::Failed, hours_ago(2), 4));
    let (level, _) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Critical);
    let mut state = State::default();
    state.note("check", attempt(Outcome::Failed, hours_ago(2), 1));
    let (level, _) = level_of(&[group(3, Some(5000), None)], Some(&state));
    assert_eq!(level, Level::Warning);
}

/// Weekly base backups are judged by `[postgres]`'s ages, not by the nightly backup's.
#[test]
fn a_base_backup_group_is_judged_by_its_own_ages() {
    let th = thresholds();
    let base = GroupFacts {
        label: "db1:/var/lib/postgresql/15/main".into(),
        base_backup: true,
        ..group(3 * 24, Some(5000), Some(5000))
    };
    let files = group(3 * 24, Some(5000), Some(5000));
    let report = evaluate("repository", &[base.clone(), files], None, &[], &th, now());
    let levels: Vec<(&str, Level)> = report
        .findings
        .iter()
        .map(|f| (f.subject.as_str(), f.level))
        .collect();
    assert_eq!(
        levels,
        [
            ("base backup db1:/var/lib/postgresql/15/main", Level::Ok),
            ("backup db1:/srv", Level::Critical)
        ],
        "{:?}",
        report.findings
    );
    let old = GroupFacts {
        newest_time: hours_ago(8 * 24),
        ..base
    };
    let report = evaluate("repository", &[old], None, &[], &th, now());
    assert_eq!(report.level, Level::Warning, "{:?}", report.findings);
}

#[test]
fn a_locked_offsite_copy_is_judged_by_the_lock_time_it_has_left() {
    let verdict = |days_left: i64| {
        let mut state = State::default();
        let mut a = attempt(Outcome::Ok, hours_ago(1), 0);
        let expiry = now() + chrono::Duration::days(days_left);
        a.details = serde_json::json!({"locks": {"earliest_expiry": expiry.to_rfc3339()}});
        state.note("offsite.s3", a);
        let (_, r) = level_of(&[group(3, Some(5000), None)], Some(&state));
        let f = r
            .findings
            .into_iter()
            .find(|f| f.subject == "offsite s3")
            .unwrap();
        let metric = r
            .metrics
            .iter()
            .find(|m| m.label == "offsite_s3_lock_left")
            .map(|m| m.value);
        (f.level, f.message, metric)
    };
    let (level, message, metric) = verdict(30);
    assert_eq!(level, Level::Ok, "{message}");
    assert!(message.contains("locked for 30d"), "{message}");
    assert_eq!(metric, Some(30.0 * 86_400.0));
    assert_eq!(verdict(3).0, Level::Warning);
    let (level, message, _) = verdict(-1);
    assert_eq!(level, Level::Critical);
    assert!(message.contains("ran out"), "{message}");
}

/// Each job is held to its own objective and named in what goes wrong with it; the others stay OK.
#[test]
fn each_job_is_judged_against_its_own_objectives() {
    let mut th = thresholds();
    let hours = |h: u64| Duration::from_secs(h * 3600);
    for (name, warn, crit) in [("db", 6, 12), ("redis", 2, 4), ("files", 26, 50)] {
        th.jobs.insert(
            name.into(),
            JobThresholds {
                warn_age: hours(warn),
                crit_age: hours(crit),
                min_size: 1000,
                max_shrink: None,
            },
        );
    }
    let job = |name: &str, age_h: i64| GroupFacts {
        label: name.into(),
        job: Some(name.into()),
        ..group(age_h, Some(5000), Some(5000))
    };
    // db is 7 hours old: past its 6-hour objective, though far inside the plan's 26 hours.
    let groups = [job("db", 7), job("redis", 1), job("files", 20)];
    let mut state = State::default();
    state.note("job.redis.backup", attempt(Outcome::Ok, hours_ago(1), 0));
    state.note(
        "job.files.drill",
        Attempt {
            details: serde_json::json!({
                "rto_secs": 95.0, "max_rto_secs": 60.0,
                "targets_missed": ["RTO 95.0s is over the target 60s"],
            }),
            ..attempt(Outcome::Ok, hours_ago(3), 1)
        },
    );
    let r = evaluate("repository", &groups, Some(&state), &[], &th, now());
    let finding = |subject: &str| {
        r.findings
            .iter()
            .find(|f| f.subject == subject)
            .unwrap_or_else(|| panic!("no {subject} in {:#?}", r.findings))
    };
    assert_eq!(finding("job db").level, Level::Warning, "{r:#?}");
    assert!(
        finding("job db").message.contains("older than 6h"),
        "{r:#?}"
    );
    assert_eq!(finding("job db").job.as_deref(), Some("db"));
    assert_eq!(finding("job redis").level, Level::Ok);
    assert_eq!(finding("job files").level, Level::Ok);
    let drill = finding("job files drill");
    assert_eq!(drill.level, Level::Warning);
    assert!(
        drill.message.contains("RTO 95.0s is over the target 60s"),
        "{drill:?}"
    );
    let rto = r
        .metrics
        .iter()
        .find(|m| m.label == "job_files_drill_rto")
        .unwrap();
    assert_eq!((rto.value, rto.warn), (95.0, Some(60.0)));
    assert!(r
        .metrics
        .iter()
        .any(|m| m.label == "age_job_db" && m.warn == Some(21600.0)));
    // A failed backup of redis makes it WARNING by name, db's age stays its own finding.
    state.note(
        "job.redis.backup",
        attempt(Outcome::Failed, hours_ago(0), 5),
    );
    let r = evaluate("repository", &groups, Some(&state), &[], &th, now());
    let failed = r
        .findings
        .iter()
        .find(|f| f.subject == "job redis backup")
        .unwrap();
    assert_eq!(
        (failed.level, failed.job.as_deref()),
        (Level::Warning, Some("redis"))
    );
    // A job without any snapshot has nothing to restore.
    th.jobs.insert("cache".into(), th.jobs["redis"].clone());
    let r = evaluate("repository", &groups, Some(&state), &[], &th, now());
    let none = r
        .findings
        .iter()
        .find(|f| f.subject == "job cache")
        .unwrap();
    assert_eq!(none.level, Level::Critical, "{none:?}");
    th.jobs.remove("cache");
    let r = evaluate("repository", &groups, Some(&state), &[], &th, now());
    let prom = render::prometheus(&state, Some(&r));
    assert!(
        prom.contains("cairn_job_status_level{job=\"db\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains("cairn_job_status_level{job=\"files\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains("cairn_job_snapshot_age_seconds{job=\"db\"} 25200"),
        "{prom}"
    );
    assert!(
        prom.contains("cairn_last_attempt_success{job=\"redis\",step=\"backup\"} 0"),
        "{prom}"
    );
    assert!(
        prom.contains("cairn_drill_rto_seconds{job=\"files\"} 95"),
        "{prom}"
    );
}
