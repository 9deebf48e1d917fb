//! Temporary files for what does not fit in memory: request bodies that
//! arrive for a request not reading them yet (on a multiplexed connection),
//! and output held until a request's input ends.
//!
//! Each file is made with no name (O_TMPFILE on Linux; elsewhere unlinked
//! as soon as it is made), so it disappears with its last fd whatever
//! happens to the process, and lives in `--temp-dir`.
//! Every byte written counts against `--max-temp-bytes` ([`TempSpace`],
//! one per server) until its file is dropped: `du` cannot see unlinked
//! files, so this count is what bounds the disk a few clients can fill.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The process-wide budget of temporary bytes, and where files go.
#[derive(Debug)]
pub struct TempSpace {
    dir: PathBuf,
    limit: u64,
    used: AtomicU64,
}

impl TempSpace {
    pub fn new(dir: PathBuf, limit: u64) -> Arc<TempSpace> {
        Arc::new(TempSpace {
            dir,
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes held in temporary files now.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes of the budget, or none if that would pass it.
    fn reserve(&self, n: u64) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(n).filter(|&t| t <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The error of a write that would pass `--max-temp-bytes`.
pub fn no_space() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "temporary space used up (--max-temp-bytes)",
    )
}

/// Whether `e` is [`no_space`].
pub fn is_no_space(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
}

/// A file in `dir` that has no name. On Linux it never has one
/// (O_TMPFILE): a process killed at any moment leaves nothing behind
/// (the soak found `mkstemp` + unlink leaving a file when a kill -9 fell
/// between the two). Where O_TMPFILE is missing (another system, a file
/// system without it), `mkstemp` and an unlink at once.
fn unnamed_file(dir: &std::path::Path) -> nix::Result<File> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_EXCL | OFlag::O_CLOEXEC;
        match open(dir, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => return Ok(File::from(fd)),
            // No O_TMPFILE here: the kernel or the file system lacks it.
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {}
            Err(e) => return Err(e),
        }
    }
    let (fd, path) = nix::unistd::mkstemp(&dir.join("fastgate-XXXXXX"))?;
    let _ = std::fs::remove_file(&path);
    Ok(File::from(fd))
}

/// An unlinked temporary file written at its end and read from its start,
/// its bytes counted in a [`TempSpace`] (and in a connection's own count,
/// when it spools a body) until it is dropped.
#[derive(Debug)]
pub struct SpoolFile {
    file: File,
    space: Arc<TempSpace>,
    /// The connection's spooled bytes, for its own budget.
    conn: Option<Arc<AtomicU64>>,
    written: u64,
    read: u64,
}

impl SpoolFile {
    pub fn create(space: &Arc<TempSpace>, conn: Option<Arc<AtomicU64>>) -> io::Result<SpoolFile> {
        let file = unnamed_file(&space.dir)
            .map_err(|e| io::Error::other(format!("--temp-dir {}: {e}", space.dir.display())))?;
        Ok(SpoolFile {
            file,
            space: Arc::clone(space),
            conn,
            written: 0,
            read: 0,
        })
    }

    /// Appends `bytes`, or fails with [`no_space`] past `--max-temp-bytes`.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let n = bytes.len() as u64;
        if !self.space.reserve(n) {
            return Err(no_space());
        }
        if let Err(e) = self.file.write_all_at(bytes, self.written) {
            self.space.release(n);
            return Err(e);
        }
        self.written += n;
        if let Some(c) = &self.conn {
            c.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Reads on from where the last read stopped; Ok(0) when caught up.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.written - self.read).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.read)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "temporary file shorter than written",
            ));
        }
        self.read += n as u64;
        Ok(n)
    }

    /// Bytes written and not read yet.
    pub fn unread(&self) -> u64 {
        self.written - self.read
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        self.space.release(self.written);
        if let Some(c) = &self.conn {
            c.fetch_sub(self.written, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written_and_counts_it_until_dropped() {
        let space = TempSpace::new(std::env::temp_dir(), 1000);
        let conn = Arc::new(AtomicU64::new(0));
        let mut f = SpoolFile::create(&space, Some(Arc::clone(&conn))).unwrap();
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        assert_eq!((space.used(), conn.load(Ordering::Relaxed)), (11, 11));
        let mut buf = [0u8; 8];
        assert_eq!(f.read(&mut buf).unwrap(), 8);
        assert_eq!(&buf, b"hello wo");
        assert_eq!(f.unread(), 3);
        assert_eq!(f.read(&mut buf).unwrap(), 3);
        assert_eq!(f.read(&mut buf).unwrap(), 0);
        drop(f);
        assert_eq!((space.used(), conn.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn the_budget_is_a_hard_bound() {
        let space = TempSpace::new(std::env::temp_dir(), 10);
        let mut a = SpoolFile::create(&space, None).unwrap();
        let mut b = SpoolFile::create(&space, None).unwrap();
        a.append(&[1; 6]).unwrap();
        assert!(is_no_space(&b.append(&[2; 5]).unwrap_err()));
        b.append(&[2; 4]).unwrap();
        assert_eq!(space.used(), 10);
        drop(a);
        assert_eq!(space.used(), 4);
    }

    /// The file never had a name (O_TMPFILE): /proc shows `dir/#INODE
    /// (deleted)`, not a `fastgate-XXXXXX` that a kill between create and
    /// unlink would have left in the directory.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_file_never_has_a_name() {
        use std::os::fd::AsRawFd;
        let dir = std::env::temp_dir().join(format!("fg-spool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let space = TempSpace::new(dir.clone(), 10);
        let f = SpoolFile::create(&space, None).unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{}", f.file.as_raw_fd())).unwrap();
        let empty = std::fs::read_dir(&dir).unwrap().next().is_none();
        drop(f);
        std::fs::remove_dir(&dir).unwrap();
        let target = target.display().to_string();
        assert!(!target.contains("fastgate-"), "{target}");
        assert!(empty);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let space = TempSpace::new("/nonexistent/fastgate-temp".into(), 10);
        let e = SpoolFile::create(&space, None).unwrap_err();
        assert!(e.to_string().contains("--temp-dir /nonexistent"), "{e}");
    }
}
