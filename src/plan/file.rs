//! The plan file: a strict TOML description of the nightly job (sources, dumps, retention, checks,
//! offsite copies, monitoring thresholds, drills, hooks). Unknown keys are errors, and every value
//! is checked when the file is loaded, so `cairn plan validate` catches a typo before 2 a.m. does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::units::{parse_size, parse_span};

/// The whole plan file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Where the repository is and how to open it.
    pub repository: RepositorySection,
    /// File-system sources of the backup step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSection>,
    /// Dump commands whose output goes into the same snapshot (`[[dump]]`).
    #[serde(default, rename = "dump", skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<DumpSection>,
    /// Named jobs, each with its own sources, schedule, retention, thresholds and drill
    /// (`[[job]]`), instead of `[backup]` and `[[dump]]`.
    #[serde(default, rename = "job", skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<super::job::JobSection>,
    /// Which snapshots to keep; the rest are forgotten and pruned. With `[[job]]`s: the rules for
    /// snapshots of no job (base backups, snapshots from before the jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSection>,
    /// Repository verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSection>,
    /// Offsite copies (`[[offsite]]`).
    #[serde(default, rename = "offsite", skip_serializing_if = "Vec::is_empty")]
    pub offsite: Vec<OffsiteSection>,
    /// Thresholds of `cairn status` and where results are written.
    #[serde(default)]
    pub monitor: MonitorSection,
    /// Restore drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSection>,
    /// A PostgreSQL cluster: its base backups, its archived WAL's retention and archiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSection>,
    /// Commands run around `cairn run`.
    #[serde(default)]
    pub hooks: HooksSection,
}

/// `[repository]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    /// A directory, `s3://...`, `sftp://...`, `webdav://...` or `opendal:...`, as `-r` takes.
    pub location: String,
    /// Storage options, as `-o KEY=VALUE` takes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// A command whose first line of output is the password (argv, no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_command: Option<Vec<String>>,
    /// A file whose first line is the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Local cache directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Upload bandwidth limit, as `--limit-upload` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_upload: Option<String>,
}

/// `[backup]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Files and directories to back up.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Exclude patterns, as `--exclude` takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Files of exclude patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_files: Vec<PathBuf>,
    /// Exclude patterns that ignore case, as `--iexclude` takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iexcludes: Vec<String>,
    /// Leave out the contents of directories tagged by a CACHEDIR.TAG (`--exclude-caches`).
    #[serde(default)]
    pub exclude_caches: bool,
    /// Leave out the contents of directories holding one of these files, `NAME[:HEADER]`
    /// (`--exclude-if-present`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_if_present: Vec<String>,
    /// Leave out regular files larger than this size, e.g. `2G` (`--exclude-larger-than`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_larger_than: Option<String>,
    /// Stay on the file system of each source.
    #[serde(default)]
    pub one_file_system: bool,
    /// Tags of the snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Host name recorded instead of this machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `[[dump]]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DumpSection {
    /// Path of the dump in the snapshot, e.g. `dumps/app.dump`.
    pub path: String,
    /// The command (argv, no shell) whose standard output is the dump.
    pub command: Vec<String>,
    /// Longest the command may run, e.g. `2h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Fewest bytes a good dump has (default 1): a shorter one fails the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bytes: Option<String>,
    /// Drill check of the restored dump (argv; `{file}` is its path), e.g. `pg_restore --list {file}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Vec<String>>,
}

/// `[retention]`: the keep policy of `cairn forget`, then a prune.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// How often (default: every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// The keep rules, as `keep_*` keys of this section (`keep_daily = 7`, `keep_within = "30d"`,
    /// `keep_tag = ["release"]`): the same rules as `cairn forget --keep-*`.
    #[serde(flatten)]
    pub keep: crate::ops::retention::KeepPolicy,
    /// Group snapshots by these fields before applying the rules, as `--group-by` takes
    /// (`host,paths` by default; `""` for one group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// Prune after forgetting (default true).
    #[serde(default = "yes")]
    pub prune: bool,
}

