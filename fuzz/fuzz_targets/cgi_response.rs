//! Parses arbitrary bytes as a CGI response head under a small limit.
#![no_main]
use fastgate::protocol::cgi_response::{parse_head, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete { consumed, head }) = parse_head(data, 1024) {
        assert!(consumed <= data.len().min(1024));
        assert!((100..=999).contains(&head.status));
    }
});
