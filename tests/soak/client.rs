//! The soak's requests and how their answers are judged, for every
//! protocol: what each app must answer (`Ask`), FastCGI records sent
//! without panicking (`tests/common`'s helpers panic, which a client that
//! expects the server to vanish cannot afford), SCGI, and the judgement
//! of a raw answer into an `Outcome`.

use std::io::{self, Write};
use std::time::Instant;

use crate::common::*;
use crate::tally::{Failure, Tally};

/// One request to send and what it must get.
pub struct Ask {
    pub kind: &'static str,
    pub method: &'static str,
    pub uri: String,
    pub body: Vec<u8>,
    pub want_body: Vec<u8>,
    /// `SCRIPT_FILENAME`, for the cgi app.
    pub script: Option<String>,
}

impl Ask {
    pub fn hello() -> Ask {
        Ask::new(
            "hello",
            "GET",
            "/".into(),
            Vec::new(),
            b"Hello, world!\n".to_vec(),
        )
    }

    pub fn echo(body: Vec<u8>) -> Ask {
        let want = body.clone();
        Ask::new("echo", "POST", "/echo".into(), body, want)
    }

    pub fn sleep(ms: u64) -> Ask {
        let want = format!("slept {ms} ms\n").into_bytes();
        Ask::new("sleep", "GET", format!("/sleep?ms={ms}"), Vec::new(), want)
    }

    /// The CGI script prints `cgi QUERY_STRING` and then its stdin.
    pub fn cgi(script: &str, n: u64, body: Vec<u8>) -> Ask {
        let mut want = format!("cgi n={n}\n").into_bytes();
        want.extend_from_slice(&body);
        let mut a = Ask::new("cgi", "POST", format!("/cgi/soak.sh?n={n}"), body, want);
        a.script = Some(script.to_string());
        a
    }

    pub fn new(
        kind: &'static str,
        method: &'static str,
        uri: String,
        body: Vec<u8>,
        want_body: Vec<u8>,
    ) -> Ask {
        Ask {
            kind,
            method,
            uri,
            body,
            want_body,
            script: None,
        }
    }

    /// The params nginx would send for it.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut p = nginx_params(self.method, &self.uri, Some(self.body.len()));
        if let Some(s) = &self.script {
            set_param(&mut p, "SCRIPT_FILENAME", Some(s));
        }
        p
    }
}

/// What came back for one request.
pub enum Outcome {
    Answered,
    Refused,
    /// No complete answer: reset, EOF, timeout (maybe a killed child).
    Broken(String),
    /// A complete answer that is wrong: always lost.
    Wrong(String),
}

/// Books one outcome; `opened` is when its connection was made.
pub fn book(t: &Tally, proto: &str, ask_kind: &str, opened: Instant, o: Outcome) {
    let fail = |what: String, wrong_answer: bool| Failure {
        opened,
        at: Instant::now(),
        what: format!("{proto} {ask_kind}: {what}"),
        wrong_answer,
    };
    match o {
        Outcome::Answered => t.answered(),
        Outcome::Refused => t.refused(),
        Outcome::Broken(what) => t.failed(fail(what, false)),
        Outcome::Wrong(what) => t.failed(fail(what, true)),
    }
}

/// Judges a CGI-style answer (status, headers, body) against `ask`.
pub fn judge(status: u16, retry_after: bool, body: &[u8], ask: &Ask) -> Outcome {
    if status == 503 && retry_after {
        return Outcome::Refused;
    }
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Outcome::Wrong(format!(
            "{} {}: status {status}: {text:?}",
            ask.method, ask.uri
        ));
    }
    if body != ask.want_body.as_slice() {
        return Outcome::Wrong(format!(
            "{} {}: body of {} bytes, want {}",
            ask.method,
            ask.uri,
            body.len(),
            ask.want_body.len()
        ));
    }
    Outcome::Answered
}

