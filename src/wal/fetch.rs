//! `wal fetch`: writes an archived WAL file where PostgreSQL's `restore_command` asks for it, and
//! fetches the segments recovery will ask for next.

use std::fs;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{WalFile, WalKind, WalName};
use crate::id::BlobType;
use crate::repo::IndexedRepository;

use super::Catalog;

/// The archived file `name`, `None` when the repository does not hold it.
///
/// # Errors
/// `Corrupted` when it cannot be told: a WAL record is damaged (it may hold the file), or two
/// records hold different bytes under this name. Recovery must stop there rather than take
/// "not archived" for the end of WAL.
pub fn find<'c>(catalog: &'c Catalog, name: &WalName) -> Result<Option<&'c WalFile>> {
    if catalog.conflicts().contains(&name) {
        return Err(Error::corrupted(format!(
            "{name} is archived twice with different bytes (two clusters archiving into one \
             repository?); cairn cannot tell which one recovery needs"
        )));
    }
    match catalog.file(name) {
        Some(file) => Ok(Some(file)),
        None if name.kind() == WalKind::Segment => {
            if let Some(later) = later_segment(catalog, name) {
                return Err(Error::corrupted(format!(
                    "WAL segment {name} is missing from the archive while a later one of its timeline ({later}) is archived: \
                     this gap stops recovery here (taking it for the end of WAL would promote and lose everything after it)"
                )));
            }
            not_found(catalog, name)
        }
        None => not_found(catalog, name),
    }
}

/// An archived segment of `name`'s timeline after it, if any.
fn later_segment<'c>(catalog: &'c Catalog, name: &WalName) -> Option<&'c WalName> {
    catalog.files().map(|(n, _, _)| n).find(|n| {
        n.kind() == WalKind::Segment
            && n.timeline() == name.timeline()
            && n.as_str() > name.as_str()
    })
}

fn not_found<'c>(catalog: &'c Catalog, name: &WalName) -> Result<Option<&'c WalFile>> {
    {
        match catalog.damaged().first() {
            Some((record, e)) => Err(Error::corrupted(format!(
                "{name} is in no readable WAL record, and WAL record {record} is damaged ({e}): \
                 it may have held it"
            ))),
            None => Ok(None),
        }
    }
}

/// Writes `file` to `dest` (a temporary beside it, synced and renamed) and returns its size.
/// Its chunks are read in parallel and checked against their ids, and their lengths against the
/// record's.
///
/// # Errors
/// `Corrupted` when a chunk is missing or damaged; `Other` when `dest` cannot be written.
pub fn write_file(repo: &IndexedRepository, file: &WalFile, dest: &Path) -> Result<u64> {
    let content = file.content();
    let chunks: Vec<Vec<u8>> = content
        .par_iter()
        .map(|item| match item {
            crate::format::tree::ContentItem::Data { id, len } => {
                let data = repo
                    .read_blob(id, BlobType::Data)
                    .map_err(|e| e.context(format!("WAL file {}", file.name)))?;
                if data.len() != *len as usize {
                    return Err(Error::corrupted(format!(
                        "WAL file {}: chunk {id} has {} bytes, the record says {len}",
                        file.name,
                        data.len()
                    )));
                }
                Ok(data)
            }
            crate::format::tree::ContentItem::Hole { .. } => Ok(Vec::new()),
        })
        .collect::<Result<_>>()?;
    let io = |what: &str, p: &Path, e| Error::io(ErrorKind::Other, what, p, e);
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-wal-")
        .tempfile_in(dir)
        .map_err(|e| io("cannot create a temporary file in", dir, e))?;
    for chunk in &chunks {
        tmp.write_all(chunk)
            .map_err(|e| io("cannot write", tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| io("cannot write", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| io("cannot rename a temporary file to", dest, e.error))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(file.size)
}

/// The segments recovery asks for after `name`: the next `count` of its timeline, as far as they
/// are archived. Empty unless `name` is a segment.
pub fn next_segments<'c>(catalog: &'c Catalog, name: &WalName, count: usize) -> Vec<&'c WalFile> {
    let Some(file) = catalog.file(name) else {
        return Vec::new();
    };
    if name.kind() != WalKind::Segment || !file.size.is_power_of_two() {
        return Vec::new();
    }
    let Some(number) = name.segment_number(file.size) else {
        return Vec::new();
    };
    (1..=count as u64)
        .map_while(|k| number.checked_add(k))
        .map(|n| WalName::segment(name.timeline(), n, file.size))
        .map_while(|next| catalog.file(&next))
        .collect()
}

/// Fetches the `count` segments after `name` into `spool`, in parallel, for recovery's next
/// calls. Best effort: a segment that fails here is fetched again when recovery asks for it.
pub fn prefetch(
    repo: &IndexedRepository,
    catalog: &Catalog,
    name: &WalName,
    count: usize,
    spool: &super::Spool,
) {
    let waiting: Vec<&WalFile> = next_segments(catalog, name, count)
        .into_iter()
        .filter(|f| !spool.fetched_path(&f.wal_name()).exists())
        .collect();
    let Some(dir) = spool.fetched_path(name).parent().map(Path::to_path_buf) else {
        return;
    };
    if waiting.is_empty() || crate::index::cache_file::create_dir(&dir).is_err() {
        return;
    }
    // In order: recovery asks for the next one first (each is read in parallel inside).
    for f in waiting {
        let _ = write_file(repo, f, &spool.fetched_path(&f.wal_name()));
    }
}
