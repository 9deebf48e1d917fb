//! The FastCGI record decoder fed arbitrary bytes cut at arbitrary points
//! (`fastgate_fuzz::split`), as the server feeds it each read. Checks:
//! no panic; "need more" uses every byte given (the server keeps nothing
//! back); an event never claims more than a record can hold; and the
//! events of the split feed equal those of one whole feed (stream pieces
//! joined), up to the same error and the same final state.
#![no_main]
use fastgate::protocol::fastcgi::{Decoder, Event, Stream, MAX_CONTENT_LEN};
use fastgate::protocol::Error;
use fastgate_fuzz::split::Split;
use libfuzzer_sys::fuzz_target;

/// An event with its borrowed bytes owned, so feeds can be compared.
#[derive(Debug, PartialEq)]
enum Owned {
    Stream(Stream, u16, Vec<u8>),
    Other(String),
}

/// Everything a feed decoded: events, the error that ended it, and
/// whether it stopped between records.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Owned>,
    error: Option<Error>,
    between_records: bool,
}

/// Adds an event; consecutive non-empty pieces of one stream are joined,
/// since where a piece ends depends on where the reads ended.
fn push(events: &mut Vec<Owned>, event: Event<'_>) {
    let Event::Stream {
        stream,
        request_id,
        data,
    } = event
    else {
        events.push(Owned::Other(format!("{event:?}")));
        return;
    };
    assert!(data.len() <= MAX_CONTENT_LEN);
    if let Some(Owned::Stream(s, id, prev)) = events.last_mut() {
        if (*s, *id) == (stream, request_id) && !prev.is_empty() && !data.is_empty() {
            prev.extend_from_slice(data);
            return;
        }
    }
    events.push(Owned::Stream(stream, request_id, data.to_vec()));
}

/// Decodes `chunks` one after the other, each until "need more", as
/// `FcgiConn` does with each read.
fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut dec = Decoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        loop {
            match dec.decode(rest) {
                Err(error) => {
                    assert_eq!(dec.decode(b"\x01").err(), Some(error.clone()));
                    return Outcome {
                        events,
                        error: Some(error),
                        between_records: false,
                    };
                }
                Ok((n, None)) => {
                    assert_eq!(n, rest.len(), "need more must use every byte");
                    break;
                }
                Ok((n, Some(event))) => {
                    assert!(n > 0 && n <= rest.len(), "an event consumes bytes");
                    rest = &rest[n..];
                    push(&mut events, event);
                }
            }
        }
    }
    let between_records = dec.is_between_records();
    Outcome {
        events,
        error: None,
        between_records,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = Split::new(data) else {
        return;
    };
    let whole = feed(&[split.payload]);
    let pieces = feed(&split.chunks());
    assert_eq!(whole, pieces);
});
