//! The command line's sizes and durations (`64k`, `500ms`), and its
//! `--allow-from` networks, from arbitrary text. Checks: no panic; a size
//! written back in bytes, a duration in milliseconds and a network as
//! `ADDR/LEN` parse to the same value; a size in `k`, `m` or `g` is a
//! multiple of its unit; a network holds its own address and a prefix no
//! longer than the address.
#![no_main]
use std::net::IpAddr;
use std::time::Duration;

use fastgate::cli::parse_cidr;
use fastgate::cli::units::{parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fn size(s: &str) {
    let Ok(n) = parse_size(s) else {
        return;
    };
    assert_eq!(parse_size(&n.to_string()), Ok(n), "{s:?}");
    let unit = match s.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        _ => 1,
    };
    assert_eq!(n % unit, 0, "{s:?} is {n}");
}

fn duration(s: &str) {
    let Ok(d) = parse_duration(s) else {
        return;
    };
    let millis = format!("{}ms", d.as_millis());
    assert_eq!(parse_duration(&millis), Ok(d), "{s:?}");
    assert_eq!(d, Duration::from_millis(d.as_millis() as u64));
}

fn cidr(s: &str) {
    let Ok(net) = parse_cidr(s) else {
        return;
    };
    let width = if net.addr.is_ipv4() { 32 } else { 128 };
    assert!(net.prefix_len <= width, "{s:?}");
    assert!(
        net.contains(net.addr),
        "{s:?} does not hold its own address"
    );
    let written = format!("{}/{}", net.addr, net.prefix_len);
    assert_eq!(parse_cidr(&written), Ok(net), "{s:?} written {written:?}");
    if let Some(Ok(ip)) = s.split('/').next().map(str::parse::<IpAddr>) {
        assert!(net.contains(ip), "{s:?} does not hold the address it names");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    size(s);
    duration(s);
    cidr(s);
});
