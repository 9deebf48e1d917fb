//! SCGI: one request per connection, a netstring header then the body.
//!
//! The header is `LEN ":" NAME\0VALUE\0... ","`; the first pair must be
//! `CONTENT_LENGTH` (the body's length, which frames the request) and an
//! `SCGI` pair must say `1`. [`parse_header`] works like httparse: a slice
//! in, `Complete`, `Partial` or an error out, so the host owns the buffer.
//! An oversized LEN is refused as soon as its digits are read, so the host
//! never buffers more than the limit plus a few bytes.

use super::params::Params;
use super::{excerpt, Error};

/// The most digits a netstring length may have (up to 9,999,999,999).
const MAX_LEN_DIGITS: usize = 10;

/// The outcome of [`parse_header`].
#[derive(Debug)]
pub enum Header {
    /// The header is complete: `consumed` bytes (the whole netstring) hold
    /// `params`; the body of `content_length` bytes follows.
    Complete {
        /// Bytes of the netstring, which the body follows.
        consumed: usize,
        /// The header's name-value pairs.
        params: Params,
        /// `CONTENT_LENGTH`: the bytes of body that follow.
        content_length: u64,
    },
    /// More bytes are needed.
    Partial,
}

/// Parses the netstring header at the start of `input` (httparse style: Partial means need more).
/// Rules: LEN is decimal digits (at most 10, no sign), then ':'; LEN > max_len -> ParamsTooLarge{limit:max_len}
/// (report it as soon as the LEN digits are known, so the host never buffers it); content must be
/// NUL-terminated pairs; the first name must be CONTENT_LENGTH with a decimal value; a "SCGI" param must be
/// present with value "1"; then ','. Partial never needs more than LEN + 12 bytes buffered.
///
/// ```
/// use fastgate::protocol::scgi::{parse_header, Header};
/// let wire = b"24:CONTENT_LENGTH\x002\x00SCGI\x001\x00,hi";
/// let Ok(Header::Complete { consumed, params, content_length }) = parse_header(wire, 1024) else {
///     panic!("not complete");
/// };
/// assert_eq!((consumed, content_length), (28, 2));
/// assert_eq!(params.get_str("SCGI"), Some("1"));
/// ```
pub fn parse_header(input: &[u8], max_len: usize) -> Result<Header, Error> {
    let Some((len, digits)) = read_length(input, max_len)? else {
        return Ok(Header::Partial);
    };
    let start = digits + 1;
    // Saturating: an end past usize::MAX is never in the input (Partial).
    let end = start.saturating_add(len);
    let Some(&end_byte) = input.get(end) else {
        return Ok(Header::Partial);
    };
    if end_byte != b',' {
        return Err(bad_netstring(format!(
            "expected ',' after {len} bytes, found {:?}",
            char::from(end_byte)
        )));
    }
    let params = Params::from_scgi(input[start..end].to_vec())?;
    let content_length = check_params(&params)?;
    Ok(Header::Complete {
        consumed: end + 1,
        params,
        content_length,
    })
}

/// Reads `LEN:`; returns LEN and the number of digits, or `None` if the
/// colon has not arrived yet.
fn read_length(input: &[u8], max_len: usize) -> Result<Option<(usize, usize)>, Error> {
    let digits = input
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    // Each check needs only the digits it looks at, in the order they
    // arrive, so where the reads ended never changes the answer.
    if digits > 1 && input[0] == b'0' {
        return Err(bad_netstring("length has a leading zero".to_string()));
    }
    // At most ten digits always fit a u64.
    let len = input[..digits.min(MAX_LEN_DIGITS)]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if len > max_len as u64 {
        return Err(Error::ParamsTooLarge { limit: max_len });
    }
    if digits > MAX_LEN_DIGITS {
        return Err(bad_netstring(format!(
            "length has more than {MAX_LEN_DIGITS} digits"
        )));
    }
    match input.get(digits) {
        None => Ok(None),
        Some(b':') if digits == 0 => Err(bad_netstring("empty length".to_string())),
        Some(b':') => Ok(Some((len as usize, digits))),
        Some(&b) => Err(bad_netstring(format!(
            "expected a digit or ':', found {:?}",
            char::from(b)
        ))),
    }
}

