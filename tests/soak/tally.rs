//! The soak's books, shared by every client and fault thread: requests by
//! protocol and kind, their outcomes, the faults injected, and the times
//! of each kill -9 so that failures can be judged at the end.
//!
//! An outcome is one of: answered (status and body checked), refused by
//! design (503 + Retry-After, FCGI_OVERLOADED, or a connection the server
//! had not accepted yet during a burst past --max-conns), or a failure.
//! Failures are judged once every kill time is known: one is put down to
//! a killed child only when its connection was opened before a kill -9
//! and it failed within `KILL_WINDOW` after it (a connection opened later
//! cannot be on the dead child). Everything else, and any complete answer
//! with the wrong status or body, is LOST.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after a kill -9 a failure on an older connection may still
/// be put down to it: the client sees the reset at its next read, which
/// is at most one request (a sleep of ≤ 300 ms, a 1 MB echo) later.
pub const KILL_WINDOW: Duration = Duration::from_secs(5);

/// A request that did not get a well-formed answer.
#[derive(Clone, Debug)]
pub struct Failure {
    /// When the connection it rode on was opened.
    pub opened: Instant,
    /// When the client saw the failure.
    pub at: Instant,
    pub what: String,
    /// A complete but wrong answer: never put down to a kill.
    pub wrong_answer: bool,
}

#[derive(Default)]
struct Books {
    start: Option<Instant>,
    requests: BTreeMap<String, u64>,
    answered: u64,
    refused: u64,
    refused_outside_bursts: u64,
    faults: BTreeMap<String, u64>,
    failures: Vec<Failure>,
    kills: Vec<Instant>,
    bursts: Vec<(Instant, Instant)>,
    /// HUP and USR2: from the signal until the old processes are gone.
    stops: Vec<(Instant, Instant)>,
    /// Requests retried on a fresh connection after their kept-alive one
    /// closed with no byte of an answer.
    retries: Vec<Failure>,
    events: Vec<(Instant, String)>,
    notes: BTreeMap<String, u64>,
}

/// The books behind one lock; every call is short.
#[derive(Default)]
pub struct Tally {
    books: Mutex<Books>,
    /// Set while the main thread takes its quiet samples: clients and
    /// faults finish what they do and wait.
    pub paused: AtomicBool,
    /// Set at the end: every loop returns.
    pub stop: AtomicBool,
    /// Operations (and slow clients) under way: the quiet samples wait
    /// for none.
    pub busy: AtomicUsize,
}

