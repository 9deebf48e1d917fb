//! A map keyed by FastCGI request id, with a hash of a multiply instead of
//! SipHash: a connection's requests are looked up several times per
//! request on the hot path, and ids come from the front server, which
//! cannot make them collide in a way that costs more than one connection's
//! own time (they are at most `--max-reqs-per-conn` entries).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Requests of one connection by id.
pub type IdMap<V> = HashMap<u16, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one integer: the high bits, which hashbrown uses
/// for its control bytes, depend on every bit of the id.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_finds_its_own_entry() {
        let mut map = IdMap::default();
        for id in (0..=u16::MAX).step_by(7) {
            map.insert(id, u32::from(id) * 2);
        }
        for id in (0..=u16::MAX).step_by(7) {
            assert_eq!(map.get(&id), Some(&(u32::from(id) * 2)));
        }
        assert_eq!(map.get(&1), None);
    }

    #[test]
    fn neighbouring_ids_spread_over_the_high_bits() {
        let top = |id: u16| {
            let mut h = IdHasher::default();
            h.write_u16(id);
            h.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (1..=64).map(top).collect();
        assert!(distinct.len() > 32, "{}", distinct.len());
    }
}
