//! Tar headers as POSIX.1-2001 (pax) archives: a ustar header per entry, preceded by a pax
//! extended header whenever a value does not fit ustar (long names and link targets, sizes of
//! 8 GiB and more, large ids, long owner names), is finer than ustar (sub-second or negative
//! mtimes), or has no ustar field at all (extended attributes, as `SCHILY.xattr.NAME`).
//!
//! Only headers are built here; the caller streams contents and padding.

use crate::format::tree::Timestamp;

/// Tar's unit of storage.
pub const BLOCK: usize = 512;

/// Ustar field offsets and widths (POSIX.1-1988 "ustar" header).
mod field {
    pub const NAME: (usize, usize) = (0, 100);
    pub const MODE: (usize, usize) = (100, 8);
    pub const UID: (usize, usize) = (108, 8);
    pub const GID: (usize, usize) = (116, 8);
    pub const SIZE: (usize, usize) = (124, 12);
    pub const MTIME: (usize, usize) = (136, 12);
    pub const CHECKSUM: (usize, usize) = (148, 8);
    pub const TYPEFLAG: usize = 156;
    pub const LINKNAME: (usize, usize) = (157, 100);
    pub const MAGIC: (usize, usize) = (257, 8);
    pub const UNAME: (usize, usize) = (265, 32);
    pub const GNAME: (usize, usize) = (297, 32);
    pub const DEVMAJOR: (usize, usize) = (329, 8);
    pub const DEVMINOR: (usize, usize) = (337, 8);
    pub const PREFIX: (usize, usize) = (345, 155);
}

/// `ustar\0` then version `00`.
const MAGIC: &[u8; 8] = b"ustar\x0000";

/// Entry types (ustar typeflag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    /// `0`
    File,
    /// `1`: a hard link to an earlier member.
    HardLink,
    /// `2`
    Symlink,
    /// `3`
    CharDevice,
    /// `4`
    BlockDevice,
    /// `5`
    Dir,
    /// `6`
    Fifo,
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::CharDevice => b'3',
            EntryType::BlockDevice => b'4',
            EntryType::Dir => b'5',
            EntryType::Fifo => b'6',
        }
    }
}

/// Everything a header says about one member.
#[derive(Clone, Debug, Default)]
pub struct Member<'a> {
    /// Path inside the archive (directories end with `/`).
    pub name: &'a [u8],
    /// Target of a symlink or hard link.
    pub link: &'a [u8],
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name (empty when unknown).
    pub user: &'a [u8],
    /// Group name (empty when unknown).
    pub group: &'a [u8],
    /// Bytes of content that follow the header.
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Device numbers (devices only).
    pub dev_major: u64,
    /// Device numbers (devices only).
    pub dev_minor: u64,
    /// Extended attributes.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// The header blocks for `member` of type `kind`: a pax extended header when needed, then the
