//! Feeds arbitrary bytes to the HTTP/1.1 request decoder, split where the
//! first byte says, and checks its promises: "need more" uses every byte
//! given, body pieces are never empty, and the decoder never holds more
//! than its head limit plus one chunk-size line.
#![no_main]
use fastgate::protocol::http::request::{Decoder, Event, MAX_CHUNK_LINE};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let mut dec = Decoder::new(LIMIT);
    for chunk in input.chunks(usize::from(step).max(1)) {
        let mut rest = chunk;
        loop {
            let Ok((n, event)) = dec.decode(rest) else {
                return;
            };
            assert!(dec.buffered() <= LIMIT + MAX_CHUNK_LINE);
            match event {
                None => {
                    assert_eq!(n, rest.len());
                    break;
                }
                Some(Event::Body(piece)) => assert!(!piece.is_empty()),
                Some(_) => {}
            }
            rest = &rest[n..];
        }
    }
});
