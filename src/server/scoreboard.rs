//! The scoreboard: one [`Stats`] block per prefork child, in memory that
//! the master and every child share (DESIGN.md, "Prefork" and "Status
//! fields"), so the `status` app of any child reports them all.
//!
//! The master makes it before its first fork, as an anonymous shared
//! mapping: every child inherits the same pages, counts into its slot with
//! the atomics a single process counts into, and reads its siblings'
//! slots. Nothing in a slot is a pointer, so the bytes mean the same in
//! every process.
//!
//! A slot's life is the master's to decide: it [`claim`](Scoreboard::claim)s
//! one for the child it has just forked and [`release`](Scoreboard::release)s
//! it once it has reaped that child. Release zeroes the slot, so the next
//! child of the slot starts from nothing and a page never shows a dead
//! child, nor the gauges it left up (a killed child never took its
//! connections down). A release bumps the slot's generation before and
//! after the zeroing, a sequence lock: a reader that sees it odd, or
//! changed across its read, knows the slot was reset meanwhile and reads
//! again (PHP-FPM's scoreboard, which shows ghosts, has no such check).

use std::fmt;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

use super::stats::Stats;
use super::Error;

/// Reads of one slot before a reader gives up on it: a slot still being
/// reset after that is the slot of a child already gone.
const READ_TRIES: usize = 4;

/// Where the child of a slot is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SlotState {
    /// No child: never used, or released.
    #[default]
    Empty = 0,
    /// Forked, not serving yet.
    Starting = 1,
    /// Its event loop runs.
    Serving = 2,
    /// Stopping: no longer accepting, finishing what is in flight.
    Stopping = 3,
}

impl SlotState {
    /// The state's name on the status page.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Starting => "starting",
            SlotState::Serving => "serving",
            SlotState::Stopping => "stopping",
        }
    }

    fn from_u8(n: u8) -> SlotState {
        match n {
            1 => SlotState::Starting,
            2 => SlotState::Serving,
            3 => SlotState::Stopping,
            _ => SlotState::Empty,
        }
    }
}

/// One child's place: its counters, then who holds it. Only atomics, so
/// all-zero bytes are an empty slot.
#[repr(C)]
#[derive(Default, Debug)]
struct Slot {
    stats: Stats,
    /// Unix seconds when the master forked the child.
    started_at: AtomicU64,
    /// Even while the slot is steady, odd while a release zeroes it.
    generation: AtomicU64,
    pid: AtomicU32,
    state: AtomicU8,
}

/// One live child as its slot showed it, read once.
#[derive(Debug)]
pub struct ChildStats {
    /// The slot's index.
    pub slot: usize,
    /// The child's process id.
    pub pid: u32,
    /// Where it is in its life (never [`SlotState::Empty`]).
    pub state: SlotState,
    /// Unix seconds when the master forked it (0 if the master has not
    /// claimed the slot yet).
    pub started_at: u64,
    /// A copy of its counters.
    pub stats: Stats,
}

/// The [`Stats`] of every prefork child, in memory shared across `fork`.
///
/// The master makes one before forking and keeps it in an `Arc`; each
/// child counts into its slot through
/// [`ServerBuilder::use_scoreboard_slot`](super::ServerBuilder::use_scoreboard_slot).
/// Dropping it unmaps the pages in the process that drops it; a child
/// keeps its inherited mapping until it drops its own copy or exits.
///
/// ```
/// use std::sync::atomic::Ordering;
/// use fastgate::server::{Scoreboard, SlotState};
///
/// let board = Scoreboard::new(4).unwrap();
/// let slot = board.vacant().unwrap();
/// // In the master, right after fork() gave it the child's pid:
/// board.claim(slot, 4242);
/// // In the child, by way of its server:
/// board.stats(slot).requests.fetch_add(1, Ordering::Relaxed);
/// // In any process, for the status page:
/// let children = board.children();
/// assert_eq!((children.len(), children[0].pid), (1, 4242));
/// assert_eq!(children[0].state, SlotState::Starting);
/// // In the master, once waitpid() reaped the child:
/// board.release(slot);
/// assert!(board.children().is_empty());
/// ```
pub struct Scoreboard {
    slots: NonNull<Slot>,
    len: usize,
    master_pid: u32,
    start_time: u64,
}