/// ustar header. Always a multiple of [`BLOCK`] bytes.
pub fn header(member: &Member<'_>, kind: EntryType) -> Vec<u8> {
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut ustar = [0u8; BLOCK];

    let (prefix, name) = match split_name(member.name) {
        Some(parts) => parts,
        None => {
            records.push((b"path".to_vec(), member.name.to_vec()));
            (&b""[..], truncate(member.name, field::NAME.1))
        }
    };
    put(&mut ustar, field::NAME, name);
    put(&mut ustar, field::PREFIX, prefix);
    if member.link.len() > field::LINKNAME.1 {
        records.push((b"linkpath".to_vec(), member.link.to_vec()));
    }
    put(
        &mut ustar,
        field::LINKNAME,
        truncate(member.link, field::LINKNAME.1),
    );

    numeric(&mut ustar, field::MODE, u64::from(member.mode & 0o7777));
    for (key, value, at) in [
        ("uid", member.uid, field::UID),
        ("gid", member.gid, field::GID),
    ] {
        if !numeric(&mut ustar, at, u64::from(value)) {
            records.push((key.into(), value.to_string().into_bytes()));
        }
    }
    if !numeric(&mut ustar, field::SIZE, member.size) {
        records.push((b"size".to_vec(), member.size.to_string().into_bytes()));
    }
    let t = member.mtime;
    if t.secs < 0 || t.nanos != 0 || !numeric(&mut ustar, field::MTIME, t.secs as u64) {
        records.push((b"mtime".to_vec(), pax_time(t).into_bytes()));
    }
    for (key, value, at) in [
        ("uname", member.user, field::UNAME),
        ("gname", member.group, field::GNAME),
    ] {
        if value.len() > at.1 {
            records.push((key.into(), value.to_vec()));
        }
        put(&mut ustar, at, truncate(value, at.1));
    }
    if matches!(kind, EntryType::CharDevice | EntryType::BlockDevice) {
        numeric(&mut ustar, field::DEVMAJOR, member.dev_major);
        numeric(&mut ustar, field::DEVMINOR, member.dev_minor);
    }
    for (name, value) in member.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.push((key, value.clone()));
    }
    ustar[field::TYPEFLAG] = kind.flag();
    put(&mut ustar, field::MAGIC, MAGIC);
    checksum(&mut ustar);

    let mut out = Vec::with_capacity(3 * BLOCK);
    if !records.is_empty() {
        let binary = records.iter().any(|(k, v)| {
            matches!(&k[..], b"path" | b"linkpath" | b"uname" | b"gname")
                && std::str::from_utf8(v).is_err()
        });
        if binary {
            // Readers would otherwise try to convert these values from UTF-8.
            records.insert(0, (b"hdrcharset".to_vec(), b"BINARY".to_vec()));
        }
        let body = pax_records(&records);
        let mut pax_name = b"PaxHeaders/".to_vec();
        let base = member
            .name
            .rsplit(|&b| b == b'/')
            .find(|part| !part.is_empty())
            .unwrap_or(b"entry");
        pax_name.extend_from_slice(truncate(base, field::NAME.1 - pax_name.len()));
        let mut pax = [0u8; BLOCK];
        put(&mut pax, field::NAME, &pax_name);
        numeric(&mut pax, field::MODE, 0o644);
        numeric(&mut pax, field::UID, 0);
        numeric(&mut pax, field::GID, 0);
        numeric(&mut pax, field::SIZE, body.len() as u64);
        numeric(&mut pax, field::MTIME, t.secs.max(0) as u64);
        pax[field::TYPEFLAG] = b'x';
        put(&mut pax, field::MAGIC, MAGIC);
        checksum(&mut pax);
        out.extend_from_slice(&pax);
        out.extend_from_slice(&body);
        out.resize(out.len() + padding(body.len() as u64), 0);
    }
    out.extend_from_slice(&ustar);
    out
}

/// Zero bytes that complete `len` bytes of content to whole blocks.
pub fn padding(len: u64) -> usize {
    (BLOCK - (len % BLOCK as u64) as usize) % BLOCK
}

/// The end of an archive: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// `prefix` and `name` fields for a path that fits ustar, split at a `/`.
fn split_name(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= field::NAME.1 {
        return Some((b"", path));
    }
    // The prefix takes as much as it can; the separator itself is in neither field.
    let limit = path.len().min(field::PREFIX.1 + 1);
    (1..limit).rev().find_map(|i| {
        let (prefix, rest) = (&path[..i], &path[i + 1..]);
        (path[i] == b'/' && !rest.is_empty() && rest.len() <= field::NAME.1)
            .then_some((prefix, rest))
    })
}

fn truncate(bytes: &[u8], len: usize) -> &[u8] {
    &bytes[..bytes.len().min(len)]
}

fn put(block: &mut [u8; BLOCK], (at, len): (usize, usize), value: &[u8]) {
    let value = truncate(value, len);
    block[at..at + value.len()].copy_from_slice(value);
}

/// Writes `value` as zero-padded octal with a NUL; false (and writes zero) when it does not fit.
fn numeric(block: &mut [u8; BLOCK], (at, len): (usize, usize), value: u64) -> bool {
    let digits = len - 1;
    let text = format!("{value:0digits$o}");
    let fits = text.len() == digits;
    let text = if fits { text } else { "0".repeat(digits) };
    block[at..at + digits].copy_from_slice(text.as_bytes());
    block[at + digits] = 0;
    fits
}

