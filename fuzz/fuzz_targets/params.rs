//! Name-value pairs: arbitrary bytes as a FastCGI PARAMS stream (pushed
//! into a `ParamsBuffer` in arbitrary pieces, as PARAMS records arrive)
//! and as an SCGI block. Checks: no panic; the pieces give what the whole
//! block gives (`Params::from_fastcgi`), or `ParamsTooLarge` exactly when
//! the block passes the limit; the buffer never holds more than the
//! limit; the pairs agree with `parse_pairs`; `get` finds the last of a
//! repeated name; and pairs re-encoded parse back to the same pairs.
#![no_main]
use fastgate::protocol::fastcgi::{encode_pair, parse_pairs};
use fastgate::protocol::params::{Params, ParamsBuffer};
use fastgate::protocol::scgi::encode_header;
use fastgate::protocol::Error;
use fastgate_fuzz::split::Split;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 2048;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn pairs(p: &Params) -> Pairs {
    p.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

/// The checks every parsed set of params must pass, whatever its source.
fn check_params(p: &Params, raw_len: usize) {
    let all = pairs(p);
    assert_eq!(all.len(), p.len());
    assert_eq!(p.is_empty(), all.is_empty());
    let bytes: usize = all.iter().map(|(n, v)| n.len() + v.len()).sum();
    assert_eq!(bytes, p.byte_len());
    assert!(p.byte_len() <= raw_len);
    for (name, _) in &all {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let last = all.iter().rev().find(|(n, _)| n == name.as_bytes());
        assert_eq!(p.get(name), last.map(|(_, v)| v.as_slice()));
    }
}

fn fastcgi(split: &Split<'_>) {
    let block = split.payload;
    let mut buffer = ParamsBuffer::new(LIMIT);
    for chunk in split.chunks() {
        buffer.push(chunk);
        assert!(buffer.held() <= LIMIT, "the buffer holds at most its limit");
    }
    assert_eq!(buffer.overflowed(), block.len() > LIMIT);
    let pieces = buffer.finish();
    if block.len() > LIMIT {
        assert_eq!(pieces.err(), Some(Error::ParamsTooLarge { limit: LIMIT }));
        return;
    }
    let whole = Params::from_fastcgi(block.to_vec());
    let borrowed = parse_pairs(block);
    match (whole, pieces, borrowed) {
        (Ok(w), Ok(p), Ok(b)) => {
            assert_eq!(pairs(&w), pairs(&p));
            let b: Pairs = b.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            assert_eq!(pairs(&w), b);
            check_params(&w, block.len());
            let mut again = Vec::new();
            for (n, v) in w.iter() {
                encode_pair(&mut again, n, v);
            }
            assert_eq!(pairs(&Params::from_fastcgi(again).unwrap()), pairs(&w));
        }
        (Err(w), Err(p), Err(b)) => assert!(w == p && p == b),
        other => panic!("the parsers disagree: {other:?}"),
    }
}

fn scgi(block: &[u8]) {
    let Ok(p) = Params::from_scgi(block.to_vec()) else {
        return;
    };
    check_params(&p, block.len());
    // An SCGI header of the same pairs (CONTENT_LENGTH and SCGI are the
    // encoder's own) reads back as them.
    let kept: Pairs = pairs(&p)
        .into_iter()
        .filter(|(n, _)| n != b"CONTENT_LENGTH" && n != b"SCGI")
        .collect();
    let borrowed: Vec<(&[u8], &[u8])> = kept.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    let mut wire = Vec::new();
    encode_header(&mut wire, 7, &borrowed);
    let Ok(fastgate::protocol::scgi::Header::Complete {
        params,
        content_length,
        ..
    }) = fastgate::protocol::scgi::parse_header(&wire, usize::MAX)
    else {
        // A NUL inside a name or value cannot be sent: from_scgi never
        // yields one, so the header must parse.
        panic!("an encoded header does not parse: {wire:?}");
    };
    assert_eq!(content_length, 7);
    assert_eq!(pairs(&params)[2..], kept[..]);
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    fastcgi(&split);
    scgi(split.payload);
});