/// Splits a CGI response into (status, has Retry-After, body); `None`
/// when it has no end of head.
pub fn split_cgi(raw: &[u8]) -> Option<(u16, bool, &[u8])> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let end = end.or_else(|| {
        raw.windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| (i, i + 2))
    })?;
    let head = String::from_utf8_lossy(&raw[..end.0]);
    let mut status = 200;
    let mut retry = false;
    for line in head.lines() {
        let (k, v) = line.split_once(':')?;
        if k.eq_ignore_ascii_case("status") {
            status = v.split_whitespace().next()?.parse().ok()?;
        }
        retry |= k.eq_ignore_ascii_case("retry-after");
    }
    Some((status, retry, &raw[end.1..]))
}

/// Judges a FastCGI reply.
pub fn judge_fcgi(reply: &FcgiReply, ask: &Ask) -> Outcome {
    if reply.protocol_status == OVERLOADED {
        return Outcome::Refused;
    }
    if reply.protocol_status != REQUEST_COMPLETE || !reply.stdout_closed {
        return Outcome::Wrong(format!(
            "{}: protocol status {}, stdout closed {}",
            ask.uri, reply.protocol_status, reply.stdout_closed
        ));
    }
    match split_cgi(&reply.stdout) {
        Some((status, retry, body)) => judge(status, retry, body, ask),
        None => Outcome::Wrong(format!("{}: no end of head", ask.uri)),
    }
}

/// A fresh FastCGI connection, with the time it was made.
pub fn fcgi_connect(spec: &str) -> io::Result<(FcgiConn, Instant)> {
    let conn = Conn::try_connect(spec)?;
    Ok((FcgiConn::over(conn), Instant::now()))
}

/// BEGIN_REQUEST and the whole PARAMS stream of `ask` as id `id`.
pub fn fcgi_head(ask: &Ask, id: u16, keep_conn: bool) -> Vec<u8> {
    let mut out = record(rec::BEGIN_REQUEST, id, &begin_body(RESPONDER, keep_conn));
    out.extend(stream_records(
        rec::PARAMS,
        id,
        &encode_pairs(&ask.params()),
        true,
    ));
    out
}

/// The whole request: head, body and the end of STDIN.
pub fn fcgi_bytes(ask: &Ask, id: u16, keep_conn: bool) -> Vec<u8> {
    let mut out = fcgi_head(ask, id, keep_conn);
    out.extend(stream_records(rec::STDIN, id, &ask.body, true));
    out
}

/// Sends one request on `c` and reads its reply.
pub fn fcgi_round(c: &mut FcgiConn, ask: &Ask, id: u16, keep_conn: bool) -> Outcome {
    if let Err(e) = c.try_send_raw(&fcgi_bytes(ask, id, keep_conn)) {
        return Outcome::Broken(format!("{}: write: {e}", ask.uri));
    }
    match c.try_read_until_end(id) {
        Ok(reply) => judge_fcgi(&reply, ask),
        Err(e) => Outcome::Broken(format!("{}: {e}", ask.uri)),
    }
}

/// One SCGI request on a fresh connection: (outcome, when it connected).
pub fn scgi_round(spec: &str, ask: &Ask) -> (Outcome, Instant) {
    let opened = Instant::now();
    let mut c = match Conn::try_connect(spec) {
        Ok(c) => c,
        Err(e) => return (Outcome::Broken(format!("connect: {e}")), opened),
    };
    let mut params = ask.params();
    set_param(&mut params, "CONTENT_LENGTH", None);
    if let Err(e) = c.write_all(&scgi_encode(&params, &ask.body)) {
        return (Outcome::Broken(format!("{}: write: {e}", ask.uri)), opened);
    }
    let raw = match c.read_to_eof(8 << 20) {
        Ok(raw) => raw,
        Err(e) => return (Outcome::Broken(format!("{}: read: {e}", ask.uri)), opened),
    };
    let o = match split_cgi(&raw) {
        // SCGI's answer ends at the close: a cut one is a broken one.
        Some((200, _, body)) if body.len() < ask.want_body.len() => Outcome::Broken(format!(
            "{}: cut after {} of {} bytes",
            ask.uri,
            body.len(),
            ask.want_body.len()
        )),
        Some((status, retry, body)) => judge(status, retry, body, ask),
        None if raw.is_empty() => Outcome::Broken(format!("{}: closed with no answer", ask.uri)),
        None => Outcome::Broken(format!("{}: {} bytes, no end of head", ask.uri, raw.len())),
    };
    (o, opened)
}