impl RetentionSection {
    /// How snapshots are grouped (`host,paths` unless `group_by` says otherwise).
    ///
    /// # Errors
    /// An unknown field.
    pub fn group_by(&self) -> crate::Result<crate::ops::forget::GroupBy> {
        match &self.group_by {
            Some(fields) => crate::ops::forget::GroupBy::parse(fields),
            None => Ok(crate::ops::forget::GroupBy::default()),
        }
    }
}

impl BackupSection {
    /// The options a backup of this section runs with: the same types `cairn backup`'s flags
    /// fill, so a key here and its flag mean one thing.
    ///
    /// # Errors
    /// An exclude file that cannot be read, an invalid pattern, tag file or size.
    pub fn backup_options(&self) -> crate::Result<crate::archive::BackupOptions> {
        let mut options = crate::archive::BackupOptions {
            host: self.host.clone(),
            tags: self.tags.clone(),
            one_file_system: self.one_file_system,
            ..Default::default()
        };
        let larger_than = self
            .exclude_larger_than
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| {
                crate::Error::invalid_input(format!("[backup] exclude_larger_than: {e}"))
            })?;
        crate::archive::ExcludeOptions {
            patterns: self.excludes.clone(),
            pattern_files: self.exclude_files.clone(),
            ipatterns: self.iexcludes.clone(),
            ipattern_files: Vec::new(),
            caches: self.exclude_caches,
            if_present: self.exclude_if_present.clone(),
            larger_than,
        }
        .apply_to(&mut options)?;
        Ok(options)
    }
}

impl CheckSection {
    /// What `check` reads of the data: `read_data` as `--read-data` (`all`) or
    /// `--read-data-subset` (`5%`, `1/7`) take it.
    ///
    /// # Errors
    /// A value neither `all` nor a subset.
    pub fn selection(&self) -> crate::Result<crate::check::DataSelection> {
        match self.read_data.as_deref() {
            None => Ok(crate::check::DataSelection::None),
            Some("all") => Ok(crate::check::DataSelection::All),
            Some(subset) => crate::check::DataSelection::parse_subset(subset),
        }
    }
}

/// `[check]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// How often (default: every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Read this part of the data too: `5%`, `1/7`, or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data: Option<String>,
}

/// `[[offsite]]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteSection {
    /// A short name for status and state (`s3`, `nas`).
    pub name: String,
    /// Where the copy goes, as `sync --to` takes.
    pub location: String,
    /// Storage options of the target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// How often (default: every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Delete from the target what the repository no longer has (default true).
    #[serde(default = "yes")]
    pub delete: bool,
    /// S3 Object Lock of the target: `governance` or `compliance` (with `lock_period`); its
    /// locks then follow `[retention]` (FORMAT.md §17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_mode: Option<String>,
    /// Each object stays locked at least this long from its write (`30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_period: Option<String>,
    /// Added to the date `[retention]` needs a snapshot until (default `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_margin: Option<String>,
}

/// `[monitor]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSection {
    /// Newest snapshot older than this: WARNING (default 26h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_age: Option<String>,
    /// Newest snapshot older than this: CRITICAL (default 50h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_age: Option<String>,
    /// Newest snapshot smaller than this: CRITICAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<String>,
    /// Newest snapshot smaller than the previous by more than this percentage: WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shrink: Option<f64>,
    /// Last successful check older than this: WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_max_age: Option<String>,
    /// Last successful offsite copy older than this: WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite_max_age: Option<String>,
    /// Last passing drill older than this: WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_max_age: Option<String>,
    /// A locked offsite copy whose earliest needed lock ends sooner than this: WARNING (default 7d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_warn_left: Option<String>,
    /// ... sooner than this, or already ended: CRITICAL (default 1d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_crit_left: Option<String>,
    /// Newest archived PostgreSQL WAL file older than this: WARNING (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_warn_age: Option<String>,
    /// Newest archived PostgreSQL WAL file older than this: CRITICAL (default 2h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_crit_age: Option<String>,
    /// The state file (default: under the user's state directory, named after the plan file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// A Prometheus textfile written after every run (node_exporter's textfile collector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_file: Option<PathBuf>,
}

