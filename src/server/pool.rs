//! The worker pool: synchronous handlers run here, never on the loop.
//!
//! Jobs wait in a bounded crossbeam queue (`--queue`); a full queue is the
//! loop's cue to answer 503 at once. The pool starts `--min-threads`
//! workers. It grows on how long the oldest job has waited, not on how many
//! wait: a burst of quick requests is served by the threads there are (on a
//! busy 2-CPU machine more threads only add switches), while jobs stuck
//! behind blocked workers for [`GROW_AFTER`] get a thread each, up to
//! `--max-threads`. A worker above the minimum exits after idling for
//! [`IDLE_EXIT`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::request::Request;
use super::response::Response;
use super::router::Handler;
use super::stats::{bump, Stats, StatsHandle};

/// How long a surplus worker idles before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// How long the oldest queued job may wait before the pool grows.
pub const GROW_AFTER: Duration = Duration::from_millis(5);

/// One request for a worker.
pub struct Job {
    pub handler: Arc<dyn Handler>,
    pub req: Request,
    pub resp: Response,
}

pub struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    min: usize,
    max: usize,
    stats: StatsHandle,
    clock: Arc<QueueClock>,
}

/// When each queued job was queued, by sequence number, so the loop can
/// tell how long the oldest one has waited without peeking the channel
/// (which is FIFO: the n-th job sent is the n-th received).
struct QueueClock {
    epoch: Instant,
    stamps: Box<[AtomicU64]>,
    submitted: AtomicU64,
    picked: AtomicU64,
}

impl QueueClock {
    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// When the oldest job still queued was queued.
    fn oldest(&self) -> Option<Instant> {
        let picked = self.picked.load(Ordering::Acquire);
        if self.submitted.load(Ordering::Acquire) <= picked {
            return None;
        }
        let slot = (picked % self.stamps.len() as u64) as usize;
        let ns = self.stamps[slot].load(Ordering::Acquire);
        Some(self.epoch + Duration::from_nanos(ns))
    }
}

impl Pool {
    pub fn new(min: usize, max: usize, queue: usize, stats: StatsHandle) -> Pool {
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let clock = QueueClock {
            epoch: Instant::now(),
            stamps: (0..queue.max(1)).map(|_| AtomicU64::new(0)).collect(),
            submitted: AtomicU64::new(0),
            picked: AtomicU64::new(0),
        };
        let pool = Pool {
            tx,
            rx,
            min: min.max(1),
            max: max.max(min).max(1),
            stats,
            clock: Arc::new(clock),
        };
        for _ in 0..pool.min {
            pool.spawn();
        }
        pool
    }

    /// Queues a job (stamped `now`); gives it back when the queue is full.
    pub fn submit(&self, job: Job, now: Instant) -> Result<(), Box<Job>> {
        match self.tx.try_send(job) {
            Ok(()) => {
                let c = &self.clock;
                let seq = c.submitted.load(Ordering::Relaxed);
                let slot = (seq % c.stamps.len() as u64) as usize;
                c.stamps[slot].store(c.nanos(now), Ordering::Release);
                c.submitted.store(seq + 1, Ordering::Release);
                self.stats.queued();
                Ok(())
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(Box::new(job)),
        }
    }

    /// When the loop must call [`Pool::maintain`] next: the instant the
    /// oldest queued job will have waited [`GROW_AFTER`], if the pool could
    /// grow for it.
    pub fn next_check(&self) -> Option<Instant> {
        if self.threads() >= self.max {
            return None;
        }
        if self.tx.len() as u64 <= self.stats.threads_idle.load(Ordering::Acquire) {
            return None;
        }
        self.clock.oldest().map(|t| t + GROW_AFTER)
    }

    /// Adds a thread per queued job once the oldest has waited too long.
    pub fn maintain(&self, now: Instant) {
        if self.next_check().is_none_or(|t| t > now) {
            return;
        }
        let room = self.max.saturating_sub(self.threads());
        for _ in 0..self.tx.len().min(room) {
            self.spawn();
        }
    }

    /// Worker threads alive now.
    fn threads(&self) -> usize {
        self.stats.threads_total.load(Ordering::Acquire) as usize
    }

    fn spawn(&self) {
        let total = self.stats.threads_total.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats
            .threads_max_reached
            .fetch_max(total, Ordering::Relaxed);
        // Idle from now: a thread still starting will take a queued job, so
        // `maintain` must not start another for it.
        self.stats.threads_idle.fetch_add(1, Ordering::AcqRel);
        let worker = Worker {
            rx: self.rx.clone(),
            min: self.min,
            stats: self.stats.clone(),
            clock: self.clock.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("fastgate-worker".into())
            .stack_size(512 * 1024)
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            self.stats.threads_total.fetch_sub(1, Ordering::AcqRel);
            self.stats.threads_idle.fetch_sub(1, Ordering::AcqRel);
            log::error!("cannot start a worker thread: {e}");
        }
    }
}

struct Worker {
    rx: Receiver<Job>,
    min: usize,
    stats: StatsHandle,
    clock: Arc<QueueClock>,
}

impl Worker {
    /// Takes jobs until the queue closes or the thread retires. `idle`
    /// already counts this thread when it starts (see `Pool::spawn`).
    fn run(self) {
        loop {
            let got = self.rx.recv_timeout(IDLE_EXIT);
            self.stats.threads_idle.fetch_sub(1, Ordering::AcqRel);
            match got {
                Ok(job) => {
                    self.clock.picked.fetch_add(1, Ordering::AcqRel);
                    bump(&self.stats.queue_picked);
                    run_job(job, &self.stats)
                }
                Err(RecvTimeoutError::Timeout) if self.retire() => return,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.stats.threads_idle.fetch_add(1, Ordering::AcqRel);
        }
        self.stats.threads_total.fetch_sub(1, Ordering::AcqRel);
    }

    /// Leaves the pool if it is above its minimum.
    fn retire(&self) -> bool {
        let total = &self.stats.threads_total;
        let mut n = total.load(Ordering::Acquire);
        while n > self.min as u64 {
            match total.compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }
}

fn run_job(job: Job, stats: &Stats) {
    let Job {
        handler,
        mut req,
        mut resp,
    } = job;
    req.shared().mark_started();
    if let Some(waited) = req.shared().queue_time() {
        stats.queue_wait.observe(waited);
    }
    let result = catch_unwind(AssertUnwindSafe(|| handler.handle(&mut req, &mut resp)));
    drop(req);
    let result = result.unwrap_or_else(|_| Err(std::io::Error::other("handler panicked")));
    resp.complete(result);
}
