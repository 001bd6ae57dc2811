//! Shell completions and manual pages come from the same definitions as `--help`: every command
//! is in them.

use crate::common;

use common::Env;

#[test]
fn completions_and_manual_pages_name_every_command() {
    let env = Env::new();
    let commands = [
        "backup",
        "restore",
        "snapshots",
        "check",
        "prune",
        "sync",
        "drill",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let out = env.cairn_ok(&["completions", shell]);
        for command in commands {
            assert!(out.stdout.contains(command), "{shell}: {command}");
        }
    }
    let page = env.cairn_ok(&["man"]);
    assert!(page.stdout.starts_with(".ie") || page.stdout.contains(".TH cairn 1"));
    let dir = env.path("man1");
    env.cairn_ok(&["man", "--dir", dir.to_str().unwrap()]);
    for command in commands {
        let page = std::fs::read_to_string(dir.join(format!("cairn-{command}.1"))).unwrap();
        assert!(page.contains(&format!(".TH cairn-{command} 1")), "{page}");
    }
    assert!(env.cairn(&["completions", "tcsh"]).code == common::exit::USAGE);
}
