//! The printable recovery key (FORMAT.md §4, Recovery key): the repository's keys as text a person
//! can type back, with a check character per group that names the group holding a typo.
//!
//! The text is hostile input (typed by hand, pasted, possibly mangled): parsing bounds everything
//! and never panics. It never touches storage.

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::key::{encode_keyring, read_keyring};
use crate::format::wire::Reader;

/// Version of the binary payload.
pub const VERSION: u8 = 1;
/// Crockford base32: no I, L, O, U, so nothing reads as another symbol.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Data characters per group; one check character follows them.
pub const GROUP_DATA: usize = 4;
/// Groups printed per line.
pub const GROUPS_PER_LINE: usize = 6;
/// Length of the repository id prefix the key carries.
pub const REPO_PREFIX_LEN: usize = 8;
const CHECK_LEN: usize = 4;
const CHECK_CONTEXT: &[u8] = b"cairn recovery key v1";
/// Largest text accepted (a keyring of 1024 epochs needs about 75 KB of groups).
pub const MAX_TEXT: usize = 256 * 1024;

/// The keys of one repository, detached from any password.
pub struct RecoveryKey {
    /// First bytes of the repository id (config `repo_id`), to tell repositories apart.
    pub repo_prefix: [u8; REPO_PREFIX_LEN],
    /// The keys.
    pub key: MasterKey,
}

impl RecoveryKey {
    /// The recovery key of the repository `repo_id` (64 hex digits) holding `key`.
    ///
    /// # Errors
    /// `Corrupted` when `repo_id` is not hexadecimal.
    pub fn new(repo_id: &str, key: &MasterKey) -> Result<Self> {
        let mut repo_prefix = [0u8; REPO_PREFIX_LEN];
        hex::decode_to_slice(
            repo_id.get(..REPO_PREFIX_LEN * 2).unwrap_or(""),
            &mut repo_prefix,
        )
        .map_err(|_| Error::corrupted("config: repo_id is not hexadecimal"))?;
        Ok(RecoveryKey {
            repo_prefix,
            key: key.clone(),
        })
    }

    /// Whether this key was exported from the repository whose config holds `repo_id`.
    pub fn belongs_to(&self, repo_id: &str) -> bool {
        repo_id
            .get(..REPO_PREFIX_LEN * 2)
            .is_some_and(|p| p.eq_ignore_ascii_case(&hex::encode(self.repo_prefix)))
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(vec![VERSION]);
        p.extend_from_slice(&self.repo_prefix);
        p.extend_from_slice(&encode_keyring(&self.key));
        let check = checksum(&p);
        p.extend_from_slice(&check);
        p
    }

    /// The groups only, one line per [`GROUPS_PER_LINE`] groups.
    pub fn groups_text(&self) -> Zeroizing<String> {
        let payload = self.payload();
        let chars = Zeroizing::new(to_base32(&payload));
        let mut out = Zeroizing::new(String::new());
        for (i, data) in chars.chunks(GROUP_DATA).enumerate() {
            if i > 0 {
                out.push(if i % GROUPS_PER_LINE == 0 { '\n' } else { ' ' });
            }
            for &c in data {
                out.push(c as char);
            }
            out.push(check_char(i, data) as char);
        }
        out.push('\n');
        out
    }

    /// The printable page: a `#` header saying what this is and how to use it, then the groups.
    pub fn to_text(&self, location: &str, created: &str) -> Zeroizing<String> {
        let prefix = hex::encode(self.repo_prefix);
        let mut out = Zeroizing::new(format!(
            "# cairn recovery key, repository {prefix} ({location}), made {created}\n\
             #\n\
             # These groups ARE the repository's keys. Anyone who has them can read every backup\n\
             # of this repository without a password: keep this page like cash (a safe, not email).\n\
             # Passwords can be added, changed or removed; this key keeps working across them.\n\
             #\n\
             # If every password is lost, type the groups into a file (case, spaces and line breaks\n\
             # do not matter; lines starting with # are ignored) and run\n\
             #     cairn -r REPOSITORY key import FILE\n\
             # which asks for a new password. The last character of each group is a check\n\
             # character: a typo is reported with the number of the group that holds it.\n\
             #\n"
        ));
        out.push_str(&self.groups_text());
        out
    }

