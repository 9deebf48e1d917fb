//! Which file a request runs, and whether it may: the fcgiwrap rule for
//! finding it (`SCRIPT_FILENAME`, else `DOCUMENT_ROOT` + `SCRIPT_NAME`),
//! then confinement: the path is resolved (`..` and every symlink
//! followed) before it is checked against the `--cgi-root` directories,
//! and only the resolved path is ever executed.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::protocol::params::Params;

/// Why a request gets no script, and the status that says so.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub why: String,
}

fn refused(status: u16, why: String) -> Refused {
    Refused { status, why }
}

/// The path the front server names, before any check.
pub fn requested(params: &Params) -> Option<PathBuf> {
    let non_empty = |name| params.get(name).filter(|v| !v.is_empty());
    if let Some(file) = non_empty("SCRIPT_FILENAME") {
        return Some(PathBuf::from(OsStr::from_bytes(file)));
    }
    let root = non_empty("DOCUMENT_ROOT")?;
    let name = non_empty("SCRIPT_NAME")?;
    let mut joined = root.to_vec();
    if !root.ends_with(b"/") && !name.starts_with(b"/") {
        joined.push(b'/');
    }
    joined.extend_from_slice(name);
    Some(PathBuf::from(OsStr::from_bytes(&joined)))
}

/// The resolved script for `params`, if it is a regular executable file
/// under one of `roots` (themselves resolved).
pub fn locate(params: &Params, roots: &[PathBuf]) -> Result<PathBuf, Refused> {
    let Some(asked) = requested(params) else {
        let why = "neither SCRIPT_FILENAME nor DOCUMENT_ROOT + SCRIPT_NAME given".to_string();
        return Err(refused(404, why));
    };
    let real = std::fs::canonicalize(&asked).map_err(|e| not_resolved(&asked, &e))?;
    if !roots.iter().any(|root| real.starts_with(root)) {
        let why = format!(
            "{} resolves to {}, outside every --cgi-root",
            asked.display(),
            real.display()
        );
        return Err(refused(403, why));
    }
    let meta = std::fs::metadata(&real).map_err(|e| not_resolved(&real, &e))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        let why = format!("{} is not an executable regular file", real.display());
        return Err(refused(403, why));
    }
    Ok(real)
}

fn not_resolved(path: &Path, e: &io::Error) -> Refused {
    let status = match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => 404,
        _ => 403,
    };
    refused(status, format!("{}: {e}", path.display()))
}

/// Each `--cgi-root`, resolved; an error names the flag and the fix.
pub fn resolve_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if roots.is_empty() {
        return Err(
            "the cgi app needs --cgi-root DIR: give the directory (or directories) \
             of the scripts it may run"
                .into(),
        );
    }
    roots.iter().map(|root| resolve_root(root)).collect()
}

fn resolve_root(root: &Path) -> Result<PathBuf, String> {
    let shown = root.display();
    let real = std::fs::canonicalize(root)
        .map_err(|e| format!("--cgi-root {shown}: {e}; give an existing directory"))?;
    if !real.is_dir() {
        return Err(format!(
            "--cgi-root {shown}: not a directory; give the directory of the scripts"
        ));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn script_filename_wins_over_document_root() {
        let p = params(&[
            ("SCRIPT_FILENAME", "/a/b.cgi"),
            ("DOCUMENT_ROOT", "/x"),
            ("SCRIPT_NAME", "/y.cgi"),
        ]);
        assert_eq!(requested(&p), Some(PathBuf::from("/a/b.cgi")));
        let p = params(&[("DOCUMENT_ROOT", "/x"), ("SCRIPT_NAME", "/y.cgi")]);
        assert_eq!(requested(&p), Some(PathBuf::from("/x/y.cgi")));
        let p = params(&[("DOCUMENT_ROOT", "/x"), ("SCRIPT_NAME", "y.cgi")]);
        assert_eq!(requested(&p), Some(PathBuf::from("/x/y.cgi")));
        assert_eq!(requested(&params(&[("SCRIPT_FILENAME", "")])), None);
    }

    #[test]
    fn missing_and_escaping_scripts_are_refused() {
        let roots = resolve_roots(&[PathBuf::from("/usr/bin")]).unwrap();
        let status =
            |f: &str| locate(&params(&[("SCRIPT_FILENAME", f)]), &roots).map_err(|r| r.status);
        assert_eq!(status("/usr/bin/../../etc/passwd"), Err(403));
        assert_eq!(status("/usr/bin/no-such-program-here"), Err(404));
        assert_eq!(status("/usr/bin"), Err(403));
        assert!(status("/usr/bin/env").is_ok());
        assert!(resolve_roots(&[]).unwrap_err().contains("--cgi-root"));
    }
}
