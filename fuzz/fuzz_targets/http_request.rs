//! The HTTP/1.1 request decoder fed arbitrary bytes cut at arbitrary
//! points, as the HTTP machine feeds it each read. Checks: no panic; "need
//! more" uses every byte given; body pieces are never empty; the decoder
//! never holds more than its head limit plus one chunk-size line; a head
//! fits the limit and its params (as nginx would give them) can be built;
//! a `Content-Length` body is exactly that long; and the split feed
//! decodes what one whole feed decodes (body pieces joined), up to the
//! same error.
#![no_main]
use fastgate::protocol::http::params::{to_params, Endpoint};
use fastgate::protocol::http::request::{Decoder, Event, Framing, MAX_CHUNK_LINE};
use fastgate::protocol::http::Error;
use fastgate_fuzz::split::Split;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1024;

/// An event owned, so feeds can be compared.
#[derive(Debug, PartialEq)]
enum Owned {
    Head(Box<fastgate::protocol::http::Head>),
    Body(Vec<u8>),
    End,
}

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Owned>,
    error: Option<Error>,
    idle: bool,
}

/// Checks one event against the request it belongs to; `body` counts the
/// current request's body bytes and `framing` is its head's framing.
fn check(event: &Event<'_>, framing: &mut Framing, body: &mut u64) {
    match event {
        Event::Head(head) => {
            assert!(head.target.len() + head.method.len() <= LIMIT);
            let peer = Endpoint::Inet {
                ip: "10.0.0.1",
                port: 4000,
            };
            let params = to_params(head, &peer, &Endpoint::Unix("/run/fg.sock"));
            assert!(params.get("REQUEST_METHOD").is_some());
            (*framing, *body) = (head.framing, 0);
        }
        Event::Body(piece) => {
            assert!(!piece.is_empty(), "an empty body piece");
            *body += piece.len() as u64;
            if let Framing::Length(n) = framing {
                assert!(*body <= *n, "more body than Content-Length");
            }
        }
        Event::End => {
            if let Framing::Length(n) = framing {
                assert_eq!(*body, *n, "a body shorter than Content-Length ended");
            }
            *framing = Framing::None;
        }
    }
}

fn push(events: &mut Vec<Owned>, event: Event<'_>) {
    match event {
        Event::Head(h) => events.push(Owned::Head(Box::new(h))),
        Event::Body(piece) => match events.last_mut() {
            Some(Owned::Body(prev)) => prev.extend_from_slice(piece),
            _ => events.push(Owned::Body(piece.to_vec())),
        },
        Event::End => events.push(Owned::End),
    }
}

fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut dec = Decoder::new(LIMIT);
    let (mut events, mut framing, mut body) = (Vec::new(), Framing::None, 0);
    for chunk in chunks {
        let mut rest: &[u8] = chunk;
        let mut idle_steps = 0;
        loop {
            let (n, event) = match dec.decode(rest) {
                Ok(step) => step,
                Err(error) => {
                    return Outcome {
                        events,
                        error: Some(error),
                        idle: false,
                    }
                }
            };
            assert!(dec.buffered() <= LIMIT + MAX_CHUNK_LINE);
            let Some(event) = event else {
                assert_eq!(n, rest.len(), "need more must use every byte");
                break;
            };
            // Only `End` may consume nothing, and never twice in a row.
            idle_steps = if n == 0 { idle_steps + 1 } else { 0 };
            assert!(idle_steps <= 1, "the decoder makes no progress");
            check(&event, &mut framing, &mut body);
            push(&mut events, event);
            rest = &rest[n..];
        }
    }
    Outcome {
        events,
        error: None,
        idle: dec.is_idle(),
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
