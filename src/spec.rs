//! Listen specs: the `--listen` forms of the interface contract, parsed into
//! a protocol and an address. Pure: resolving a host name is the only I/O.
//!
//! | spec | protocol | address |
//! |---|---|---|
//! | `fastcgi://HOST:PORT`, `scgi://…`, `http://…` | named | TCP |
//! | `fastcgi:/abs/path.sock`, `scgi:/…`, `http:/…` | named | Unix |
//! | `HOST:PORT`, `/abs/path.sock` | auto (first byte decides) | TCP / Unix |
//! | `unix:/abs/path.sock` (nginx's and fcgiwrap's spelling) | auto | Unix |

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// FastCGI 1.0 (`fastcgi:`).
    FastCgi,
    /// SCGI (`scgi:`).
    Scgi,
    /// Plain HTTP/1.1, for development (`http:`).
    Http,
    /// Each connection's first byte decides: 0x01 FastCGI, a digit SCGI.
    Auto,
}

impl Protocol {
    /// The scheme as written in a spec (`auto` has none).
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::FastCgi => "fastcgi",
            Protocol::Scgi => "scgi",
            Protocol::Http => "http",
            Protocol::Auto => "auto",
        }
    }
}

/// Where a listener is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address; IPv6 is written `[::1]:PORT`.
    Tcp(SocketAddr),
    /// An absolute Unix socket path.
    Unix(PathBuf),
}

/// A parsed `--listen` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    /// What the listener speaks.
    pub protocol: Protocol,
    /// Where it listens.
    pub address: Address,
}

/// Why a spec did not parse; the message names the bad part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl FromStr for ListenSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(ListenSpec {
                protocol: Protocol::Auto,
                address: unix_address(s, path)?,
            });
        }
        let (protocol, rest) = split_scheme(s)?;
        let address = if let Some(path) = rest.strip_prefix("//") {
            Address::Tcp(resolve(path)?)
        } else if rest.starts_with('/') {
            unix_address(s, rest)?
        } else if protocol == Protocol::Auto {
            Address::Tcp(resolve(rest)?)
        } else {
            return Err(SpecError(format!(
                "{s:?}: expected {0}://HOST:PORT or {0}:/absolute/path.sock",
                protocol.scheme()
            )));
        };
        Ok(ListenSpec { protocol, address })
    }
}

/// The socket path of spec `s`: absolute, and short enough for `sun_path`.
/// `unix:///run/a.sock` (the URL form) is `/run/a.sock`.
fn unix_address(s: &str, path: &str) -> Result<Address, SpecError> {
    let path = match path.strip_prefix("//") {
        Some(rest) if rest.starts_with('/') => rest,
        Some(_) => {
            return Err(SpecError(format!(
                "{s:?}: expected unix:/absolute/path.sock"
            )))
        }
        None => path,
    };
    if !path.starts_with('/') {
        return Err(SpecError(format!(
            "{s:?}: the socket path must be absolute, e.g. unix:/run/fastgate.sock"
        )));
    }
    if path.len() > 107 {
        return Err(SpecError(format!(
            "{s:?}: unix socket path longer than 107 bytes"
        )));
    }
    Ok(Address::Unix(PathBuf::from(path)))
}

fn split_scheme(s: &str) -> Result<(Protocol, &str), SpecError> {
    for (scheme, proto) in [
        ("fastcgi:", Protocol::FastCgi),
        ("scgi:", Protocol::Scgi),
        ("http:", Protocol::Http),
    ] {
        if let Some(rest) = s.strip_prefix(scheme) {
            return Ok((proto, rest));
        }
    }
    if s.is_empty() {
        return Err(SpecError("empty listen spec".into()));
    }
    if s.contains("://") {
        return Err(SpecError(format!(
            "{s:?}: unknown scheme (expected fastcgi, scgi or http)"
        )));
    }
    Ok((Protocol::Auto, s))
}

