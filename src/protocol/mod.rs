//! Pure protocol codecs: bytes in, events out. Nothing here touches a
//! socket, a thread or the clock, so each codec is unit-tested, property
//! tested and fuzzed on its own (`fuzz/`).

pub mod cgi_response;
pub mod fastcgi;
pub mod params;
pub mod scgi;