    /// Parses the text of [`RecoveryKey::to_text`] (or just its groups).
    ///
    /// # Errors
    /// `InvalidInput` naming the group (and line) that holds a typo, a character that is not part
    /// of the alphabet, a missing or extra group, or a whole that does not check out.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_TEXT {
            return Err(Error::invalid_input(format!(
                "the recovery key text is {} bytes, more than a recovery key ({MAX_TEXT} bytes at most): is it the right file?",
                text.len()
            )));
        }
        let mut chars = Zeroizing::new(Vec::with_capacity(text.len()));
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            for c in line.chars() {
                if c.is_whitespace() || c == '-' {
                    continue;
                }
                let group = chars.len() / (GROUP_DATA + 1) + 1;
                chars.push(normalize(c).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "recovery key: {c:?} in group {group} ({}) is not a recovery key character (0-9 and A-Z without I, L, O, U); check that group",
                        where_is(group)
                    ))
                })?);
            }
        }
        if chars.is_empty() {
            return Err(Error::invalid_input(
                "recovery key: the text holds no groups (only blank or # lines)",
            ));
        }
        let mut data = Zeroizing::new(Vec::with_capacity(chars.len()));
        for (i, group) in chars.chunks(GROUP_DATA + 1).enumerate() {
            if group.len() < 2 {
                return Err(Error::invalid_input(format!(
                    "recovery key: group {} ({}) is incomplete: a character is missing in one of the groups, or the last group was cut",
                    i + 1,
                    where_is(i + 1)
                )));
            }
            let (body, check) = group.split_at(group.len() - 1);
            if check_char(i, body) != check[0] {
                return Err(Error::invalid_input(format!(
                    "recovery key: group {} ({}) \"{}\" is wrong: a typo there, or a character missing or extra before it",
                    i + 1,
                    where_is(i + 1),
                    String::from_utf8_lossy(group)
                )));
            }
            data.extend_from_slice(body);
        }
        let payload = Zeroizing::new(from_base32(&data));
        Self::from_payload(&payload)
    }

    fn from_payload(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "recovery key");
        let whole = |e: Error| {
            Error::invalid_input(format!(
                "recovery key: {e}; every group is well formed, so a group or line is missing, extra or out of order"
            ))
        };
        let version = r.u8().map_err(whole)?;
        if version != VERSION {
            return Err(Error::invalid_input(format!(
                "recovery key: version {version} is not supported by this cairn (it reads version {VERSION}); upgrade cairn, or check the first group"
            )));
        }
        let repo_prefix = r.array::<REPO_PREFIX_LEN>().map_err(whole)?;
        let key = read_keyring(&mut r).map_err(|e| match e.kind() {
            crate::ErrorKind::UnsupportedVersion => e,
            _ => whole(e),
        })?;
        let end = r.position();
        let check = r.array::<CHECK_LEN>().map_err(whole)?;
        // Base32 pads the last group with zero bits: up to 2 zero bytes may follow.
        let rest = r.take(r.remaining()).map_err(whole)?;
        if rest.len() > 2 || rest.iter().any(|&b| b != 0) || checksum(&payload[..end]) != check {
            return Err(Error::invalid_input(
                "recovery key: every group is well formed but the whole does not check out: a group or line is missing, extra or out of order",
            ));
        }
        Ok(RecoveryKey { repo_prefix, key })
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(CHECK_CONTEXT).update(bytes);
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECK_LEN]);
    out
}

fn where_is(group: usize) -> String {
    let line = (group - 1) / GROUPS_PER_LINE + 1;
    let pos = (group - 1) % GROUPS_PER_LINE + 1;
    format!("line {line}, group {pos} of that line")
}

/// Uppercase alphabet symbol for a typed character; Crockford's look-alikes are accepted.
fn normalize(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    u8::try_from(c).ok().filter(|b| ALPHABET.contains(b))
}

fn value(symbol: u8) -> u32 {
    ALPHABET.iter().position(|&a| a == symbol).unwrap_or(0) as u32
}

