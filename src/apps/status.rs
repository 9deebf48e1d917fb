//! `status`: what this process is doing, for people and for monitoring
//! (DESIGN.md, "Status fields"): text by default, `?json`, `?openmetrics`,
//! and `?html`, a page that refreshes itself in a browser.
//!
//! A page is rendered from one [`Snapshot`]: every atomic of [`Stats`] is
//! read once, so the numbers of one page agree with each other (busy + idle
//! = total threads, a histogram's buckets add up to its count) even while
//! the loop and the workers move them. Rendering is pure, a snapshot in and
//! text out, and tested here; the handler only reads the clock and the
//! query.
//!
//! The gauges come from live state (the code that changes a state moves its
//! gauge at that moment), not from pairs of events counted apart, so they
//! cannot drift the way PHP-FPM's scoreboard counts do. Every format uses
//! DESIGN.md's names; OpenMetrics adds the `fastgate_` prefix and the
//! suffixes its types require (`_total`, `_bucket`, `_sum`, `_count`).
//!
//! Under prefork the server counts into its slot of the master's
//! [`Scoreboard`], and any child answers for all: the top-level fields are
//! the totals over the live children (counters and gauges added up, the
//! maxima the largest, `pid` and `start_time` the master's), `processes`
//! is how many children live, and `children` lists each with its own
//! fields, its slot and its state. A child that died is gone from the page
//! once the master reaped it; its successor shows in its slot.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::server::{Handler, Histogram, Scoreboard, SlotState, Stats, StatsHandle, BUCKETS_US};
use crate::{Request, Response};

/// The statuses the loop answers by itself, in the order pages list them.
pub const REFUSALS: [u16; 7] = [400, 404, 408, 413, 431, 503, 504];

/// The `status` app: renders the counters of the server it is mounted in.
pub struct Status {
    stats: StatsHandle,
}

impl Status {
    /// A status page over `stats` (from `ServerBuilder::stats`).
    pub fn new(stats: StatsHandle) -> Status {
        Status { stats }
    }
}

impl Handler for Status {
    fn handle(&self, req: &mut Request, resp: &mut Response) -> io::Result<()> {
        let now = unix_now();
        let snap = match self.stats.scoreboard() {
            Some((board, _)) => Snapshot::of_board(board, now),
            None => Snapshot::take(&self.stats, now),
        };
        let format = Format::from_query(req.query());
        resp.set_header("Content-Type", format.content_type());
        // Every read must see the present, not a cache's copy.
        resp.set_header("Cache-Control", "no-store");
        resp.write_all(format.render(&snap).as_bytes())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------- snapshot

/// One histogram read once: cumulative counts per upper bound
/// ([`BUCKETS_US`], then +Inf) and the sum of what was observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    pub cumulative: [u64; BUCKETS_US.len() + 1],
    pub sum_us: u64,
}

impl Buckets {
    fn read(h: &Histogram) -> Buckets {
        let mut b = Buckets::default();
        let mut total = 0u64;
        for (c, bucket) in b.cumulative.iter_mut().zip(&h.buckets) {
            total = total.saturating_add(load(bucket));
            *c = total;
        }
        b.sum_us = load(&h.sum_us);
        b
    }

    /// Observations: the +Inf bucket, so count and buckets always agree
    /// (the histogram's own count is bumped apart from its bucket).
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS_US.len()]
    }
}

/// Every number of one page, read once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub pid: u32,
    pub start_time: u64,
    pub uptime_seconds: u64,
    pub processes: u64,
    pub accepted_conns: u64,
    pub active_conns: u64,
    pub requests: u64,
    pub queue_len: u64,
    pub max_queue_len: u64,
    pub threads_busy: u64,
    pub threads_idle: u64,
    pub threads_total: u64,
    pub max_threads_reached: u64,
    pub slow_requests: u64,
    pub aborted_requests: u64,
    pub protocol_errors: u64,
    pub pending_async: u64,
    pub wakeups: u64,
    pub accept_wakeups: u64,
    /// Refusals by status, in [`REFUSALS`] order.
    pub refused: [(u16, u64); REFUSALS.len()],
    pub queue_wait: Buckets,
    pub latency: Buckets,
    /// Under prefork, each live child, in slot order; else empty.
    pub children: Vec<ChildSnapshot>,
}

/// One prefork child on the page: where it sits and its own numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildSnapshot {
    pub slot: usize,
    pub state: SlotState,
    /// Its fields, as a single process's page has them (no children).
    pub process: Snapshot,
}

