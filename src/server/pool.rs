//! The worker pool: synchronous handlers run here, never on the loop.
//!
//! Jobs wait in a bounded queue (`--queue`); a full queue is the loop's cue
//! to answer 503 at once. The queue is a mutex and a condvar of our own, not
//! a channel, for what it does not do: a worker with nothing to do sleeps at
//! once instead of spinning and yielding (on a busy core that steals the
//! loop's time), and submitting never wakes anyone. The loop wakes sleeping
//! workers once per turn ([`Pool::wake`]), one per [`JOBS_PER_WAKE`] jobs
//! waiting less those awake, so a batch of requests read in one turn costs
//! one wakeup, not one per request or per worker; a worker that finishes a
//! job takes the next before it sleeps. Jobs that still wait [`WAKE_AFTER`]
//! (their workers are blocked or slow) wake every sleeper they can use.
//!
//! The pool starts `--min-threads` workers and grows only on evidence that
//! its workers are blocked: jobs have waited [`GROW_AFTER`], no worker is
//! idle, and some worker is still on the job it had at the previous look
//! and asleep in the kernel (its state in `/proc/self/task/TID/stat` is not
//! `R`), as a handler waiting on a socket, a child or a timer is. Workers that are all running (CPU-bound
//! handlers on a saturated machine) get no company: more threads than cores
//! would only add switches. A worker above the minimum exits after idling
//! for [`IDLE_EXIT`].

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::request::Request;
use super::response::Response;
use super::router::Handler;
use super::stats::{bump, Stats, StatsHandle};

/// How long a surplus worker idles before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// How long the oldest queued job may wait before the pool looks for
/// blocked workers (and again after each look that found none).
pub const GROW_AFTER: Duration = Duration::from_millis(5);
/// How long a queued job may wait while a worker sleeps before that worker
/// is woken for it: the awake ones are not keeping up (blocked, or slow).
pub const WAKE_AFTER: Duration = Duration::from_millis(1);
/// Queued jobs one awake worker is counted on for, when the loop decides
/// how many to wake: a hello takes microseconds, so a turn's batch of a few
/// goes to one worker; a flood of them wakes more where there are cores.
const JOBS_PER_WAKE: usize = 16;

/// One request for a worker.
pub struct Job {
    pub handler: Arc<dyn Handler>,
    pub req: Request,
    pub resp: Response,
}

pub struct Pool {
    queue: Arc<Queue>,
    min: usize,
    max: usize,
    stats: StatsHandle,
    /// A job was submitted since the last [`Pool::wake`].
    submitted: AtomicBool,
    /// Not before this does `maintain` look for blocked workers again.
    next_look: Mutex<Option<Instant>>,
}

/// What the loop and the workers share.
struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    /// Jobs queued now: read without the lock on every loop turn.
    len: AtomicUsize,
    /// Every live worker, for the look at who is blocked.
    workers: Mutex<Vec<Arc<WorkerInfo>>>,
}

struct State {
    jobs: VecDeque<(Job, Instant)>,
    cap: usize,
    /// Workers waiting on `ready`.
    sleeping: usize,
    /// Of those, the ones notified and not yet awake.
    waking: usize,
    /// The pool is gone: workers finish the queue and exit.
    closed: bool,
}

/// A worker as the growth check sees it.
struct WorkerInfo {
    tid: AtomicI32,
    busy: AtomicBool,
    /// Jobs finished.
    done: AtomicU64,
    /// `done` at the growth check's last look.
    seen: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Queue {
    fn publish_len(&self, st: &State) {
        self.len.store(st.jobs.len(), Ordering::Release);
    }
}

impl Pool {
    pub fn new(min: usize, max: usize, queue: usize, stats: StatsHandle) -> Pool {
        let state = State {
            jobs: VecDeque::with_capacity(queue.clamp(1, 1024)),
            cap: queue.max(1),
            sleeping: 0,
            waking: 0,
            closed: false,
        };
        let pool = Pool {
            queue: Arc::new(Queue {
                state: Mutex::new(state),
                ready: Condvar::new(),
                len: AtomicUsize::new(0),
                workers: Mutex::new(Vec::new()),
            }),
            min: min.max(1),
            max: max.max(min).max(1),
            stats,
            submitted: AtomicBool::new(false),
            next_look: Mutex::new(None),
        };
        for _ in 0..pool.min {
            pool.spawn();
        }
        pool
    }

