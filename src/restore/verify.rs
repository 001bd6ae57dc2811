//! `restore --verify`: reads a written file back and proves every chunk has the id the snapshot
//! records and every hole reads as zeros, so a bad disk or a concurrent writer is noticed.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::ContentItem;

/// Largest piece of a hole read at once.
const HOLE_BUFFER: usize = 1 << 20;

/// Checks that the file at `path` holds exactly `content`.
///
/// # Errors
/// `Other` naming the file and the offset of the first piece that differs, or the read error.
pub fn file_matches(key: &MasterKey, path: &Path, content: &[ContentItem]) -> Result<()> {
    let io = |e| Error::io(ErrorKind::Other, "cannot read back", path, e);
    let mut file = File::open(path).map_err(io)?;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    for item in content {
        let ok = match *item {
            ContentItem::Data { id, len } => {
                buf.resize(len as usize, 0);
                file.read_exact(&mut buf).map_err(io)?;
                key.blob_id(&buf) == id
            }
            ContentItem::Hole { len } => {
                let mut left = len;
                let mut zeros = true;
                while left > 0 && zeros {
                    let n = left.min(HOLE_BUFFER as u64) as usize;
                    buf.resize(n, 0);
                    file.read_exact(&mut buf).map_err(io)?;
                    zeros = buf.iter().all(|&b| b == 0);
                    left -= n as u64;
                }
                zeros
            }
        };
        if !ok {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "verify: {} differs from the snapshot in the {} bytes at offset {offset}",
                    path.display(),
                    item.len()
                ),
            ));
        }
        offset += item.len();
    }
    if file.read(&mut [0u8; 1]).map_err(io)? != 0 {
        return Err(Error::new(
            ErrorKind::Other,
            format!(
                "verify: {} is longer than the {offset} bytes of the snapshot",
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_chunk_hole_or_length_is_caught() {
        let key = MasterKey::from_bytes(&[3u8; 64]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let chunk = b"some chunk of data".to_vec();
        let content = [
            ContentItem::Data {
                id: key.blob_id(&chunk),
                len: chunk.len() as u32,
            },
            ContentItem::Hole { len: 4 },
        ];
        let good = [chunk.clone(), vec![0; 4]].concat();
        std::fs::write(&path, &good).unwrap();
        file_matches(&key, &path, &content).unwrap();

        let mut bad_chunk = good.clone();
        bad_chunk[0] ^= 1;
        std::fs::write(&path, &bad_chunk).unwrap();
        let err = file_matches(&key, &path, &content).unwrap_err();
        assert!(err.to_string().contains("at offset 0"), "{err}");

        let mut bad_hole = good.clone();
        bad_hole[chunk.len() + 2] = 9;
        std::fs::write(&path, &bad_hole).unwrap();
        let err = file_matches(&key, &path, &content).unwrap_err();
        assert!(
            err.to_string().contains(&format!("offset {}", chunk.len())),
            "{err}"
        );

        std::fs::write(&path, [good.as_slice(), b"!"].concat()).unwrap();
        assert!(file_matches(&key, &path, &content).is_err());
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(file_matches(&key, &path, &content).is_err());
    }
}
