//! Objects written by a future cairn (an unknown format version) are refused with a message that
//! names the object and the version, never misread. Version 2 (a data-key epoch, FORMAT.md §15)
//! is known, so the future here is version 3; for index files and packs, whose versions 3 and 4
//! hold delta entries (§6-§8), it is version 5.

use crate::common;

use std::path::Path;

use common::Env;

/// Rewrites the version field (bytes 8..10) of the only object in `dir` and renames it to its new hash.
fn bump_version(dir: &Path, version: u16) -> String {
    let entry = std::fs::read_dir(dir).unwrap().next().unwrap().unwrap();
    let mut bytes = std::fs::read(entry.path()).unwrap();
    bytes[8..10].copy_from_slice(&version.to_le_bytes());
    std::fs::remove_file(entry.path()).unwrap();
    let name = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(dir.join(&name), &bytes).unwrap();
    name
}

#[test]
fn unknown_versions_are_refused_clearly() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    env.init();
    env.r_ok(&[std::ffi::OsStr::new("backup"), src.as_os_str()]);

    let name = bump_version(&env.repo.join("snapshots"), 3);
    let out = env.r(&["snapshots"]);
    out.assert_code(common::exit::UNSUPPORTED_VERSION);
    assert!(
        out.stderr.contains(&name)
            && out.stderr.contains("version 3")
            && out.stderr.contains("upgrade cairn"),
        "{}",
        out.describe()
    );

    bump_version(&env.repo.join("index"), 5);
    env.remove_cache();
    let out = env.r(&["check"]);
    out.assert_code(common::exit::UNSUPPORTED_VERSION);
    assert!(
        out.stderr.contains("index file") && out.stderr.contains("version 5"),
        "{}",
        out.describe()
    );
}