    /// Queues a job (stamped `now`) without waking anyone: the loop calls
    /// [`Pool::wake`] at the end of its turn. Gives the job back when the
    /// queue is full.
    pub fn submit(&self, job: Job, now: Instant) -> Result<(), Box<Job>> {
        let mut st = lock(&self.queue.state);
        if st.jobs.len() >= st.cap || st.closed {
            return Err(Box::new(job));
        }
        st.jobs.push_back((job, now));
        self.queue.publish_len(&st);
        drop(st);
        self.stats.queued();
        self.submitted.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Wakes sleeping workers for the jobs submitted since the last call:
    /// one for every [`JOBS_PER_WAKE`] jobs waiting, less the workers
    /// already awake (each takes the next job as soon as it is done), so a
    /// turn's batch of quick requests costs one wakeup, not one per worker.
    pub fn wake(&self) {
        if !self.submitted.swap(false, Ordering::Relaxed) {
            return;
        }
        let st = lock(&self.queue.state);
        let awake = self.threads().saturating_sub(st.sleeping) + st.waking;
        let want = st.jobs.len().div_ceil(JOBS_PER_WAKE);
        self.notify(st, want.saturating_sub(awake));
    }

    /// Wakes up to `want` sleepers not already being woken.
    fn notify(&self, mut st: MutexGuard<'_, State>, want: usize) {
        let n = want.min(st.sleeping.saturating_sub(st.waking));
        st.waking += n;
        drop(st);
        for _ in 0..n {
            self.queue.ready.notify_one();
        }
    }

    /// When the loop must call [`Pool::maintain`] next: once the oldest
    /// queued job has waited [`WAKE_AFTER`] while a worker sleeps, or
    /// [`GROW_AFTER`] with none asleep, if the pool could grow.
    pub fn next_check(&self) -> Option<Instant> {
        if self.queue.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let st = lock(&self.queue.state);
        let oldest = st.jobs.front()?.1;
        if st.sleeping > st.waking {
            return Some(oldest + WAKE_AFTER);
        }
        drop(st);
        if self.threads() >= self.max {
            return None;
        }
        let due = oldest + GROW_AFTER;
        Some(lock(&self.next_look).map_or(due, |t| t.max(due)))
    }

    /// Jobs have waited: wakes every sleeper they could use (the awake
    /// workers are not keeping up), or, with none asleep, adds a thread
    /// for each blocked worker.
    pub fn maintain(&self, now: Instant) {
        if self.next_check().is_none_or(|t| t > now) {
            return;
        }
        let st = lock(&self.queue.state);
        if st.sleeping > st.waking {
            let waiting = st.jobs.len();
            return self.notify(st, waiting);
        }
        drop(st);
        *lock(&self.next_look) = Some(now + GROW_AFTER);
        let room = self.max.saturating_sub(self.threads());
        let waiting = self.queue.len.load(Ordering::Acquire);
        let grow = self.blocked_workers(waiting.min(room));
        for _ in 0..grow {
            self.spawn();
        }
    }

    /// Workers stuck: busy on the same job as at the last look (at least
    /// [`GROW_AFTER`] ago), and asleep in the kernel now (not running, not
    /// runnable), so they hold a job without using a CPU. A handler that
    /// only waits a moment for its body or for output room is not stuck.
    /// Counts up to `max`.
    fn blocked_workers(&self, max: usize) -> usize {
        let workers = lock(&self.queue.workers).clone();
        let mut stuck = 0;
        for w in &workers {
            let done = w.done.load(Ordering::Acquire);
            let same_job = w.seen.swap(done, Ordering::AcqRel) == done;
            if stuck < max
                && same_job
                && w.busy.load(Ordering::Acquire)
                && thread_state(w.tid.load(Ordering::Acquire)).is_some_and(|s| s != 'R')
            {
                stuck += 1;
            }
        }
        stuck
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
        let info = Arc::new(WorkerInfo {
            tid: AtomicI32::new(0),
            busy: AtomicBool::new(false),
            done: AtomicU64::new(0),
            seen: AtomicU64::new(u64::MAX),
        });
        lock(&self.queue.workers).push(info.clone());
        let worker = Worker {
            queue: self.queue.clone(),
            min: self.min,
            stats: self.stats.clone(),
            info,
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

impl Drop for Pool {
    /// Workers finish what is queued, then exit.
    fn drop(&mut self) {
        lock(&self.queue.state).closed = true;
        self.queue.ready.notify_all();
    }
}

/// The scheduler state of one of this process's threads (`R` running or
/// runnable, `S` sleeping, `D` in uninterruptible wait...).
fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

struct Worker {
    queue: Arc<Queue>,
    min: usize,
    stats: StatsHandle,
    info: Arc<WorkerInfo>,
}

impl Worker {
    /// Takes jobs until the queue closes or the thread retires. `idle`
    /// already counts this thread when it starts (see `Pool::spawn`).
    fn run(self) {
        self.info
            .tid
            .store(nix::unistd::gettid().as_raw(), Ordering::Release);
        let retired = loop {
            let job = match self.next_job() {
                Next::Job(job) => job,
                Next::Closed => break false,
                Next::Retired => break true,
            };
            self.stats.threads_idle.fetch_sub(1, Ordering::AcqRel);
            self.info.busy.store(true, Ordering::Release);
            bump(&self.stats.queue_picked);
            run_job(job, &self.stats);
            self.info.done.fetch_add(1, Ordering::Release);
            self.info.busy.store(false, Ordering::Release);
            self.stats.threads_idle.fetch_add(1, Ordering::AcqRel);
        };
        self.stats.threads_idle.fetch_sub(1, Ordering::AcqRel);
        if !retired {
            self.stats.threads_total.fetch_sub(1, Ordering::AcqRel);
        }
        lock(&self.queue.workers).retain(|w| !Arc::ptr_eq(w, &self.info));
    }

    /// The next job, sleeping while there is none.
    fn next_job(&self) -> Next {
        let mut st = lock(&self.queue.state);
        loop {
            if let Some((job, _)) = st.jobs.pop_front() {
                self.queue.publish_len(&st);
                return Next::Job(job);
            }
            if st.closed {
                return Next::Closed;
            }
            st.sleeping += 1;
            let (woken, wait) = self
                .queue
                .ready
                .wait_timeout(st, IDLE_EXIT)
                .unwrap_or_else(|p| p.into_inner());
            st = woken;
            st.sleeping -= 1;
            st.waking = st.waking.saturating_sub(1);
            if wait.timed_out() && st.jobs.is_empty() && self.retire() {
                return Next::Retired;
            }
        }
    }

    /// Leaves the pool (counted out of `threads_total`) if it is above its
    /// minimum.
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

/// What a worker gets from the queue (moved once per job, never stored:
/// boxing the job would cost an allocation per request).
#[allow(clippy::large_enum_variant)]
enum Next {
    Job(Job),
    Closed,
    Retired,
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
    resp.keep_spare(req.into_params());
    let result = result.unwrap_or_else(|_| Err(std::io::Error::other("handler panicked")));
    resp.complete(result);
}
