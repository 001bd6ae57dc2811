//! Index rows partitioned by the first bits of their blob id into temporary files, so a cache that
//! reads many index files at once (a first open) inserts them in key order.
//!
//! Why: blob ids are uniform hashes, so rows inserted in the order index files list them land on a
//! random leaf of redb's tree each. Once the tree outgrows redb's page cache every row reads and
//! writes a page (8 µs a row at 10 M rows, most of it copying pages to and from the kernel).
//! Partitioned by id and sorted per partition, the rows go in ascending order: each leaf is
//! written while it is hot, once. A partition is read back whole, so their number is chosen to
//! keep one near [`PARTITION_BYTES`].

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

use super::EncodedLocation;

/// Bytes of rows a partition should hold at most, read back at once.
const PARTITION_BYTES: u64 = 32 << 20;
/// At most this many partitions (one open file each, under the usual limit of 1,024).
const MAX_PARTITIONS: usize = 256;
const BUFFER: usize = 64 << 10;

/// One row: a blob id and its encoded location.
pub(crate) type Row = ([u8; 32], EncodedLocation);

/// Bytes a row takes in a partition file, at most (a delta's).
pub(crate) const ROW_BYTES: u64 = 32 + 1 + 81;

/// The partition files being written.
pub(crate) struct Spill {
    parts: Vec<BufWriter<File>>,
    /// Right shift of an id's first two bytes that gives its partition.
    shift: u32,
}

impl Spill {
    /// A spill in `dir` for rows of about `expected_bytes`.
    ///
    /// # Errors
    /// When the temporary files cannot be created.
    pub(crate) fn new(dir: &Path, expected_bytes: u64) -> Result<Self> {
        let wanted = expected_bytes.div_ceil(PARTITION_BYTES).max(1) as usize;
        let count = wanted.next_power_of_two().min(MAX_PARTITIONS);
        let parts = (0..count)
            .map(|_| tempfile::tempfile_in(dir).map(|f| BufWriter::with_capacity(BUFFER, f)))
            .collect::<io::Result<_>>()
            .map_err(|e| spill_error(dir, &e))?;
        Ok(Spill {
            parts,
            shift: 16 - count.trailing_zeros(),
        })
    }

    /// Appends `rows` to their partitions.
    ///
    /// # Errors
    /// When a partition cannot be written.
    pub(crate) fn add(&mut self, rows: impl IntoIterator<Item = Row>) -> Result<()> {
        for (id, location) in rows {
            let part = (u32::from(u16::from_be_bytes([id[0], id[1]])) >> self.shift) as usize;
            let out = &mut self.parts[part];
            let bytes = location.as_slice();
            out.write_all(&id)
                .and_then(|()| out.write_all(&[bytes.len() as u8]))
                .and_then(|()| out.write_all(bytes))
                .map_err(|e| spill_error(Path::new("a temporary file"), &e))?;
        }
        Ok(())
    }

    /// Hands each partition's rows, sorted by id (rows of one id in the order they were added),
    /// to `insert`, in ascending order of ids; the files go with the spill.
    ///
    /// # Errors
    /// When a partition cannot be read back, or as `insert`.
    pub(crate) fn drain(self, mut insert: impl FnMut(Vec<Row>) -> Result<()>) -> Result<()> {
        for part in self.parts {
            let mut file = part
                .into_inner()
                .map_err(|e| spill_error(Path::new("a temporary file"), e.error()))?;
            let mut bytes = Vec::new();
            file.rewind()
                .and_then(|()| file.read_to_end(&mut bytes))
                .map_err(|e| spill_error(Path::new("a temporary file"), &e))?;
            let mut rows = parse(&bytes)?;
            drop(bytes);
            rows.sort_by_key(|row| row.0);
            insert(rows)?;
        }
        Ok(())
    }
}

/// The rows of one partition file, as [`Spill::add`] wrote them.
fn parse(mut bytes: &[u8]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let len = bytes.get(32).map_or(0, |&l| usize::from(l));
        if !matches!(len, 45 | 81) || bytes.len() < 33 + len {
            return Err(Error::new(
                ErrorKind::Other,
                "a temporary file of the index cache was cut or changed while it was read back; run the command again",
            ));
        }
        let id: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
        let mut location = EncodedLocation {
            bytes: [0; 81],
            len,
        };
        location.bytes[..len].copy_from_slice(&bytes[33..33 + len]);
        rows.push((id, location));
        bytes = &bytes[33 + len..];
    }
    Ok(rows)
}

fn spill_error(where_: &Path, e: &io::Error) -> Error {
    Error::new(
        ErrorKind::Other,
        format!(
            "cannot write the index rows being sorted into the cache ({}): {e}; free space in the cache directory or point --cache-dir elsewhere",
            where_.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: [u8; 32], len: usize, fill: u8) -> Row {
        let mut location = EncodedLocation {
            bytes: [0; 81],
            len,
        };
        location.bytes[..len].fill(fill);
        (id, location)
    }

    #[test]
    fn rows_come_back_in_id_order_across_partitions_keeping_the_order_of_one_id() {
        let dir = tempfile::tempdir().unwrap();
        // Four partitions: ids cut by their first two bits.
        let mut spill = Spill::new(dir.path(), 4 * PARTITION_BYTES).unwrap();
        assert_eq!(spill.parts.len(), 4);
        let ids: Vec<[u8; 32]> = (0..1000u32)
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect();
        let rows = || ids.iter().map(|id| row(*id, 45, 1));
        spill.add(rows().take(500)).unwrap();
        // The same id twice, with another location: both kept, first added first.
        spill.add([row(ids[7], 81, 2)]).unwrap();
        spill.add(rows().skip(500)).unwrap();
        let mut out = Vec::new();
        spill
            .drain(|rows| {
                out.extend(rows.into_iter().map(|(id, l)| (id, l.as_slice().to_vec())));
                Ok(())
            })
            .unwrap();
        assert_eq!(out.len(), 1001);
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        let seven: Vec<usize> = out
            .iter()
            .filter(|(id, _)| *id == ids[7])
            .map(|(_, l)| l.len())
            .collect();
        assert_eq!(seven, [45, 81]);
    }

    #[test]
    fn a_cut_partition_is_an_error_not_a_short_read() {
        let mut bytes = vec![0u8; 32];
        bytes.push(45);
        bytes.extend([0u8; 44]);
        assert!(parse(&bytes).is_err());
        bytes.push(0);
        assert_eq!(parse(&bytes).unwrap().len(), 1);
        bytes[32] = 50;
        assert!(parse(&bytes).is_err());
    }
}