impl Snapshot {
    /// Reads `stats` once; `now` is the time in Unix seconds.
    pub fn take(stats: &Stats, now: u64) -> Snapshot {
        Snapshot::read(stats, std::process::id(), now)
    }

    /// Reads every live child of `board` once: the totals on top (`pid`
    /// and `start_time` the master's), each child in `children`.
    pub fn of_board(board: &Scoreboard, now: u64) -> Snapshot {
        let live = board.children();
        let totals = Stats::default();
        for child in &live {
            totals.add(&child.stats);
        }
        totals
            .start_time
            .store(board.start_time(), Ordering::Relaxed);
        let mut snap = Snapshot::read(&totals, board.master_pid(), now);
        snap.processes = live.len() as u64;
        snap.children = (live.iter())
            .map(|child| {
                let mut process = Snapshot::read(&child.stats, child.pid, now);
                // The child's start is its fork, once the master says so.
                if child.started_at != 0 {
                    process.start_time = child.started_at;
                    process.uptime_seconds = now.saturating_sub(child.started_at);
                }
                ChildSnapshot {
                    slot: child.slot,
                    state: child.state,
                    process,
                }
            })
            .collect();
        snap
    }

    /// Reads `stats` once as the numbers of process `pid`.
    fn read(stats: &Stats, pid: u32, now: u64) -> Snapshot {
        let start_time = load(&stats.start_time);
        let active_conns = load(&stats.active_conns);
        let mut snap = Snapshot {
            pid,
            start_time,
            uptime_seconds: now.saturating_sub(start_time),
            processes: 1,
            active_conns,
            // Every open connection was accepted; the loop bumps accepted
            // first, but relaxed reads in another thread need not see so.
            accepted_conns: load(&stats.accepted_conns).max(active_conns),
            requests: load(&stats.requests),
            slow_requests: load(&stats.slow_requests),
            aborted_requests: load(&stats.aborted_requests),
            protocol_errors: load(&stats.protocol_errors),
            pending_async: load(&stats.pending_async),
            wakeups: load(&stats.wakeups),
            accept_wakeups: load(&stats.accept_wakeups),
            refused: REFUSALS.map(|s| (s, stats.refused(s).map_or(0, load))),
            queue_wait: Buckets::read(&stats.queue_wait),
            latency: Buckets::read(&stats.latency),
            ..Snapshot::default()
        };
        snap.read_queue(stats);
        snap.read_threads(stats);
        snap
    }

    /// The queue's length, and a maximum never below it (the maximum is
    /// raised just after the length grows).
    fn read_queue(&mut self, stats: &Stats) {
        self.queue_len = stats.queue_len();
        self.max_queue_len = load(&stats.max_queue_len).max(self.queue_len);
    }

    /// Threads: total and idle are read once each, and busy is what is
    /// left, so busy + idle = total on every page (a thread between the
    /// two updates counts as busy).
    fn read_threads(&mut self, stats: &Stats) {
        self.threads_total = load(&stats.threads_total);
        self.threads_idle = load(&stats.threads_idle).min(self.threads_total);
        self.threads_busy = self.threads_total - self.threads_idle;
        self.max_threads_reached = load(&stats.threads_max_reached).max(self.threads_total);
    }

    /// The plain numbers, in [`FIELDS`] order.
    fn values(&self) -> [u64; FIELDS.len()] {
        [
            u64::from(self.pid),
            self.start_time,
            self.uptime_seconds,
            self.processes,
            self.accepted_conns,
            self.active_conns,
            self.requests,
            self.queue_len,
            self.max_queue_len,
            self.threads_busy,
            self.threads_idle,
            self.threads_total,
            self.max_threads_reached,
            self.slow_requests,
            self.aborted_requests,
            self.protocol_errors,
            self.pending_async,
            self.wakeups,
            self.accept_wakeups,
        ]
    }

    /// The plain numbers with their names, types and meanings.
    fn scalars(&self) -> impl Iterator<Item = Scalar> {
        let values = self.values();
        (FIELDS.iter().zip(values)).map(|(&(name, kind, help), value)| Scalar {
            name,
            kind,
            help,
            value,
        })
    }

    /// The plain numbers of one child: all but `processes`.
    fn child_scalars(&self) -> impl Iterator<Item = Scalar> {
        self.scalars().filter(|s| s.name != "processes")
    }

    /// The two histograms: name, data, meaning.
    fn histograms(&self) -> [(&'static str, &Buckets, &'static str); 2] {
        [
            (
                "queue_wait",
                &self.queue_wait,
                "seconds a request waited for a worker",
            ),
            (
                "latency",
                &self.latency,
                "seconds a request took, until its end",
            ),
        ]
    }
}

