//! The SCGI netstring header fed as the server feeds it: each read is
//! appended to what is kept and the whole is parsed again, until it is no
//! longer `Partial`. Checks: no panic; while partial the kept bytes stay
//! within the limit plus the netstring's own bytes; the first answer that
//! is not `Partial` is the answer on the whole input (a longer input never
//! changes it); a complete header claims no more than it was given, and
//! its params, re-encoded, read back the same.
#![no_main]
use fastgate::protocol::scgi::{encode_header, parse_header, Header};
use fastgate_fuzz::split::Split;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1024;

/// A parse result that can be compared.
fn outcome(r: Result<Header, fastgate::protocol::Error>) -> String {
    match r {
        Ok(Header::Partial) => "partial".into(),
        Ok(Header::Complete {
            consumed,
            params,
            content_length,
        }) => {
            let pairs: Vec<_> = params.iter().collect();
            format!("complete {consumed} {content_length} {pairs:?}")
        }
        Err(e) => format!("error {e:?}"),
    }
}

/// The header of the whole input must re-encode into one that parses back.
fn round_trip(input: &[u8]) {
    let Ok(Header::Complete {
        consumed,
        params,
        content_length,
    }) = parse_header(input, LIMIT)
    else {
        return;
    };
    assert!(consumed <= input.len() && consumed <= LIMIT + 12);
    let rest: Vec<(&[u8], &[u8])> = params.iter().skip(1).collect();
    let mut wire = Vec::new();
    encode_header(&mut wire, content_length, &rest);
    let Ok(Header::Complete {
        params: again,
        content_length: n,
        ..
    }) = parse_header(&wire, usize::MAX)
    else {
        panic!("a re-encoded header does not parse: {wire:?}");
    };
    assert_eq!(n, content_length);
    assert_eq!(again.get("SCGI"), Some(&b"1"[..]));
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let whole = outcome(parse_header(split.payload, LIMIT));
    let mut kept = Vec::new();
    let mut first = "partial".to_string();
    for chunk in split.chunks() {
        kept.extend_from_slice(chunk);
        first = outcome(parse_header(&kept, LIMIT));
        if first != "partial" {
            break;
        }
        assert!(
            kept.len() <= LIMIT + 12,
            "partial with {} bytes kept",
            kept.len()
        );
    }
    assert_eq!(first, whole);
    round_trip(split.payload);
});