/// `[drill]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrillSection {
    /// How often `cairn run` drills (default: never; `cairn drill` runs one any time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Which snapshot: `latest` (default), a snapshot id, or `random-within 30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Where scratch restores go (default: the system's temporary directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PathBuf>,
    /// Longest acceptable time from restore start to all checks passing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rto: Option<String>,
    /// Oldest acceptable snapshot at drill time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rpo: Option<String>,
    /// Commands run on the restored tree (argv; `{root}` is the restore directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Vec<String>>,
    /// Longest one check may run (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_timeout: Option<String>,
    /// Drill a point-in-time recovery of the `[postgres]` cluster instead of restoring a
    /// snapshot: `latest`, a time, `name:POINT` or `lsn:X/Y`, as `cairn drill --pitr` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<String>,
}

/// `[postgres]`: base backups of a PostgreSQL cluster whose WAL `wal push --plan` archives into
/// the repository, how long that WAL is kept, and how the archiver behaves.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// libpq connection string or URI (default: libpq's environment, `PGHOST`, `PGUSER`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    /// The psql program (default `psql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psql: Option<String>,
    /// The data directory (default: what the server says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgdata: Option<PathBuf>,
    /// How often `cairn run` takes a base backup (default: every run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Wait for a spread checkpoint instead of asking for an immediate one.
    #[serde(default)]
    pub spread_checkpoint: bool,
    /// How long a base backup waits for its last WAL file to be archived (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_timeout: Option<String>,
    /// Tags of the base backups' snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Keep the archived WAL of this last span even before the oldest kept base backup (prune's
    /// `--keep-wal-within`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_wal_within: Option<String>,
    /// Newest base backup older than this: WARNING (default: `[monitor] warn_age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_age: Option<String>,
    /// Newest base backup older than this: CRITICAL (default: `[monitor] crit_age`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_age: Option<String>,
    /// Files `wal push` archives ahead of PostgreSQL's call (`--ahead`, default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_ahead: Option<usize>,
    /// Archive through a background archiver (`wal push --async`).
    #[serde(default)]
    pub push_async: bool,
    /// Segments `wal fetch` prefetches (`--prefetch`, default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_prefetch: Option<usize>,
    /// Largest backlog of WAL waiting to be archived in `pg_wal` (`--queue-max`); beyond it
    /// `wal push` drops the oldest files unarchived so the primary's disk does not fill, and the
    /// loss is recorded and reported CRITICAL. Default: no limit (PostgreSQL keeps every file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_max: Option<String>,
}

/// `[hooks]`: lists of commands (argv, no shell).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// Before any step; exit code 75 skips the run cleanly, another failure fails it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<Vec<String>>,
    /// After a run in which a step failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Vec<String>>,
    /// After every run, whatever happened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<Vec<String>>,
    /// Longest one hook may run (default 10min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

fn yes() -> bool {
    true
}

/// Default age thresholds of the newest snapshot: a nightly backup may be a couple of hours late.
pub const DEFAULT_WARN_AGE: Duration = Duration::from_secs(26 * 3600);
/// See [`DEFAULT_WARN_AGE`]: two nights missed.
pub const DEFAULT_CRIT_AGE: Duration = Duration::from_secs(50 * 3600);

