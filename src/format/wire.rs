//! Bounded little-endian readers and writers shared by every binary decoder: a read past the end is an error, never a panic.

use crate::error::{Error, Result};

/// Appends little-endian fields to a byte vector.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// A u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// A u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// An i64.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Bytes preceded by a u8 length; longer input is cut to 255 bytes.
    pub fn bytes8(&mut self, b: &[u8]) -> &mut Self {
        let b = &b[..b.len().min(u8::MAX as usize)];
        self.u8(b.len() as u8).bytes(b)
    }

    /// Bytes preceded by a u16 length (callers guarantee the bound).
    pub fn bytes16(&mut self, b: &[u8]) -> &mut Self {
        debug_assert!(b.len() <= u16::MAX as usize);
        self.u16(b.len() as u16).bytes(b)
    }

    /// Bytes preceded by a u32 length (callers guarantee the bound).
    pub fn bytes32(&mut self, b: &[u8]) -> &mut Self {
        debug_assert!(b.len() <= u32::MAX as usize);
        self.u32(b.len() as u32).bytes(b)
    }
}

/// Reads little-endian fields from a slice; every read checks the remaining length.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the object in error messages.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// An error naming the object and the offset.
    pub fn error(&self, problem: impl std::fmt::Display) -> Error {
        Error::corrupted(format!("{} at byte {}: {problem}", self.what, self.pos))
    }

    /// Exactly `n` raw bytes.
    ///
    /// # Errors
    /// When fewer than `n` bytes remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "needs {n} more bytes, only {} remain (truncated?)",
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A fixed-size array.
    ///
    /// # Errors
    /// When too few bytes remain.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    ///
    /// # Errors
    /// When no byte remains.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A u16.
    ///
    /// # Errors
    /// When too few bytes remain.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A u32.
    ///
    /// # Errors
    /// When too few bytes remain.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A u64.
    ///
    /// # Errors
    /// When too few bytes remain.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// An i64.
    ///
    /// # Errors
    /// When too few bytes remain.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Bytes after a u8 length.
    ///
    /// # Errors
    /// When the length runs past the end.
    pub fn bytes8(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// Bytes after a u16 length, at most `max`.
    ///
    /// # Errors
    /// When the length exceeds `max` or runs past the end.
    pub fn bytes16(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.bounded(n, max)
    }

    /// Bytes after a u32 length, at most `max`.
    ///
    /// # Errors
    /// When the length exceeds `max` or runs past the end.
    pub fn bytes32(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.bounded(n, max)
    }

    fn bounded(&mut self, n: usize, max: usize) -> Result<&'a [u8]> {
        if n > max {
            return Err(self.error(format!("length {n} exceeds the limit {max}")));
        }
        self.take(n)
    }

    /// A count of items each at least `min_item` bytes long, checked against what remains.
    ///
    /// # Errors
    /// When the count cannot fit in the remaining bytes.
    pub fn count(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(self.error(format!(
                "count {n} cannot fit in the {} remaining bytes",
                self.remaining()
            )));
        }
        Ok(n)
    }

    /// Fails unless every byte was consumed.
    ///
    /// # Errors
    /// When bytes remain.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} unexpected trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Checks the 8-byte magic and the version at the start of an object; returns the version.
///
/// # Errors
/// When the magic differs (`what` is not such an object) or the version is not in `supported`.
pub fn read_header(r: &mut Reader<'_>, magic: &[u8; 8], supported: &[u16]) -> Result<u16> {
    let found = r.take(8).map_err(|_| {
        r.error(format!(
            "too short to be a {}",
            String::from_utf8_lossy(magic)
        ))
    })?;
    if found != magic {
        return Err(r.error(format!(
            "wrong magic (expected {:?})",
            String::from_utf8_lossy(magic)
        )));
    }
    let version = r.u16()?;
    if !supported.contains(&version) {
        return Err(Error::new(
            crate::error::ErrorKind::UnsupportedVersion,
            format!(
                "{}: format version {version} is not supported by this cairn (it reads versions {supported:?}); upgrade cairn",
                r.what
            ),
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written() {
        let mut w = Writer::new();
        w.u8(1)
            .u16(2)
            .u32(3)
            .u64(4)
            .i64(-5)
            .bytes8(b"ab")
            .bytes16(b"cd")
            .bytes32(b"ef");
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes, "test");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(r.u64().unwrap(), 4);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes8().unwrap(), b"ab");
        assert_eq!(r.bytes16(10).unwrap(), b"cd");
        assert_eq!(r.bytes32(10).unwrap(), b"ef");
        r.finish().unwrap();
    }

    #[test]
    fn refuses_overlong_and_truncated() {
        let mut w = Writer::new();
        w.bytes32(&[0; 20]);
        let bytes = w.into_bytes();
        assert!(Reader::new(&bytes, "t").bytes32(10).is_err());
        assert!(Reader::new(&bytes[..10], "t").bytes32(100).is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], "t");
        assert!(r.count(1).is_err());
    }
}
