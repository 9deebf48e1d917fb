//! The files a server leaves behind (the Unix socket files it created, its
//! pidfile) removed when it exits, even after it dropped root.
//!
//! Once fastgate runs as `--user nobody`, it may no longer unlink a file in
//! a root-owned directory such as `/run`. So before dropping root it forks
//! a tiny process that keeps root, holds no socket, ignores the stop
//! signals and waits for a pipe from the server to close: at the server's
//! exit (however it ends, a crash included) it removes each file that is
//! still the very file the server made (same device and inode: a newer
//! server's socket at the same path is left alone) and exits. The server
//! reaps it when it stops normally. Between fork and exit the child only
//! makes async-signal-safe calls, so a library user may build a server from
//! a threaded program.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// The janitor process, as the server sees it.
pub struct Janitor {
    pid: Pid,
    /// Closing it tells the janitor to clean up and exit.
    pipe: Option<OwnedFd>,
}

/// A file to remove, identified by path and inode.
struct Target {
    path: CString,
    dev: u64,
    ino: u64,
}

impl Janitor {
    /// Forks the janitor for `files`, which must exist now (a missing one
    /// is skipped).
    pub fn spawn(files: &[PathBuf]) -> io::Result<Janitor> {
        let targets = targets(files);
        let (read, write) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        // SAFETY: the child runs only `janitor_main`, which makes nothing
        // but async-signal-safe system calls on memory prepared before the
        // fork, and never returns.
        match unsafe { fork() }? {
            ForkResult::Child => janitor_main(read.as_raw_fd(), &targets),
            ForkResult::Parent { child } => Ok(Janitor {
                pid: child,
                pipe: Some(write),
            }),
        }
    }
}

impl Janitor {
    /// The files now belong to another process (a binary upgrade): the
    /// janitor exits without removing them.
    pub fn cancel(mut self) {
        if let Some(pipe) = self.pipe.take() {
            let _ = nix::unistd::write(&pipe, &[CANCEL]);
        }
    }
}

/// The byte that tells the janitor to leave the files alone.
const CANCEL: u8 = b'x';

impl Drop for Janitor {
    fn drop(&mut self) {
        drop(self.pipe.take());
        let _ = waitpid(self.pid, None);
    }
}

fn targets(files: &[PathBuf]) -> Vec<Target> {
    files
        .iter()
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(p).ok()?;
            Some(Target {
                path: CString::new(p.as_os_str().as_bytes()).ok()?,
                dev: meta.dev(),
                ino: meta.ino(),
            })
        })
        .collect()
}

/// The child: ignore stop signals, keep only the pipe, wait for it to
/// close, remove what is still ours, exit.
fn janitor_main(pipe: RawFd, targets: &[Target]) -> ! {
    name_and_detach(pipe);
    if wait_for_close(pipe) != Some(CANCEL) {
        for t in targets {
            remove_if_same(t);
        }
    }
    // SAFETY: _exit ends the child without running the parent's atexit
    // handlers or destructors, which a forked copy must not run.
    unsafe { nix::libc::_exit(0) }
}

/// Renames the process for `ps`, ignores the signals a terminal or a
/// service manager sends the whole group (so the cleanup still happens),
/// and closes every fd but the pipe (no listening socket stays open here).
fn name_and_detach(pipe: RawFd) {
    use nix::libc;
    // SAFETY: prctl, signal and the close_range syscall are async-signal-
    // safe; the name is a NUL-terminated static of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"fastgate-unlink".as_ptr());
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let pipe = pipe as libc::c_uint;
        if pipe > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, pipe - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, pipe + 1, u32::MAX, 0u32);
    }
}

/// Blocks until the server's end of the pipe closes (None) or a byte
/// arrives (that byte).
fn wait_for_close(pipe: RawFd) -> Option<u8> {
    let mut byte = 0u8;
    loop {
        // SAFETY: read into a one-byte buffer that lives on this stack.
        let n = unsafe { nix::libc::read(pipe, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            return Some(byte);
        }
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// Unlinks `t` if the path still names the same file.
fn remove_if_same(t: &Target) {
    use nix::libc;
    // SAFETY: an all-zero `stat` is a valid value for lstat to fill in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid out pointer;
    // lstat and unlink are async-signal-safe.
    unsafe {
        if libc::lstat(t.path.as_ptr(), &mut st) == 0 && st.st_dev == t.dev && st.st_ino == t.ino {
            libc::unlink(t.path.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_its_files_when_dropped_and_spares_a_replaced_one() {
        let dir = std::env::temp_dir().join(format!("fastgate-janitor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (ours, replaced) = (dir.join("a"), dir.join("b"));
        std::fs::write(&ours, "x").unwrap();
        std::fs::write(&replaced, "x").unwrap();
        let janitor = Janitor::spawn(&[ours.clone(), replaced.clone()]).unwrap();
        // Renamed over it while the old file lives, so the inode differs.
        std::fs::write(dir.join("c"), "newer").unwrap();
        std::fs::rename(dir.join("c"), &replaced).unwrap();
        assert!(ours.exists(), "removed before the server ended");
        drop(janitor);
        assert!(!ours.exists(), "the janitor left its file");
        assert!(replaced.exists(), "the janitor removed a newer file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
