//! `cairn key`: list, add, remove and re-password key files; rotate the data key; export and
//! import the recovery key.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use cairn::crypto::KdfParams;
use cairn::format::key::KeyMetadata;
use cairn::format::paper::RecoveryKey;
use cairn::ops::keys::{self, short};
use cairn::ops::prune::PruneOptions;
use cairn::ops::reencrypt;
use cairn::repo::key_files::{list_keys, KeyInfo};
use cairn::repo::lease;
use cairn::Error;

use super::{context, output, GlobalArgs};

pub const EXAMPLES: &str = "\
Examples:
  cairn key list
  cairn key add --label 'offsite admin'            # asks for the new password twice
  cairn key add --new-password-file /root/pw2 --label cron
  cairn key remove 1a2b3c4d
  cairn key passwd                                 # new password for the key you opened
  cairn key rotate --remove-other-keys             # new data key; other passwords stop working
  cairn key export --paper > recovery.txt          # print it, store it in a safe, delete the file
  cairn -r /srv/backup key import recovery.txt     # every password lost: a new one from the paper

Several passwords may open one repository; each is a key file under keys/. Removing the last
usable key is refused. The recovery key printed by `export --paper` opens the repository without
any password: whoever holds it can read every backup.";

#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List the key files: id, which one your password opened, KDF costs, who made it and when.
    #[command(
        after_help = "Examples:\n  cairn key list\n  cairn key list --json | jq '.[] | select(.current) | .id'"
    )]
    List,
    /// Add a password: a new key file wrapping the same repository keys.
    #[command(
        after_help = "Examples:\n  cairn key add --label 'offsite admin'\n  cairn key add --new-password-file /root/pw2 --label cron"
    )]
    Add(NewKeyArgs),
    /// Remove a key file (refused for the last usable one).
    #[command(
        after_help = "Example:\n  cairn key remove 1a2b3c4d      # an id prefix from `cairn key list`"
    )]
    Remove {
        /// Key id, or a unique prefix of it (see `cairn key list`).
        id: String,
    },
    /// Change the password of the key your password opened (new key file first, then the old one removed).
    #[command(
        after_help = "Examples:\n  cairn key passwd\n  CAIRN_PASSWORD_FILE=/root/old cairn key passwd --new-password-file /root/new"
    )]
    Passwd(NewKeyArgs),
    /// Make a new data key for new backups (a new epoch); only your password keeps working.
    #[command(after_help = "\
Examples:
  cairn key rotate                          # when yours is the only key file
  cairn key rotate --remove-other-keys      # removes every other key file
  cairn key add --label ops                 # then give the others new passwords
  cairn key export --paper > recovery.txt   # and print a new recovery key
  cairn key rotate --reencrypt              # also seal every existing object again
  cairn key rotate --reencrypt-only         # finish an interrupted --reencrypt, no new epoch

Objects written from now on are sealed with the new data key: someone who kept an old key file,
password or recovery key cannot read them. Existing backups stay as they are (readable with the
old keys, which every new key file keeps). `cairn prune` seals the blobs it repacks again under
the new key. Id key and chunker seed do not change, so new backups deduplicate against old ones.