/// The plain fields of a page, in page order (as [`Snapshot::values`]):
/// name, OpenMetrics type, meaning.
const FIELDS: [(&str, Kind, &str); 19] = [
    (
        "pid",
        Kind::Gauge,
        "process id (under prefork, the master's)",
    ),
    (
        "start_time",
        Kind::Gauge,
        "Unix time the server (under prefork, the master) started, in seconds",
    ),
    ("uptime_seconds", Kind::Gauge, "seconds since the start"),
    (
        "processes",
        Kind::Gauge,
        "processes serving (1 without prefork, else the children alive)",
    ),
    ("accepted_conns", Kind::Counter, "connections accepted"),
    ("active_conns", Kind::Gauge, "connections open now"),
    ("requests", Kind::Counter, "requests answered"),
    (
        "queue_len",
        Kind::Gauge,
        "requests waiting for a worker now",
    ),
    (
        "max_queue_len",
        Kind::Gauge,
        "the longest the queue has been",
    ),
    ("threads_busy", Kind::Gauge, "workers running a request"),
    ("threads_idle", Kind::Gauge, "workers waiting for a request"),
    ("threads_total", Kind::Gauge, "workers alive"),
    (
        "max_threads_reached",
        Kind::Gauge,
        "the most workers alive at once",
    ),
    (
        "slow_requests",
        Kind::Counter,
        "requests slower than --slow-threshold",
    ),
    (
        "aborted_requests",
        Kind::Counter,
        "requests aborted or left by the client",
    ),
    (
        "protocol_errors",
        Kind::Counter,
        "client errors: malformed input, limits, timeouts",
    ),
    (
        "pending_async",
        Kind::Gauge,
        "async requests waiting for their answer",
    ),
    (
        "wakeups",
        Kind::Counter,
        "wakeups of the event loop by other threads",
    ),
    (
        "accept_wakeups",
        Kind::Counter,
        "times a listening socket woke the loop (per accepted connection: the cost of a herd)",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One plain number of a page.
struct Scalar {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: u64,
}

/// Microseconds as seconds, exactly, with at least one decimal
/// (`100` → `0.0001`, `1_000_000` → `1.0`): what OpenMetrics' `le` labels
/// and JSON numbers both read.
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = format!("{:06}", us % 1_000_000);
    match frac.trim_end_matches('0') {
        "" => format!("{whole}.0"),
        f => format!("{whole}.{f}"),
    }
}

// ---------------------------------------------------------------- formats

/// The page's format, from the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    OpenMetrics,
    Html,
}

impl Format {
    /// The first of `json`, `openmetrics`, `html` among the query's keys
    /// (`?json`, `?json=1`, `?full&json`); else text.
    pub fn from_query(query: &str) -> Format {
        query
            .split('&')
            .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
            .find_map(|key| match key {
                "json" => Some(Format::Json),
                "openmetrics" => Some(Format::OpenMetrics),
                "html" => Some(Format::Html),
                _ => None,
            })
            .unwrap_or(Format::Text)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Json => "application/json",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The page for `snap`.
    pub fn render(self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let written = match self {
            Format::Text => text(&mut out, snap),
            Format::Json => json(&mut out, snap),
            Format::OpenMetrics => openmetrics(&mut out, snap),
            Format::Html => html(&mut out, snap),
        };
        // Invariant: formatting into a String cannot fail.
        written.expect("writing to a String");
        out
    }
}

/// Name and value of each line of the text page and row of the HTML one
/// (the histograms' buckets are shown apart).
fn rows(snap: &Snapshot) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = (snap.scalars())
        .map(|s| (s.name.to_string(), s.value.to_string()))
        .collect();
    for (status, n) in snap.refused {
        rows.push((format!("refused_{status}"), n.to_string()));
    }
    for (name, h, _) in snap.histograms() {
        rows.push((format!("{name}_count"), h.count().to_string()));
        rows.push((format!("{name}_sum"), seconds(h.sum_us)));
    }
    rows
}

/// `(upper bound, cumulative count)` of each bucket, +Inf last.
fn bounds(h: &Buckets) -> impl Iterator<Item = (String, u64)> + '_ {
    let finite = BUCKETS_US.iter().map(|&us| seconds(us));
    let all = finite.chain(std::iter::once("+Inf".to_string()));
    all.zip(h.cumulative.iter().copied())
}

