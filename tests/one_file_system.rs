//! `--one-file-system` records a mount point inside the source as an empty directory and does not
//! descend into it; without the flag the mounted file system is backed up too.

use crate::common;

use std::ffi::OsStr;

use common::mounts::Mount;
use common::{restored_path, write_file, Env};

#[test]
fn one_file_system_stops_at_mount_points() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("here.txt"), b"same file system");
    let Some(mount) = Mount::tmpfs(&src.join("elsewhere"), "4m") else {
        println!("NOTE: cannot mount a tmpfs here; --one-file-system is not exercised");
        return;
    };
    write_file(&mount.0.join("there.txt"), b"other file system");
    env.init();

    env.r_ok(&[
        OsStr::new("backup"),
        OsStr::new("--one-file-system"),
        src.as_os_str(),
    ]);
    let target = env.path("restore-x");
    env.restore("latest", &target);
    let restored = restored_path(&target, &src);
    assert_eq!(
        std::fs::read(restored.join("here.txt")).unwrap(),
        b"same file system"
    );
    assert!(
        restored.join("elsewhere").is_dir(),
        "the mount point itself is kept"
    );
    assert!(
        !restored.join("elsewhere/there.txt").exists(),
        "--one-file-system must not descend into another file system"
    );

    env.r_ok(&[OsStr::new("backup"), src.as_os_str()]);
    let target = env.path("restore-all");
    env.restore("latest", &target);
    let restored = restored_path(&target, &src);
    assert_eq!(
        std::fs::read(restored.join("elsewhere/there.txt")).unwrap(),
        b"other file system"
    );
}
