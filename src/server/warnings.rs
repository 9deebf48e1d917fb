//! The loop's warnings: a line about a misbehaving client, or about code
//! that blocked the loop. They share one rate limit, so a flood of bad
//! clients cannot flood the log or slow the loop that writes it, and the
//! first line after a quiet spell says how many were dropped.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// The rate-limited warnings of the loop.
#[derive(Default)]
pub struct Warnings {
    limit: RateLimit,
}

impl Warnings {
    /// Logs one line about a misbehaving client, at most a few a second.
    pub fn client(&mut self, now: Instant, peer: &dyn Display, what: &dyn Display) {
        if let Some(suppressed) = self.limit.allow(now) {
            if suppressed > 0 {
                log::warn!("{suppressed} more client errors not logged");
            }
            log::warn!("client {peer}: {what}");
        }
    }

    /// Logs that code on the loop thread blocked it (rate-limited, as
    /// client warnings are).
    pub fn slow_on_loop(&mut self, now: Instant, what: &dyn Display) {
        if let Some(suppressed) = self.limit.allow(now) {
            if suppressed > 0 {
                log::warn!("{suppressed} more warnings not logged");
            }
            log::warn!("{what}: async code must never block the loop");
        }
    }
}

/// At most [`RateLimit::PER_SECOND`] lines a second; counts the rest.
#[derive(Default)]
struct RateLimit {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    const PER_SECOND: u32 = 10;

    /// Some(lines suppressed since the last allowed one) when allowed.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1))
        {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= Self::PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let mut r = RateLimit::default();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(r.allow(t), Some(0));
        }
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t), None);
        assert_eq!(r.allow(t + Duration::from_secs(1)), Some(2));
    }
}
