//! Every counter and gauge of one process in one plain block of atomics:
//! the loop, the pool, the waker and the apps all count here, and the
//! `status` app reads it. No pointer lives inside (`#[repr(C)]`, only
//! atomics and arrays of them), so a prefork master can place one block per
//! child in shared memory and read them all.
//!
//! Counters only grow; gauges (`active_conns`, `threads_*`, `pending_async`,
//! the queue) are moved up and down by the code that changes the state they
//! describe, at the moment it changes it, so they never drift. Every update
//! is one relaxed atomic operation: nothing on the hot path locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds of the histogram buckets, in microseconds; a last bucket
/// (+Inf) takes the rest.
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A fixed-bucket histogram of durations (OpenMetrics `histogram`).
#[repr(C)]
#[derive(Default, Debug)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is +Inf.
    pub buckets: [AtomicU64; BUCKETS_US.len() + 1],
    /// Observations in all.
    pub count: AtomicU64,
    /// Their sum, in microseconds.
    pub sum_us: AtomicU64,
}

impl Histogram {
    /// Counts one duration.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// The counters of one process.
#[repr(C)]
#[derive(Default, Debug)]
pub struct Stats {
    /// Unix seconds when the server was built.
    pub start_time: AtomicU64,
    /// Connections accepted since the start.
    pub accepted_conns: AtomicU64,
    /// Gauge: connections open now.
    pub active_conns: AtomicU64,
    /// Requests answered (by a handler or by the loop itself).
    pub requests: AtomicU64,
    /// Requests aborted by the client or a timeout.
    pub aborted_requests: AtomicU64,
    /// Client errors: broken protocol, slow or stalled clients.
    pub protocol_errors: AtomicU64,
    /// Requests slower than `slow_threshold`.
    pub slow_requests: AtomicU64,
    /// Refusals the loop answered itself, by status: a malformed request.
    pub refused_400: AtomicU64,
    /// No mount matched.
    pub refused_404: AtomicU64,
    /// The body stalled past `body_timeout`.
    pub refused_408: AtomicU64,
    /// A body past its limit, or past the temporary space.
    pub refused_413: AtomicU64,
    /// Params past their limit or budget.
    pub refused_431: AtomicU64,
    /// The queue was full, or a spool budget spent.
    pub refused_503: AtomicU64,
    /// Past `request_timeout` before any output.
    pub refused_504: AtomicU64,
    /// Jobs handed to the pool, and jobs a worker picked up: their
    /// difference is the queue's length.
    pub queue_submitted: AtomicU64,
    /// Jobs a worker picked up.
    pub queue_picked: AtomicU64,
    /// The longest the queue has been.
    pub max_queue_len: AtomicU64,
    /// Gauge: worker threads alive.
    pub threads_total: AtomicU64,
    /// Gauge: worker threads waiting for a job.
    pub threads_idle: AtomicU64,
    /// The most threads ever alive at once.
    pub threads_max_reached: AtomicU64,
    /// Writes of the loop's eventfd (wakeups from other threads).
    pub wakeups: AtomicU64,
    /// Times a listener woke the loop: per accepted connection, what a
    /// herd of prefork children sharing a socket costs.
    pub accept_wakeups: AtomicU64,
    /// Gauge: requests of async handlers waiting for their answer.
    pub pending_async: AtomicU64,
    /// From dispatch until a worker picked the request up.
    pub queue_wait: Histogram,
    /// From the request's first byte until its end.
    pub latency: Histogram,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Takes one from a gauge, never below zero.
pub fn drop_one(gauge: &AtomicU64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

impl Stats {
    /// A block with `start_time` set to now.
    pub fn started_now() -> Stats {
        let stats = Stats::default();
        stats.mark_started();
        stats
    }

    /// Sets `start_time` to now (the server starts serving).
    pub fn mark_started(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.start_time.store(now, Ordering::Relaxed);
    }

    /// Requests waiting for a worker now.
    pub fn queue_len(&self) -> u64 {
        let picked = self.queue_picked.load(Ordering::Relaxed);
        self.queue_submitted
            .load(Ordering::Relaxed)
            .saturating_sub(picked)
    }

    /// A job was queued: the queue's length and its maximum.
    pub fn queued(&self) {
        let len = self.queue_submitted.fetch_add(1, Ordering::Relaxed) + 1;
        let picked = self.queue_picked.load(Ordering::Relaxed);
        self.max_queue_len
            .fetch_max(len.saturating_sub(picked), Ordering::Relaxed);
    }

    /// The counter of a refusal the loop answers itself.
    pub fn refused(&self, status: u16) -> Option<&AtomicU64> {
        Some(match status {
            400 => &self.refused_400,
            404 => &self.refused_404,
            408 => &self.refused_408,
            413 => &self.refused_413,
            431 => &self.refused_431,
            503 => &self.refused_503,
            504 => &self.refused_504,
            _ => return None,
        })
    }

    /// Counts a refusal by its status.
    pub fn count_refusal(&self, status: u16) {
        if let Some(c) = self.refused(status) {
            bump(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_take_their_upper_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(60));
        let b: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!((b[0], b[1], b[BUCKETS_US.len()]), (1, 1, 1));
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
        assert_eq!(h.sum_us.load(Ordering::Relaxed), 60_000_201);
    }

    #[test]
    fn gauges_never_go_below_zero() {
        let s = Stats::default();
        drop_one(&s.active_conns);
        assert_eq!(s.active_conns.load(Ordering::Relaxed), 0);
        s.queued();
        s.queued();
        bump(&s.queue_picked);
        assert_eq!(
            (s.queue_len(), s.max_queue_len.load(Ordering::Relaxed)),
            (1, 2)
        );
    }

    #[test]
    fn the_block_holds_no_pointer() {
        // Only atomics: its size is a whole number of u64s.
        assert_eq!(std::mem::size_of::<Stats>() % 8, 0);
        assert_eq!(std::mem::align_of::<Stats>(), 8);
    }
}
