//! Tests of the request decoder: a row per rule, every split of a
//! pipelined conversation, and arbitrary bytes that must never panic or
//! buffer past the limit.

use super::*;
use proptest::prelude::*;

const LIMIT: usize = 8192;

/// What a test compares: body pieces merged, heads and ends as they come.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Head(Head),
    Body(Vec<u8>),
    End,
}

/// Feeds `input` in pieces ending at each of `cuts` (then the rest), as a
/// host would, and checks the decoder's promises on the way.
fn feed_in_chunks(input: &[u8], cuts: &[usize], limit: usize) -> Result<Vec<Seen>, Error> {
    let mut dec = Decoder::new(limit);
    let mut seen = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(start, input.len());
        let mut chunk = &input[start..end];
        start = end;
        loop {
            let (n, event) = dec.decode(chunk)?;
            assert!(dec.buffered() <= limit + MAX_CHUNK_LINE);
            let Some(event) = event else {
                assert_eq!(n, chunk.len(), "need more, yet bytes left");
                break;
            };
            chunk = &chunk[n..];
            push_seen(&mut seen, event);
        }
    }
    Ok(seen)
}

fn push_seen(seen: &mut Vec<Seen>, event: Event<'_>) {
    match event {
        Event::Head(h) => seen.push(Seen::Head(h)),
        Event::End => seen.push(Seen::End),
        Event::Body(data) => {
            assert!(!data.is_empty(), "an empty body piece");
            match seen.last_mut() {
                Some(Seen::Body(buf)) => buf.extend_from_slice(data),
                _ => seen.push(Seen::Body(data.to_vec())),
            }
        }
    }
}

fn whole(input: &[u8]) -> Result<Vec<Seen>, Error> {
    feed_in_chunks(input, &[], LIMIT)
}

fn per_byte(input: &[u8]) -> Result<Vec<Seen>, Error> {
    feed_in_chunks(input, &(1..input.len()).collect::<Vec<_>>(), LIMIT)
}

/// The events whole and per byte, which must agree.
fn decode(input: &[u8]) -> Result<Vec<Seen>, Error> {
    let w = whole(input);
    assert_eq!(w, per_byte(input), "{:?}", input.escape_ascii().to_string());
    w
}

fn head_of(input: &[u8]) -> Head {
    match decode(input).unwrap().remove(0) {
        Seen::Head(h) => h,
        other => panic!("{other:?}"),
    }
}

fn err_of(input: &[u8]) -> Error {
    decode(input).unwrap_err()
}

#[test]
fn a_get() {
    let seen = decode(b"GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n\r\n").unwrap();
    let [Seen::Head(h), Seen::End] = &seen[..] else {
        panic!("{seen:?}")
    };
    assert_eq!(
        (h.method.as_str(), h.target.as_str()),
        ("GET", "/a/b?x=1&y")
    );
    assert_eq!(
        (h.path(), h.query(), h.version),
        ("/a/b", "x=1&y", Version::Http11)
    );
    assert_eq!(h.header("user-agent"), Some(&b"t"[..]));
    assert_eq!(
        (h.framing, h.keep_alive, h.expect_continue),
        (Framing::None, true, false)
    );
}

#[test]
fn content_length_body() {
    let seen = decode(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    assert!(matches!(&seen[0], Seen::Head(h) if h.framing == Framing::Length(5)));
    assert_eq!(seen[1..], [Seen::Body(b"hello".to_vec()), Seen::End]);
    let zero = decode(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(zero.len(), 2);
    let same = head_of(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(same.framing, Framing::Length(3));
}

const CHUNKED: &[u8] = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
5;name=value;x\r\nhello\r\nA \t; ext\r\n, world!!!\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let seen = decode(CHUNKED).unwrap();
    assert!(matches!(&seen[0], Seen::Head(h) if h.framing == Framing::Chunked));
    assert_eq!(
        seen[1..],
        [Seen::Body(b"hello, world!!!".to_vec()), Seen::End]
    );
    let bare = b"POST / HTTP/1.1\nHost: h\nTransfer-Encoding: Chunked\n\n3\nabc\n0\n\n";
    assert_eq!(
        decode(bare).unwrap()[1..],
        [Seen::Body(b"abc".to_vec()), Seen::End]
    );
}

#[test]
fn pipelined_requests_in_order_from_one_buffer() {
    let mut wire = b"\r\nGET /1 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    wire.extend_from_slice(b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab");
    wire.extend_from_slice(CHUNKED);
    wire.extend_from_slice(b"\r\nGET /4 HTTP/1.0\r\n\r\n");
    let seen = decode(&wire).unwrap();
    let targets: Vec<&str> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Head(h) => Some(h.target.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["/1", "/2", "/up", "/4"]);
    assert_eq!(seen.iter().filter(|s| **s == Seen::End).count(), 4);
    assert_eq!(seen[3], Seen::Body(b"ab".to_vec()));
}

#[test]
fn keep_alive_rules() {
    let table: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
    ];
    for (input, want) in table {
        assert_eq!(head_of(input).keep_alive, *want, "{}", input.escape_ascii());
    }
}

