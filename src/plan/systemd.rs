//! `cairn plan systemd`: a service and a timer unit that run the plan.
//!
//! One timer for the whole plan, never one per job: each job's times are `OnCalendar=` lines of
//! that one timer, and each firing runs `cairn run`, which runs whatever jobs are due. Jobs due
//! at the same time then run one after another in one process instead of racing for the plan's
//! run lock (a second `cairn run` of a plan refuses to start), and a job that failed is tried
//! again at the next firing of any job.

use std::path::Path;
use std::time::Duration;

use super::{JobSchedule, Plan};

/// The `OnCalendar=` lines of the plan: each job's schedule (a cron expression as systemd writes
/// it, an `every` span that divides an hour or a day as the matching repetition), and `default`
/// for a plan without jobs and for jobs whose span fits no calendar (they run at the first
/// firing after their span has passed).
pub fn calendars(plan: &Plan, default: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut push = |line: String| {
        if !lines.contains(&line) {
            lines.push(line);
        }
    };
    for job in plan.jobs() {
        match job.schedule() {
            JobSchedule::Cron(cron) => cron.on_calendar().into_iter().for_each(&mut push),
            JobSchedule::Every(every) => push(span_calendar(every).unwrap_or(default.to_string())),
            JobSchedule::EveryRun => push(default.to_string()),
        }
    }
    if plan.jobs().is_empty() {
        push(default.to_string());
    }
    lines
}

/// A span as a repeating calendar time: `15min` is `*:00/15:00`, `6h` is `*-*-* 00/6:00:00`,
/// `1d` is `*-*-* 00:00:00`; `None` for spans that divide neither an hour nor a day.
fn span_calendar(every: Duration) -> Option<String> {
    let minutes = every.as_secs() / 60;
    if every.as_secs() % 60 != 0 || minutes == 0 {
        return None;
    }
    if minutes < 60 && 60 % minutes == 0 {
        return Some(format!("*-*-* *:00/{minutes}:00"));
    }
    let hours = minutes / 60;
    if minutes % 60 == 0 && hours < 24 && 24 % hours == 0 {
        return Some(format!("*-*-* 00/{hours}:00:00"));
    }
    (minutes == 24 * 60).then(|| "*-*-* 00:00:00".to_string())
}

/// The text of `cairn.service` and `cairn.timer` for the plan at `plan_path`, run by the binary at
/// `cairn`, fired at each of `on_calendar` (systemd calendar expressions), catching up a run
/// missed while the machine was off (`Persistent=true`). A plan without jobs is spread over 30
/// minutes of random delay; a plan with jobs fires on time, since its jobs' schedules are
/// objectives.
pub fn units(
    cairn: &Path,
    plan_path: &Path,
    on_calendar: &[String],
    jobs: bool,
) -> (String, String) {
    let service = format!(
        "\
# cairn.service: one run of the backup plan (written by `cairn plan systemd`).
[Unit]
Description=cairn backup plan {plan}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={cairn} run --plan {plan}
# Backups should not starve the services they protect.
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
# Exit code 3 (some entries unreadable) still saved a snapshot; status reports it.
SuccessExitStatus=3
",
        plan = plan_path.display(),
        cairn = cairn.display(),
    );
    let calendars: String = on_calendar
        .iter()
        .map(|c| format!("OnCalendar={c}\n"))
        .collect();
    let (description, delay) = if jobs {
        ("the jobs of the cairn backup plan", "1min")
    } else {
        ("nightly cairn backup plan", "30min")
    };
    let timer = format!(
        "\
# cairn.timer: runs cairn.service (written by `cairn plan systemd`).
[Unit]
Description={description}

[Timer]
{calendars}RandomizedDelaySec={delay}
Persistent=true

[Install]
WantedBy=timers.target
"
    );
    (service, timer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_name_the_plan_and_the_schedule() {
        let (service, timer) = units(
            Path::new("/usr/local/bin/cairn"),
            Path::new("/etc/cairn/plan.toml"),
            &["*-*-* 02:00".into()],
            false,
        );
        assert!(service.contains("ExecStart=/usr/local/bin/cairn run --plan /etc/cairn/plan.toml"));
        assert!(timer.contains("OnCalendar=*-*-* 02:00"));
        assert!(timer.contains("Persistent=true"));
    }

    #[test]
    fn one_timer_fires_at_every_job_s_times() {
        let plan = Plan::parse(
            r#"
[repository]
location = "/srv/backup"

[[job]]
name = "db"
schedule = "0 */6 * * *"
[[job.dump]]
path = "db.sql"
command = ["pg_dump", "app"]

[[job]]
name = "redis"
every = "2h"
[[job.dump]]
path = "redis.rdb"
command = ["redis-cli", "--rdb", "-"]

[[job]]
name = "files"
every = "36h"
[job.backup]
paths = ["/srv/app"]
"#,
        )
        .unwrap();
        assert_eq!(
            calendars(&plan, "*-*-* 02:00"),
            ["*-*-* 00,06,12,18:00:00", "*-*-* 00/2:00:00", "*-*-* 02:00"]
        );
        let (_, timer) = units(
            Path::new("/usr/bin/cairn"),
            Path::new("/etc/cairn/plan.toml"),
            &calendars(&plan, "*-*-* 02:00"),
            true,
        );
        assert_eq!(timer.matches("OnCalendar=").count(), 3, "{timer}");
        assert_eq!(
            span_calendar(Duration::from_secs(900)).unwrap(),
            "*-*-* *:00/15:00"
        );
        assert_eq!(
            span_calendar(Duration::from_secs(86_400)).unwrap(),
            "*-*-* 00:00:00"
        );
        assert!(span_calendar(Duration::from_secs(7 * 60)).is_none());
    }
}
