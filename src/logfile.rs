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
    /// The error reads `PATH: what is wrong` (see [`describe_open_error`]).
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        let file = open_append(path).map_err(|e| {
            let reason = describe_open_error(path, &e);
            io::Error::new(e.kind(), format!("{}: {reason}", path.display()))
        })?;
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

/// Why a file could not be created or opened at `path`, lowercase and
/// naming the fix: `directory /var/log/fastgate does not exist`.
pub fn describe_open_error(path: &Path, e: &io::Error) -> String {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    match (e.kind(), dir) {
        (io::ErrorKind::NotFound, Some(dir)) if !dir.exists() => {
            format!(
                "directory {} does not exist: create it first",
                dir.display()
            )
        }
        (io::ErrorKind::NotADirectory, Some(dir)) => {
            format!("{} is not a directory", dir.display())
        }
        (io::ErrorKind::PermissionDenied, _) => "permission denied: let the user fastgate \
             runs as write the file and its directory, or choose another path"
            .to_string(),
        (io::ErrorKind::IsADirectory, _) => "is a directory: give the path of a file".to_string(),
        _ => lowercase_first(&e.to_string()),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().chain(chars).collect::<String>()
    })
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
#[cfg(feature = "cli")]
pub struct Writer(pub Arc<LogFile>);

#[cfg(feature = "cli")]
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
    fn open_errors_name_the_path_once_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("fastgate-logopen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = |path: &Path| LogFile::open(path).err().unwrap().to_string();
        let missing = dir.join("no/such/x.log");
        assert_eq!(
            err(&missing),
            format!(
                "{}: directory {} does not exist: create it first",
                missing.display(),
                dir.join("no/such").display()
            )
        );
        assert_eq!(
            err(&dir),
            format!("{}: is a directory: give the path of a file", dir.display())
        );
        std::fs::write(dir.join("file"), b"").unwrap();
        let under_file = dir.join("file/x.log");
        let text = err(&under_file);
        assert!(text.ends_with("file is not a directory"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let why = describe_open_error(Path::new("/x.log"), &denied);
        assert!(why.starts_with("permission denied: let the user"), "{why}");
    }

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
