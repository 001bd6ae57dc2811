//! Packs: the writer that fills pack files with sealed blobs, and the reader that locates and opens them.

mod reader;
mod writer;

pub use reader::{parse_pack, parse_pack_header, read_pack_header, read_pack_prefix, PackReader};
pub use writer::{ClosedPack, FinishedPack, PackWriter};