fn checksum(block: &mut [u8; BLOCK]) {
    let (at, len) = field::CHECKSUM;
    block[at..at + len].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[at..at + len].copy_from_slice(text.as_bytes());
}

/// Seconds with nanoseconds as a decimal, e.g. `1700000000.000000001` or `-1.500000000`.
fn pax_time(t: Timestamp) -> String {
    if t.secs < 0 && t.nanos > 0 {
        format!("-{}.{:09}", -(t.secs + 1), 1_000_000_000 - t.nanos)
    } else {
        format!("{}.{:09}", t.secs, t.nanos)
    }
}

/// `"<len> <key>=<value>\n"` records, where `<len>` counts the whole record including itself.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = 1 + key.len() + 1 + value.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_octal(field: &[u8]) -> u64 {
        let text: String = field
            .iter()
            .take_while(|&&b| b != 0 && b != b' ')
            .map(|&b| b as char)
            .collect();
        u64::from_str_radix(&text, 8).unwrap()
    }

    #[test]
    fn short_member_is_one_ustar_block_with_a_valid_checksum() {
        let m = Member {
            name: b"etc/passwd",
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            user: b"alice",
            group: b"users",
            size: 1234,
            mtime: Timestamp {
                secs: 1_700_000_000,
                nanos: 0,
            },
            ..Default::default()
        };
        let h = header(&m, EntryType::File);
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[..10], b"etc/passwd");
        assert_eq!(parse_octal(&h[100..108]), 0o4755);
        assert_eq!(parse_octal(&h[124..136]), 1234);
        assert_eq!(&h[257..265], b"ustar\x0000");
        let stored = parse_octal(&h[148..156]);
        let mut copy = h.clone();
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| b as u64).sum::<u64>());
    }

    #[test]
    fn long_names_split_or_go_to_pax() {
        let dir = "d".repeat(90);
        let name = format!("{dir}/{}", "f".repeat(90));
        assert_eq!(
            split_name(name.as_bytes()),
            Some((dir.as_bytes(), "f".repeat(90).as_bytes()))
        );
        let too_long = "x".repeat(300);
        assert_eq!(split_name(too_long.as_bytes()), None);
        let m = Member {
            name: too_long.as_bytes(),
            ..Default::default()
        };
        let h = header(&m, EntryType::File);
        assert_eq!(h.len(), 3 * BLOCK, "pax header, its records, ustar header");
        assert_eq!(h[156], b'x');
        let body = String::from_utf8_lossy(&h[BLOCK..2 * BLOCK]);
        assert!(
            body.starts_with(&format!("310 path={too_long}\n")),
            "{body}"
        );
    }

    #[test]
    fn record_lengths_count_themselves() {
        for value_len in [0usize, 1, 90, 91, 92, 93, 995, 996, 997, 998, 5000] {
            let body = pax_records(&[(b"path".to_vec(), vec![b'a'; value_len])]);
            let text = String::from_utf8(body.clone()).unwrap();
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, body.len(), "value of {value_len} bytes");
        }
    }

    #[test]
    fn fine_times_sizes_and_xattrs_go_to_pax() {
        assert_eq!(pax_time(Timestamp { secs: 5, nanos: 7 }), "5.000000007");
        assert_eq!(
            pax_time(Timestamp {
                secs: -2,
                nanos: 500_000_000
            }),
            "-1.500000000"
        );
        let xattrs = vec![(b"user.k".to_vec(), b"v\0w".to_vec())];
        let m = Member {
            name: b"f",
            size: 10 << 30,
            mtime: Timestamp { secs: 1, nanos: 2 },
            xattrs: &xattrs,
            ..Default::default()
        };
        let h = header(&m, EntryType::File);
        let body = &h[BLOCK..2 * BLOCK];
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("size=10737418240\n"), "{text}");
        assert!(text.contains("mtime=1.000000002\n"), "{text}");
        assert!(text.contains("SCHILY.xattr.user.k=v\0w\n"), "{text}");
    }
}
