//! The request as a handler sees it: params, the conveniences users reach
//! for (method, path, query, headers), the role, and the body as an
//! `io::Read` that yields bytes while they are still arriving.

use std::borrow::Cow;
use std::io::{self, Read};
use std::sync::Arc;

use super::shared::{Input, Shared};
use crate::protocol::fastcgi::Role;
use crate::protocol::params::Params;

/// One request, owned by the handler while it runs.
pub struct Request {
    params: Params,
    /// The routing path when it had to be joined (`SCRIPT_NAME` and
    /// `PATH_INFO` both set); else it is a slice of `params`.
    joined_path: Option<String>,
    role: Role,
    fcgi_id: u16,
    body: Body,
    data: Body,
    shared: Arc<Shared>,
}

/// A request input stream (STDIN, or DATA for the FILTER role).
pub struct Body {
    shared: Arc<Shared>,
    which: Input,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.shared.read(self.which, buf)
    }
}

impl Request {
    pub(crate) fn new(
        params: Params,
        joined_path: Option<String>,
        role: Role,
        shared: Arc<Shared>,
    ) -> Request {
        let body = Body {
            shared: shared.clone(),
            which: Input::Stdin,
        };
        let data = Body {
            shared: shared.clone(),
            which: Input::Data,
        };
        Request {
            params,
            joined_path,
            role,
            fcgi_id: shared.req.stream_id,
            body,
            data,
            shared,
        }
    }

    /// The params, the request done with (the pool hands their vectors
    /// back to the loop).
    pub(crate) fn into_params(self) -> Params {
        self.params
    }

    /// Every param (CGI variable) the front server sent.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// One param as text.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get_str(name)
    }

    /// `REQUEST_METHOD`, `GET` when absent.
    pub fn method(&self) -> &str {
        self.param("REQUEST_METHOD").unwrap_or("GET")
    }

    /// The routing path: `SCRIPT_NAME` + `PATH_INFO` when either is
    /// non-empty, else the path of `REQUEST_URI`.
    pub fn path(&self) -> &str {
        if let Some(joined) = &self.joined_path {
            return joined;
        }
        match routing_path(&self.params) {
            Cow::Borrowed(path) => path,
            // Not reached: a path that must be joined is kept joined.
            Cow::Owned(_) => "/",
        }
    }

    /// `QUERY_STRING` (empty when absent).
    pub fn query(&self) -> &str {
        self.param("QUERY_STRING").unwrap_or("")
    }

    /// The first value of a query parameter, decoded as a form is
    /// (`application/x-www-form-urlencoded`: `%XX` escapes, `+` for a
    /// space; bytes that are not UTF-8 become U+FFFD). Names are decoded
    /// too before they are compared. Borrowed when nothing was escaped.
    ///
    /// With `QUERY_STRING` `name=Ada+L%C3%B6w&ms=20`, `query_param("name")`
    /// is `Ada Löw` and `query_param("ms")` is `20`.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        query_value(self.query(), name)
    }

    /// An HTTP request header by name (`Content-Type`, `x-request-id`):
    /// `CONTENT_TYPE`/`CONTENT_LENGTH` or the `HTTP_*` param.
    pub fn header(&self, name: &str) -> Option<&str> {
        let upper: String = name
            .chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        if upper == "CONTENT_TYPE" || upper == "CONTENT_LENGTH" {
            return self.param(&upper);
        }
        self.param(&format!("HTTP_{upper}"))
    }

    /// `CONTENT_LENGTH`, when present and numeric.
    pub fn content_length(&self) -> Option<u64> {
        self.param("CONTENT_LENGTH")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The FastCGI role (RESPONDER for SCGI).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The FastCGI request id (0 for SCGI).
    pub fn fcgi_id(&self) -> u16 {
        self.fcgi_id
    }

    /// The request body (STDIN), readable while it arrives.
    pub fn body(&mut self) -> &mut Body {
        &mut self.body
    }

    /// The FILTER role's data stream (empty for other roles).
    pub fn data(&mut self) -> &mut Body {
        &mut self.data
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Whether the client went away (ABORT_REQUEST or the connection
    /// closed). Long handlers should check it now and then.
    pub fn is_aborted(&self) -> bool {
        self.shared.is_aborted()
    }
}

/// The first value of `name` in a form-encoded query.
fn query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| (k == name).then_some(v))
}

/// The routing path of a request's params: borrowed from them, unless
/// `SCRIPT_NAME` and `PATH_INFO` must be joined.
pub(crate) fn routing_path(params: &Params) -> Cow<'_, str> {
    let [script, info, uri] = params
        .get_each(["SCRIPT_NAME", "PATH_INFO", "REQUEST_URI"])
        .map(|v| v.and_then(|v| std::str::from_utf8(v).ok()));
    match (script.unwrap_or(""), info.unwrap_or("")) {
        ("", "") => {}
        (path, "") | ("", path) => return Cow::Borrowed(path),
        (script, info) => return Cow::Owned([script, info].concat()),
    }
    let path = uri.unwrap_or("/").split(['?', '#']).next().unwrap_or("/");
    Cow::Borrowed(if path.is_empty() { "/" } else { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn routing_path_prefers_script_name_and_path_info() {
        assert_eq!(
            routing_path(&params(&[("SCRIPT_NAME", "/a"), ("PATH_INFO", "/b")])),
            "/a/b"
        );
        assert_eq!(
            routing_path(&params(&[("SCRIPT_NAME", ""), ("REQUEST_URI", "/x/y?q=1")])),
            "/x/y"
        );
        assert_eq!(routing_path(&params(&[])), "/");
    }

    #[test]
    fn query_values_are_decoded() {
        let q = "name=Ada+L%C3%B6w&ms=20&a%26b=c%3Dd&empty=&flag&ms=30";
        let value = |name| query_value(q, name);
        assert_eq!(value("name").as_deref(), Some("Ada Löw"));
        assert_eq!(value("ms").as_deref(), Some("20"));
        assert_eq!(value("a&b").as_deref(), Some("c=d"));
        assert_eq!(value("empty").as_deref(), Some(""));
        assert_eq!(value("flag").as_deref(), Some(""));
        assert_eq!(value("missing"), None);
        assert!(matches!(value("ms"), Some(Cow::Borrowed(_))));
        assert_eq!(query_value("x=%FF", "x").as_deref(), Some("\u{FFFD}"));
    }
}