fn resolve(hostport: &str) -> Result<SocketAddr, SpecError> {
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !hostport.contains(':') {
        return Err(SpecError(format!("{hostport:?}: expected HOST:PORT")));
    }
    let mut addrs = hostport
        .to_socket_addrs()
        .map_err(|e| SpecError(format!("{hostport:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| SpecError(format!("{hostport:?}: host has no address")))
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.address, self.protocol) {
            (Address::Tcp(a), Protocol::Auto) => write!(f, "{a}"),
            (Address::Unix(p), Protocol::Auto) => {
                let path = p.display().to_string();
                // A bare path that starts with `//` or holds `://` would
                // read back as TCP or a scheme: the URL form does not.
                if path.starts_with("//") || path.contains("://") {
                    write!(f, "unix://{path}")
                } else {
                    f.write_str(&path)
                }
            }
            (Address::Tcp(a), proto) => write!(f, "{}://{a}", proto.scheme()),
            (Address::Unix(p), proto) => write!(f, "{}:{}", proto.scheme(), p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ListenSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form_parses() {
        let tcp = |p, a: &str| ListenSpec {
            protocol: p,
            address: Address::Tcp(a.parse().unwrap()),
        };
        let unix = |p, a: &str| ListenSpec {
            protocol: p,
            address: Address::Unix(a.into()),
        };
        assert_eq!(
            parse("fastcgi://127.0.0.1:9000"),
            tcp(Protocol::FastCgi, "127.0.0.1:9000")
        );
        assert_eq!(
            parse("scgi://[::1]:4000"),
            tcp(Protocol::Scgi, "[::1]:4000")
        );
        assert_eq!(
            parse("http://127.0.0.1:80"),
            tcp(Protocol::Http, "127.0.0.1:80")
        );
        assert_eq!(
            parse("fastcgi:/run/a.sock"),
            unix(Protocol::FastCgi, "/run/a.sock")
        );
        assert_eq!(
            parse("scgi:/run/a.sock"),
            unix(Protocol::Scgi, "/run/a.sock")
        );
        assert_eq!(
            parse("127.0.0.1:9000"),
            tcp(Protocol::Auto, "127.0.0.1:9000")
        );
        assert_eq!(parse("/run/a.sock"), unix(Protocol::Auto, "/run/a.sock"));
        assert_eq!(parse("localhost:9000").protocol, Protocol::Auto);
    }

    #[test]
    fn unix_prefix_is_the_bare_path() {
        assert_eq!(parse("unix:/run/a.sock"), parse("/run/a.sock"));
        assert_eq!(parse("unix:///run/a.sock"), parse("/run/a.sock"));
        assert_eq!(parse("unix:/run/a.sock").to_string(), "/run/a.sock");
        for (bad, why) in [
            ("unix:run/a.sock", "must be absolute"),
            ("unix:", "must be absolute"),
            ("unix://run/a.sock", "expected unix:/absolute/path.sock"),
        ] {
            let e = bad.parse::<ListenSpec>().unwrap_err();
            assert!(e.0.starts_with(&format!("{bad:?}: ")), "{e}");
            assert!(e.0.contains(why), "{e}");
        }
        let long = format!("unix:/{}", "x".repeat(107));
        assert!(long.parse::<ListenSpec>().unwrap_err().0.contains("107"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "fastcgi://127.0.0.1:9000",
            "scgi:/run/a.sock",
            "[::1]:9",
            "/x.sock",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }

    /// Found by the `listen_spec` fuzz target: `unix:/a://b` parsed, but
    /// was written as `/a://b`, which does not.
    #[test]
    fn odd_unix_paths_are_written_so_they_read_back() {
        for (s, written) in [
            ("unix:/a://b", "unix:///a://b"),
            ("unix:////x", "unix:////x"),
            ("fastcgi:/a://b", "fastcgi:/a://b"),
        ] {
            let spec = parse(s);
            assert_eq!(spec.to_string(), written);
            assert_eq!(parse(written), spec);
        }
    }

    #[test]
    fn bad_specs_say_why() {
        for s in [
            "",
            "ftp://x:1",
            "fastcgi:relative.sock",
            "9000",
            "fastcgi://nohostport",
        ] {
            let e = s.parse::<ListenSpec>().unwrap_err();
            assert!(!e.0.is_empty(), "{s}");
        }
    }
}
