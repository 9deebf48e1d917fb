//! The access log (`--access-log`, `--log-format`) and the slow-request
//! count (`--slow-threshold`): one line per request, built by the loop when
//! the request ends and written once per loop turn, never truncated.
//!
//! Fields, in this order for text and as keys for JSON: `time`, `peer`,
//! `method`, `uri`, `status`, `bytes`, `duration_ms`, `queue_ms`,
//! `fcgi_id`, `request_id`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::listener::Peer;
use super::options::LogFormat;
use crate::logfile::LogFile;
use crate::protocol::params::Params;

/// What is known of a request for its log line.
pub struct Entry {
    pub begun: Instant,
    pub method: String,
    pub uri: String,
    pub request_id: String,
    pub fcgi_id: u16,
    pub status: u16,
    pub bytes: u64,
}

impl Entry {
    pub fn new(params: Option<&Params>, fcgi_id: u16, begun: Instant) -> Box<Entry> {
        let get = |name: &str| {
            params
                .and_then(|p| p.get(name))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        Box::new(Entry {
            begun,
            method: get("REQUEST_METHOD").unwrap_or_else(|| "-".into()),
            uri: get("REQUEST_URI").unwrap_or_else(|| "-".into()),
            request_id: get("HTTP_X_REQUEST_ID").unwrap_or_else(|| "-".into()),
            fcgi_id,
            status: 0,
            bytes: 0,
        })
    }
}

/// The status a request is logged with: set always when `force`, else
/// only when no head has given it one.
pub fn set_status(log: &mut Option<Box<Entry>>, status: u16, force: bool) {
    if let Some(e) = log.as_mut().filter(|e| force || e.status == 0) {
        e.status = status;
    }
}

/// Output of a request went out: its status (with the head) and bytes.
pub fn note_output(log: &mut Option<Box<Entry>>, status: Option<u16>, bytes: usize) {
    if let Some(e) = log.as_mut() {
        if let Some(s) = status {
            e.status = s;
        }
        e.bytes += bytes as u64;
    }
}

pub enum Target {
    Stdout,
    File(Arc<LogFile>),
}

/// Lines gathered during one loop turn.
pub struct AccessLog {
    target: Target,
    format: LogFormat,
    buf: Vec<u8>,
}

impl AccessLog {
    pub fn new(target: Target, format: LogFormat) -> AccessLog {
        AccessLog {
            target,
            format,
            buf: Vec::new(),
        }
    }

    pub fn record(&mut self, e: &Entry, peer: &Peer, duration: Duration, queue: Option<Duration>) {
        let mut line = String::with_capacity(160);
        let time = rfc3339(SystemTime::now());
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let queue_ms = queue.map_or(0.0, ms);
        let _ = match self.format {
            LogFormat::Text => write!(
                line,
                "{time} {peer} {} {} {} {} {:.3} {queue_ms:.3} {} {}",
                quote(&e.method),
                quote(&e.uri),
                e.status,
                e.bytes,
                ms(duration),
                e.fcgi_id,
                quote(&e.request_id)
            ),
            LogFormat::Json => write!(
                line,
                "{{\"time\":{},\"peer\":{},\"method\":{},\"uri\":{},\"status\":{},\"bytes\":{},\"duration_ms\":{:.3},\"queue_ms\":{queue_ms:.3},\"fcgi_id\":{},\"request_id\":{}}}",
                json(&time),
                json(&peer.to_string()),
                json(&e.method),
                json(&e.uri),
                e.status,
                e.bytes,
                ms(duration),
                e.fcgi_id,
                json(&e.request_id)
            ),
        };
        line.push('\n');
        self.buf.extend_from_slice(line.as_bytes());
    }

    /// Writes the turn's lines in one write.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = match &self.target {
            Target::Stdout => std::io::stdout().lock().write_all(&self.buf),
            Target::File(f) => f.write_all(&self.buf),
        };
        if let Err(e) = result {
            log::error!("access log: {e}");
        }
        self.buf.clear();
    }
}

/// A text field: bare when it has no space, quote or control byte.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && !s
            .bytes()
            .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b == 0x7f)
    {
        return s.to_string();
    }
    json(s)
}

/// A JSON string literal (also `fastgate bench --json`'s).
pub(crate) fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `2026-11-23T06:40:29.522Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (the "days from
/// civil" inversion, by 400-year eras).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_416_029_522)),
            "2026-11-23T06:40:29.522Z"
        );
    }

    #[test]
    fn fields_are_escaped() {
        assert_eq!(quote("/a?b=1"), "/a?b=1");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(json("x\"\n\u{1}"), "\"x\\\"\\n\\u0001\"");
    }

    #[test]
    fn json_lines_carry_every_key() {
        let mut log = AccessLog::new(Target::Stdout, LogFormat::Json);
        let mut e = Entry::new(None, 1, Instant::now());
        e.status = 200;
        log.record(
            &e,
            &Peer::Tcp(([127, 0, 0, 1], 5).into()),
            Duration::from_millis(2),
            None,
        );
        let line = String::from_utf8(log.buf.clone()).unwrap();
        for key in [
            "time",
            "peer",
            "method",
            "uri",
            "status",
            "bytes",
            "duration_ms",
            "queue_ms",
            "fcgi_id",
            "request_id",
        ] {
            assert!(line.contains(&format!("\"{key}\":")), "{key} in {line}");
        }
        log.buf.clear();
    }
}