#[test]
fn expect_100_continue() {
    let h =
        head_of(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx");
    assert!(h.expect_continue);
    let h10 = head_of(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx");
    assert!(
        !h10.expect_continue,
        "ignored in HTTP/1.0 (RFC 9110 10.1.1)"
    );
    assert!(!head_of(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").expect_continue);
    let no_body = head_of(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n");
    assert!(!no_body.expect_continue, "nothing to wait for");
}

#[test]
fn targets_and_their_normalized_paths() {
    let h = head_of(b"GET http://h:81/a//b/../c%20d?x=/../ HTTP/1.1\r\nHost: h:81\r\n\r\n");
    assert_eq!(
        (h.request_uri(), h.path(), h.query()),
        ("/a//b/../c%20d?x=/../", "/a//b/../c%20d", "x=/../")
    );
    assert_eq!(h.uri, b"/a/c d");
    assert_eq!(head_of(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").uri, b"*");
    for target in ["*", "h:443", "x/y", "/../etc/passwd", "/a%zz", "/%00"] {
        let wire = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let e = err_of(wire.as_bytes());
        assert!(
            e.to_string().contains("bad request target"),
            "{target}: {e}"
        );
    }
}

#[test]
fn malformed_requests_are_400_and_kill_the_decoder() {
    let table: &[(&[u8], &str)] = &[
        (b"GET\r\nHost: h\r\n\r\n", "no request target"),
        (b"GET  HTTP/1.1\r\nHost: h\r\n\r\n", "no request target"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", "header without colon"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n", "space before colon"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n", "obs-fold"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tfolded\r\n\r\n", "obs-fold tab"),
        (b"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n", "bare CR"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "two lengths"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n", "two lengths in one"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", "CL sign"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x1\r\n\r\n", "CL hex"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", "CL empty"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", "CL overflow"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "CL+TE"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "TE+CL"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "TE gzip"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "TE twice"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", "TE identity"),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", "TE xchunked"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "TE in 1.0"),
        (b"GET / HTTP/1.1\r\n\r\n", "no host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two hosts"),
        (b"GET / http/1.1\r\nHost: h\r\n\r\n", "lowercase version"),
        (b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", "junk after version"),
        (b"GET /\r\n\r\n", "HTTP/0.9"),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", "bad method"),
        (b"GET /\xff HTTP/1.1\r\nHost: h\r\n\r\n", "target not utf-8"),
    ];
    for (input, what) in table {
        let e = err_of(input);
        assert_eq!(e.http_status(), 400, "{what}: {e}");
        let mut dec = Decoder::new(LIMIT);
        let _ = dec.decode(input);
        assert_eq!(
            dec.decode(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Err(e),
            "{what}: dead"
        );
        assert!(!dec.is_idle());
    }
}

#[test]
fn bad_chunks_are_400() {
    let table: &[(&[u8], &str)] = &[
        (b"\r\n", "empty size"),
        (b"x\r\n", "not hex"),
        (b"-1\r\n", "sign"),
        (b"0x5\r\n", "0x prefix"),
        (b"11111111111111111\r\n", "overflow"),
        (b"5 5\r\n", "junk after size"),
        (b"5;a\x01b\r\n", "control in extension"),
        (b"5\r\r\n", "bare CR"),
        (b"3\r\nabcX", "no line end after data"),
        (b"3\r\nabc\rX", "CR then junk"),
    ];
    let head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (body, what) in table {
        let e = err_of(&[&head[..], body].concat());
        assert!(matches!(e, Error::BadRequest(_)), "{what}: {e}");
    }
    let long = [&head[..], b"1;", &[b'x'; MAX_CHUNK_LINE][..], b"\r\n"].concat();
    assert!(err_of(&long).to_string().contains("chunk size line longer"));
    let max = [&head[..], b"FFFFFFFFFFFFFFFF\r\nab"].concat();
    assert_eq!(decode(&max).unwrap()[1], Seen::Body(b"ab".to_vec()));
}

#[test]
fn versions() {
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let input = format!("GET / {v}\r\nHost: h\r\n\r\n");
        let e = err_of(input.as_bytes());
        assert_eq!(
            (e.http_status(), e.clone()),
            (505, Error::UnsupportedVersion(format!("\"{v}\"")))
        );
    }
    assert_eq!(head_of(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
}

#[test]
fn head_limit_is_431() {
    let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let exact = feed_in_chunks(head, &[], head.len()).unwrap();
    assert_eq!(exact.len(), 2);
    let cuts: Vec<usize> = (1..head.len()).collect();
    assert_eq!(feed_in_chunks(head, &cuts, head.len()).unwrap(), exact);
    let over = Error::HeadTooLarge {
        limit: head.len() - 1,
    };
    assert_eq!(feed_in_chunks(head, &[], head.len() - 1).unwrap_err(), over);
    assert_eq!(
        feed_in_chunks(head, &cuts, head.len() - 1).unwrap_err(),
        over
    );
    assert_eq!(over.http_status(), 431);
    // A head that never ends is refused once the limit is reached.
    let endless = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 100]].concat();
    assert_eq!(
        feed_in_chunks(&endless, &[7, 50], 64).unwrap_err(),
        Error::HeadTooLarge { limit: 64 }
    );
}

#[test]
fn trailers_past_the_limit_are_431() {
    let mut wire =
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    for _ in 0..100 {
        wire.extend_from_slice(b"X-Trailer: 0123456789\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        feed_in_chunks(&wire, &[], 1000).unwrap_err(),
        Error::HeadTooLarge { limit: 1000 }
    );
    assert_eq!(feed_in_chunks(&wire, &[], 4000).unwrap().len(), 2);
}

#[test]
fn idle_between_requests_only() {
    let mut dec = Decoder::new(LIMIT);
    assert!(dec.is_idle());
    assert_eq!(dec.decode(b"GET / HT").unwrap(), (8, None));
    assert!(!dec.is_idle());
    let (_, ev) = dec.decode(b"TP/1.0\r\n\r\n").unwrap();
    assert!(matches!(ev, Some(Event::Head(_))));
    assert_eq!(dec.decode(b"").unwrap(), (0, Some(Event::End)));
    assert!(dec.is_idle());
}

#[test]
fn a_large_head_is_not_kept_after_its_request() {
    let wire = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "v".repeat(6000)
    );
    let mut dec = Decoder::new(LIMIT);
    assert_eq!(dec.decode(&wire.as_bytes()[..100]).unwrap(), (100, None));
    assert!(matches!(
        dec.decode(&wire.as_bytes()[100..]).unwrap().1,
        Some(Event::Head(_))
    ));
    assert_eq!(dec.buffered(), 0);
    assert_eq!(dec.decode(b"").unwrap(), (0, Some(Event::End)));
}

#[test]
fn log_lines_quote_little() {
    let body = [b'x'; 1000];
    let line = Event::Body(&body).to_string();
    assert!(
        line.starts_with("body piece of 1000 bytes: \"xxx") && line.len() < 100,
        "{line}"
    );
    let h = head_of(b"GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(Event::Head(h).to_string(), r#"head "GET" "/a\"b" HTTP/1.1"#);
    assert_eq!(Event::End.to_string(), "end of request");
}

// ------------------------------------------------------------ properties

/// One request of a conversation: its bytes and the events it yields.
fn request() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, bool)> {
    (
        "/[a-z0-9/]{0,12}(\\?[a-z=&]{0,8})?",
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        proptest::collection::vec(1usize..64, 0..8),
    )
        .prop_map(|(target, body, chunked, sizes)| {
            let mut wire = format!("POST {target} HTTP/1.1\r\nHost: example\r\n").into_bytes();
            if chunked {
                wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                encode_chunks(&mut wire, &body, &sizes);
            } else {
                wire.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                wire.extend_from_slice(&body);
            }
            (wire, body, chunked)
        })
}

fn encode_chunks(wire: &mut Vec<u8>, body: &[u8], sizes: &[usize]) {
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        wire.extend_from_slice(format!("{n:x};e=1\r\n").as_bytes());
        wire.extend_from_slice(&rest[..n]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    wire.extend_from_slice(b"0\r\nT: 1\r\n\r\n");
}

proptest! {
    #[test]
    fn any_split_yields_the_same_events(
        requests in proptest::collection::vec(request(), 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let wire: Vec<u8> = requests.iter().flat_map(|(w, _, _)| w.clone()).collect();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        let split = feed_in_chunks(&wire, &cuts, LIMIT).unwrap();
        prop_assert_eq!(&split, &whole(&wire).unwrap());
        let bodies: Vec<&Vec<u8>> = split.iter().filter_map(|s| match s { Seen::Body(b) => Some(b), _ => None }).collect();
        let want: Vec<&Vec<u8>> = requests.iter().map(|(_, b, _)| b).filter(|b| !b.is_empty()).collect();
        prop_assert_eq!(bodies, want);
        prop_assert_eq!(split.iter().filter(|s| **s == Seen::End).count(), requests.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overbuffer(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        limit in 0usize..300,
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let _ = feed_in_chunks(&bytes, &cuts, limit);
    }

    #[test]
    fn request_like_bytes_decode_alike_in_any_split(
        parts in proptest::collection::vec(prop::sample::select(vec![
            &b"GET / HTTP/1.1\r\n"[..], b"Host: h\r\n", b"\r\n", b"\n", b"\r",
            b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"5\r\n",
            b"0\r\n", b"abc", b";x", b"Connection: close\r\n", b" ", b":",
        ]), 0..40),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let bytes = parts.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let split = feed_in_chunks(&bytes, &cuts, 256);
        prop_assert_eq!(split, feed_in_chunks(&bytes, &[], 256));
    }
}
