//! The one place cairn builds a child process: dump commands, hooks, drill checks, verify commands
//! and password commands all start from [`command`], which hands the child cairn's environment minus
//! every variable that carries or points at the repository password. A child can print, log or
//! store its environment (a dump's stderr tail goes into the snapshot summary), so the password must
//! never reach one. A test below refuses `Command::new` anywhere else in `src/`.

pub mod run;

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// Variables whose name starts with this are secrets or name one (`CAIRN_PASSWORD`,
/// `CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD_COMMAND`, ...): no child gets them.
pub const SECRET_PREFIX: &str = "CAIRN_PASSWORD";

/// Whether a variable of this name is kept from children.
pub fn is_secret_variable(name: &OsStr) -> bool {
    name.as_encoded_bytes()
        .starts_with(SECRET_PREFIX.as_bytes())
}

/// The names among `names` that a child must not get.
pub fn secret_variables(names: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    names
        .into_iter()
        .filter(|n| is_secret_variable(n))
        .collect()
}

/// A command for `program` whose environment is cairn's without the password variables; the
/// caller adds arguments, variables of its own and standard streams.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in secret_variables(std::env::vars_os().map(|(name, _)| name)) {
        command.env_remove(name);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_variables_and_their_relatives_are_secret() {
        let names = [
            "CAIRN_PASSWORD",
            "CAIRN_PASSWORD_FILE",
            "CAIRN_PASSWORD_COMMAND",
        ];
        for name in names {
            assert!(is_secret_variable(OsStr::new(name)), "{name}");
        }
        for name in [
            "CAIRN_REPO",
            "CAIRN_CACHE_DIR",
            "PATH",
            "PGPASSWORD",
            "cairn_password",
        ] {
            assert!(!is_secret_variable(OsStr::new(name)), "{name}");
        }
    }

    /// Every child process of the library and the binary starts here, so none escapes the scrubbing.
    #[test]
    fn no_other_source_file_builds_a_command() {
        fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/process/mod.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let spawns = text.lines().filter(|l| {
                        let code = l.split("//").next().unwrap_or_default();
                        code.contains("Command::new(") && !code.contains("DumpCommand::new(")
                    });
                    found.extend(spawns.map(|l| format!("{}: {}", path.display(), l.trim())));
                }
            }
        }
        let mut found = Vec::new();
        visit(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.is_empty(),
            "use cairn::process::command instead:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn a_child_is_not_given_the_password_variables() {
        // The environment of this test process may hold anything: check what the command was told
        // to remove against what the process has.
        let command = command("true");
        let removed: Vec<&OsStr> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
        for (name, _) in std::env::vars_os() {
            assert_eq!(
                removed.contains(&name.as_os_str()),
                is_secret_variable(&name),
                "{name:?}"
            );
        }
    }
}
