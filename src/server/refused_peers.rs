//! Refused peers, remembered so each is logged once a minute.
//!
//! A peer that `--allow-from` or `--allow-uid`/`--allow-gid` refuses and
//! that reconnects in a loop would otherwise fill the loop's shared
//! warning budget (ten lines a second, `warnings.rs`) and hide every other
//! client's warnings. So a refusal is logged when its peer (IP address,
//! or uid over a Unix socket) was not logged in the last minute; the
//! refusals in between are counted and the next line for that peer says
//! how many. The memory is bounded: at most [`RefusedPeers::CAPACITY`]
//! peers, entries past a minute dropped first, then the oldest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::peer_filter::PeerKey;

/// When each refused peer was last logged, and what was not logged since.
#[derive(Default)]
pub struct RefusedPeers {
    peers: HashMap<PeerKey, Seen>,
}

struct Seen {
    logged: Instant,
    suppressed: u64,
}

impl RefusedPeers {
    /// Most peers remembered at once.
    pub const CAPACITY: usize = 1024;
    /// A peer is logged at most once per this.
    pub const EVERY: Duration = Duration::from_secs(60);

    /// A refusal of `peer` at `now`: `Some(refusals not logged since its
    /// last line)` when this one is to be logged, `None` when it is not.
    pub fn note(&mut self, now: Instant, peer: PeerKey) -> Option<u64> {
        if let Some(seen) = self.peers.get_mut(&peer) {
            if now.saturating_duration_since(seen.logged) < Self::EVERY {
                seen.suppressed += 1;
                return None;
            }
            seen.logged = now;
            return Some(std::mem::take(&mut seen.suppressed));
        }
        self.make_room(now);
        let seen = Seen {
            logged: now,
            suppressed: 0,
        };
        self.peers.insert(peer, seen);
        Some(0)
    }

    /// How many peers are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// At capacity: drops the entries past a minute, else the oldest one.
    /// (A scan of at most [`Self::CAPACITY`] entries, only when full.)
    fn make_room(&mut self, now: Instant) {
        if self.peers.len() < Self::CAPACITY {
            return;
        }
        self.peers
            .retain(|_, s| now.saturating_duration_since(s.logged) < Self::EVERY);
        if self.peers.len() < Self::CAPACITY {
            return;
        }
        let oldest = self.peers.iter().min_by_key(|(_, s)| s.logged);
        if let Some(key) = oldest.map(|(k, _)| *k) {
            self.peers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(n: u32) -> PeerKey {
        PeerKey::Ip(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn a_peer_is_logged_once_a_minute_with_the_count_it_skipped() {
        let mut r = RefusedPeers::default();
        let t = Instant::now();
        assert_eq!(r.note(t, ip(1)), Some(0));
        for s in 1..20 {
            assert_eq!(r.note(t + Duration::from_secs(s), ip(1)), None);
        }
        // Another peer has its own minute.
        assert_eq!(r.note(t + Duration::from_secs(5), PeerKey::Uid(7)), Some(0));
        assert_eq!(r.note(t + Duration::from_secs(59), ip(1)), None);
        assert_eq!(r.note(t + Duration::from_secs(60), ip(1)), Some(20));
        assert_eq!(r.note(t + Duration::from_secs(61), ip(1)), None);
        assert_eq!(r.note(t + Duration::from_secs(200), ip(1)), Some(1));
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_goes_first() {
        let mut r = RefusedPeers::default();
        let t = Instant::now();
        let n = RefusedPeers::CAPACITY as u32;
        for i in 0..n {
            assert_eq!(
                r.note(t + Duration::from_millis(u64::from(i)), ip(i)),
                Some(0)
            );
        }
        assert_eq!(r.len(), RefusedPeers::CAPACITY);
        // Full, all within the minute: the oldest (peer 0) makes room.
        let later = t + Duration::from_secs(2);
        assert_eq!(r.note(later, ip(n)), Some(0));
        assert_eq!(r.len(), RefusedPeers::CAPACITY);
        assert_eq!(r.note(later, ip(0)), Some(0), "peer 0 was forgotten");
        assert_eq!(r.note(later, ip(2)), None, "peer 2 is still known");
    }

    #[test]
    fn entries_past_a_minute_are_dropped_when_room_is_needed() {
        let mut r = RefusedPeers::default();
        let t = Instant::now();
        for i in 0..RefusedPeers::CAPACITY as u32 {
            r.note(t, ip(i));
        }
        r.note(t + RefusedPeers::EVERY, ip(u32::MAX));
        assert_eq!(r.len(), 1);
    }
}
