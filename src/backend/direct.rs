//! Writes a large new file past the page cache (O_DIRECT), so a pack costs the disk's time, not a
//! core's, and a backup does not push the server's working set out of memory.
//!
//! On the project's machine a buffered 32 MiB write took 85 ms of CPU in the kernel's copy into
//! fresh page-cache pages (0.38 GB/s: on a tree backup, two seconds of a core), and its fsync 12 ms;
//! the same write with O_DIRECT took 14 ms and its fsync 0.2 ms. Never a different result: where the
//! file system refuses O_DIRECT (tmpfs, some network file systems) or a write comes back short, the
//! rest goes through the page cache as before, and the caller syncs the file either way.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Alignment of buffer addresses, file offsets and lengths that O_DIRECT asks for (a page covers
/// every logical block size in use).
const ALIGN: usize = 4096;

/// Bytes copied into the aligned staging buffer per write: pack bytes are not page-aligned in memory.
const STAGE: usize = 4 << 20;

thread_local! {
    // One staging buffer per writing thread, kept: reallocating it would fault its pages every pack.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Creates (or truncates) `path` and writes `bytes` into it, whole blocks past the page cache where
/// the file system allows; the caller still syncs the file.
///
/// # Errors
/// When the file cannot be created or written.
pub fn create_and_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<File> {
    let direct = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(OFlag::O_DIRECT.bits())
        .open(path);
    write_opened(direct, path, bytes, mode)
}

/// [`create_and_write`] once the O_DIRECT open was tried: `direct` is its outcome.
fn write_opened(
    direct: io::Result<File>,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> io::Result<File> {
    let mut file = match direct {
        Ok(file) => file,
        // The file system does not do O_DIRECT: write as everybody else does.
        Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(path)?;
            file.write_all(bytes)?;
            return Ok(file);
        }
        Err(e) => return Err(e),
    };
    let written = write_whole_blocks(&mut file, bytes)?;
    if written < bytes.len() {
        // The tail is not a whole block (or the file system balked): through the page cache.
        let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
        fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_DIRECT))?;
        file.write_all(&bytes[written..])?;
    }
    Ok(file)
}

/// Writes the whole blocks of `bytes` through the aligned staging buffer; returns how many bytes went
/// out, a multiple of [`ALIGN`] (fewer than all whole blocks if the file system refused one).
fn write_whole_blocks(file: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let whole = bytes.len() / ALIGN * ALIGN;
    STAGING.with_borrow_mut(|staging| {
        if staging.len() < STAGE + ALIGN {
            *staging = vec![0; STAGE + ALIGN];
        }
        let start = staging.as_ptr().align_offset(ALIGN);
        let stage = &mut staging[start..start + STAGE];
        let mut written = 0;
        while written < whole {
            let piece = &bytes[written..whole.min(written + STAGE)];
            stage[..piece.len()].copy_from_slice(piece);
            match file.write(&stage[..piece.len()]) {
                Ok(n) if n > 0 && n % ALIGN == 0 => written += n,
                // A short write leaves the offset unaligned: the rest goes through the page cache.
                Ok(n) => return Ok(written + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => return Ok(written),
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn every_length_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0,
            1,
            4095,
            4096,
            4097,
            3 * 4096,
            STAGE - 1,
            STAGE,
            STAGE + 4096 + 17,
            2 * STAGE + 5,
        ] {
            let path = dir.path().join(format!("f{len}"));
            let bytes = pattern(len);
            let file = create_and_write(&path, &bytes, 0o600).unwrap();
            file.sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "length {len}");
        }
    }

    #[test]
    fn a_file_system_that_refuses_o_direct_gets_a_plain_write() {
        // tmpfs refuses O_DIRECT at open on older kernels (this machine's accepts it): EINVAL.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes = pattern(STAGE + 123);
        let refused = Err(io::Error::from_raw_os_error(Errno::EINVAL as i32));
        write_opened(refused, &path, &bytes, 0o600)
            .unwrap()
            .sync_all()
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // Any other failure to open is the caller's error, not a fallback.
        let denied = Err(io::Error::from_raw_os_error(Errno::EACCES as i32));
        let err = write_opened(denied, &dir.path().join("g"), &bytes, 0o600).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(Errno::EACCES as i32));
        assert!(!dir.path().join("g").exists());
    }

    /// A writer that takes `accept` whole blocks, then answers with `then`.
    struct Balking {
        written: Vec<u8>,
        accept: usize,
        then: fn(&[u8]) -> io::Result<usize>,
    }

    impl Write for Balking {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.accept == 0 {
                let n = (self.then)(buf)?;
                self.written.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            self.accept -= 1;
            self.written.extend_from_slice(&buf[..ALIGN]);
            Ok(ALIGN)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_refused_or_short_block_write_hands_the_rest_to_the_page_cache() {
        let bytes = pattern(5 * ALIGN + 10);
        let mut refusing = Balking {
            written: Vec::new(),
            accept: 2,
            then: |_| Err(io::Error::from_raw_os_error(Errno::EINVAL as i32)),
        };
        assert_eq!(
            write_whole_blocks(&mut refusing, &bytes).unwrap(),
            2 * ALIGN
        );
        assert_eq!(refusing.written, bytes[..2 * ALIGN]);

        let mut short = Balking {
            written: Vec::new(),
            accept: 1,
            then: |buf| Ok(buf.len().min(100)),
        };
        assert_eq!(write_whole_blocks(&mut short, &bytes).unwrap(), ALIGN + 100);
        assert_eq!(short.written, bytes[..ALIGN + 100]);

        let mut failing = Balking {
            written: Vec::new(),
            accept: 0,
            then: |_| Err(io::Error::other("disk on fire")),
        };
        assert!(write_whole_blocks(&mut failing, &bytes).is_err());
    }

    #[test]
    fn an_existing_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(3 * STAGE)).unwrap();
        let bytes = pattern(5000);
        create_and_write(&path, &bytes, 0o600)
            .unwrap()
            .sync_all()
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
