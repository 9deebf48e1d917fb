//! The worker pool: synchronous handlers run here, never on the loop.
//!
//! Jobs wait in a bounded crossbeam queue (`--queue`); a full queue is the
//! loop's cue to answer 503 at once. The pool starts `--min-threads`
//! workers, adds one whenever a job is queued and no worker is idle (up to
//! `--max-threads`), and a worker above the minimum exits after idling for
//! [`IDLE_EXIT`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::request::Request;
use super::response::Response;
use super::router::Handler;

/// How long a surplus worker idles before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// One request for a worker.
pub struct Job {
    pub handler: Arc<dyn Handler>,
    pub req: Request,
    pub resp: Response,
}

/// Live counts, read by the status page and tests.
#[derive(Default)]
pub struct PoolStats {
    pub total: AtomicUsize,
    pub idle: AtomicUsize,
    /// The most threads ever alive at once.
    pub max_reached: AtomicUsize,
}

pub struct Pool {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    min: usize,
    max: usize,
    pub stats: Arc<PoolStats>,
}

impl Pool {
    pub fn new(min: usize, max: usize, queue: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let pool = Pool {
            tx,
            rx,
            min: min.max(1),
            max: max.max(min).max(1),
            stats: Arc::default(),
        };
        for _ in 0..pool.min {
            pool.spawn();
        }
        pool
    }

    /// Queues a job; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.grow_if_needed();
                Ok(())
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(Box::new(job)),
        }
    }

    fn grow_if_needed(&self) {
        let idle = self.stats.idle.load(Ordering::Acquire);
        if self.tx.len() > idle && self.stats.total.load(Ordering::Acquire) < self.max {
            self.spawn();
        }
    }

    fn spawn(&self) {
        let total = self.stats.total.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats.max_reached.fetch_max(total, Ordering::Relaxed);
        let worker = Worker {
            rx: self.rx.clone(),
            min: self.min,
            stats: self.stats.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("fastgate-worker".into())
            .stack_size(512 * 1024)
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            self.stats.total.fetch_sub(1, Ordering::AcqRel);
            log::error!("cannot start a worker thread: {e}");
        }
    }
}

struct Worker {
    rx: Receiver<Job>,
    min: usize,
    stats: Arc<PoolStats>,
}

impl Worker {
    fn run(self) {
        loop {
            self.stats.idle.fetch_add(1, Ordering::AcqRel);
            let got = self.rx.recv_timeout(IDLE_EXIT);
            self.stats.idle.fetch_sub(1, Ordering::AcqRel);
            match got {
                Ok(job) => run_job(job),
                Err(RecvTimeoutError::Timeout) if self.retire() => return,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.stats.total.fetch_sub(1, Ordering::AcqRel);
    }

    /// Leaves the pool if it is above its minimum.
    fn retire(&self) -> bool {
        let total = &self.stats.total;
        let mut n = total.load(Ordering::Acquire);
        while n > self.min {
            match total.compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }
}

fn run_job(job: Job) {
    let Job {
        handler,
        mut req,
        mut resp,
    } = job;
    req.shared().mark_started();
    let result = catch_unwind(AssertUnwindSafe(|| handler.handle(&mut req, &mut resp)));
    drop(req);
    let result = result.unwrap_or_else(|_| Err(std::io::Error::other("handler panicked")));
    resp.complete(result);
}
