//! Parses arbitrary bytes as an SCGI netstring header, and checks that a
//! complete header never claims more bytes than it was given.
#![no_main]
use fastgate::protocol::scgi::{parse_header, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Header::Complete { consumed, .. }) = parse_header(data, 4096) {
        assert!(consumed <= data.len());
    }
});
