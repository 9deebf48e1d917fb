//! Deadlines of connections in a binary heap with lazy deletion.
//!
//! Each connection keeps the instant it is armed for; the heap may hold
//! older entries for it, which are skipped when they surface. A connection
//! re-arms only when its next deadline moves earlier than the armed one, so
//! the heap holds about one entry per connection, not one per request.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use super::message::Task;
use super::poller::Token;

/// One armed deadline: the connection's token and its generation, so a
/// reused slab slot never receives its predecessor's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub when: Instant,
    pub token: Token,
    pub generation: u32,
}

/// A min-heap of deadlines.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    pub fn push(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest deadline, stale or not (a stale one only costs an
    /// early wakeup).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.when)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.when <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Closures due at an instant (`LoopHandle::after`), by timer id; a
/// cancelled one is forgotten at once, its heap entry skipped when due.
#[derive(Default)]
pub struct Callbacks {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, Task>,
}

impl Callbacks {
    pub fn push(&mut self, id: u64, when: Instant, task: Task) {
        self.heap.push(Reverse((when, id)));
        self.tasks.insert(id, task);
    }

    pub fn cancel(&mut self, id: u64) {
        self.tasks.remove(&id);
        if self.tasks.is_empty() {
            self.heap.clear();
        }
    }

    /// The earliest instant a closure may be due.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _))| *when)
    }

    /// The next closure due at `now`, skipping cancelled ones.
    pub fn pop_due(&mut self, now: Instant) -> Option<Task> {
        while let Some(Reverse((when, id))) = self.heap.peek().copied() {
            if when > now {
                return None;
            }
            self.heap.pop();
            if let Some(task) = self.tasks.remove(&id) {
                return Some(task);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for (i, ms) in [30u64, 10, 20].iter().enumerate() {
            t.push(Entry {
                when: t0 + Duration::from_millis(*ms),
                token: Token(i),
                generation: 0,
            });
        }
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        assert!(t.pop_due(t0).is_none());
        let due: Vec<_> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_millis(25)))
            .map(|e| e.token.0)
            .collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn callbacks_run_when_due_unless_cancelled() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        let t0 = Instant::now();
        let ran = Arc::new(AtomicU32::new(0));
        let mut c = Callbacks::default();
        for (id, ms) in [(1u64, 20u64), (2, 10), (3, 15)] {
            let ran = Arc::clone(&ran);
            let task: Task = Box::new(move || {
                ran.fetch_add(id as u32 * 10, Ordering::Relaxed);
            });
            c.push(id, t0 + Duration::from_millis(ms), task);
        }
        c.cancel(3);
        assert!(c.pop_due(t0).is_none());
        while let Some(task) = c.pop_due(t0 + Duration::from_millis(30)) {
            task();
        }
        assert_eq!(ran.load(Ordering::Relaxed), 30);
        assert_eq!(c.next(), None);
    }
}