impl Plan {
    /// Reads and validates the plan at `path`.
    ///
    /// # Errors
    /// `InvalidInput` naming the file, the line, the key and what is wrong (TOML syntax, unknown
    /// keys, bad values).
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid_input(format!("cannot read the plan file {}: {e}", path.display()))
        })?;
        Self::parse_text(&text).map_err(|message| {
            let at = match super::locate::line_of(&text, &message) {
                Some(line) => format!("plan file {}, line {line}", path.display()),
                None => format!("plan file {}", path.display()),
            };
            Error::invalid_input(message).context(at)
        })
    }

    /// Parses and validates plan text.
    ///
    /// # Errors
    /// `InvalidInput` naming the key and what is wrong.
    pub fn parse(text: &str) -> Result<Plan> {
        Self::parse_text(text).map_err(Error::invalid_input)
    }

    fn parse_text(text: &str) -> Result<Plan, String> {
        let plan: Plan = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        plan.validate()?;
        Ok(plan)
    }

    fn validate(&self) -> Result<(), String> {
        let span = check_span;
        let argv = check_argv;
        let r = &self.repository;
        if r.location.trim().is_empty() {
            return Err("[repository] location is empty".into());
        }
        if r.password_command.is_some() && r.password_file.is_some() {
            return Err("[repository] give password_command or password_file, not both".into());
        }
        if let Some(c) = &r.password_command {
            argv("[repository] password_command", c)?;
        }
        if let Some(rate) = &r.limit_upload {
            // The parser `--limit-upload` uses, so a plan that validates also runs.
            crate::backend::location::parse_rate(rate)
                .map_err(|e| format!("[repository] limit_upload: {e}"))?;
        }
        check_sources("", self.backup.as_ref(), &self.dumps)?;
        if let Some(k) = &self.retention {
            check_retention("[retention]", k)?;
        }
        self.validate_jobs()?;
        if let Some(c) = &self.check {
            span("[check] every", &c.every)?;
            c.selection()
                .map_err(|e| format!("[check] read_data: {e}"))?;
        }
        let mut names = std::collections::HashSet::new();
        for o in &self.offsite {
            if o.name.is_empty()
                || !o
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "[[offsite]] name {:?}: use letters, digits, - and _",
                    o.name
                ));
            }
            if !names.insert(&o.name) {
                return Err(format!("[[offsite]] name {:?} is used twice", o.name));
            }
            span(&format!("[[offsite]] {} every", o.name), &o.every)?;
            span(
                &format!("[[offsite]] {} lock_period", o.name),
                &o.lock_period,
            )?;
            span(
                &format!("[[offsite]] {} lock_margin", o.name),
                &o.lock_margin,
            )?;
            match (o.lock_mode.as_deref(), &o.lock_period) {
                (None, None) => {}
                (Some("governance" | "compliance"), Some(_)) => {}
                (Some(m @ ("governance" | "compliance")), None) => {
                    return Err(format!(
                        "[[offsite]] {} lock_mode = {m:?} needs lock_period (e.g. \"30d\")",
                        o.name
                    ))
                }
                (Some(m), _) => {
                    return Err(format!(
                        "[[offsite]] {} lock_mode = {m:?}: give \"governance\" or \"compliance\"",
                        o.name
                    ))
                }
                (None, Some(_)) => {
                    return Err(format!(
                    "[[offsite]] {} lock_period needs lock_mode (\"governance\" or \"compliance\")",
                    o.name
                ))
                }
            }
        }
        let m = &self.monitor;
        for (key, v) in [
            ("warn_age", &m.warn_age),
            ("crit_age", &m.crit_age),
            ("check_max_age", &m.check_max_age),
            ("offsite_max_age", &m.offsite_max_age),
            ("drill_max_age", &m.drill_max_age),
            ("lock_warn_left", &m.lock_warn_left),
            ("lock_crit_left", &m.lock_crit_left),
            ("wal_warn_age", &m.wal_warn_age),
            ("wal_crit_age", &m.wal_crit_age),
        ] {
            span(&format!("[monitor] {key}"), v)?;
        }
        if let Some(s) = &m.min_size {
            parse_size(s).map_err(|e| format!("[monitor] min_size: {e}"))?;
        }
        check_percent("[monitor] max_shrink", m.max_shrink)?;
        let (warn, crit) = self.age_thresholds();
        if warn > crit {
            return Err("[monitor] warn_age is longer than crit_age".into());
        }
        if let Some(d) = &self.drill {
            check_drill("[drill]", d)?;
        }
        if let Some(p) = &self.postgres {
            span("[postgres] every", &p.every)?;
            span("[postgres] archive_timeout", &p.archive_timeout)?;
            span("[postgres] warn_age", &p.warn_age)?;
            span("[postgres] crit_age", &p.crit_age)?;
            if let Some(w) = &p.keep_wal_within {
                crate::units::parse_time_span(w)
                    .map_err(|e| format!("[postgres] keep_wal_within: {e}"))?;
            }
            if let Some(q) = &p.queue_max {
                parse_size(q).map_err(|e| format!("[postgres] queue_max: {e}"))?;
            }
            if p.psql.as_deref() == Some("") {
                return Err("[postgres] psql is empty".into());
            }
        }
        if let Some(target) = self.drill.as_ref().and_then(|d| d.pitr.as_deref()) {
            crate::pg::RecoveryTarget::parse(target).map_err(|e| format!("[drill] pitr: {e}"))?;
        }
        if self.drill.as_ref().is_some_and(|d| d.pitr.is_some()) && self.postgres.is_none() {
            return Err(
                "[drill] pitr needs a [postgres] section (the cluster whose recovery is drilled)"
                    .into(),
            );
        }
        span("[hooks] timeout", &self.hooks.timeout)?;
        for (key, list) in [
            ("before", &self.hooks.before),
            ("on_failure", &self.hooks.on_failure),
            ("finally", &self.hooks.finally),
        ] {
            for (i, c) in list.iter().enumerate() {
                argv(&format!("[hooks] {key} #{}", i + 1), c)?;
            }
        }
        Ok(())
    }

    fn validate_jobs(&self) -> Result<(), String> {
        if self.jobs.is_empty() {
            return Ok(());
        }
        if self.backup.is_some() || !self.dumps.is_empty() {
            return Err(
                "[backup] and [[dump]] are the sources of a plan without jobs: with [[job]] sections, move them into a job ([job.backup], [[job.dump]])"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, j) in self.jobs.iter().enumerate() {
            if !super::job::valid_name(&j.name) {
                return Err(format!(
                    "[[job]] #{} name {:?}: use 1 to 64 letters, digits, - and _",
                    i + 1,
                    j.name
                ));
            }
            let at = format!("[[job]] {}", j.name);
            if !names.insert(&j.name) {
                return Err(format!("{at}: another job has the same name"));
            }
            match (&j.schedule, &j.every) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: give schedule (a cron expression) or every (a span), not both"
                    ))
                }
                (Some(c), None) => {
                    super::cron::Cron::parse(c).map_err(|e| format!("{at} schedule: {e}"))?;
                }
                (None, every) => check_span(&format!("{at} every"), every)?,
            }
            if j.backup.is_none() && j.dumps.is_empty() {
                return Err(format!(
                    "{at}: nothing to back up (give [job.backup] paths or a [[job.dump]])"
                ));
            }
            check_sources(&format!("{at} "), j.backup.as_ref(), &j.dumps)?;
            if let Some(r) = &j.retention {
                check_retention(&format!("{at} retention"), r)?;
            }
            if let Some(m) = &j.monitor {
                check_span(&format!("{at} monitor warn_age"), &m.warn_age)?;
                check_span(&format!("{at} monitor crit_age"), &m.crit_age)?;
                if let Some(s) = &m.min_size {
                    parse_size(s).map_err(|e| format!("{at} monitor min_size: {e}"))?;
                }
                check_percent(&format!("{at} monitor max_shrink"), m.max_shrink)?;
                let (warn, crit) = self.job_age_thresholds(Some(m));
                if warn > crit {
                    return Err(format!("{at} monitor: warn_age is longer than crit_age"));
                }
            }
            if let Some(d) = &j.drill {
                if d.pitr.is_some() {
                    return Err(format!(
                        "{at} drill: pitr drills the [postgres] cluster; put it in the top-level [drill]"
                    ));
                }
                check_drill(&format!("{at} drill"), d)?;
            }
        }
        Ok(())
    }

    /// The jobs of the plan: its `[[job]]`s, or the one unnamed job of its `[backup]` and
    /// `[[dump]]`; none when it backs up nothing.
    pub fn jobs(&self) -> Vec<super::job::Job<'_>> {
        if !self.jobs.is_empty() {
            return self.jobs.iter().map(super::job::Job::named).collect();
        }
        if self.backup.is_some() || !self.dumps.is_empty() {
            return vec![super::job::Job::unnamed(self.backup.as_ref(), &self.dumps)];
        }
        Vec::new()
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<super::job::Job<'_>> {
        self.jobs
            .iter()
            .find(|j| j.name == name)
            .map(super::job::Job::named)
    }

    /// The WARNING and CRITICAL ages of a job's newest snapshot: its `[job.monitor]`'s, else the
    /// plan's.
    pub fn job_age_thresholds(
        &self,
        monitor: Option<&super::job::JobMonitorSection>,
    ) -> (Duration, Duration) {
        let (warn, crit) = self.age_thresholds();
        let own = |v: Option<&Option<String>>| v.and_then(span_of);
        (
            own(monitor.map(|m| &m.warn_age)).unwrap_or(warn),
            own(monitor.map(|m| &m.crit_age)).unwrap_or(crit),
        )
    }

    /// The WARNING and CRITICAL ages of the newest snapshot.
    pub fn age_thresholds(&self) -> (Duration, Duration) {
        let get =
            |v: &Option<String>, d| v.as_deref().and_then(|t| parse_span(t).ok()).unwrap_or(d);
        (
            get(&self.monitor.warn_age, DEFAULT_WARN_AGE),
            get(&self.monitor.crit_age, DEFAULT_CRIT_AGE),
        )
    }
}

