//! The server under soak as a tree of processes: the master (the pid in
//! the pidfile, so a USR2 upgrade is followed) and its children. Samples
//! of the whole tree (RSS, fds, threads summed; zombies; temporary files),
//! the signals the faults send, the upgrade, and the final TERM, all by
//! pid. `kill_all` (on drop, and by the test's guard when it fails)
//! kills whatever is left, so no server outlives the test.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::Server;
use crate::procs;

/// One look at the tree.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the load started.
    pub at: f64,
    pub master: i32,
    pub children: usize,
    pub zombies: usize,
    pub rss: u64,
    pub fds: u64,
    pub threads: u64,
    /// Open fds on files under the temp dir (unlinked spool files).
    pub temp_fds: u64,
}

pub struct Fleet {
    /// The process we started (the first master); reaped after a USR2.
    pub server: Mutex<Server>,
    pub pidfile: PathBuf,
    pub temp_dir: PathBuf,
    master: Mutex<i32>,
    /// Every pid seen as a master or a child, for the final check.
    seen: Mutex<BTreeSet<i32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fleet {
    pub fn new(server: Server, pidfile: PathBuf, temp_dir: PathBuf) -> Fleet {
        let pid = server.pid();
        Fleet {
            server: Mutex::new(server),
            pidfile,
            temp_dir,
            master: Mutex::new(pid),
            seen: Mutex::new(BTreeSet::from([pid])),
        }
    }

    /// The current master: the pidfile's pid once it names a live process.
    pub fn master(&self) -> i32 {
        let text = std::fs::read_to_string(&self.pidfile).unwrap_or_default();
        let mut m = lock(&self.master);
        if let Ok(pid) = text.trim().parse::<i32>() {
            if pid != *m && procs::alive(pid) {
                *m = pid;
                lock(&self.seen).insert(pid);
            }
        }
        *m
    }

    /// The master's running children, remembered for the final check.
    pub fn children(&self) -> Vec<i32> {
        let kids = procs::children_of(self.master()).0;
        lock(&self.seen).extend(kids.iter().copied());
        kids
    }

    pub fn sample(&self, since: Instant) -> Sample {
        let master = self.master();
        let (kids, zombies) = procs::children_of(master);
        lock(&self.seen).extend(kids.iter().copied());
        let tree: Vec<i32> = std::iter::once(master)
            .chain(kids.iter().copied())
            .collect();
        let sum = |f: &dyn Fn(i32) -> u64| tree.iter().map(|&p| f(p)).sum::<u64>();
        Sample {
            at: since.elapsed().as_secs_f64(),
            master,
            children: kids.len(),
            zombies: zombies.len(),
            rss: sum(&procs::rss_bytes),
            fds: sum(&procs::fd_count),
            threads: sum(&procs::threads),
            temp_fds: sum(&|p| procs::fds_under(p, &self.temp_dir)),
        }
    }

    pub fn signal(&self, sig: Signal) {
        let pid = self.master();
        kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
    }

    /// kill -9 of one child: its pid and the moment just before the
    /// signal (a client may see the reset before this call returns), or
    /// None when there was no child.
    pub fn kill_child(&self, pick: usize) -> Option<(i32, Instant)> {
        let kids = self.children();
        let victim = *kids.get(pick % kids.len().max(1))?;
        let at = Instant::now();
        kill(Pid::from_raw(victim), Signal::SIGKILL).ok()?;
        Some((victim, at))
    }

    /// USR2, then waits for the pidfile to name a new live master and for
    /// the old one to exit (reaped, if it is the process we started).
    /// Returns (old, new) or what went wrong.
    pub fn upgrade(&self) -> Result<(i32, i32), String> {
        let old = self.master();
        self.signal(Signal::SIGUSR2);
        let deadline = Instant::now() + Duration::from_secs(40);
        while self.master() == old && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let new = self.master();
        if new == old {
            return Err(format!("after USR2 the pidfile still names {old}"));
        }
        if !self.wait_gone(old, deadline) {
            return Err(format!("the old master {old} still runs 40 s after USR2"));
        }
        Ok((old, new))
    }

    /// Waits for `pid` to end; reaps it when it is the process we started.
    fn wait_gone(&self, pid: i32, deadline: Instant) -> bool {
        let mut server = lock(&self.server);
        if server.pid() == pid {
            let left = deadline.saturating_duration_since(Instant::now());
            return server.wait_exit(left).is_some();
        }
        drop(server);
        while procs::alive(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        !procs::alive(pid)
    }

    /// TERM to the master; waits for it and every pid ever seen to end.
    /// Ok(exit code if it is our own child) or the pids left.
    pub fn stop(&self) -> Result<Option<i32>, String> {
        let master = self.master();
        self.children();
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(40);
        if !self.wait_gone(master, deadline) {
            return Err(format!("master {master} still runs 40 s after TERM"));
        }
        let seen: Vec<i32> = lock(&self.seen).iter().copied().collect();
        while seen.iter().any(|&p| procs::alive(p)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let left: Vec<i32> = seen.into_iter().filter(|&p| procs::alive(p)).collect();
        if !left.is_empty() {
            return Err(format!("processes {left:?} outlived the master"));
        }
        let mut server = lock(&self.server);
        let code = (server.pid() == master)
            .then(|| server.wait_exit(Duration::ZERO).and_then(|s| s.code()))
            .flatten();
        Ok(code)
    }

    /// Waits (up to `timeout`) for every pid of `pids` to end.
    pub fn wait_all_gone(&self, pids: &[i32], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while pids.iter().any(|&p| procs::alive(p)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        !pids.iter().any(|&p| procs::alive(p))
    }

    /// How many pids were seen as masters or children.
    pub fn seen(&self) -> usize {
        lock(&self.seen).len()
    }
}

impl Fleet {
    /// SIGKILL to every server process still running: the current master,
    /// its children, and any pid seen before (each checked to be a
    /// running fastgate, so a pid reused since is left alone).
    pub fn kill_all(&self) {
        let master = self.master();
        let mut pids: BTreeSet<i32> = lock(&self.seen).clone();
        pids.extend(procs::children_of(master).0);
        pids.insert(master);
        for pid in pids {
            let is_fastgate = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("fastgate"));
            if procs::alive(pid) && is_fastgate {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill_all();
    }
}
