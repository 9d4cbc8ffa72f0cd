//! How session passwords are derived ([`PasswordScheme`]).
//!
//! zkit's own scheme keys them with the ensemble's [`Secret`](super::Secret). A member of a
//! mixed ensemble (real ZooKeeper servers and zkit servers together) must instead derive them
//! exactly as ZooKeeper does, or a session created on one kind of server could not move to the
//! other: ZooKeeper seeds `java.util.Random` with the session id XOR `0xB3415C00` and takes
//! its first 16 bytes. That password is a function of the session id alone, so anyone who can
//! see a session id (`cons`, `dump`, logs) can take the session over; this scheme is opt-in
//! (`zkit.sessionPasswords=zookeeper`) and meant for mixed ensembles only.

/// Which derivation a server uses for session passwords.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordScheme {
    /// A keyed hash of the session id under the ensemble's secret (the default).
    #[default]
    Keyed,
    /// ZooKeeper's own: guessable from the session id; for mixed ensembles only.
    ZooKeeper,
}

/// The constant ZooKeeper XORs into the seed (`ZooKeeperServer`'s "super secret").
const ZOOKEEPER_SEED_XOR: i64 = 0xB341_5C00;

/// `java.util.Random`'s linear congruential generator: 48 bits of state.
struct JavaRandom(u64);

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        JavaRandom((seed as u64 ^ Self::MULTIPLIER) & Self::MASK)
    }

    fn next_int(&mut self) -> i32 {
        self.0 = (self.0.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.0 >> 16) as i32
    }

    /// `nextBytes`: each int gives up to four bytes, lowest first.
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(4) {
            let mut r = self.next_int();
            for b in chunk {
                *b = r as u8;
                r >>= 8;
            }
        }
    }
}

/// The password ZooKeeper gives session `id`.
pub fn zookeeper_password(id: i64) -> [u8; 16] {
    let mut p = [0u8; 16];
    JavaRandom::new(id ^ ZOOKEEPER_SEED_XOR).fill(&mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn passwords_match_what_the_jvm_derives() {
        // Computed with OpenJDK 17: new Random(id ^ 0xB3415C00L).nextBytes(new byte[16]).
        for (id, want) in [
            (0i64, "f22acd4a97e69d6d20a49bb638eadb38"),
            (1, "054cc74a37327db215e702e20c73f005"),
            (0x0100_017a_2b3c_4d5e, "424d8573d4c822d6c3492913f67fac5e"),
            (-1, "20f62cb5648dc2d771471c8a2486a9ee"),
        ] {
            assert_eq!(hex(&zookeeper_password(id)), want, "id {id:x}");
        }
    }
}
