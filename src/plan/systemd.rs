//! `cairn plan systemd`: a service and a timer unit that run the plan nightly.

use std::path::Path;

/// The text of `cairn.service` and `cairn.timer` for the plan at `plan_path`, run by the binary at
/// `cairn`, fired daily at `on_calendar` (a systemd calendar expression) with up to 30 minutes of
/// random delay, catching up a run missed while the machine was off (`Persistent=true`).
pub fn units(cairn: &Path, plan_path: &Path, on_calendar: &str) -> (String, String) {
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
    let timer = format!(
        "\
# cairn.timer: runs cairn.service (written by `cairn plan systemd`).
[Unit]
Description=nightly cairn backup plan

[Timer]
OnCalendar={on_calendar}
RandomizedDelaySec=30min
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
            "*-*-* 02:00",
        );
        assert!(service.contains("ExecStart=/usr/local/bin/cairn run --plan /etc/cairn/plan.toml"));
        assert!(timer.contains("OnCalendar=*-*-* 02:00"));
        assert!(timer.contains("Persistent=true"));
    }
}