fn check_span(key: &str, v: &Option<String>) -> Result<(), String> {
    v.as_deref()
        .map(|t| parse_span(t).map(drop).map_err(|e| format!("{key}: {e}")))
        .unwrap_or(Ok(()))
}

fn check_argv(key: &str, v: &[String]) -> Result<(), String> {
    if v.first().is_none_or(|a| a.is_empty()) {
        return Err(format!(
            "{key}: a command is a non-empty list, e.g. [\"pg_dump\", \"app\"]"
        ));
    }
    Ok(())
}

fn check_percent(key: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(p) if !(0.0..=100.0).contains(&p) => {
            Err(format!("{key} {p}: a percentage from 0 to 100"))
        }
        _ => Ok(()),
    }
}

/// The sources of one job: `[backup]` and `[[dump]]` (prefix empty) or a `[[job]]`'s
/// (prefix `[[job]] NAME `).
fn check_sources(
    prefix: &str,
    backup: Option<&BackupSection>,
    dumps: &[DumpSection],
) -> Result<(), String> {
    if let Some(b) = backup {
        if b.paths.is_empty() && dumps.is_empty() {
            return Err(format!(
                "{prefix}[backup] paths is empty and there is no [[dump]]: nothing to back up"
            ));
        }
        if let Some(size) = &b.exclude_larger_than {
            parse_size(size).map_err(|e| format!("{prefix}[backup] exclude_larger_than: {e}"))?;
        }
        for spec in &b.exclude_if_present {
            crate::archive::TagFile::parse(spec)
                .map_err(|e| format!("{prefix}[backup] exclude_if_present: {e}"))?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, d) in dumps.iter().enumerate() {
        let key = format!("{prefix}[[dump]] #{} ({})", i + 1, d.path);
        let trimmed = d.path.trim_matches('/');
        if trimmed.is_empty()
            || trimmed
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!(
                "{key}: path must be a relative file path such as dumps/app.dump"
            ));
        }
        if !seen.insert(trimmed.to_string()) {
            return Err(format!("{key}: another dump has the same path"));
        }
        check_argv(&format!("{key} command"), &d.command)?;
        check_span(&format!("{key} timeout"), &d.timeout)?;
        if let Some(m) = &d.min_bytes {
            parse_size(m).map_err(|e| format!("{key} min_bytes: {e}"))?;
        }
        if let Some(v) = &d.verify {
            check_argv(&format!("{key} verify"), v)?;
        }
    }
    Ok(())
}

