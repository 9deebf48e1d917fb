//! The soak's verdict: the quiet samples it compares (medians), the checks
//! (no request lost, RSS and fds at the end within 10 % of the baseline,
//! no zombie, threads bounded and not growing, no temporary file left, a
//! server that answers and stops cleanly), and the report as text and
//! JSON.

use serde_json::json;

use crate::fleet::Sample;
use crate::tally::Totals;

/// The median of a few samples taken with no client connected: the
/// figures compared, so that the load of the moment (connections open,
/// bodies in flight) does not count as growth.
#[derive(Clone, Debug, Default)]
pub struct Quiet {
    pub at: f64,
    pub rss: u64,
    pub fds: u64,
    pub threads: u64,
    pub temp_fds: u64,
    pub zombies: usize,
    pub children: usize,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

impl Quiet {
    pub fn of(samples: &[Sample]) -> Quiet {
        let pick = |f: fn(&Sample) -> u64| median(samples.iter().map(f).collect());
        let last = samples.last().cloned().unwrap_or_default();
        Quiet {
            at: samples.first().map_or(0.0, |s| s.at),
            rss: pick(|s| s.rss),
            fds: pick(|s| s.fds),
            threads: pick(|s| s.threads),
            temp_fds: last.temp_fds,
            zombies: last.zombies,
            children: last.children,
        }
    }
}

/// Everything the run found.
pub struct Report {
    pub seconds: f64,
    pub clients: usize,
    pub totals: Totals,
    pub samples: Vec<Sample>,
    pub base: Quiet,
    pub end: Quiet,
    pub temp_files_left: usize,
    pub thread_bound: u64,
    /// Each listener's answer after the run: (spec, answered).
    pub final_answers: Vec<(String, bool)>,
    /// The final TERM: the exit code (when the master is our child) or
    /// what was left.
    pub stop: Result<Option<i32>, String>,
    pub pids_seen: usize,
}

/// One check: name, passed, the figures behind it.
pub type Check = (String, bool, String);

fn within_10_percent(end: u64, base: u64) -> bool {
    // Growth is what a leak looks like; a smaller end (a child respawned
    // since, pages given back) is no failure.
    end * 10 <= base * 11
}

impl Report {
    pub fn checks(&self) -> Vec<Check> {
        let (b, e, t) = (&self.base, &self.end, &self.totals);
        let first_half_max = self.samples.iter().filter(|s| s.at <= self.seconds / 2.0);
        let first_half_max = first_half_max
            .map(|s| s.threads)
            .max()
            .unwrap_or(0)
            .max(b.threads);
        let max_threads = self.samples.iter().map(|s| s.threads).max().unwrap_or(0);
        vec![
            (
                "no request lost".into(),
                t.lost == 0,
                format!("{} lost", t.lost),
            ),
            (
                "RSS at the end within 10 % of the baseline".into(),
                within_10_percent(e.rss, b.rss),
                format!("{} kB -> {} kB", b.rss / 1024, e.rss / 1024),
            ),
            (
                "fds at the end within 10 % of the baseline".into(),
                within_10_percent(e.fds, b.fds),
                format!("{} -> {}", b.fds, e.fds),
            ),
            (
                "no zombie at the end".into(),
                e.zombies == 0,
                format!("{} zombies", e.zombies),
            ),
            (
                "threads bounded".into(),
                max_threads <= self.thread_bound,
                format!("at most {max_threads}, bound {}", self.thread_bound),
            ),
            // A pool grows with its queue and shrinks after 30 s idle,
            // so the count moves within its bound: growth past the most
            // seen in the first half, by more than 10 %, is a leak.
            (
                "threads not growing".into(),
                within_10_percent(e.threads, first_half_max),
                format!(
                    "{} at the end, {first_half_max} at most in the first half",
                    e.threads
                ),
            ),
            (
                "no temporary file left".into(),
                self.temp_files_left == 0 && e.temp_fds == 0,
                format!(
                    "{} files in the temp dir, {} open",
                    self.temp_files_left, e.temp_fds
                ),
            ),
            (
                "every listener answers at the end".into(),
                self.final_answers.iter().all(|a| a.1),
                format!("{:?}", self.final_answers),
            ),
            (
                "TERM stops the master and every child".into(),
                matches!(self.stop, Ok(None | Some(0))),
                format!("{:?}", self.stop),
            ),
        ]
    }

    pub fn passed(&self) -> bool {
        self.checks().iter().all(|c| c.1)
    }

