//! PostgreSQL physical backups (FORMAT.md §16): base backups through the backup API (`pg backup`)
//! and point-in-time restores from a base backup and the archived WAL (`pg restore`).

pub mod backup;
pub mod restore;
pub mod server;
pub mod session;

pub use backup::{base_backup, PgBackupOptions};
pub use restore::{PitrOptions, RecoveryTarget};
