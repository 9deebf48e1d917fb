//! Tests of the response encoder: exact heads with and without a known
//! length, HEAD, bodiless statuses, refusals, chunks, and dates of known
//! instants (checked against `date -u -d @N`).

use std::borrow::Cow;

use super::*;
use proptest::prelude::*;

fn head(status: u16, headers: &[(&str, &str)]) -> Head {
    Head {
        status,
        reason: Cow::Borrowed(""),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

fn reply(length: Option<u64>) -> Reply {
    Reply {
        length,
        head_request: false,
        keep_alive: true,
        version: Version::Http11,
        now: 784_111_777,
    }
}

fn encode(h: &Head, r: &Reply) -> (String, Body) {
    let mut out = Vec::new();
    let body = encode_head(&mut out, h, r);
    (String::from_utf8(out).unwrap(), body)
}

const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

#[test]
fn known_length_drops_the_handlers_framing() {
    let h = head(
        200,
        &[
            ("Content-Type", "text/plain"),
            ("Content-Length", "999"),
            ("connection", "keep-alive"),
            ("Transfer-Encoding", "gzip"),
            ("Keep-Alive", "timeout=5"),
            ("Status", "200"),
            ("X-A", "1\r\nInjected: yes"),
        ],
    );
    let (text, body) = encode(&h, &reply(Some(14)));
    let want = format!(
        "HTTP/1.1 200 OK\r\n{DATE}Server: fastgate\r\nContent-Type: text/plain\r\n\
X-A: 1Injected: yes\r\nContent-Length: 14\r\n\r\n"
    );
    assert_eq!((text, body), (want, Body::Identity));
}

#[test]
fn unknown_length_is_chunked_or_until_close() {
    let h = head(404, &[("Server", "mine"), ("Date", "then")]);
    let (text, body) = encode(&h, &reply(None));
    let want = "HTTP/1.1 404 Not Found\r\nServer: mine\r\nDate: then\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!((text.as_str(), body), (want, Body::Chunked));

    let old = Reply {
        version: Version::Http10,
        ..reply(None)
    };
    let (text, body) = encode(&head(200, &[]), &old);
    let want = format!("HTTP/1.1 200 OK\r\n{DATE}Server: fastgate\r\nConnection: close\r\n\r\n");
    assert_eq!((text, body), (want, Body::UntilClose));
    let (text, body) = encode(
        &head(200, &[]),
        &Reply {
            length: Some(1),
            ..old
        },
    );
    assert!(
        text.ends_with("Connection: keep-alive\r\nContent-Length: 1\r\n\r\n"),
        "{text}"
    );
    assert_eq!(body, Body::Identity);
}

#[test]
fn head_requests_and_bodiless_statuses() {
    let get = encode(&head(200, &[]), &reply(Some(5))).0;
    let head_reply = Reply {
        head_request: true,
        ..reply(Some(5))
    };
    assert_eq!(encode(&head(200, &[]), &head_reply), (get, Body::None));
    let chunked_head = encode(
        &head(200, &[]),
        &Reply {
            length: None,
            ..head_reply
        },
    );
    assert!(chunked_head.0.contains("Transfer-Encoding: chunked\r\n"));
    assert_eq!(chunked_head.1, Body::None);
    for status in [204, 304, 101] {
        let (text, body) = encode(&head(status, &[]), &reply(Some(5)));
        assert_eq!(body, Body::None, "{status}");
        assert!(
            !text.contains("Content-Length") && !text.contains("Transfer-Encoding"),
            "{text}"
        );
    }
}

#[test]
fn closing_and_custom_reasons() {
    let mut h = head(599, &[]);
    let closed = Reply {
        keep_alive: false,
        ..reply(Some(0))
    };
    let (text, _) = encode(&h, &closed);
    assert!(text.starts_with("HTTP/1.1 599 \r\n"), "{text}");
    assert!(
        text.ends_with("Connection: close\r\nContent-Length: 0\r\n\r\n"),
        "{text}"
    );
    h.reason = Cow::Borrowed("Very\r\nOdd");
    assert!(encode(&h, &closed)
        .0
        .starts_with("HTTP/1.1 599 VeryOdd\r\n"));
}

#[test]
fn refusals() {
    for status in [400, 404, 413, 431, 503, 504] {
        let mut out = Vec::new();
        encode_refusal(&mut out, status, true, 0);
        let text = String::from_utf8(out).unwrap();
        let body = format!("{status} {}\n", reason_phrase(status));
        let retry = if status == 503 {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        let want = format!(
            "HTTP/1.1 {status} {}\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: fastgate\r\n\
Content-Type: text/plain\r\n{retry}Content-Length: {}\r\n\r\n{body}",
            reason_phrase(status),
            body.len()
        );
        assert_eq!(text, want);
    }
    assert_eq!(CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Found by the `connection` fuzz target: a HEAD request refused (here a
/// 400 for a bad chunk line of its body) got the refusal's body too.
#[test]
fn refusals_of_head_requests_have_no_body() {
    for status in [400, 404, 408, 413, 431, 503, 504] {
        let (mut get, mut head) = (Vec::new(), Vec::new());
        encode_refusal(&mut get, status, false, 0);
        encode_head_refusal(&mut head, status, false, 0);
        let body = format!("{status} {}\n", reason_phrase(status));
        assert_eq!([&head[..], body.as_bytes()].concat(), get, "{status}");
    }
}

#[test]
fn chunks() {
    let mut out = Vec::new();
    encode_chunk(&mut out, b"hello");
    encode_chunk(&mut out, b"");
    encode_chunk(&mut out, &[b'x'; 26]);
    encode_last_chunk(&mut out);
    let want = [&b"5\r\nhello\r\n1a\r\n"[..], &[b'x'; 26], b"\r\n0\r\n\r\n"].concat();
    assert_eq!(out, want);
}

fn date(now: u64) -> String {
    let mut out = Vec::new();
    write_http_date(&mut out, now);
    String::from_utf8(out).unwrap()
}

#[test]
fn dates_of_known_instants() {
    let table = [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (68_256_000, "Wed, 01 Mar 1972 00:00:00 GMT"),
        (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (951_868_799, "Tue, 29 Feb 2000 23:59:59 GMT"),
        (1_064_966_400, "Wed, 01 Oct 2003 00:00:00 GMT"),
        (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
        (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
        (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    for (now, want) in table {
        assert_eq!(date(now), want, "{now}");
    }
}

/// Days since 1970 counted the slow way, year by year and month by month.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let year_days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    year_days + lengths[..(month - 1) as usize].iter().sum::<u64>() + day - 1
}

proptest! {
    #[test]
    fn civil_dates_agree_with_counting(days in 0u64..200_000) {
        let (y, m, d) = civil_from_days(days);
        prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        prop_assert_eq!(days_from_civil(y, m, d), days);
    }

    #[test]
    fn never_panics(now in any::<u64>(), status in any::<u16>(), length in any::<Option<u64>>()) {
        let _ = date(now);
        let mut out = Vec::new();
        encode_head(&mut out, &head(status, &[("A", "b")]), &Reply { now, ..reply(length) });
        encode_refusal(&mut out, status, false, now);
    }
}