/// `name: value` lines, as PHP-FPM's page; a histogram's buckets on one
/// line of `bound=count` pairs, cumulative.
fn text(out: &mut String, snap: &Snapshot) -> fmt::Result {
    for (name, value) in rows(snap) {
        writeln!(out, "{:<24}{value}", format!("{name}:"))?;
    }
    for (name, h, _) in snap.histograms() {
        let pairs: Vec<String> = bounds(h).map(|(le, n)| format!("{le}={n}")).collect();
        writeln!(out, "{:<24}{}", format!("{name}_buckets:"), pairs.join(" "))?;
    }
    for child in &snap.children {
        out.push('\n');
        for (name, value) in child_rows(child) {
            writeln!(out, "{:<24}{value}", format!("{name}:"))?;
        }
    }
    Ok(())
}

/// Name and value of each field of a child, its slot and state first:
/// a block of the text page after the totals, as PHP-FPM's full page
/// lists its processes.
fn child_rows(child: &ChildSnapshot) -> Vec<(String, String)> {
    let mut rows = vec![
        ("slot".to_string(), child.slot.to_string()),
        ("state".to_string(), child.state.name().to_string()),
    ];
    let fields = child.process.child_scalars();
    rows.extend(fields.map(|s| (s.name.to_string(), s.value.to_string())));
    rows
}

/// One object of numbers; `refused` by status; each histogram as its
/// cumulative `buckets` (finite bounds: the +Inf one is `count`), `count`
/// and `sum` in seconds; `children` one object per child (`slot`,
/// `state`, then its plain numbers), empty without prefork.
fn json(out: &mut String, snap: &Snapshot) -> fmt::Result {
    out.push('{');
    for s in snap.scalars() {
        write!(out, "\"{}\":{},", s.name, s.value)?;
    }
    let refused: Vec<String> = (snap.refused.iter())
        .map(|(status, n)| format!("\"{status}\":{n}"))
        .collect();
    write!(out, "\"refused\":{{{}}},", refused.join(","))?;
    for (name, h, _) in snap.histograms() {
        write!(out, "\"{name}\":")?;
        json_histogram(out, h)?;
        out.push(',');
    }
    let children: Vec<String> = snap.children.iter().map(json_child).collect();
    writeln!(out, "\"children\":[{}]}}", children.join(","))
}

fn json_child(child: &ChildSnapshot) -> String {
    let mut fields = vec![
        format!("\"slot\":{}", child.slot),
        format!("\"state\":\"{}\"", child.state.name()),
    ];
    let numbers = child.process.child_scalars();
    fields.extend(numbers.map(|s| format!("\"{}\":{}", s.name, s.value)));
    format!("{{{}}}", fields.join(","))
}

fn json_histogram(out: &mut String, h: &Buckets) -> fmt::Result {
    let buckets: Vec<String> = (bounds(h).take(BUCKETS_US.len()))
        .map(|(le, n)| format!("{{\"le\":{le},\"count\":{n}}}"))
        .collect();
    write!(
        out,
        "{{\"buckets\":[{}],\"count\":{},\"sum\":{}}}",
        buckets.join(","),
        h.count(),
        seconds(h.sum_us)
    )
}

/// OpenMetrics 1.0 text: each family's TYPE and HELP before its samples,
/// counters as `_total`, histograms as cumulative `_bucket{le}` with
/// `+Inf`, `_sum` and `_count`, `# EOF` last.
fn openmetrics(out: &mut String, snap: &Snapshot) -> fmt::Result {
    for s in snap.scalars() {
        let (typ, suffix) = match s.kind {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge => ("gauge", ""),
        };
        family(out, s.name, typ, s.help)?;
        writeln!(out, "fastgate_{}{suffix} {}", s.name, s.value)?;
    }
    family(
        out,
        "refused",
        "counter",
        "requests the server refused itself, by status",
    )?;
    for (status, n) in snap.refused {
        writeln!(out, "fastgate_refused_total{{status=\"{status}\"}} {n}")?;
    }
    for (name, h, help) in snap.histograms() {
        family(out, name, "histogram", help)?;
        for (le, n) in bounds(h) {
            writeln!(out, "fastgate_{name}_bucket{{le=\"{le}\"}} {n}")?;
        }
        writeln!(out, "fastgate_{name}_sum {}", seconds(h.sum_us))?;
        writeln!(out, "fastgate_{name}_count {}", h.count())?;
    }
    if !snap.children.is_empty() {
        openmetrics_children(out, &snap.children)?;
    }
    out.push_str("# EOF\n");
    Ok(())
}