// SAFETY: the pointer is only turned into `&[Slot]` borrowed from `self`,
// and a `Slot` is only atomics (Sync); the mapping is owned by this value
// and unmapped once, in `drop`.
unsafe impl Send for Scoreboard {}
// SAFETY: as for Send: every access is an atomic operation.
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// A scoreboard of `slots` empty slots, made by the master before it
    /// forks; this process is the master on the status page.
    pub fn new(slots: usize) -> Result<Scoreboard, Error> {
        let len = NonZeroUsize::new(slots)
            .ok_or_else(|| Error::new("a scoreboard needs at least one slot"))?;
        let ptr = map_shared(len)
            .map_err(|e| Error::new(format!("mmap of a scoreboard of {slots} slots: {e}")))?;
        Ok(Scoreboard {
            slots: ptr,
            len: slots,
            master_pid: std::process::id(),
            start_time: unix_now(),
        })
    }

    /// How many slots it has: the most children it can count.
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// The process that made it: the master.
    pub fn master_pid(&self) -> u32 {
        self.master_pid
    }

    /// Unix seconds when it was made (the master's start).
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The first empty slot, for the next child.
    pub fn vacant(&self) -> Option<usize> {
        (self.slots().iter())
            .position(|s| s.state.load(Ordering::Acquire) == SlotState::Empty as u8)
    }

    /// For the master, right after `fork` gave it the child's pid: `slot`
    /// is that child's. The slot must be empty (never used, or released
    /// since its last child was reaped); its counters are the child's
    /// alone from the fork on, so this leaves them be.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`capacity`](Self::capacity).
    pub fn claim(&self, slot: usize, pid: u32) {
        let s = &self.slots()[slot];
        s.started_at.store(unix_now(), Ordering::Relaxed);
        self.enter(slot, pid);
    }

    /// For the master, once it has reaped the child of `slot`: zeroes the
    /// slot, so the page forgets that child and its successor starts from
    /// nothing.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`capacity`](Self::capacity).
    pub fn release(&self, slot: usize) {
        let s = &self.slots()[slot];
        // Sequence lock, writer's side: odd before the first store, even
        // after the last (a reader compares the two ends of its read).
        s.generation.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        s.state.store(SlotState::Empty as u8, Ordering::Relaxed);
        s.pid.store(0, Ordering::Relaxed);
        s.started_at.store(0, Ordering::Relaxed);
        s.stats.reset();
        s.generation.fetch_add(1, Ordering::Release);
    }

    /// The counters of `slot`, where its child counts.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`capacity`](Self::capacity).
    pub fn stats(&self, slot: usize) -> &Stats {
        &self.slots()[slot].stats
    }

    /// Where the child of `slot` is in its life.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`capacity`](Self::capacity).
    pub fn state(&self, slot: usize) -> SlotState {
        SlotState::from_u8(self.slots()[slot].state.load(Ordering::Acquire))
    }

    /// Every child alive (each slot not empty), in slot order, each read
    /// once; a slot being released is left out.
    pub fn children(&self) -> Vec<ChildStats> {
        let read = |(i, s)| read_slot(i, s);
        self.slots().iter().enumerate().filter_map(read).collect()
    }

    /// The counters of every child alive added up (see [`Stats::add`]),
    /// `start_time` the master's.
    pub fn totals(&self) -> Stats {
        let totals = Stats::default();
        for child in self.children() {
            totals.add(&child.stats);
        }
        totals.start_time.store(self.start_time, Ordering::Relaxed);
        totals
    }

    /// The child's own side of a claim (its server binds to the slot): the
    /// pid, and `Starting` unless the child is further on. Either side may
    /// come first after the fork, and neither undoes the other.
    pub(crate) fn enter(&self, slot: usize, pid: u32) {
        let s = &self.slots()[slot];
        s.pid.store(pid, Ordering::Relaxed);
        let (empty, starting) = (SlotState::Empty as u8, SlotState::Starting as u8);
        // Release: a reader that sees the state sees the pid.
        let _ = (s.state).compare_exchange(empty, starting, Ordering::Release, Ordering::Relaxed);
    }

    /// The child moves on (serving, stopping).
    pub(crate) fn set_state(&self, slot: usize, state: SlotState) {
        self.slots()[slot]
            .state
            .store(state as u8, Ordering::Release);
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: `slots` points to `len` Slots mapped by `map_shared`
        // (zero-filled, a valid Slot) and unmapped only in `drop`, after
        // every borrow of `self` ended; a Slot is only atomics, so shared
        // references from many threads and processes are sound.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.len) }
    }
}

