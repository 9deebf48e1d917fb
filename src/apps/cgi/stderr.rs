//! A script's stderr, cut into lines and sent where `--cgi-stderr` says:
//! the log (each line naming the script and the request), FCGI_STDERR
//! records (nginx writes them to its error log), or both.

use std::io;

use memchr::memchr;

use super::StderrTo;
use crate::Response;

/// A line longer than this is cut: a script that never ends a line must
/// not make us buffer without bound.
const LINE_MAX: usize = 4096;

/// Splits one script's stderr into lines and routes them.
pub struct Lines {
    to: StderrTo,
    /// `SCRIPT, request KEY URI`, for log lines.
    tag: String,
    partial: Vec<u8>,
}

impl Lines {
    pub fn new(to: StderrTo, tag: String) -> Lines {
        Lines {
            to,
            tag,
            partial: Vec::new(),
        }
    }

    /// Routes the complete lines of `bytes` (and an over-long one, cut).
    pub fn feed(&mut self, bytes: &[u8], resp: &mut Response) -> io::Result<()> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(nl) = memchr(b'\n', &self.partial[start..]) {
            lines.extend_from_slice(&self.partial[start..=start + nl]);
            start += nl + 1;
        }
        if self.partial.len() - start >= LINE_MAX {
            lines.extend_from_slice(&self.partial[start..]);
            lines.push(b'\n');
            start = self.partial.len();
        }
        self.partial.drain(..start);
        self.route(&lines, resp)
    }

    /// Routes what is left of a last line without its newline.
    pub fn finish(&mut self, resp: &mut Response) -> io::Result<()> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let mut last = std::mem::take(&mut self.partial);
        last.push(b'\n');
        self.route(&last, resp)
    }

    fn route(&self, lines: &[u8], resp: &mut Response) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.to != StderrTo::FastCgi {
            for line in String::from_utf8_lossy(lines).lines() {
                log::warn!("cgi {}: stderr: {line}", self.tag);
            }
        }
        if self.to != StderrTo::Log {
            resp.write_stderr(lines)?;
        }
        Ok(())
    }
}