/// Under prefork, each child as labeled samples of families of their
/// own (`fastgate_child_requests_total{slot="0",pid="4242"}`), so a sum
/// over a family never counts the totals twice: an info family with each
/// child's state, then a family per plain field.
fn openmetrics_children(out: &mut String, children: &[ChildSnapshot]) -> fmt::Result {
    let label = |c: &ChildSnapshot| format!("slot=\"{}\",pid=\"{}\"", c.slot, c.process.pid);
    family(out, "child", "info", "each child of the prefork master")?;
    for c in children {
        let state = c.state.name();
        writeln!(
            out,
            "fastgate_child_info{{{},state=\"{state}\"}} 1",
            label(c)
        )?;
    }
    let Some(first) = children.first() else {
        return Ok(());
    };
    for field in first.process.child_scalars().filter(|s| s.name != "pid") {
        let (typ, suffix) = match field.kind {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge => ("gauge", ""),
        };
        let name = format!("child_{}", field.name);
        let help = match field.name {
            "start_time" => "Unix time the master forked the child, in seconds",
            "uptime_seconds" => "seconds since the child's fork",
            help => help,
        };
        family(out, &name, typ, &format!("{help}, per child"))?;
        for c in children {
            let value = (c.process.child_scalars())
                .find(|s| s.name == field.name)
                .map_or(0, |s| s.value);
            writeln!(out, "fastgate_{name}{suffix}{{{}}} {value}", label(c))?;
        }
    }
    Ok(())
}

fn family(out: &mut String, name: &str, typ: &str, help: &str) -> fmt::Result {
    writeln!(out, "# TYPE fastgate_{name} {typ}")?;
    writeln!(out, "# HELP fastgate_{name} {help}")
}

/// A small page for a person: the rows of the text page in a table, a
/// table per histogram, reloaded every 5 seconds.
fn html(out: &mut String, snap: &Snapshot) -> fmt::Result {
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"5\">",
        "<title>fastgate status</title><style>",
        "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}",
        "th,td{padding:2px 8px;border-bottom:1px solid #ddd}td{text-align:right}",
        "</style></head><body>\n<h1>fastgate status</h1>\n"
    ));
    html_table(out, ("field", "value"), rows(snap))?;
    for (name, h, help) in snap.histograms() {
        writeln!(out, "<h2>{}</h2><p>{}</p>", escape(name), escape(help))?;
        let rows = bounds(h).map(|(le, n)| (format!("≤ {le}"), n.to_string()));
        html_table(out, ("seconds", "requests"), rows.collect())?;
    }
    if !snap.children.is_empty() {
        html_children(out, &snap.children)?;
    }
    out.push_str("</body></html>\n");
    Ok(())
}

/// The children, a row each, a column per field.
fn html_children(out: &mut String, children: &[ChildSnapshot]) -> fmt::Result {
    out.push_str("<h2>children</h2><table>\n");
    for (i, child) in children.iter().enumerate() {
        let rows = child_rows(child);
        if i == 0 {
            let names: Vec<String> = rows.iter().map(|(n, _)| escape(n)).collect();
            writeln!(out, "<tr><th>{}</th></tr>", names.join("</th><th>"))?;
        }
        let values: Vec<String> = rows.iter().map(|(_, v)| escape(v)).collect();
        writeln!(out, "<tr><td>{}</td></tr>", values.join("</td><td>"))?;
    }
    out.push_str("</table>\n");
    Ok(())
}

fn html_table(out: &mut String, head: (&str, &str), rows: Vec<(String, String)>) -> fmt::Result {
    writeln!(
        out,
        "<table><tr><th>{}</th><th>{}</th></tr>",
        head.0, head.1
    )?;
    for (name, value) in rows {
        let (name, value) = (escape(&name), escape(&value));
        writeln!(out, "<tr><th>{name}</th><td>{value}</td></tr>")?;
    }
    out.push_str("</table>\n");
    Ok(())
}

