//! A CGI response head fed as the CGI gateway and the client feed it: each
//! read appended to the bytes kept, the whole parsed again until it is no
//! longer `Partial`. Checks: no panic; partial input stays under the
//! limit; the first answer that is not `Partial` is the answer on the
//! whole input; a complete head fits the limit, has a status of 100..=999,
//! token names and values free of control bytes; and written back with
//! `write_head` it parses to the same head.
#![no_main]
use fastgate::protocol::cgi_response::{parse_head, write_head, Head, Parsed};
use fastgate::protocol::Error;
use fastgate_fuzz::split::Split;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1024;

/// A parse result that can be compared.
fn outcome(r: Result<Parsed, Error>) -> Result<Option<(usize, Head)>, Error> {
    r.map(|p| match p {
        Parsed::Partial => None,
        Parsed::Complete { consumed, head } => Some((consumed, head)),
    })
}

fn check_head(consumed: usize, head: &Head) {
    assert!(consumed <= LIMIT);
    assert!((100..=999).contains(&head.status));
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for (name, value) in &head.headers {
        assert!(!name.is_empty() && name.bytes().all(token), "{name:?}");
        assert!(!name.eq_ignore_ascii_case("status"));
        assert!(
            !value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "{value:?}"
        );
        assert_eq!(value.trim_matches([' ', '\t']), value);
    }
    let mut again = Vec::new();
    write_head(&mut again, head.status, &head.reason, &head.headers);
    match parse_head(&again, usize::MAX) {
        Ok(Parsed::Complete { consumed, head: h }) => {
            assert_eq!(consumed, again.len());
            assert_eq!(&h, head, "written as {:?}", String::from_utf8_lossy(&again));
        }
        other => panic!("a written head does not parse: {other:?} {again:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let whole = outcome(parse_head(split.payload, LIMIT));
    let mut kept = Vec::new();
    let mut first = Ok(None);
    for chunk in split.chunks() {
        kept.extend_from_slice(chunk);
        first = outcome(parse_head(&kept, LIMIT));
        if first != Ok(None) {
            break;
        }
        assert!(kept.len() < LIMIT, "partial with {} bytes kept", kept.len());
    }
    assert_eq!(first, whole);
    if let Ok(Some((consumed, head))) = &whole {
        check_head(*consumed, head);
    }
});