fn check_retention(at: &str, k: &RetentionSection) -> Result<(), String> {
    check_span(&format!("{at} every"), &k.every)?;
    k.group_by().map_err(|e| format!("{at} group_by: {e}"))?;
    if k.keep.is_empty() {
        return Err(format!(
            "{at} keeps nothing: set at least one keep_* (e.g. keep_daily = 7)"
        ));
    }
    Ok(())
}

fn check_drill(at: &str, d: &DrillSection) -> Result<(), String> {
    check_span(&format!("{at} every"), &d.every)?;
    check_span(&format!("{at} max_rto"), &d.max_rto)?;
    check_span(&format!("{at} max_rpo"), &d.max_rpo)?;
    check_span(&format!("{at} check_timeout"), &d.check_timeout)?;
    if let Some(s) = &d.snapshot {
        super::SnapshotChoice::parse(s).map_err(|e| format!("{at} snapshot: {e}"))?;
    }
    for (i, c) in d.checks.iter().enumerate() {
        check_argv(&format!("{at} checks #{}", i + 1), c)?;
    }
    Ok(())
}

/// A validated span field (validation happened in [`Plan::load`]); `None` when absent.
pub fn span_of(v: &Option<String>) -> Option<Duration> {
    v.as_deref().and_then(|t| parse_span(t).ok())
}