--reencrypt then writes every object of an older epoch again under the new key, as a prune would
(it takes the prune lease; backups may run): packs are repacked and condemned (a later `cairn
prune` deletes them after its grace period), index files, snapshots and records are replaced.
Snapshots get new ids. An interruption loses nothing; `--reencrypt-only` finishes the job.")]
    Rotate {
        /// Remove every other key file (their passwords stop opening the repository).
        #[arg(long)]
        remove_other_keys: bool,
        /// After rotating, seal every object of an older epoch again under the new key.
        #[arg(long, conflicts_with = "reencrypt_only")]
        reencrypt: bool,
        /// Seal every object of an older epoch again under the newest key, without a new epoch.
        #[arg(long, conflicts_with = "remove_other_keys")]
        reencrypt_only: bool,
    },
    /// Print the recovery key: the repository keys as groups of characters to print and keep.
    #[command(
        after_help = "Example:\n  cairn key export --paper | lpr     # anyone holding the page can read every backup"
    )]
    Export {
        /// Printable text with a check character per group (the only form for now).
        #[arg(long)]
        paper: bool,
    },
    /// Give a repository a new password from its recovery key (when every password is lost).
    #[command(
        after_help = "Examples:\n  cairn -r /srv/backup key import recovery.txt\n  cairn -r /srv/backup key import - --new-password-file /root/pw < recovery.txt"
    )]
    Import {
        /// File holding the recovery key, or - for standard input.
        file: PathBuf,
        #[command(flatten)]
        new: NewKeyArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct NewKeyArgs {
    /// Read the new password from the first line of this file (else it is asked twice on the terminal).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// Free text stored with the key (readable by password holders only), e.g. who it is for.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &KeyArgs) -> Result<i32> {
    match &args.command {
        KeyCommand::List => list(global),
        KeyCommand::Add(new) => add(global, new),
        KeyCommand::Remove { id } => remove(global, id),
        KeyCommand::Passwd(new) => passwd(global, new),
        KeyCommand::Rotate {
            remove_other_keys,
            reencrypt,
            reencrypt_only,
        } => rotate(global, *remove_other_keys, *reencrypt, *reencrypt_only),
        KeyCommand::Export { paper } => export(global, *paper),
        KeyCommand::Import { file, new } => import(global, file, new),
    }
}

fn info_json(k: &KeyInfo) -> serde_json::Value {
    let meta = k.metadata.as_ref();
    serde_json::json!({
        "id": k.name,
        "short_id": short(&k.name),
        "current": k.current,
        "version": k.file.map(|f| f.0),
        "epoch": k.epoch,
        "kdf": k.file.map(|(_, p)| serde_json::json!({
            "algorithm": "argon2id",
            "memory_kib": p.memory_kib,
            "time": p.time,
            "parallelism": p.parallelism,
        })),
        "created": meta.map(|m| &m.created),
        "host": meta.map(|m| &m.host),
        "user": meta.map(|m| &m.user),
        "label": meta.and_then(|m| m.label.as_ref()),
        "usable": k.usable(),
        "problem": k.problem,
    })
}

fn list(global: &GlobalArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let keys = list_keys(&repo)?;
    if global.json {
        output::print_json(&keys.iter().map(info_json).collect::<Vec<_>>())?;
        return Ok(super::exit::OK);
    }
    outln!(
        "  {:<8}  {:<3}  {:<16}  {:<20}  {:<12}  {:<12}  label",
        "id",
        "ver",
        "kdf",
        "created",
        "host",
        "user"
    );
    for k in &keys {
        let kdf = k.file.map_or("-".to_string(), |(_, p)| {
            format!("{}M/{}t/{}p", p.memory_kib / 1024, p.time, p.parallelism)
        });
        let version = k.file.map_or("-".to_string(), |f| f.0.to_string());
        let m = k.metadata.as_ref();
        let field = |f: fn(&KeyMetadata) -> Option<&str>| m.and_then(f).unwrap_or("-").to_string();
        outln!(
            "{} {:<8}  {:<3}  {:<16}  {:<20}  {:<12}  {:<12}  {}",
            if k.current { '*' } else { ' ' },
            short(&k.name),
            version,
            kdf,
            field(|m| Some(&m.created)),
            field(|m| Some(&m.host)),
            field(|m| Some(&m.user)),
            field(|m| m.label.as_deref()),
        );
        if let Some(p) = &k.problem {
            outln!("    unusable: {p}");
        }
    }
    if !global.quiet {
        outln!(
            "{} key file(s); * marks the one your password opened; version 1 files carry no metadata",
            keys.len()
        );
    }
    Ok(super::exit::OK)
}

fn add(global: &GlobalArgs, new: &NewKeyArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let metadata = KeyMetadata::new(new.label.clone())?;
    let password = context::new_password(new.new_password_file.as_deref())?;
    let name = keys::add_key(&repo, &password, KdfParams::default(), &metadata)?;
    report(global, "added", &name, None)
}

fn remove(global: &GlobalArgs, id: &str) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let name = keys::find_key(&list_keys(&repo)?, id)?;
    let removed = keys::remove_key(&repo, &name)?;
    if global.json {
        output::print_json(&serde_json::json!({
            "removed": removed.name,
            "was_current": removed.was_current,
            "remaining": removed.remaining,
        }))?;
    } else if !global.quiet {
        errln!("removed key {}", short(&removed.name));
        if removed.was_current {
            errln!(
                "it was the key your password opened: that password no longer opens the repository; use the password of another key ({})",
                removed.remaining.iter().map(|n| short(n)).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(super::exit::OK)
}

fn passwd(global: &GlobalArgs, new: &NewKeyArgs) -> Result<i32> {
    let repo = context::open_repository(global)?;
    let password = context::new_password(new.new_password_file.as_deref())?;
    let (name, old) =
        keys::change_password(&repo, &password, KdfParams::default(), new.label.clone())?;
    report(global, "changed the password: new key", &name, Some(&old))
}

fn rotate(
    global: &GlobalArgs,
    remove_other_keys: bool,
    reencrypt: bool,
    reencrypt_only: bool,
) -> Result<i32> {
    let password = context::password(global, false)?;
    // The key hint names the file the password opens before the rotation; the rotation replaces it
    // with a file of the default parameters, which an opening tries unasked.
    let open = |key_hint: Option<&str>| -> Result<cairn::Repository> {
        let backend = context::repo_backend(global)?;
        Ok(cairn::Repository::open_hinted(
            backend,
            &password,
            &context::cache_root(global),
            key_hint,
        )?)
    };
    let first = open(global.key_hint.as_deref())?;
    // Every precondition before anything changes, the prune lease first: a run refused because a
    // prune or an earlier, killed run holds it must not leave a new epoch behind.
    let held = if reencrypt || reencrypt_only {
        Some(lease::acquire_exclusive(
            &first,
            PruneOptions::default().clock_skew,
        )?)
    } else {
        None
    };
    let done = if reencrypt_only {
        None
    } else {
        // The rotation takes a key derivation and a few writes, far less than a lease lasts, so
        // the lease is not refreshed meanwhile.
        let done = match keys::rotate(&first, &password, KdfParams::default(), remove_other_keys) {
            Ok(done) => done,
            Err(e) => {
                if let Some(held) = held {
                    let _ = held.release(&first);
                }
                return Err(e.into());
            }
        };
        if !global.json {
            report_rotation(global, &done);
        }
        Some(done)
    };
    let reencrypted = if let Some(held) = held {
        // After a rotation, opened again: the password now opens the key file of the new epoch.
        let repo = if done.is_some() { open(None)? } else { first };
        let repo = repo.into_indexed()?;
        let r = repo.repo();
        let done = held
            .hold_while(r, |held| {
                reencrypt::reencrypt(&repo, held, &PruneOptions::default())
            })
            .context("re-encryption stopped; what was done is valid: run `cairn key rotate --reencrypt-only` to finish")?;
        if !global.json && !global.quiet {
            errln!(
                "re-encrypted under epoch {}: {} pack(s) repacked ({} blobs) and condemned (a later `cairn prune` deletes them), {} index file(s), {} snapshot(s) (new ids), {} WAL, {} pending and {} verification record(s) written again",
                done.epoch,
                done.prune.repacked_packs,
                done.prune.repacked_blobs,
                done.index_files_replaced,
                done.snapshots.len(),
                done.wal_records,
                done.pending_records,
                done.verified_records
            );
        }
        Some(done)
    } else {
        None
    };
    if global.json {
        output::print_json(&serde_json::json!({
            "key": done.as_ref().map(|d| &d.key),
            "epoch": done.as_ref().map(|d| d.epoch).or(reencrypted.as_ref().map(|r| r.epoch)),
            "resumed": done.as_ref().map(|d| d.resumed),
            "removed_others": done.as_ref().map(|d| &d.removed_others),
            "removed_own": done.as_ref().map(|d| &d.removed_own),
            "reencrypted": reencrypted,
        }))?;
    }
    Ok(super::exit::OK)
}

fn report_rotation(global: &GlobalArgs, done: &keys::Rotation) {
    if !global.quiet {
        let shorts = |v: &[String]| v.iter().map(|n| short(n)).collect::<Vec<_>>().join(", ");
        if done.resumed {
            errln!(
                "finished an interrupted rotation: key {} is at epoch {}",
                short(&done.key),
                done.epoch
            );
        } else {
            errln!(
                "rotated: new backups are sealed with data-key epoch {}; your password opens key {}",
                done.epoch,
                short(&done.key)
            );
        }
        if !done.removed_others.is_empty() {
            errln!(
                "removed the other key files: {} (give those people new passwords with `cairn key add`)",
                shorts(&done.removed_others)
            );
        }
        errln!("print a new recovery key (`cairn key export --paper`): older ones cannot read new backups");
    }
}

fn report(global: &GlobalArgs, what: &str, name: &str, replaced: Option<&str>) -> Result<i32> {
    if global.json {
        output::print_json(&serde_json::json!({ "added": name, "removed": replaced }))?;
    } else if !global.quiet {
        match replaced {
            Some(old) => errln!("{what} {} replaces key {}", short(name), short(old)),
            None => errln!("{what} key {}", short(name)),
        }
    }
    Ok(super::exit::OK)
}

fn export(global: &GlobalArgs, paper: bool) -> Result<i32> {
    if !paper {
        return Err(Error::invalid_input(
            "give --paper: the printable recovery key is the only export form",
        )
        .into());
    }
    let repo = context::open_repository(global)?;
    let recovery = keys::recovery_key(&repo)?;
    if global.json {
        output::print_json(&serde_json::json!({
            "repository": repo.config().repo_id,
            "recovery_key": recovery.groups_text().as_str(),
        }))?;
    } else {
        let created = chrono::Utc::now().format("%Y-%m-%d").to_string();
        out!(
            "{}",
            recovery
                .to_text(&repo.backend().location(), &created)
                .as_str()
        );
    }
    Ok(super::exit::OK)
}

fn import(global: &GlobalArgs, file: &std::path::Path, new: &NewKeyArgs) -> Result<i32> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(cairn::format::paper::MAX_TEXT as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the recovery key from standard input")?;
    } else {
        *bytes = std::fs::read(file).map_err(|e| {
            Error::invalid_input(format!(
                "cannot read the recovery key file {}: {e}",
                file.display()
            ))
        })?;
    }
    // Non-UTF-8 bytes become U+FFFD, which the parser names as a wrong character in its group.
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    let recovery = RecoveryKey::parse(&text)?;
    let metadata = KeyMetadata::new(new.label.clone())?;
    let backend = context::repo_backend(global)?;
    let location = backend.location();
    // The key is checked against the repository before a password is asked, so a wrong page costs nothing.
    let repo = keys::open_with_recovery_key(backend, &recovery, &context::cache_root(global))?;
    let password = context::new_password(new.new_password_file.as_deref())?;
    let name = keys::add_key(&repo, &password, KdfParams::default(), &metadata)?;
    if global.json {
        output::print_json(&serde_json::json!({ "added": name, "removed": null }))?;
    } else if !global.quiet {
        errln!(
            "recovered {location}: added key {}; open the repository with the new password",
            short(&name)
        );
    }
    Ok(super::exit::OK)
}
