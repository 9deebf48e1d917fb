//! The script as a process: spawned without a shell in a process group of
//! its own (posix_spawn: no `pre_exec` hook), given the request's params as
//! its whole environment, and always reaped. Ending it early signals the
//! whole group, TERM and then KILL, so children it forked die with it; a
//! child that outlives a script which ended by itself is left to init.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::protocol::params::Params;

/// How long a script has to end after TERM (or after closing its
/// stdout) before its group gets KILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// The PATH every script gets (unless the front server sends one).
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A script's process group, which may be signalled only while its leader
/// is not reaped (so its id cannot belong to anyone else yet). Shared
/// with the request's abort hook, which runs on the loop thread.
#[derive(Default)]
pub struct Group {
    leader: Mutex<Option<Pid>>,
}

impl Group {
    /// Signals every process of the group, if its leader is not reaped.
    pub fn signal(&self, sig: Signal) {
        let leader = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pid) = *leader {
            // ESRCH: all of them are gone already.
            let _ = killpg(pid, sig);
        }
    }

    fn disarm(&self) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A running script; dropped unreaped (an error, a panic), it is ended.
pub struct Script {
    child: Child,
    pub group: Arc<Group>,
    reaped: bool,
}

/// The pipes of a script, taken out of its `Child`.
pub struct Pipes {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// Starts `path` (resolved) for a request with `params`.
pub fn spawn(path: &Path, params: &Params) -> io::Result<(Script, Pipes)> {
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .envs(environment(params))
        .current_dir(path.parent().unwrap_or(Path::new("/")))
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let pipes = Pipes {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let group = Arc::new(Group {
        leader: Mutex::new(Some(pid)),
    });
    let script = Script {
        child,
        group,
        reaped: false,
    };
    Ok((script, pipes))
}

/// The params as environment: minus `HTTP_PROXY` (httpoxy: a client's
/// `Proxy:` header must not become the script's proxy), minus what an
/// environment cannot hold, plus PATH when absent.
fn environment(params: &Params) -> impl Iterator<Item = (&OsStr, &OsStr)> {
    let has_path = params.get("PATH").is_some();
    let extra = (!has_path).then_some((OsStr::new("PATH"), OsStr::new(PATH)));
    params
        .iter()
        .filter(|(name, value)| passes(name, value))
        .map(|(n, v)| (OsStr::from_bytes(n), OsStr::from_bytes(v)))
        .chain(extra)
}

fn passes(name: &[u8], value: &[u8]) -> bool {
    !name.is_empty()
        && !name.eq_ignore_ascii_case(b"HTTP_PROXY")
        && !name.contains(&b'=')
        && !name.contains(&0)
        && !value.contains(&0)
}

impl Script {
    /// The script ended its output: it has [`GRACE`] to exit (children
    /// it left behind are init's), else its group is ended. Returns how
    /// it ended, for the log.
    pub fn finish(&mut self) -> String {
        if self.exited_within(GRACE) {
            return self.reap();
        }
        let pid = self.child.id();
        log::warn!("cgi pid {pid}: still running {GRACE:?} after closing its stdout; ended");
        self.terminate()
    }

    /// Ends the script and every process of its group: TERM, [`GRACE`]
    /// for the leader to exit, KILL for all that is left (the leader,
    /// unreaped, keeps the group's id from being reused), then the leader
    /// reaped.
    pub fn terminate(&mut self) -> String {
        if self.reaped {
            return String::new();
        }
        self.group.signal(Signal::SIGTERM);
        self.exited_within(GRACE);
        self.group.signal(Signal::SIGKILL);
        self.reap()
    }

    /// Waits (polling, never reaping) until the leader has exited.
    fn exited_within(&self, limit: Duration) -> bool {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let until = Instant::now() + limit;
        let mut nap = Duration::from_micros(20);
        loop {
            match waitid(Id::Pid(pid), flags) {
                Ok(WaitStatus::StillAlive) => {}
                // Exited, or not ours to wait for any more.
                _ => return true,
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep(nap.min(until - now));
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    fn reap(&mut self) -> String {
        self.group.disarm();
        self.reaped = true;
        match self.child.wait() {
            Ok(status) => status.to_string(),
            Err(e) => format!("not reaped: {e}"),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_the_params_without_httpoxy() {
        let pairs: &[(&[u8], &[u8])] = &[
            (b"HTTP_PROXY", b"http://evil"),
            (b"http_proxy", b"http://evil"),
            (b"HTTP_HOST", b"example.org"),
            (b"A=B", b"x"),
            (b"NUL", b"a\0b"),
        ];
        let params = Params::from_pairs(pairs.iter().copied());
        let env: Vec<_> = environment(&params).collect();
        assert_eq!(
            env,
            [
                (OsStr::new("HTTP_HOST"), OsStr::new("example.org")),
                (OsStr::new("PATH"), OsStr::new(PATH)),
            ]
        );
    }
}
