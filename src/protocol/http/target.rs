//! The request target (RFC 9112 §3.2) and the path nginx calls `$uri`.
//!
//! The built-in apps route on `SCRIPT_NAME`, and the `cgi` app finds its
//! script from it, so they must get what nginx would give them: the path
//! percent-decoded, `.` and `..` segments resolved and repeated slashes
//! merged (nginx's defaults). A path that climbs above the root, a bad
//! `%` escape or an encoded NUL is refused with 400, as nginx does; so is
//! a target that is neither origin-form (`/p?q`), absolute-form
//! (`http://host/p?q`, whose `/p?q` part is used) nor `*` for `OPTIONS`.
//! Authority-form (`CONNECT host:port`) is refused: nothing here proxies.

use super::Error;
use crate::protocol::excerpt;

/// The origin-form part of `target`: itself for `/p?q` and `*`, the part
/// from the path on for `http://host/p?q` (`/` when it has no path), and
/// anything else unchanged (which [`check`] refuses).
pub fn origin(target: &str) -> &str {
    let Some(rest) = strip_scheme(target) else {
        return target;
    };
    match rest.find('/') {
        Some(i) if !rest[..i].contains('?') => &rest[i..],
        None if !rest.contains('?') => "/",
        _ => target,
    }
}

fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// Refuses a target that is not origin-form, absolute-form or `OPTIONS *`.
pub fn check(method: &str, target: &str) -> Result<(), Error> {
    let form_ok = origin(target).starts_with('/') || (target == "*" && method == "OPTIONS");
    if form_ok {
        Ok(())
    } else {
        Err(bad_target(target.as_bytes()))
    }
}

/// nginx's `$uri` of a path (`*` stays `*`): decoded, dot segments
/// resolved, slashes merged; a trailing slash is kept.
///
/// ```
/// use fastgate::protocol::http::target::normalize;
/// assert_eq!(normalize("/a//b/./c/../d%20e/").unwrap(), b"/a/b/d e/");
/// assert!(normalize("/a/../../etc/passwd").is_err());
/// ```
pub fn normalize(path: &str) -> Result<Vec<u8>, Error> {
    if path == "*" {
        return Ok(b"*".to_vec());
    }
    let decoded = percent_decode(path.as_bytes())?;
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        trailing = matches!(segment, b"" | b"." | b"..");
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop().ok_or_else(|| bad_target(path.as_bytes()))?;
            }
            _ => segments.push(segment),
        }
    }
    Ok(join(&segments, trailing))
}

fn join(segments: &[&[u8]], trailing: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for segment in segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    out
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'%' {
            out.push(b);
            continue;
        }
        let byte = match rest {
            [h, l, ..] => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match byte {
            Some(0) | None => return Err(bad_target(bytes)),
            Some(byte) => out.push(byte),
        }
        rest = &rest[2..];
    }
    Ok(out)
}

fn hex(d: u8) -> Option<u8> {
    char::from(d).to_digit(16).map(|v| v as u8)
}

fn bad_target(target: &[u8]) -> Error {
    Error::BadRequest(format!("bad request target {}", excerpt(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let table = [
            ("/p?q", "/p?q"),
            ("*", "*"),
            ("http://h/p?q", "/p?q"),
            ("HTTPS://h:8443/", "/"),
            ("http://h", "/"),
            ("http://h?q", "http://h?q"),
            ("h:443", "h:443"),
            ("p", "p"),
        ];
        for (target, want) in table {
            assert_eq!(origin(target), want, "{target}");
        }
        assert!(check("GET", "/").is_ok() && check("OPTIONS", "*").is_ok());
        assert!(check("GET", "http://h/x").is_ok());
        for (method, target) in [
            ("GET", "*"),
            ("CONNECT", "h:443"),
            ("GET", "p"),
            ("GET", "http://h?q"),
        ] {
            assert!(check(method, target).is_err(), "{method} {target}");
        }
    }

    #[test]
    fn normalized_paths() {
        let table: &[(&str, &[u8])] = &[
            ("/", b"/"),
            ("//", b"/"),
            ("/a/b", b"/a/b"),
            ("/a/b/", b"/a/b/"),
            ("/a/./b", b"/a/b"),
            ("/a/.", b"/a/"),
            ("/a/..", b"/"),
            ("/a/b/..", b"/a/"),
            ("/a/b/../c", b"/a/c"),
            ("/a%2fb", b"/a/b"),
            ("/a/%2E%2e/b", b"/b"),
            ("/%E2%82%AC%ff", b"/\xe2\x82\xac\xff"),
            ("/a..b/.c", b"/a..b/.c"),
            ("*", b"*"),
        ];
        for (path, want) in table {
            assert_eq!(normalize(path).unwrap(), *want, "{path}");
        }
        for bad in [
            "/..",
            "/a/../..",
            "/%2e%2e/x",
            "/%",
            "/%4",
            "/%zz",
            "/a%00b",
        ] {
            assert_eq!(normalize(bad).unwrap_err().http_status(), 400, "{bad}");
        }
    }
}