/// Luhn mod 32 over the group's symbols, seeded with the group's number: any single wrong
/// character changes it (each position's addend is a bijection of 0..32), and most swaps of two
/// neighbours or of two groups do too.
fn check_char(group: usize, data: &[u8]) -> u8 {
    let mut sum = (group % 32) as u32;
    for (i, &c) in data.iter().enumerate() {
        let factor = if i % 2 == 0 { 2 } else { 1 };
        let p = factor * value(c);
        sum += p / 32 + p % 32;
    }
    ALPHABET[((32 - sum % 32) % 32) as usize]
}

/// Base32 symbols of `bytes`, zero bits appended up to a whole number of groups.
fn to_base32(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5 + GROUP_DATA);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize]);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize]);
    }
    while out.len() % GROUP_DATA != 0 {
        out.push(ALPHABET[0]);
    }
    acc.zeroize();
    out
}

fn from_base32(symbols: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(symbols.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &s in symbols {
        acc = (acc << 5) | value(s);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    acc.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (String, RecoveryKey) {
        let key = MasterKey::generate().unwrap();
        let repo_id = hex::encode(crate::crypto::random_array::<32>().unwrap());
        let rk = RecoveryKey::new(&repo_id, &key).unwrap();
        (repo_id, rk)
    }

    #[test]
    fn a_rotated_keyring_round_trips_whole() {
        let key = MasterKey::generate()
            .unwrap()
            .with_new_epoch()
            .unwrap()
            .with_new_epoch()
            .unwrap();
        let repo_id = hex::encode(crate::crypto::random_array::<32>().unwrap());
        let rk = RecoveryKey::new(&repo_id, &key).unwrap();
        let back = RecoveryKey::parse(&rk.to_text("/srv/backup", "2026-11-21")).unwrap();
        assert_eq!(back.key.epochs(), vec![0, 1, 2]);
        assert!(back.key == key);
    }

    #[test]
    fn round_trip_tolerates_case_spaces_and_breaks() {
        let (repo_id, rk) = sample();
        let text = rk.to_text("/srv/backup", "2026-11-21");
        let back = RecoveryKey::parse(&text).unwrap();
        assert!(back.key == rk.key);
        assert!(back.belongs_to(&repo_id));
        assert!(!back.belongs_to(&"0".repeat(64)));
        let groups = rk.groups_text();
        let mangled: String = groups
            .to_lowercase()
            .replace(' ', "\n  - ")
            .replace('0', "o")
            .replace('1', "l");
        let back = RecoveryKey::parse(&mangled).unwrap();
        assert!(back.key == rk.key);
    }

    #[test]
    fn every_single_typo_names_its_group() {
        let (_, rk) = sample();
        let groups = rk.groups_text();
        let symbols: Vec<(usize, char)> = groups
            .char_indices()
            .filter(|(_, c)| !c.is_whitespace())
            .collect();
        for (n, &(at, c)) in symbols.iter().enumerate() {
            let group = n / (GROUP_DATA + 1) + 1;
            for &other in ALPHABET.iter() {
                let other = other as char;
                if other == c {
                    continue;
                }
                let mut typo = groups.to_string();
                typo.replace_range(at..at + 1, &other.to_string());
                let err = RecoveryKey::parse(&typo).err().unwrap().to_string();
                assert!(
                    err.contains(&format!("group {group} (")),
                    "typo {c}->{other} at symbol {n}: {err}"
                );
            }
        }
    }

    #[test]
    fn missing_swapped_and_foreign_input_is_refused() {
        let (_, rk) = sample();
        let groups = rk.groups_text();
        let lines: Vec<&str> = groups.lines().collect();
        let dropped = lines[1..].join("\n");
        assert!(RecoveryKey::parse(&dropped).is_err());
        let mut swapped = lines.clone();
        swapped.swap(0, 1);
        assert!(RecoveryKey::parse(&swapped.join("\n")).is_err());
        let short = &groups[..groups.len() - 3];
        assert!(RecoveryKey::parse(short).is_err());
        assert!(RecoveryKey::parse("# only comments\n\n").is_err());
        assert!(RecoveryKey::parse("hello world!").is_err());
        assert!(RecoveryKey::parse(&"A".repeat(MAX_TEXT + 1)).is_err());
    }
}
