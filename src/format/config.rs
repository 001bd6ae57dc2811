//! The repository config (FORMAT.md §5): chunker and packing parameters, sealed under the master key.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};
use crate::format::envelope::{self, EnvelopeKind};

/// The envelope of config (magic, version, seal AAD, size limit).
pub const ENVELOPE: EnvelopeKind = EnvelopeKind {
    magic: b"CAIRNCFG",
    aad: b"cairn config v1",
    what: "config",
    max_len: 1 << 20,
};

/// Repository-wide parameters fixed at `init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Random repository id (hex), names the cache directory.
    pub repo_id: String,
    /// FastCDC minimum chunk size.
    pub chunker_min: u32,
    /// FastCDC average chunk size.
    pub chunker_avg: u32,
    /// FastCDC maximum chunk size.
    pub chunker_max: u32,
    /// FastCDC sizes (min, avg, max) for streams: standard input and dump commands. Absent in
    /// configs written by cairn 0.1, which chunk streams like files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_chunker: Option<[u32; 3]>,
    /// Secret gear-table seed.
    pub chunker_seed: u64,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// zstd level for new blobs.
    pub zstd_level: i32,
    /// zstd level for new blobs of streams (standard input, dump commands). Absent in configs
    /// written before it existed, whose streams use `zstd_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_zstd_level: Option<i32>,
}

impl Config {
    /// The largest pack this repository's writers make ([`crate::format::pack::max_pack_len`] of
    /// its pack size): readers of whole packs refuse a larger one before reading it.
    pub fn max_pack_len(&self) -> u64 {
        crate::format::pack::max_pack_len(self.pack_size)
    }

    /// A new config with random id and seed and the default parameters.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn generate() -> Result<Self> {
        Ok(Config {
            repo_id: hex::encode(crypto::random_array::<32>()?),
            chunker_min: 512 * 1024,
            chunker_avg: 1024 * 1024,
            chunker_max: 8 * 1024 * 1024,
            // 16/64/256 KiB: a day-to-day database dump stores about a fifth of what
            // 512K/1M/8M stores (FORMAT.md §5 has the measurement).
            stream_chunker: Some([16 * 1024, 64 * 1024, 256 * 1024]),
            chunker_seed: u64::from_le_bytes(crypto::random_array::<8>()?),
            pack_size: 32 * 1024 * 1024,
            zstd_level: 2,
            // Level 1 compresses a SQL dump within 1% of level 3 at 1.4 times the speed
            // (FORMAT.md §5 has the measurement); dumps are most of what streams carry.
            stream_zstd_level: Some(1),
        })
    }

    /// Checks the bounds of FORMAT.md §5 (the chunker would misbehave outside them).
    ///
    /// # Errors
    /// When a parameter is out of bounds.
    pub fn validate(&self) -> Result<()> {
        let files = (self.chunker_min, self.chunker_avg, self.chunker_max);
        for (what, (min, avg, max)) in [
            ("chunker", files),
            ("stream chunker", self.stream_chunker_sizes()),
        ] {
            let ok = (64..=1 << 20).contains(&min)
                && (256..=4 << 20).contains(&avg)
                && (1024..=16 << 20).contains(&max)
                && min <= avg
                && avg <= max
                && min % 2 == 0
                && avg % 2 == 0
                && max % 2 == 0;
            if !ok {
                return Err(Error::corrupted(format!(
                    "config: {what} sizes {min}/{avg}/{max} are out of bounds"
                )));
            }
        }
        if !(1 << 20..=1 << 30).contains(&self.pack_size) {
            return Err(Error::corrupted(format!(
                "config: pack size {} is out of bounds",
                self.pack_size
            )));
        }
        for (what, level) in [
            ("zstd level", self.zstd_level),
            ("stream zstd level", self.zstd_level_for_streams()),
        ] {
            if !(-7..=22).contains(&level) {
                return Err(Error::corrupted(format!(
                    "config: {what} {level} is out of bounds"
                )));
            }
        }
        if self.repo_id.len() != 64 || hex::decode(&self.repo_id).is_err() {
            return Err(Error::corrupted(
                "config: repository id is not 64 hex characters",
            ));
        }
        Ok(())
    }

    /// FastCDC sizes (min, avg, max) for streams; the file sizes when the config has none.
    pub fn stream_chunker_sizes(&self) -> (u32, u32, u32) {
        match self.stream_chunker {
            Some([min, avg, max]) => (min, avg, max),
            None => (self.chunker_min, self.chunker_avg, self.chunker_max),
        }
    }

    /// The zstd level for stream blobs; the file level when the config has none.
    pub fn zstd_level_for_streams(&self) -> i32 {
        self.stream_zstd_level.unwrap_or(self.zstd_level)
    }

    /// The sealed config file.
    ///
    /// # Errors
    /// When randomness is unavailable.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::invalid_input(e.to_string()))?;
        envelope::seal(key, &ENVELOPE, &body)
    }

    /// Opens and validates a config file.
    ///
    /// # Errors
    /// When the file is damaged, of an unknown version, or holds out-of-bounds values.
    pub fn decode(key: &MasterKey, bytes: &[u8]) -> Result<Self> {
        let (_, body) = envelope::open(key, &ENVELOPE, bytes)?;
        let config: Config =
            serde_json::from_slice(&body).map_err(|e| Error::corrupted(format!("config: {e}")))?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let key = MasterKey::generate().unwrap();
        let config = Config::generate().unwrap();
        let bytes = config.encode(&key).unwrap();
        assert_eq!(Config::decode(&key, &bytes).unwrap(), config);
        let mut bad = config.clone();
        bad.chunker_max = 100 << 20;
        let bytes = bad.encode(&key).unwrap();
        assert!(Config::decode(&key, &bytes).is_err());
        let mut bad_stream = config.clone();
        bad_stream.stream_chunker = Some([1 << 20, 64 << 10, 256 << 10]);
        let bytes = bad_stream.encode(&key).unwrap();
        let err = Config::decode(&key, &bytes).unwrap_err().to_string();
        assert!(err.contains("stream chunker sizes"), "{err}");
    }

    #[test]
    fn configs_without_stream_sizes_chunk_streams_like_files() {
        let key = MasterKey::generate().unwrap();
        let mut config = Config::generate().unwrap();
        assert_eq!(
            config.stream_chunker_sizes(),
            (16 << 10, 64 << 10, 256 << 10)
        );
        config.stream_chunker = None;
        let body = serde_json::to_string(&config).unwrap();
        assert!(!body.contains("stream_chunker"), "{body}");
        let decoded = Config::decode(&key, &config.encode(&key).unwrap()).unwrap();
        assert_eq!(
            decoded.stream_chunker_sizes(),
            (512 << 10, 1 << 20, 8 << 20)
        );
    }

    #[test]
    fn configs_without_a_stream_level_compress_streams_at_the_file_level() {
        let key = MasterKey::generate().unwrap();
        let mut config = Config::generate().unwrap();
        assert_eq!(config.zstd_level_for_streams(), 1);
        config.stream_zstd_level = None;
        let body = serde_json::to_string(&config).unwrap();
        assert!(!body.contains("stream_zstd_level"), "{body}");
        let decoded = Config::decode(&key, &config.encode(&key).unwrap()).unwrap();
        assert_eq!(decoded.zstd_level_for_streams(), decoded.zstd_level);
        config.stream_zstd_level = Some(23);
        let err = Config::decode(&key, &config.encode(&key).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("stream zstd level 23"), "{err}");
    }
}