/// One slot, if a child holds it: read between two loads of its
/// generation, again if a release came in between.
fn read_slot(index: usize, s: &Slot) -> Option<ChildStats> {
    for _ in 0..READ_TRIES {
        let before = s.generation.load(Ordering::Acquire);
        if before % 2 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let state = SlotState::from_u8(s.state.load(Ordering::Acquire));
        let child = ChildStats {
            slot: index,
            pid: s.pid.load(Ordering::Relaxed),
            state,
            started_at: s.started_at.load(Ordering::Relaxed),
            stats: s.stats.copy(),
        };
        // Sequence lock, reader's side: the loads above before the check.
        fence(Ordering::Acquire);
        if s.generation.load(Ordering::Relaxed) == before {
            return (state != SlotState::Empty).then_some(child);
        }
    }
    None
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's, of this length, and no
        // borrow of it outlives `self`.
        let _ = unsafe { munmap(self.slots.cast(), bytes(self.len)) };
    }
}

impl fmt::Debug for Scoreboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoreboard")
            .field("capacity", &self.len)
            .field("master_pid", &self.master_pid)
            .field("start_time", &self.start_time)
            .finish()
    }
}

fn bytes(len: usize) -> usize {
    std::mem::size_of::<Slot>().saturating_mul(len)
}

