//! Streaming a file's content out of the repository one blob at a time, so memory stays bounded
//! by the largest chunk whatever the file's size.

use std::io::Write;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{ContentItem, Node};
use crate::id::BlobType;
use crate::repo::IndexedRepository;

/// Zeros written at once for holes.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Writes the content of the file `node` to `out` and returns the bytes written.
///
/// # Errors
/// `Corrupted` when a blob is missing or damaged or the sizes disagree; `Other` when `out` fails
/// (the caller may look at its own writer to tell a closed pipe from other failures).
pub fn write_content(repo: &IndexedRepository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let output =
        |e: std::io::Error| Error::new(ErrorKind::Other, format!("cannot write output: {e}"));
    // Checked before the first byte: a caller that announced `node.size` bytes (a tar header) must
    // never get more than that.
    let total = node
        .content
        .iter()
        .try_fold(0u64, |sum, item| sum.checked_add(item.len()));
    if total != Some(node.size) {
        return Err(Error::corrupted(format!(
            "the content items add up to {}, the entry says {} bytes",
            total.map_or("more than 2^64 bytes".to_string(), |t| format!("{t} bytes")),
            node.size
        )));
    }
    let mut written = 0u64;
    for item in &node.content {
        match *item {
            ContentItem::Data { id, len } => {
                let data = repo.read_blob(&id, BlobType::Data)?;
                if data.len() != len as usize {
                    return Err(Error::corrupted(format!(
                        "blob {id} has {} bytes, the tree says {len}",
                        data.len()
                    )));
                }
                out.write_all(&data).map_err(output)?;
            }
            ContentItem::Hole { len } => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(ZEROS.len() as u64) as usize;
                    out.write_all(&ZEROS[..n]).map_err(output)?;
                    left -= n as u64;
                }
            }
        }
        written += item.len();
    }
    Ok(written)
}
