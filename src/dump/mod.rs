//! Streaming snapshot subtrees out as archives for other tools (tar).

pub mod tar;