/// The judged totals, for the report.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub requests: BTreeMap<String, u64>,
    pub answered: u64,
    pub refused: u64,
    pub refused_outside_bursts: u64,
    pub failed_in_killed_child: u64,
    /// Retries within a HUP's or USR2's window.
    pub retried_at_stop: u64,
    /// Retries of a kept-alive connection to a child killed with -9.
    pub retried_at_kill: u64,
    pub lost: u64,
    pub lost_examples: Vec<String>,
    pub faults: BTreeMap<String, u64>,
    pub notes: BTreeMap<String, u64>,
    pub events: Vec<String>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            books: Mutex::new(Books {
                start: Some(Instant::now()),
                ..Books::default()
            }),
            ..Tally::default()
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits while the main thread samples; false once the run is over.
    pub fn go_on(&self) -> bool {
        while self.paused.load(Ordering::Relaxed) && !self.stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
        !self.stopping()
    }

    /// One request sent, over `proto`, of `kind`.
    pub fn sent(&self, proto: &str, kind: &str) {
        *self
            .books()
            .requests
            .entry(format!("{proto} {kind}"))
            .or_default() += 1;
    }

    pub fn answered(&self) {
        self.books().answered += 1;
    }

    pub fn refused(&self) {
        let now = Instant::now();
        let mut b = self.books();
        b.refused += 1;
        let grace = Duration::from_secs(2);
        if !b.bursts.iter().any(|&(s, e)| now >= s && now <= e + grace) {
            b.refused_outside_bursts += 1;
        }
    }

    pub fn failed(&self, f: Failure) {
        self.books().failures.push(f);
    }

    pub fn fault(&self, kind: &str) {
        *self.books().faults.entry(kind.to_string()).or_default() += 1;
    }

    /// Something worth a line in the report that is no failure.
    pub fn note(&self, what: &str) {
        *self.books().notes.entry(what.to_string()).or_default() += 1;
    }

    pub fn killed_at(&self, at: Instant, what: String) {
        let mut b = self.books();
        b.kills.push(at);
        b.events.push((at, what));
    }

    /// The start of the load, the zero of the timeline.
    pub fn set_start(&self, t0: Instant) {
        self.books().start = Some(t0);
    }

    /// A line of the run's timeline.
    pub fn event(&self, what: String) {
        self.books().events.push((Instant::now(), what));
    }

    /// A graceful replacement (HUP, USR2) from `from` until now.
    pub fn graceful(&self, from: Instant) {
        self.books().stops.push((from, Instant::now()));
    }

    /// A request on a kept-alive connection that closed before any byte
    /// of its answer, retried on a fresh one (as nginx retries a request
    /// on a cached upstream connection): judged at the end.
    pub fn retried(&self, f: Failure) {
        self.books().retries.push(f);
    }

    /// A burst from `from` to `to`; called again with the same `from`, it
    /// moves the end (a burst is marked open-ended when it starts).
    pub fn burst(&self, from: Instant, to: Instant) {
        let mut b = self.books();
        match b.bursts.iter_mut().find(|(s, _)| *s == from) {
            Some(window) => window.1 = to,
            None => b.bursts.push((from, to)),
        }
    }

    /// The totals, with every failure judged against the kills.
    pub fn totals(&self) -> Totals {
        let b = self.books();
        let by_kill = |f: &Failure| {
            !f.wrong_answer
                && b.kills
                    .iter()
                    .any(|&k| f.opened <= k && f.at >= k && f.at <= k + KILL_WINDOW)
        };
        // A retry is explained only by a graceful stop (whose children
        // close their idle kept-alive connections, DESIGN.md's Stopping)
        // or a kill; anywhere else the server closed a connection in use.
        let grace = Duration::from_secs(2);
        let by_stop = |f: &Failure| b.stops.iter().any(|&(s, e)| f.at >= s && f.at <= e + grace);
        let (killed, mut lost): (Vec<&Failure>, Vec<&Failure>) =
            b.failures.iter().partition(|f| by_kill(f));
        let (at_kill, rest): (Vec<&Failure>, Vec<&Failure>) =
            b.retries.iter().partition(|f| by_kill(f));
        let (at_stop, unexplained): (Vec<&Failure>, Vec<&Failure>) =
            rest.into_iter().partition(|f| by_stop(f));
        lost.extend(unexplained);
        let t0 = b.start.unwrap_or_else(Instant::now);
        let secs = |i: Instant| i.saturating_duration_since(t0).as_secs_f64();
        let example = |f: &&Failure| {
            format!(
                "at {:.1} s (connection opened at {:.1} s): {}",
                secs(f.at),
                secs(f.opened),
                f.what
            )
        };
        let mut events = b.events.clone();
        events.sort_by_key(|e| e.0);
        Totals {
            retried_at_stop: at_stop.len() as u64,
            retried_at_kill: at_kill.len() as u64,
            events: events
                .iter()
                .map(|(at, what)| format!("{:>7.1} s  {what}", secs(*at)))
                .collect(),
            requests: b.requests.clone(),
            answered: b.answered,
            refused: b.refused,
            refused_outside_bursts: b.refused_outside_bursts,
            failed_in_killed_child: killed.len() as u64,
            lost: lost.len() as u64,
            lost_examples: lost.iter().take(20).map(example).collect(),
            faults: b.faults.clone(),
            notes: b.notes.clone(),
        }
    }
}
