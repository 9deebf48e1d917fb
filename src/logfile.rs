//! Log files that USR1 reopens: after logrotate moves a file away, the
//! next line goes to a fresh file at the configured path.
//!
//! Every opened file registers itself; [`reopen_all`] reopens them all.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// An append-mode file that can be reopened at its path.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

static OPEN: Mutex<Vec<Arc<LogFile>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creating) `path` for appending and registers it for reopening.
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        let file = open_append(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let log = Arc::new(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        });
        lock(&OPEN).push(log.clone());
        Ok(log)
    }

    /// Reopens at the same path; on failure keeps writing to the old file.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        *lock(&self.file) = fresh;
        Ok(())
    }

    /// Appends whole lines in one write.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        lock(&self.file).write_all(bytes)
    }
}

/// Reopens every registered log file (USR1).
pub fn reopen_all() {
    for log in lock(&OPEN).iter() {
        if let Err(e) = log.reopen() {
            log::error!("cannot reopen {}: {e}", log.path.display());
        }
    }
}

/// A `Write` handle for env_logger's pipe target.
pub struct Writer(pub Arc<LogFile>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = std::env::temp_dir().join(format!("fastgate-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let log = LogFile::open(&path).unwrap();
        log.write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        log.write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        log.write_all(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("a.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
