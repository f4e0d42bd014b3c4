//! A compact binary form for the local files fnhost keeps beside its JSON
//! (the stat cache, a spare folder's manifest): little-endian numbers,
//! length-prefixed strings, a magic at the start and a 128-bit XXH3 of the
//! rest at the end, so that a torn or damaged file is refused, never
//! trusted. (A checksum, not a signature: whoever may write these files
//! may write the store too. XXH3 reads a megabyte in tens of microseconds,
//! where sha256 takes more than half a millisecond, on every deployment.)

use xxhash_rust::xxh3::xxh3_128;

/// The seal's length.
const SEAL: usize = 16;

/// Writes a sealed document.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    /// A document starting with `magic`, with room for `capacity` bytes.
    pub(crate) fn new(magic: &[u8; 8], capacity: usize) -> Writer {
        let mut out = Vec::with_capacity(capacity + 8 + SEAL);
        out.extend_from_slice(magic);
        Writer(out)
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// A string (or any bytes) with its length before it.
    pub(crate) fn str(&mut self, s: &[u8]) {
        self.bytes(&(s.len() as u32).to_le_bytes());
        self.bytes(s);
    }

    /// The document, sealed with its checksum.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let sum = xxh3_128(&self.0);
        self.0.extend_from_slice(&sum.to_le_bytes());
        self.0
    }
}

/// Reads a sealed document.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The document's body after `magic`, when its seal and magic hold.
    pub(crate) fn open(data: &'a [u8], magic: &[u8; 8]) -> Option<Reader<'a>> {
        let body_len = data.len().checked_sub(SEAL)?;
        let (body, sum) = data.split_at(body_len);
        if xxh3_128(body).to_le_bytes()[..] != sum[..] {
            return None;
        }
        let mut r = Reader(body);
        (r.take(8)? == magic).then_some(r)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub(crate) fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.arr()?))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.arr()?))
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.arr()?))
    }

    /// A length-prefixed UTF-8 string, where it lies in the document.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// A length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self) -> Option<String> {
        self.str().map(str::to_string)
    }

    /// Whether everything was read.
    pub(crate) fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_documents_round_trip_and_refuse_damage() {
        let mut w = Writer::new(b"testdoc1", 0);
        w.str(b"hello");
        w.bytes(&7u64.to_le_bytes());
        let data = w.finish();
        let mut r = Reader::open(&data, b"testdoc1").unwrap();
        assert_eq!(r.string().as_deref(), Some("hello"));
        assert_eq!(r.u64(), Some(7));
        assert!(r.is_done());
        assert!(Reader::open(&data, b"otherdoc").is_none(), "wrong magic");
        for i in [0, 9, data.len() - 1] {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert!(
                Reader::open(&bad, b"testdoc1").is_none(),
                "byte {i} flipped"
            );
        }
        assert!(Reader::open(&data[..data.len() - 1], b"testdoc1").is_none());
    }
}
