//! The two checksums ZooKeeper's files use, from well-kept crates: Adler-32
//! (`java.util.zip.Adler32`, crate `adler2`) seals log entries and snapshots, CRC-32
//! (`java.util.zip.CRC32`, the zlib polynomial, crate `crc32fast`) makes node digests
//! (`zk-disk-format.md` §4.1, §6). The wrappers keep the call sites in Java's terms.

/// Streaming Adler-32.
#[derive(Debug, Clone, Default)]
pub struct Adler32(adler2::Adler32);

impl Adler32 {
    /// A fresh checksum.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.write_slice(data);
    }

    /// The checksum so far.
    pub fn value(&self) -> u32 {
        self.0.checksum()
    }
}

/// Adler-32 of `data` in one call.
pub fn adler32(data: &[u8]) -> u32 {
    adler2::adler32_slice(data)
}

/// Streaming CRC-32 (IEEE / zlib).
#[derive(Debug, Clone, Default)]
pub struct Crc32(crc32fast::Hasher);

impl Crc32 {
    /// A fresh CRC.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC so far.
    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xCBF4_3926);
    }

    #[test]
    fn adler_streaming_equals_one_shot_on_long_input() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut a = Adler32::new();
        for part in data.chunks(777) {
            a.update(part);
        }
        assert_eq!(a.value(), adler32(&data));
    }
}