/// Text as HTML: the five characters that could end an element or an
/// attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A snapshot whose fields each hold a value of their own.
    fn sample() -> Snapshot {
        let stats = Stats::default();
        let set = |a: &AtomicU64, v| a.store(v, Ordering::Relaxed);
        set(&stats.start_time, 1_000);
        set(&stats.accepted_conns, 11);
        set(&stats.active_conns, 5);
        set(&stats.requests, 7);
        set(&stats.queue_submitted, 30);
        set(&stats.queue_picked, 26);
        set(&stats.max_queue_len, 9);
        set(&stats.threads_total, 3);
        set(&stats.threads_idle, 1);
        set(&stats.threads_max_reached, 6);
        set(&stats.slow_requests, 12);
        set(&stats.aborted_requests, 13);
        set(&stats.protocol_errors, 14);
        set(&stats.pending_async, 15);
        set(&stats.wakeups, 16);
        set(&stats.accept_wakeups, 17);
        set(&stats.refused_404, 2);
        for us in [150, 3_000_000, 60_000_000] {
            stats.latency.observe(Duration::from_micros(us));
        }
        stats.queue_wait.observe(Duration::from_micros(20));
        Snapshot::take(&stats, 1_042)
    }

    #[test]
    fn seconds_are_exact_with_a_decimal() {
        let got: Vec<String> = [0, 100, 250, 1_000_000, 2_500_000, 10_000_001]
            .map(seconds)
            .to_vec();
        let want = ["0.0", "0.0001", "0.00025", "1.0", "2.5", "10.000001"];
        assert_eq!(got, want);
    }

    #[test]
    fn a_snapshot_agrees_with_itself() {
        let stats = Stats::default();
        // As a page may catch them mid-update: idle above total, the
        // queue grown past a maximum not yet raised, a thread not yet
        // counted as reached.
        stats.threads_total.store(2, Ordering::Relaxed);
        stats.threads_idle.store(5, Ordering::Relaxed);
        stats.queue_submitted.store(3, Ordering::Relaxed);
        stats.max_queue_len.store(1, Ordering::Relaxed);
        stats.active_conns.store(1, Ordering::Relaxed);
        stats.latency.buckets[0].store(4, Ordering::Relaxed);
        stats.latency.count.store(3, Ordering::Relaxed);
        let s = Snapshot::take(&stats, 10);
        assert_eq!((s.threads_total, s.threads_idle, s.threads_busy), (2, 2, 0));
        assert_eq!(s.max_threads_reached, 2);
        assert_eq!((s.queue_len, s.max_queue_len), (3, 3));
        assert_eq!((s.active_conns, s.accepted_conns), (1, 1));
        assert_eq!(s.latency.count(), 4, "count is the +Inf bucket");
        assert_eq!((s.uptime_seconds, s.processes), (10, 1));
    }

    #[test]
    fn json_parses_and_has_every_field() {
        let s = sample();
        let v: serde_json::Value = serde_json::from_str(&Format::Json.render(&s)).unwrap();
        let want = [
            ("pid", u64::from(std::process::id())),
            ("start_time", 1_000),
            ("uptime_seconds", 42),
            ("processes", 1),
            ("accepted_conns", 11),
            ("active_conns", 5),
            ("requests", 7),
            ("queue_len", 4),
            ("max_queue_len", 9),
            ("threads_busy", 2),
            ("threads_idle", 1),
            ("threads_total", 3),
            ("max_threads_reached", 6),
            ("slow_requests", 12),
            ("aborted_requests", 13),
            ("protocol_errors", 14),
            ("pending_async", 15),
            ("wakeups", 16),
            ("accept_wakeups", 17),
        ];
        for (name, value) in want {
            assert_eq!(v[name].as_u64(), Some(value), "{name}");
        }
        assert_eq!(v.as_object().unwrap().len(), want.len() + 4, "{v}");
        assert_eq!(v["refused"]["404"], 2);
        assert_eq!(v["children"], serde_json::json!([]));
        let latency = &v["latency"];
        assert_eq!(
            (latency["count"].as_u64(), latency["sum"].as_f64()),
            (Some(3), Some(63.00015))
        );
        let buckets = latency["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), BUCKETS_US.len());
        assert_eq!(
            (buckets[0]["le"].as_f64(), buckets[0]["count"].as_u64()),
            (Some(0.0001), Some(0))
        );
        assert_eq!(
            (buckets[1]["le"].as_f64(), buckets[1]["count"].as_u64()),
            (Some(0.00025), Some(1))
        );
        assert_eq!(
            buckets.last().unwrap()["count"],
            2,
            "60 s is past the last bound"
        );
    }

    /// The OpenMetrics rules the page must keep, checked line by line:
    /// a TYPE before each family's samples, the suffixes of its type.
    fn check_families(page: &str) {
        let mut types: Vec<(String, String)> = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, typ) = rest.split_once(' ').unwrap();
                types.push((family.into(), typ.into()));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let (family, typ) = (types.iter().rev())
                .find(|(f, _)| name.starts_with(f.as_str()))
                .unwrap_or_else(|| panic!("no TYPE before {line}"));
            let suffixes: &[&str] = match typ.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                "info" => &["_info"],
                _ => &["_bucket", "_sum", "_count"],
            };
            assert!(suffixes.contains(&&name[family.len()..]), "{typ}: {line}");
        }
    }

    /// A histogram's buckets: cumulative, `+Inf` last and equal to `_count`.
    fn check_histogram(page: &str, name: &str) {
        let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        let bucket = format!("fastgate_{name}_bucket{{le=");
        let buckets: Vec<&str> = page.lines().filter(|l| l.starts_with(&bucket)).collect();
        assert_eq!(buckets.len(), BUCKETS_US.len() + 1, "{name}");
        let counts: Vec<u64> = buckets.iter().map(|l| value(l)).collect();
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{name}: {counts:?}"
        );
        assert!(buckets.last().unwrap().contains("le=\"+Inf\""), "{name}");
        let count = format!("fastgate_{name}_count ");
        let count = page.lines().find(|l| l.starts_with(&count)).unwrap();
        assert_eq!(value(count), counts[BUCKETS_US.len()], "{name}");
        assert!(page.contains(&format!("\nfastgate_{name}_sum ")), "{name}");
    }

    #[test]
    fn openmetrics_keeps_the_rules() {
        let page = Format::OpenMetrics.render(&sample());
        assert_eq!(page.lines().last(), Some("# EOF"));
        assert_eq!(page.matches("# EOF").count(), 1);
        check_families(&page);
        check_histogram(&page, "latency");
        check_histogram(&page, "queue_wait");
        assert!(page.contains("\nfastgate_requests_total 7\n"), "{page}");
        assert!(page.contains("\nfastgate_threads_busy 2\n"), "{page}");
        assert!(page.contains("\nfastgate_refused_total{status=\"404\"} 2\n"));
        assert!(page.contains("\nfastgate_latency_bucket{le=\"2.5\"} 1\n"));
        assert!(page.contains("\nfastgate_latency_bucket{le=\"5.0\"} 2\n"));
    }

    #[test]
    fn text_has_every_name_once() {
        let s = sample();
        let page = Format::Text.render(&s);
        let names: Vec<&str> = page.lines().map(|l| l.split(':').next().unwrap()).collect();
        for sc in s.scalars() {
            assert_eq!(
                names.iter().filter(|n| **n == sc.name).count(),
                1,
                "{}",
                sc.name
            );
        }
        assert!(page.contains("\nrequests:               7\n"), "{page}");
        assert!(page.contains("\nrefused_404:            2\n"), "{page}");
        assert!(page.contains("\nlatency_buckets:        0.0001=0 0.00025=1 "));
        assert!(page.ends_with(" +Inf=3\n"), "{page}");
    }

    #[test]
    fn html_refreshes_and_escapes() {
        let page = Format::Html.render(&sample());
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(
            page.contains("<tr><th>threads_busy</th><td>2</td></tr>"),
            "{page}"
        );
        assert!(
            page.contains("<tr><th>≤ +Inf</th><td>3</td></tr>"),
            "{page}"
        );
        assert!(page.trim_end().ends_with("</html>"));
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    /// A scoreboard made here (so this process is its master) with two
    /// children of their own numbers, in slots 0 and 2, and the page it
    /// gives.
    fn prefork_sample() -> (Scoreboard, Snapshot) {
        let board = Scoreboard::new(3).unwrap();
        let children = [(0, 101, 5, 3, 1, 4), (2, 103, 7, 2, 2, 9)];
        for (slot, pid, requests, total, idle, max_queue) in children {
            board.claim(slot, pid);
            let s = board.stats(slot);
            let set = |a: &AtomicU64, v| a.store(v, Ordering::Relaxed);
            set(&s.start_time, board.start_time());
            set(&s.requests, requests);
            set(&s.threads_total, total);
            set(&s.threads_idle, idle);
            set(&s.max_queue_len, max_queue);
            set(&s.queue_submitted, 3);
            set(&s.refused_404, 1);
            s.latency.observe(Duration::from_micros(150));
        }
        board
            .stats(2)
            .threads_max_reached
            .store(11, Ordering::Relaxed);
        board.set_state(2, SlotState::Serving);
        let snap = Snapshot::of_board(&board, board.start_time() + 42);
        (board, snap)
    }

    #[test]
    fn under_prefork_the_top_is_the_totals_and_each_child_is_listed() {
        let (board, snap) = prefork_sample();
        let v: serde_json::Value = serde_json::from_str(&Format::Json.render(&snap)).unwrap();
        let top = [
            ("pid", u64::from(std::process::id())),
            ("start_time", board.start_time()),
            ("uptime_seconds", 42),
            ("processes", 2),
            ("requests", 12),
            ("threads_total", 5),
            ("threads_idle", 3),
            ("threads_busy", 2),
            ("queue_len", 6),
            // The larger child's, but never below the queue it bounds.
            ("max_queue_len", 9),
            ("max_threads_reached", 11),
        ];
        for (name, value) in top {
            assert_eq!(v[name].as_u64(), Some(value), "{name}: {v}");
        }
        assert_eq!(v["refused"]["404"], 2);
        assert_eq!(v["latency"]["count"], 2);
        let children = v["children"].as_array().unwrap();
        assert_eq!(children.len(), 2, "{v}");
        let (a, b) = (&children[0], &children[1]);
        assert_eq!(
            (&a["slot"], &a["pid"], &a["state"]),
            (&0.into(), &101.into(), &"starting".into())
        );
        assert_eq!(
            (&b["slot"], &b["pid"], &b["state"]),
            (&2.into(), &103.into(), &"serving".into())
        );
        assert_eq!((&a["requests"], &b["requests"]), (&5.into(), &7.into()));
        assert_eq!(
            (&a["threads_busy"], &b["threads_busy"]),
            (&2.into(), &0.into())
        );
        for name in [
            "start_time",
            "uptime_seconds",
            "queue_len",
            "protocol_errors",
        ] {
            assert!(b[name].is_u64(), "{name}: {b}");
        }
        assert!(b.get("processes").is_none() && b.get("children").is_none());
    }

    #[test]
    fn a_released_child_leaves_the_page() {
        let (board, _) = prefork_sample();
        board.release(0);
        board.claim(0, 105);
        let snap = Snapshot::of_board(&board, board.start_time());
        let pids: Vec<u32> = snap.children.iter().map(|c| c.process.pid).collect();
        assert_eq!(pids, [105, 103], "the successor, never a ghost");
        assert_eq!((snap.processes, snap.requests), (2, 7));
    }

    #[test]
    fn under_prefork_openmetrics_labels_each_child() {
        let (_board, snap) = prefork_sample();
        let page = Format::OpenMetrics.render(&snap);
        check_families(&page);
        check_histogram(&page, "latency");
        assert_eq!(page.lines().last(), Some("# EOF"));
        assert!(page.contains("\nfastgate_processes 2\n"), "{page}");
        assert!(page.contains("\nfastgate_requests_total 12\n"), "{page}");
        let info = "\nfastgate_child_info{slot=\"2\",pid=\"103\",state=\"serving\"} 1\n";
        assert!(page.contains(info), "{page}");
        let requests = "\nfastgate_child_requests_total{slot=\"0\",pid=\"101\"} 5\n";
        assert!(page.contains(requests), "{page}");
        assert!(page.contains("\nfastgate_child_threads_busy{slot=\"0\",pid=\"101\"} 2\n"));
        assert!(!page.contains("fastgate_child_pid"), "the pid is a label");
        assert!(!page.contains("fastgate_child_processes"), "{page}");
    }

    #[test]
    fn under_prefork_text_and_html_list_each_child() {
        let (_board, snap) = prefork_sample();
        let text = Format::Text.render(&snap);
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(blocks.len(), 3, "{text}");
        assert!(
            blocks[0].contains("\nprocesses:              2\n"),
            "{text}"
        );
        assert!(blocks[2].starts_with("slot:                   2\nstate:                  serving\npid:                    103\n"), "{text}");
        assert!(
            blocks[2].contains("\nrequests:               7\n"),
            "{text}"
        );
        let html = Format::Html.render(&snap);
        assert!(html.contains("<h2>children</h2>"), "{html}");
        assert!(
            html.contains("<tr><td>2</td><td>serving</td><td>103</td>"),
            "{html}"
        );
    }

    #[test]
    fn a_single_process_has_no_children() {
        let s = sample();
        assert!(s.children.is_empty());
        let page = Format::OpenMetrics.render(&s);
        assert!(!page.contains("fastgate_child"), "{page}");
        assert!(!Format::Text.render(&s).contains("\n\n"));
        assert!(!Format::Html.render(&s).contains("children"));
    }

    #[test]
    fn the_query_picks_the_format() {
        let cases = [
            ("", Format::Text),
            ("full", Format::Text),
            ("json", Format::Json),
            ("json=1", Format::Json),
            ("full&openmetrics", Format::OpenMetrics),
            ("html&json", Format::Html),
            ("jsonp", Format::Text),
        ];
        for (query, want) in cases {
            assert_eq!(Format::from_query(query), want, "{query:?}");
        }
    }
}
