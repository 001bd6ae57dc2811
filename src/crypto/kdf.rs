//! Argon2id password stretching with parameters that are checked before any work is done.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Most memory a key file nobody named may make opening spend: 2 GiB (RFC 9106's first
/// recommended option, 2 GiB and 1 pass, still opens).
pub const UNNAMED_MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// Most work ([`KdfParams::cost`], KiB-passes) a key file nobody named may make opening spend: 4
/// GiB-passes (1 GiB and 4 passes, 21 times the default).
pub const UNNAMED_MAX_COST: u64 = 4 * 1024 * 1024;
/// Most work, summed over the key files tried, one opening spends on files nobody named: 8
/// GiB-passes (42 key files of the default cost, 1024 of the minimum, two at the ceiling).
pub const OPEN_BUDGET: u64 = 8 * 1024 * 1024;

/// Argon2id cost parameters as stored in a key file (FORMAT.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub time: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes). The lanes are computed in
    /// parallel, so opening a repository costs half the time on two cores (0.1 s to 0.05 s here) for
    /// the same memory and passes; key files written before keep their single lane (FORMAT.md §4).
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            time: 3,
            parallelism: 4,
        }
    }
}

impl KdfParams {
    /// The cheapest parameters a key file may hold (FORMAT.md §4): for tests, never for real keys.
    pub const MINIMUM: KdfParams = KdfParams {
        memory_kib: 8192,
        time: 1,
        parallelism: 1,
    };

    /// The work of one derivation in KiB-passes: memory times passes. Lanes split a pass among
    /// threads, they do not reduce it, so they do not count.
    pub fn cost(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.time)
    }

    /// Whether opening a repository runs these parameters on a key file nobody named (FORMAT.md §4,
    /// "What opening costs"): at most [`UNNAMED_MAX_MEMORY_KIB`] and [`UNNAMED_MAX_COST`]. A key file
    /// above them opens only when named with `--key-hint`.
    pub fn runs_unnamed(&self) -> bool {
        self.memory_kib <= UNNAMED_MAX_MEMORY_KIB && self.cost() <= UNNAMED_MAX_COST
    }

    /// Refuses parameters a hostile repository could use to exhaust memory or time.
    ///
    /// # Errors
    /// When a parameter is outside the bounds of FORMAT.md §4.
    pub fn validate(&self) -> Result<()> {
        let min = Self::MINIMUM;
        let ok = (min.memory_kib..=4 * 1024 * 1024).contains(&self.memory_kib)
            && (min.time..=64).contains(&self.time)
            && (min.parallelism..=64).contains(&self.parallelism)
            && self.memory_kib >= 8 * self.parallelism;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupted(format!(
                "key file asks for unreasonable Argon2id parameters (memory {} KiB, time {}, parallelism {}); refusing to run them",
                self.memory_kib, self.time, self.parallelism
            )))
        }
    }
}

/// The 32-byte key that wraps the master key, from a password.
///
/// # Errors
/// When the parameters are out of bounds.
pub fn derive_wrapping_key(
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>> {
    params.validate()?;
    let argon_params = Params::new(params.memory_kib, params.time, params.parallelism, Some(32))
        .map_err(|e| Error::corrupted(format!("key file Argon2id parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, out.as_mut())
        .map_err(|e| Error::corrupted(format!("key derivation failed: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_absurd_parameters() {
        let huge = KdfParams {
            memory_kib: u32::MAX,
            time: 3,
            parallelism: 1,
        };
        assert!(derive_wrapping_key(b"pw", &[0; 32], huge).is_err());
        let slow = KdfParams {
            time: 1000,
            ..KdfParams::MINIMUM
        };
        assert!(slow.validate().is_err());
        assert!(KdfParams::default().validate().is_ok());
    }

    /// Known answers from the reference implementation (argon2-cffi's libargon2), for one lane and
    /// for four computed in parallel: every key file ever written must keep opening.
    #[test]
    fn derives_what_the_reference_implementation_derives() {
        let salt = b"0123456789abcdef0123456789abcdef";
        for (parallelism, expected) in [
            (
                1,
                "aa03a0113acce0225332af6829060a3a4eab24c6c9c8886b9ee8274a290b6c21",
            ),
            (
                4,
                "9a05845e9da5a2cd020cdaf65f9cfd1bab0fe818e3dd2312660e00859f97b006",
            ),
        ] {
            let params = KdfParams {
                memory_kib: 8192,
                time: 2,
                parallelism,
            };
            let key = derive_wrapping_key(b"correct horse", salt, params).unwrap();
            assert_eq!(hex::encode(*key), expected, "{parallelism} lanes");
        }
    }
}