/// `len` empty slots in a mapping that every later child shares.
fn map_shared(len: NonZeroUsize) -> nix::Result<NonNull<Slot>> {
    let size = NonZeroUsize::new(bytes(len.get())).ok_or(nix::Error::EINVAL)?;
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a new anonymous mapping at an address of the kernel's choice
    // aliases nothing; it is page-aligned (enough for a Slot) and
    // zero-filled, and zero bytes are a valid Slot.
    let ptr = unsafe { mmap_anonymous(None, size, prot, MapFlags::MAP_SHARED) }?;
    Ok(ptr.cast())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[test]
    fn a_claimed_slot_is_listed_and_a_released_one_forgotten() {
        let board = Scoreboard::new(3).unwrap();
        assert!(board.children().is_empty());
        board.claim(1, 101);
        board.stats(1).requests.store(5, Ordering::Relaxed);
        board.stats(1).active_conns.store(2, Ordering::Relaxed);
        board.set_state(1, SlotState::Serving);
        let children = board.children();
        assert_eq!(children.len(), 1);
        let c = &children[0];
        assert_eq!((c.slot, c.pid, c.state), (1, 101, SlotState::Serving));
        assert!(c.started_at > 0);
        assert_eq!(load(&c.stats.requests), 5);
        assert_eq!(board.vacant(), Some(0));

        board.release(1);
        assert!(board.children().is_empty(), "no ghost");
        let fresh = board.stats(1);
        assert_eq!((load(&fresh.requests), load(&fresh.active_conns)), (0, 0));
        assert_eq!(board.state(1), SlotState::Empty);
        assert_eq!(board.slots()[1].generation.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_successor_starts_from_zero() {
        let board = Scoreboard::new(1).unwrap();
        board.claim(0, 7);
        board.stats(0).active_conns.store(9, Ordering::Relaxed);
        board
            .stats(0)
            .latency
            .observe(std::time::Duration::from_millis(1));
        board.release(0);
        board.claim(0, 8);
        let children = board.children();
        assert_eq!(children.len(), 1);
        let c = &children[0];
        assert_eq!((c.pid, c.state), (8, SlotState::Starting));
        assert_eq!(load(&c.stats.active_conns), 0);
        assert_eq!(load(&c.stats.latency.count), 0);
        assert_eq!(board.vacant(), None);
    }

    #[test]
    fn the_child_and_the_master_may_enter_in_either_order() {
        let board = Scoreboard::new(2).unwrap();
        // The child got there first and already serves.
        board.enter(0, 11);
        board.set_state(0, SlotState::Serving);
        board.claim(0, 11);
        assert_eq!(board.state(0), SlotState::Serving);
        // The master first.
        board.claim(1, 12);
        board.enter(1, 12);
        assert_eq!(board.state(1), SlotState::Starting);
    }

    #[test]
    fn totals_add_counters_and_gauges_and_take_the_largest_maximum() {
        let board = Scoreboard::new(3).unwrap();
        for (slot, pid, requests, idle, max_queue) in [(0, 1, 5, 1, 4), (2, 2, 7, 3, 9)] {
            board.claim(slot, pid);
            let s = board.stats(slot);
            s.requests.store(requests, Ordering::Relaxed);
            s.threads_total.store(4, Ordering::Relaxed);
            s.threads_idle.store(idle, Ordering::Relaxed);
            s.max_queue_len.store(max_queue, Ordering::Relaxed);
            s.refused_503.store(1, Ordering::Relaxed);
            s.latency.observe(std::time::Duration::from_micros(50));
        }
        let t = board.totals();
        assert_eq!(load(&t.requests), 12);
        assert_eq!((load(&t.threads_total), load(&t.threads_idle)), (8, 4));
        assert_eq!(load(&t.max_queue_len), 9);
        assert_eq!(load(&t.refused_503), 2);
        assert_eq!(
            (load(&t.latency.buckets[0]), load(&t.latency.count)),
            (2, 2)
        );
        assert_eq!(load(&t.start_time), board.start_time());
    }

    #[test]
    fn a_slot_caught_mid_release_is_left_out() {
        let board = Scoreboard::new(2).unwrap();
        board.claim(0, 1);
        board.claim(1, 2);
        // As a reader sees the slot while the master zeroes it.
        board.slots()[0].generation.store(3, Ordering::Relaxed);
        let pids: Vec<u32> = board.children().iter().map(|c| c.pid).collect();
        assert_eq!(pids, [2]);
    }

    #[test]
    fn a_forked_child_counts_where_the_parent_reads() {
        let board = Scoreboard::new(2).unwrap();
        // SAFETY: the child touches only atomics in the shared mapping
        // (no allocation, no lock another thread could hold) and leaves
        // with _exit, so the threads of the test harness it did not
        // inherit are never needed.
        let pid = match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                board.enter(1, std::process::id());
                board.stats(1).requests.fetch_add(7, Ordering::Relaxed);
                board.set_state(1, SlotState::Serving);
                // SAFETY: as above; _exit runs no destructor nor atexit
                // handler of the parent's copy.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => child,
        };
        let raw = u32::try_from(pid.as_raw()).unwrap();
        board.claim(1, raw);
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
        let children = board.children();
        assert_eq!(children.len(), 1);
        let c = &children[0];
        assert_eq!((c.slot, c.pid, c.state), (1, raw, SlotState::Serving));
        assert_eq!(load(&c.stats.requests), 7);
        board.release(1);
        assert!(board.children().is_empty());
    }
}