    pub fn text(&self) -> String {
        let t = &self.totals;
        let mut out = format!(
            "soak: {:.0} s, {} client threads, {} pids seen\n\
             requests {}: answered {}, refused {} ({} outside bursts), failed in a killed child {}, \
             retried on a fresh connection after a kept-alive one closed with no answer: \
             {} at a HUP or USR2, {} at a kill -9; LOST {}\n",
            self.seconds, self.clients, self.pids_seen, t.requests.values().sum::<u64>(),
            t.answered, t.refused, t.refused_outside_bursts, t.failed_in_killed_child,
            t.retried_at_stop, t.retried_at_kill, t.lost
        );
        for (k, n) in &t.requests {
            out += &format!("  {k:<28} {n:>8}\n");
        }
        out += "faults:\n";
        for (k, n) in &t.faults {
            out += &format!("  {k:<28} {n:>8}\n");
        }
        for (k, n) in &t.notes {
            out += &format!("note: {k}: {n}\n");
        }
        out += "timeline:\n";
        for e in &t.events {
            out += &format!("  {e}\n");
        }
        for what in &t.lost_examples {
            out += &format!("lost: {what}\n");
        }
        out += &self.samples_text();
        for (name, ok, why) in self.checks() {
            out += &format!("{} {name}: {why}\n", if ok { "ok  " } else { "FAIL" });
        }
        out
    }

    fn samples_text(&self) -> String {
        let q = |name: &str, q: &Quiet| {
            format!(
                "{name:<9} at {:>6.1} s: RSS {:>7} kB, fds {:>4}, threads {:>3}, children {}, zombies {}\n",
                q.at, q.rss / 1024, q.fds, q.threads, q.children, q.zombies
            )
        };
        let mut out = "samples (master + children, summed):\n      s   master  kids  zomb    RSS kB   fds  thr\n".to_string();
        let step = (self.samples.len() / 40).max(1);
        for s in self.samples.iter().step_by(step) {
            out += &format!(
                "{:>7.1} {:>8} {:>5} {:>5} {:>9} {:>5} {:>4}\n",
                s.at,
                s.master,
                s.children,
                s.zombies,
                s.rss / 1024,
                s.fds,
                s.threads
            );
        }
        out + &self.maxima() + &q("baseline", &self.base) + &q("end", &self.end)
    }

    /// The largest of each figure over the samples under load, and how
    /// many samples caught a zombie (a child reaped within the master's
    /// next turn is one for a moment).
    fn maxima(&self) -> String {
        let max = |f: fn(&Sample) -> u64| self.samples.iter().map(f).max().unwrap_or(0);
        let with_zombie = self.samples.iter().filter(|s| s.zombies > 0).count();
        format!(
            "under load, at most: RSS {} kB, fds {}, threads {}, open temp files {}; \
             {with_zombie} of {} samples caught a zombie\n",
            max(|s| s.rss) / 1024,
            max(|s| s.fds),
            max(|s| s.threads),
            max(|s| s.temp_fds),
            self.samples.len()
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let t = &self.totals;
        let quiet = |q: &Quiet| {
            json!({"at_s": q.at, "rss_bytes": q.rss, "fds": q.fds,
            "threads": q.threads, "zombies": q.zombies, "children": q.children, "temp_fds": q.temp_fds})
        };
        json!({
            "duration_s": self.seconds,
            "clients": self.clients,
            "requests": t.requests,
            "answered": t.answered,
            "refused": t.refused,
            "refused_outside_bursts": t.refused_outside_bursts,
            "failed_in_killed_child": t.failed_in_killed_child,
            "retried_at_stop": t.retried_at_stop,
            "retried_at_kill": t.retried_at_kill,
            "events": t.events,
            "lost": t.lost,
            "lost_examples": t.lost_examples,
            "faults": t.faults,
            "notes": t.notes,
            "baseline": quiet(&self.base),
            "end": quiet(&self.end),
            "samples": self.samples.iter().map(|s| json!({"at_s": s.at, "master": s.master,
                "children": s.children, "zombies": s.zombies, "rss_bytes": s.rss, "fds": s.fds,
                "threads": s.threads, "temp_fds": s.temp_fds})).collect::<Vec<_>>(),
            "temp_files_left": self.temp_files_left,
            "pids_seen": self.pids_seen,
            "checks": self.checks().iter().map(|(n, ok, why)| json!({"check": n, "ok": ok, "figures": why})).collect::<Vec<_>>(),
            "passed": self.passed(),
        })
    }
}
