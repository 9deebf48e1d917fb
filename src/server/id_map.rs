//! A connection's requests by FastCGI request id. Most connections carry
//! one request at a time (nginx, lighttpd, Apache never multiplex), so
//! [`Requests`] keeps the first in place and only multiplexed ones in a
//! map: an idle kept-alive connection then holds no table on the heap.
//! The map hashes an id by a multiply instead of SipHash: requests are
//! looked up several times per request on the hot path, and ids come from
//! the front server, which cannot make them collide in a way that costs
//! more than one connection's own time (at most `--max-reqs-per-conn`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Requests of one connection by id.
pub type IdMap<V> = HashMap<u16, V, BuildHasherDefault<IdHasher>>;

/// Requests by id: one in place, the rest in an [`IdMap`].
pub struct Requests<V> {
    one: Option<(u16, V)>,
    more: IdMap<V>,
}

impl<V> Default for Requests<V> {
    fn default() -> Self {
        Requests {
            one: None,
            more: IdMap::default(),
        }
    }
}

impl<V> Requests<V> {
    pub fn len(&self) -> usize {
        usize::from(self.one.is_some()) + self.more.len()
    }

    pub fn contains_key(&self, id: &u16) -> bool {
        self.get(id).is_some()
    }

    pub fn get(&self, id: &u16) -> Option<&V> {
        match &self.one {
            Some((k, v)) if k == id => Some(v),
            _ => self.more.get(id),
        }
    }

    pub fn get_mut(&mut self, id: &u16) -> Option<&mut V> {
        match &mut self.one {
            Some((k, v)) if k == id => Some(v),
            _ => self.more.get_mut(id),
        }
    }

    /// Adds or replaces the request `id`; returns the one it replaced.
    pub fn insert(&mut self, id: u16, value: V) -> Option<V> {
        match &mut self.one {
            Some((k, v)) if *k == id => Some(std::mem::replace(v, value)),
            Some(_) => self.more.insert(id, value),
            None if self.more.contains_key(&id) => self.more.insert(id, value),
            None => {
                self.one = Some((id, value));
                None
            }
        }
    }

    pub fn remove(&mut self, id: &u16) -> Option<V> {
        match &self.one {
            Some((k, _)) if k == id => self.one.take().map(|(_, v)| v),
            _ => self.more.remove(id),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u16, &V)> {
        let one = self.one.as_ref().map(|(k, v)| (k, v));
        one.into_iter().chain(self.more.iter())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Takes every request out.
    pub fn drain(&mut self) -> impl Iterator<Item = (u16, V)> + '_ {
        self.one.take().into_iter().chain(self.more.drain())
    }
}

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
    fn requests_behave_as_a_map_with_the_first_in_place() {
        let mut r = Requests::default();
        assert_eq!(r.insert(1, "a"), None);
        assert_eq!(r.insert(2, "b"), None);
        assert_eq!(r.insert(1, "A"), Some("a"));
        assert_eq!((r.len(), r.get(&1), r.get(&2)), (2, Some(&"A"), Some(&"b")));
        assert_eq!(r.remove(&1), Some("A"));
        // The place is free again; id 2 must not be shadowed by a new 2.
        assert_eq!(r.insert(2, "B"), Some("b"));
        assert_eq!(r.len(), 1);
        assert_eq!(r.insert(3, "c"), None);
        *r.get_mut(&3).unwrap() = "C";
        let mut all: Vec<_> = r.drain().collect();
        all.sort();
        assert_eq!(all, [(2, "B"), (3, "C")]);
        assert_eq!((r.len(), r.contains_key(&2)), (0, false));
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