/// A validated size field; `None` when absent.
pub fn size_of(v: &Option<String>) -> Option<u64> {
    v.as_deref().and_then(|t| parse_size(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
[repository]
location = "/srv/backup"

[backup]
paths = ["/etc"]

[retention]
keep_daily = 7
keep_monthly = 12
keep_within = "1y6mo"
keep_tag = ["release"]
group_by = "host"
"#;

    /// The plan's `keep_*` keys are `forget --keep-*`'s rules: one type, read and written alike.
    #[test]
    fn retention_keys_are_the_keep_policy_and_survive_a_round_trip() {
        let plan = Plan::parse(PLAN).unwrap();
        let keep = &plan.retention.as_ref().unwrap().keep;
        assert_eq!(keep.daily, 7);
        assert_eq!(keep.monthly, 12);
        assert_eq!(keep.last, 0);
        assert_eq!(keep.within, Some(chrono::TimeDelta::days(365 + 180)));
        assert_eq!(keep.tags, ["release"]);
        let written = toml::to_string(&plan).unwrap();
        assert!(written.contains("keep_within = \"1y6mo\""), "{written}");
        assert!(!written.contains("keep_last"), "{written}");
        let again = Plan::parse(&written).unwrap();
        assert_eq!(&again.retention.unwrap().keep, keep);
    }

    #[test]
    fn unknown_and_bad_retention_keys_are_refused_by_name() {
        for (old, new, expected) in [
            ("keep_daily = 7", "keep_dayly = 7", "keep_dayly"),
            ("keep_daily = 7", "keep_daily = -1", "-1"),
            ("\"1y6mo\"", "\"6m\"", "6mo for months"),
            ("group_by = \"host\"", "group_by = \"hosts\"", "hosts"),
        ] {
            let e = Plan::parse(&PLAN.replace(old, new))
                .expect_err(new)
                .to_string();
            assert!(e.contains(expected), "{new}: {e}");
        }
    }

    #[test]
    fn the_postgres_section_is_checked_and_a_pitr_drill_needs_it() {
        let section = "\n[postgres]\nconn = \"host=/run/postgresql user=postgres\"\nevery = \"1d\"\nkeep_wal_within = \"14d\"\nqueue_max = \"8G\"\n";
        let plan = Plan::parse(&format!("{PLAN}{section}")).unwrap();
        let pg = plan.postgres.as_ref().unwrap();
        assert_eq!(pg.queue_max.as_deref(), Some("8G"));
        assert_eq!(size_of(&pg.queue_max), Some(8 << 30));
        for (old, new, expected) in [
            ("\"14d\"", "\"2 weeks\"", "keep_wal_within"),
            ("\"8G\"", "\"lots\"", "queue_max"),
            ("every = \"1d\"", "every = \"daily\"", "[postgres] every"),
            ("conn =", "connection =", "connection"),
        ] {
            let e = Plan::parse(&format!("{PLAN}{}", section.replace(old, new)))
                .expect_err(new)
                .to_string();
            assert!(e.contains(expected), "{new}: {e}");
        }
        let drill = "\n[drill]\npitr = \"latest\"\n";
        let e = Plan::parse(&format!("{PLAN}{drill}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a [postgres]"), "{e}");
        Plan::parse(&format!("{PLAN}{section}{drill}")).unwrap();
        let e = Plan::parse(&format!("{PLAN}{section}\n[drill]\npitr = \"yesterday\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[drill] pitr"), "{e}");
    }
}
