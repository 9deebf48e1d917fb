//! What the soak reads of the server's processes in /proc: a master's
//! children (zombies apart), and each process's RSS, fds, threads and the
//! unlinked temporary files it holds open. Everything is by pid, read
//! fresh each time; a process that vanished between two reads counts as
//! nothing rather than failing the run.

use std::path::Path;

/// The state letter and parent pid of `pid` (`None`: gone).
pub fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(") ")?.1;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` still runs (a zombie has ended: only its parent's reap
/// is missing).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The children of `master`: (running, zombies), sorted. The janitor
/// (a root process that unlinks files, started only when root is
/// dropped) is no server child.
pub fn children_of(master: i32) -> (Vec<i32>, Vec<i32>) {
    let (mut kids, mut zombies) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        match stat(pid) {
            Some(('Z', ppid)) if ppid == master => zombies.push(pid),
            Some((_, ppid)) if ppid == master && !is_janitor(pid) => kids.push(pid),
            _ => {}
        }
    }
    kids.sort();
    zombies.sort();
    (kids, zombies)
}

fn is_janitor(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim() == "fastgate-unlink")
}

/// A field of /proc/PID/status as a number (`VmRSS` in kB, `Threads`).
fn status_field(pid: i32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of `pid`, in bytes.
pub fn rss_bytes(pid: i32) -> u64 {
    status_field(pid, "VmRSS") * 1024
}

/// Threads of `pid`.
pub fn threads(pid: i32) -> u64 {
    status_field(pid, "Threads")
}

/// Open fds of `pid`.
pub fn fd_count(pid: i32) -> u64 {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(dir).map_or(0, |d| d.count() as u64)
}

/// Open fds of `pid` on files under `dir` (the spool's unlinked files
/// show as `DIR/name (deleted)`).
pub fn fds_under(pid: i32, dir: &Path) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let under = |e: &std::fs::DirEntry| {
        std::fs::read_link(e.path()).is_ok_and(|target| target.starts_with(dir))
    };
    fds.flatten().filter(under).count() as u64
}
