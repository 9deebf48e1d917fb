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
//!
//! A server reaches its block through a [`StatsHandle`]: its own block, or
//! in a prefork child its slot of the [`Scoreboard`].

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::scoreboard::{Scoreboard, SlotState};
use super::Error;

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

    /// Adds every observation of `other` to this one.
    pub fn add(&self, other: &Histogram) {
        let Histogram {
            buckets,
            count,
            sum_us,
        } = other;
        for (mine, theirs) in self.buckets.iter().zip(buckets) {
            add(mine, theirs);
        }
        add(&self.count, count);
        add(&self.sum_us, sum_us);
    }

    /// Back to no observation.
    pub fn reset(&self) {
        let Histogram {
            buckets,
            count,
            sum_us,
        } = self;
        buckets.iter().chain([count, sum_us]).for_each(zero);
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

/// Adds what `theirs` holds to `mine`.
fn add(mine: &AtomicU64, theirs: &AtomicU64) {
    mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Raises `mine` to what `theirs` holds, if that is more.
fn max(mine: &AtomicU64, theirs: &AtomicU64) {
    mine.fetch_max(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn zero(a: &AtomicU64) {
    a.store(0, Ordering::Relaxed);
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

    /// Adds the numbers of another process to these, as totals over
    /// processes are made: counters and gauges add up, the maxima
    /// (`max_queue_len`, `threads_max_reached`) take the larger, and
    /// `start_time` the earlier one that is set.
    ///
    /// The fields are named one by one (no `..`), so a field added to
    /// [`Stats`] does not compile until it is given a rule here.
    pub fn add(&self, other: &Stats) {
        let Stats {
            start_time,
            accepted_conns,
            active_conns,
            requests,
            aborted_requests,
            protocol_errors,
            slow_requests,
            refused_400,
            refused_404,
            refused_408,
            refused_413,
            refused_431,
            refused_503,
            refused_504,
            queue_submitted,
            queue_picked,
            max_queue_len,
            threads_total,
            threads_idle,
            threads_max_reached,
            wakeups,
            accept_wakeups,
            pending_async,
            queue_wait,
            latency,
        } = other;
        let theirs = start_time.load(Ordering::Relaxed);
        let _ = (self.start_time).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mine| {
            (theirs != 0 && (mine == 0 || theirs < mine)).then_some(theirs)
        });
        let sums = [
            (&self.accepted_conns, accepted_conns),
            (&self.active_conns, active_conns),
            (&self.requests, requests),
            (&self.aborted_requests, aborted_requests),
            (&self.protocol_errors, protocol_errors),
            (&self.slow_requests, slow_requests),
            (&self.refused_400, refused_400),
            (&self.refused_404, refused_404),
            (&self.refused_408, refused_408),
            (&self.refused_413, refused_413),
            (&self.refused_431, refused_431),
            (&self.refused_503, refused_503),
            (&self.refused_504, refused_504),
            (&self.queue_submitted, queue_submitted),
            (&self.queue_picked, queue_picked),
            (&self.threads_total, threads_total),
            (&self.threads_idle, threads_idle),
            (&self.wakeups, wakeups),
            (&self.accept_wakeups, accept_wakeups),
            (&self.pending_async, pending_async),
        ];
        sums.into_iter()
            .for_each(|(mine, theirs)| add(mine, theirs));
        max(&self.max_queue_len, max_queue_len);
        max(&self.threads_max_reached, threads_max_reached);
        self.queue_wait.add(queue_wait);
        self.latency.add(latency);
    }

    /// A copy, each atomic read once.
    pub fn copy(&self) -> Stats {
        let copy = Stats::default();
        copy.add(self);
        copy
    }

    /// Every number back to zero (a prefork slot between two children).
    /// Named field by field, as in [`add`](Self::add).
    pub fn reset(&self) {
        let Stats {
            start_time,
            accepted_conns,
            active_conns,
            requests,
            aborted_requests,
            protocol_errors,
            slow_requests,
            refused_400,
            refused_404,
            refused_408,
            refused_413,
            refused_431,
            refused_503,
            refused_504,
            queue_submitted,
            queue_picked,
            max_queue_len,
            threads_total,
            threads_idle,
            threads_max_reached,
            wakeups,
            accept_wakeups,
            pending_async,
            queue_wait,
            latency,
        } = self;
        let plain = [
            start_time,
            accepted_conns,
            active_conns,
            requests,
            aborted_requests,
            protocol_errors,
            slow_requests,
            refused_400,
            refused_404,
            refused_408,
            refused_413,
            refused_431,
            refused_503,
            refused_504,
            queue_submitted,
            queue_picked,
            max_queue_len,
            threads_total,
            threads_idle,
            threads_max_reached,
            wakeups,
            accept_wakeups,
            pending_async,
        ];
        plain.into_iter().for_each(zero);
        queue_wait.reset();
        latency.reset();
    }
}

/// The block a server counts into, shared by everything that counts or
/// reads: the process's own [`Stats`], or, once
/// [`ServerBuilder::use_scoreboard_slot`](super::ServerBuilder::use_scoreboard_slot)
/// bound it, a prefork child's slot of a [`Scoreboard`]. It dereferences
/// to that [`Stats`].
///
/// Every clone sees the binding, made at most once and before the server
/// starts: the `status` app, built before the master forks, reads the
/// whole scoreboard in each child with the handle it was given then.
///
/// ```
/// use std::sync::atomic::Ordering;
/// use fastgate::server::StatsHandle;
///
/// let stats = StatsHandle::new();
/// let app_copy = stats.clone();
/// stats.requests.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(app_copy.requests.load(Ordering::Relaxed), 1);
/// assert!(app_copy.scoreboard().is_none(), "a single process");
/// ```
#[derive(Clone, Debug, Default)]
pub struct StatsHandle(Arc<Binding>);

#[derive(Debug, Default)]
struct Binding {
    /// The process's own block, counted into until a slot is bound.
    own: Stats,
    slot: OnceLock<(Arc<Scoreboard>, usize)>,
    /// A server started on it: its gauges (threads, connections) are up
    /// in the block it counts into, so that block may no longer change.
    sealed: AtomicBool,
}

impl StatsHandle {
    /// A handle on a block of the process's own, with `start_time` now.
    pub fn new() -> StatsHandle {
        let handle = StatsHandle::default();
        handle.mark_started();
        handle
    }

    /// The scoreboard and the slot counted into, in a prefork child.
    pub fn scoreboard(&self) -> Option<(&Arc<Scoreboard>, usize)> {
        self.0.slot.get().map(|(board, slot)| (board, *slot))
    }

    /// Counts into `slot` of `board` from now on, in every clone.
    pub(crate) fn bind(&self, board: Arc<Scoreboard>, slot: usize) -> Result<(), Error> {
        if slot >= board.capacity() {
            return Err(Error::new(format!(
                "scoreboard slot {slot}: the scoreboard has {} slots",
                board.capacity()
            )));
        }
        if self.0.sealed.load(Ordering::Relaxed) {
            return Err(Error::new(format!(
                "scoreboard slot {slot}: the server has started; bind the slot before start()"
            )));
        }
        if let Some((_, bound)) = self.0.slot.get() {
            return Err(Error::new(format!(
                "scoreboard slot {slot}: this server counts into slot {bound} already"
            )));
        }
        board.enter(slot, std::process::id());
        // Invariant: checked empty just above, and the builder (the only
        // caller) is not shared between threads.
        let _ = self.0.slot.set((board, slot));
        Ok(())
    }

    /// A server starts counting here: no slot can be bound from now on.
    pub(crate) fn seal(&self) {
        self.0.sealed.store(true, Ordering::Relaxed);
    }

    /// Tells the scoreboard, if any, where this child is in its life.
    pub(crate) fn set_state(&self, state: SlotState) {
        if let Some((board, slot)) = self.scoreboard() {
            board.set_state(slot, state);
        }
    }
}

impl Deref for StatsHandle {
    type Target = Stats;

    fn deref(&self) -> &Stats {
        match self.0.slot.get() {
            Some((board, slot)) => board.stats(*slot),
            None => &self.0.own,
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

    /// A block whose every number differs from the others.
    fn filled() -> Stats {
        let s = Stats::default();
        let plain = [
            &s.start_time,
            &s.accepted_conns,
            &s.active_conns,
            &s.requests,
            &s.aborted_requests,
            &s.protocol_errors,
            &s.slow_requests,
            &s.refused_400,
            &s.refused_404,
            &s.refused_408,
            &s.refused_413,
            &s.refused_431,
            &s.refused_503,
            &s.refused_504,
            &s.queue_submitted,
            &s.queue_picked,
            &s.max_queue_len,
            &s.threads_total,
            &s.threads_idle,
            &s.threads_max_reached,
            &s.wakeups,
            &s.accept_wakeups,
            &s.pending_async,
        ];
        let histograms = [&s.queue_wait, &s.latency];
        let each = histograms
            .iter()
            .flat_map(|h| h.buckets.iter().chain([&h.count, &h.sum_us]));
        for (n, a) in (1..).zip(plain.into_iter().chain(each)) {
            a.store(n, Ordering::Relaxed);
        }
        s
    }

    #[test]
    fn a_copy_has_every_number_and_a_reset_none() {
        let s = filled();
        assert_eq!(format!("{:?}", s.copy()), format!("{s:?}"));
        s.reset();
        assert_eq!(format!("{s:?}"), format!("{:?}", Stats::default()));
    }

    #[test]
    fn adding_sums_and_keeps_the_larger_maximum_and_earlier_start() {
        let (a, b) = (filled(), filled());
        b.max_queue_len.store(1_000, Ordering::Relaxed);
        b.start_time.store(0, Ordering::Relaxed);
        a.add(&b);
        assert_eq!(a.requests.load(Ordering::Relaxed), 8);
        assert_eq!(a.max_queue_len.load(Ordering::Relaxed), 1_000);
        assert_eq!(a.threads_max_reached.load(Ordering::Relaxed), 20);
        assert_eq!(a.start_time.load(Ordering::Relaxed), 1, "0 is unset");
        assert_eq!(a.latency.count.load(Ordering::Relaxed), 2 * 60);
    }

    #[test]
    fn a_handle_is_bound_once_and_never_after_its_server_started() {
        let board = Arc::new(Scoreboard::new(2).unwrap());
        let handle = StatsHandle::new();
        let app = handle.clone();
        assert!(handle.bind(Arc::clone(&board), 2).is_err(), "past the end");
        handle.bind(Arc::clone(&board), 1).unwrap();
        bump(&handle.requests);
        assert_eq!(app.scoreboard().map(|(_, slot)| slot), Some(1));
        assert_eq!(board.stats(1).requests.load(Ordering::Relaxed), 1);
        assert!(handle.bind(Arc::clone(&board), 0).is_err(), "bound already");
        let started = StatsHandle::new();
        started.seal();
        assert!(started.bind(board, 0).is_err(), "started already");
    }

    #[test]
    fn the_block_holds_no_pointer() {
        // Only atomics: its size is a whole number of u64s.
        assert_eq!(std::mem::size_of::<Stats>() % 8, 0);
        assert_eq!(std::mem::align_of::<Stats>(), 8);
    }
}
