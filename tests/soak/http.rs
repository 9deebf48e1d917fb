//! A minimal HTTP/1.1 client for the soak's keep-alive connections:
//! writes a request with `Content-Length`, reads one response framed by
//! `Content-Length` or chunked encoding, and says whether the server will
//! close. Written here, apart from the server's codec, so a framing bug
//! shared by both halves cannot hide.

use std::io::{self, Read, Write};

use crate::client::Ask;
use crate::common::Conn;

/// One response: status, whether `Retry-After` came, body, and whether
/// the server said it closes the connection.
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: bool,
    pub body: Vec<u8>,
    pub close: bool,
}

/// A keep-alive HTTP connection with its read buffer.
pub struct HttpConn {
    conn: Conn,
    buf: Vec<u8>,
    /// Whether any byte came since the last request was sent.
    got_any: bool,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl HttpConn {
    pub fn new(conn: Conn) -> HttpConn {
        HttpConn {
            conn,
            buf: Vec::new(),
            got_any: false,
        }
    }

    /// Whether any byte of an answer came for the last request.
    pub fn got_any(&self) -> bool {
        self.got_any
    }

    /// Sends `ask` and reads its response.
    pub fn round(&mut self, ask: &Ask) -> io::Result<HttpAnswer> {
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n\r\n",
            ask.method,
            ask.uri,
            ask.body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(&ask.body);
        self.got_any = !self.buf.is_empty();
        self.conn.write_all(&out)?;
        self.response()
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 65536];
        let n = self.conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed with {} bytes of a response", self.buf.len()),
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        self.got_any = true;
        Ok(())
    }

    /// Takes the bytes up to and including `\r\n\r\n` (or `\r\n` when
    /// `line`).
    fn take_until(&mut self, end: &[u8]) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                let out: Vec<u8> = self.buf.drain(..i + end.len()).collect();
                return Ok(out);
            }
            if self.buf.len() > 1 << 20 {
                return Err(bad("no end of head within 1 MiB".into()));
            }
            self.fill()?;
        }
    }

    fn take_exactly(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn response(&mut self) -> io::Result<HttpAnswer> {
        let head = String::from_utf8_lossy(&self.take_until(b"\r\n\r\n")?).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
        let (mut length, mut chunked, mut close, mut retry_after) = (None, false, false, false);
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("header {line:?}")))?;
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                "retry-after" => retry_after = true,
                _ => {}
            }
        }
        let body = match (chunked, length) {
            (true, _) => self.chunked()?,
            (false, Some(n)) => self.take_exactly(n)?,
            (false, None) => Vec::new(),
        };
        Ok(HttpAnswer {
            status,
            retry_after,
            body,
            close,
        })
    }

    fn chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = String::from_utf8_lossy(&self.take_until(b"\r\n")?).into_owned();
            let size = line.trim().split(';').next().unwrap_or_default();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| bad(format!("chunk size {line:?}")))?;
            if size == 0 {
                // No trailers from fastgate: the blank line ends it.
                self.take_until(b"\r\n")?;
                return Ok(body);
            }
            body.extend(self.take_exactly(size)?);
            self.take_exactly(2)?;
        }
    }
}