/// The SCGI rules on the params; returns CONTENT_LENGTH.
fn check_params(params: &Params) -> Result<u64, Error> {
    let first = params.iter().next();
    let Some((b"CONTENT_LENGTH", value)) = first else {
        return Err(bad_header("the first param is not CONTENT_LENGTH"));
    };
    // A repeated CONTENT_LENGTH could frame the body differently than the
    // handler reads it; refuse it.
    if params.get("CONTENT_LENGTH") != Some(value) {
        return Err(bad_header("CONTENT_LENGTH repeated with another value"));
    }
    let content_length = parse_decimal(value)
        .ok_or_else(|| bad_header(&format!("bad CONTENT_LENGTH {}", excerpt(value))))?;
    match params.get("SCGI") {
        Some(b"1") => Ok(content_length),
        Some(v) => Err(bad_header(&format!("SCGI is {}, not \"1\"", excerpt(v)))),
        None => Err(bad_header("no SCGI param")),
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn bad_netstring(what: String) -> Error {
    Error::BadNetstring(what)
}

fn bad_header(what: &str) -> Error {
    Error::BadScgiHeader(what.to_string())
}

/// Encodes a request header (client side): CONTENT_LENGTH first, SCGI=1, then the pairs.
/// Pairs named CONTENT_LENGTH or SCGI are left out: those two are written
/// here, once.
pub fn encode_header(out: &mut Vec<u8>, content_length: u64, pairs: &[(&[u8], &[u8])]) {
    let length = content_length.to_string();
    let mut block = Vec::new();
    push_pair(&mut block, b"CONTENT_LENGTH", length.as_bytes());
    push_pair(&mut block, b"SCGI", b"1");
    for (name, value) in pairs {
        if *name != b"CONTENT_LENGTH" && *name != b"SCGI" {
            push_pair(&mut block, name, value);
        }
    }
    out.extend_from_slice(block.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(&block);
    out.push(b',');
}

fn push_pair(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.extend_from_slice(name);
    block.push(0);
    block.extend_from_slice(value);
    block.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &[u8] = b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00REQUEST_URI\x00/deepthought\x00,What is the answer to life?";

    fn complete(input: &[u8]) -> (usize, Params, u64) {
        match parse_header(input, 1024) {
            Ok(Header::Complete {
                consumed,
                params,
                content_length,
            }) => (consumed, params, content_length),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spec_example() {
        let (consumed, params, content_length) = complete(GOOD);
        assert_eq!(content_length, 27);
        assert_eq!(&GOOD[consumed..], b"What is the answer to life?");
        assert_eq!(params.get_str("REQUEST_URI"), Some("/deepthought"));
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn every_prefix_is_partial() {
        let header_len = complete(GOOD).0;
        for end in 0..header_len {
            assert!(
                matches!(parse_header(&GOOD[..end], 1024), Ok(Header::Partial)),
                "{end}"
            );
        }
    }

    #[test]
    fn too_large_as_soon_as_the_digits_say_so() {
        assert_eq!(
            parse_header(b"71", 70).unwrap_err(),
            Error::ParamsTooLarge { limit: 70 }
        );
        assert_eq!(
            parse_header(b"100", 99).unwrap_err(),
            Error::ParamsTooLarge { limit: 99 }
        );
        assert!(matches!(parse_header(b"70", 70), Ok(Header::Partial)));
        assert_eq!(
            parse_header(b"99999999999", usize::MAX).unwrap_err(),
            bad_netstring(format!("length has more than {MAX_LEN_DIGITS} digits"))
        );
    }

    /// Found by the `scgi_header` fuzz target: eleven digits were "more
    /// than 10 digits" (400) read at once, but "too large" (431) when the
    /// first few came in a read of their own. The answer is now the same
    /// for every way the bytes can arrive.
    #[test]
    fn the_answer_does_not_depend_on_where_reads_end() {
        for input in [
            &b"20000000000000:"[..],
            b"0123456789012:",
            b"000:",
            b"1025:",
        ] {
            let whole = format!("{:?}", parse_header(input, 1024));
            let first = (1..=input.len())
                .map(|n| format!("{:?}", parse_header(&input[..n], 1024)))
                .find(|r| r != "Ok(Partial)");
            assert_eq!(first.as_deref(), Some(whole.as_str()), "{input:?}");
        }
    }

    /// Wraps `content` in a netstring.
    fn ns(content: &[u8]) -> Vec<u8> {
        let mut out = format!("{}:", content.len()).into_bytes();
        out.extend_from_slice(content);
        out.push(b',');
        out
    }

    #[test]
    fn bad_headers() {
        let table: &[(Vec<u8>, &str)] = &[
            (b":".to_vec(), "empty length"),
            (b"-1:".to_vec(), "found '-'"),
            (b"05:".to_vec(), "leading zero"),
            (b"4x".to_vec(), "found 'x'"),
            (b"4:A\x00B\x00;".to_vec(), "expected ','"),
            (ns(b"A\x00B\x00"), "first param is not CONTENT_LENGTH"),
            (
                ns(b"CONTENT_LENGTH\x00x\x00SCGI\x001\x00"),
                "bad CONTENT_LENGTH \"x\"",
            ),
            (
                ns(b"CONTENT_LENGTH\x00\x00SCGI\x001\x00"),
                "bad CONTENT_LENGTH \"\"",
            ),
            (
                ns(b"CONTENT_LENGTH\x00+1\x00SCGI\x001\x00"),
                "bad CONTENT_LENGTH \"+1\"",
            ),
            (
                ns(b"CONTENT_LENGTH\x0099999999999999999999\x00SCGI\x001\x00"),
                "bad CONTENT_LENGTH",
            ),
            (ns(b"CONTENT_LENGTH\x000\x00"), "no SCGI param"),
            (ns(b"CONTENT_LENGTH\x000\x00SCGI\x002\x00"), "SCGI is \"2\""),
            (
                ns(b"CONTENT_LENGTH\x000\x00SCGI\x001"),
                "do not end with a NUL",
            ),
            (ns(b"CONTENT_LENGTH\x000\x00SCGI\x00"), "odd number"),
            (
                ns(b"CONTENT_LENGTH\x000\x00SCGI\x001\x00CONTENT_LENGTH\x005\x00"),
                "repeated",
            ),
            (ns(b""), "first param is not CONTENT_LENGTH"),
        ];
        for (input, want) in table {
            let err = parse_header(input, 1024).unwrap_err();
            assert!(err.to_string().contains(want), "{input:?}: {err}");
            assert_eq!(err.http_status(), 400);
        }
    }

    #[test]
    fn encode_then_parse() {
        let mut out = Vec::new();
        let pairs: &[(&[u8], &[u8])] = &[(b"A", b"1"), (b"SCGI", b"9"), (b"CONTENT_LENGTH", b"9")];
        encode_header(&mut out, 5, pairs);
        assert_eq!(out, b"28:CONTENT_LENGTH\x005\x00SCGI\x001\x00A\x001\x00,");
        let (consumed, params, content_length) = complete(&out);
        assert_eq!((consumed, content_length, params.len()), (out.len(), 5, 3));
    }

    proptest! {
        #[test]
        fn round_trip(len in any::<u64>(), pairs in proptest::collection::vec(("[A-Z_]{1,12}", "[ -~]{0,40}"), 0..10)) {
            let borrowed: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
            let mut out = Vec::new();
            encode_header(&mut out, len, &borrowed);
            let Ok(Header::Complete { consumed, params, content_length }) = parse_header(&out, usize::MAX) else {
                panic!("not complete");
            };
            prop_assert_eq!((consumed, content_length), (out.len(), len));
            let kept: Vec<_> = borrowed.iter().filter(|(n, _)| *n != b"SCGI" && *n != b"CONTENT_LENGTH").copied().collect();
            prop_assert_eq!(params.iter().skip(2).collect::<Vec<_>>(), kept);
            for end in 0..out.len() {
                prop_assert!(matches!(parse_header(&out[..end], usize::MAX), Ok(Header::Partial)));
            }
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), max in 0usize..300) {
            let _ = parse_header(&bytes, max);
        }

        #[test]
        fn partial_needs_at_most_len_plus_12(bytes in proptest::collection::vec(any::<u8>(), 0..200), max in 0usize..100) {
            if let Ok(Header::Partial) = parse_header(&bytes, max) {
                prop_assert!(bytes.len() < max + 12);
            }
        }
    }
}
