//! `--listen` specs (`fastgate::ListenSpec`) from arbitrary text. Checks:
//! no panic, and a spec that parses is written by its `Display` as a spec
//! that parses back to the same value.
//!
//! `HOST:PORT` with a host name resolves it (getaddrinfo): such inputs
//! are left out, except `localhost` (answered from /etc/hosts), so the
//! fuzzer sends no DNS query.
#![no_main]
use std::net::SocketAddr;

use fastgate::ListenSpec;
use libfuzzer_sys::fuzz_target;

/// Whether parsing `s` could ask DNS: a TCP form whose host is a name.
fn asks_dns(s: &str) -> bool {
    if s.starts_with("unix:") {
        return false;
    }
    let rest = ["fastcgi:", "scgi:", "http:"]
        .iter()
        .find_map(|scheme| s.strip_prefix(scheme))
        .unwrap_or(s);
    let hostport = rest.strip_prefix("//").unwrap_or(rest);
    !hostport.starts_with('/')
        && hostport.contains(':')
        && hostport.parse::<SocketAddr>().is_err()
        && !hostport.starts_with("localhost:")
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if asks_dns(s) {
        return;
    }
    let Ok(spec) = s.parse::<ListenSpec>() else {
        return;
    };
    let written = spec.to_string();
    match written.parse::<ListenSpec>() {
        Ok(again) => assert_eq!(again, spec, "{s:?} written {written:?}"),
        Err(e) => panic!("{s:?} parses, but its Display {written:?} does not: {e}"),
    }
});
