//! A restore that fails for lack of space says which file, exits 1, and leaves no half-written file.

use crate::common;

use common::mounts::Mount;
use common::{files_under, random_bytes, write_file, Env};

#[test]
fn restore_onto_a_full_file_system_fails_cleanly() {
    let env = Env::new();
    let src = env.path("src");
    write_file(&src.join("small.txt"), b"fits");
    write_file(&src.join("large.bin"), &random_bytes(3, 5 << 20));
    env.init();
    env.r_ok(&[std::ffi::OsStr::new("backup"), src.as_os_str()]);

    let Some(fs) = Mount::tmpfs(&env.path("full"), "2m") else {
        println!("NOTE: cannot mount a tmpfs here; the full-disk restore path is not exercised");
        return;
    };
    let target = fs.0.join("out");
    let out = env.r(&[
        std::ffi::OsStr::new("restore"),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("large.bin") && out.stderr.contains("No space left"),
        "the error should name the file and the cause\n{}",
        out.describe()
    );
    for f in files_under(&target) {
        assert_ne!(
            f.file_name().unwrap(),
            "large.bin",
            "a half-written large.bin was left behind"
        );
    }
}
