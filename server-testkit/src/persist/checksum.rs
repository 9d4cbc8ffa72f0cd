//! The checksum that seals ZooKeeper's log entries and snapshots: Adler-32
//! (`java.util.zip.Adler32`, from the well-kept crate `adler2`). The wrapper keeps the call
//! sites in Java's terms. (Node digests use CRC-32: see the core's tree digest.)

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
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
