//! The end-to-end tests, one module per concern, linked into one test binary: every module runs the
//! real `cairn` binary or the library against real files and servers. One binary rather than one per
//! file, because each would link the whole of cairn and its storage clients (hundreds of megabytes
//! apiece, and a link step each). Run one concern with `cargo test --test integration MODULE::`.

mod common;

mod as_of;
mod backend_conformance;
mod bad_input;
mod bounded;
mod browse;
mod check_races;
mod cli_docs;
mod crash;
mod deep_tree;
mod deltas;
mod dry_runs;
mod dump_tar;
mod dumps;
mod exactness;
mod excludes;
mod fault_injection;
mod fleet;
mod forget_prune;
mod format_versions;
mod hardlinks;
mod hostile_repo;
mod interrupted_backup;
mod jobs;
mod key_rotation;
mod keys;
mod latest;
mod leases;
mod lost_pack;
mod model;
mod object_lock;
mod one_file_system;
mod pitr;
mod plan_run;
mod postgres;
mod prune_safety;
mod readme_quickstart;
mod remote_s3;
mod remote_servers;
mod repair;
mod restore_failures;
mod restore_progress;
mod secrets;
mod stdin_and_dedup;
mod tamper;
mod wal;
