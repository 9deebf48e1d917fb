//! `fastgate request SPEC [URI]`: the options as clap reads them, checked
//! into the client's plain [`RequestOptions`], and the response printed
//! (the body on stdout, the backend's stderr on ours).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::config::Error;
use super::units::parse_duration;
use crate::client::{self, lowercase_first, RequestOptions, Role};
use crate::spec::{Address, ListenSpec};

/// `fastgate request`: one request, the response on stdout, the backend's
/// stderr on ours; a failure or a 5xx status exits 1.
pub(crate) fn run(args: &RequestArgs, verbosity: (u8, u8)) -> ExitCode {
    let opts = match args.to_options() {
        Ok(opts) => opts,
        Err(e) => return super::fail(2, &e),
    };
    super::logging::init(verbosity, env_logger::Target::Stderr);
    let resp = match client::send(&opts) {
        Ok(resp) => resp,
        Err(e) => return super::fail(1, &e),
    };
    let _ = std::io::stderr().write_all(&resp.stderr);
    if let Err(e) = client::write_response(&mut std::io::stdout().lock(), &resp, args.body_only) {
        return super::fail(1, &e);
    }
    ExitCode::from(u8::from(resp.head.status >= 500))
}

/// The options of `fastgate request`, as clap reads them.
/// `-H` and `--param`, which `request` and `bench` share.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ExtraParams {
    /// An HTTP header, sent as an HTTP_NAME param (repeatable)
    #[arg(
        short = 'H',
        long = "header",
        value_name = "NAME: VALUE",
        allow_hyphen_values = true
    )]
    pub headers: Vec<String>,
    /// An extra param, replacing one of the same name, e.g.
    /// SCRIPT_FILENAME=/srv/www/hello.php for php-fpm (repeatable)
    #[arg(long = "param", value_name = "NAME=VALUE", allow_hyphen_values = true)]
    pub params: Vec<String>,
}

impl ExtraParams {
    /// Checks both (naming the flag at fault) into the request.
    pub fn apply(&self, opts: &mut RequestOptions) -> Result<(), Error> {
        opts.headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_, _>>()?;
        opts.params = self
            .params
            .iter()
            .map(|p| parse_param(p))
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct RequestArgs {
    /// The backend: fastcgi://HOST:PORT, fastcgi:/path.sock, scgi://..., scgi:/...; a bare
    /// HOST:PORT, /path.sock or unix:/path.sock speaks FastCGI
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// Path and query to request
    #[arg(value_name = "URI", default_value = "/")]
    pub uri: String,
    /// Request method [default: GET, or POST with --data]
    #[arg(short = 'X', long, value_name = "METHOD", allow_hyphen_values = true)]
    pub method: Option<String>,
    /// Request body, or @FILE to read it from a file
    #[arg(short, long, value_name = "STRING|@FILE", allow_hyphen_values = true)]
    pub data: Option<String>,
    #[command(flatten)]
    pub extra: ExtraParams,
    /// Time allowed for the whole request
    #[arg(
        long,
        value_name = "D",
        allow_hyphen_values = true,
        default_value = "30s"
    )]
    pub timeout: String,
    /// FastCGI role: responder, authorizer or filter (the body goes as FCGI_DATA)
    #[arg(
        long,
        value_name = "ROLE",
        allow_hyphen_values = true,
        default_value = "responder"
    )]
    pub role: String,
    /// Send the request without FCGI_KEEP_CONN, and check that the backend closes
    #[arg(long)]
    pub no_keep_conn: bool,
    /// Print only the response body
    #[arg(short = 'o', long)]
    pub body_only: bool,
}

impl RequestArgs {
    /// Checks every option (naming it on error) and builds the request.
    pub fn to_options(&self) -> Result<RequestOptions, Error> {
        let spec = parse_spec(&self.spec)?;
        if !self.uri.starts_with('/') {
            return Err(Error::new("URI", &self.uri, "must start with '/'"));
        }
        let mut opts = RequestOptions::new(spec, &self.uri);
        opts.body = match &self.data {
            Some(data) => read_data(data)?,
            None => Vec::new(),
        };
        opts.method = match (&self.method, &self.data) {
            (Some(m), _) => check_method(m)?,
            (None, Some(_)) => "POST".to_string(),
            (None, None) => "GET".to_string(),
        };
        self.extra.apply(&mut opts)?;
        opts.timeout = parse_duration(&self.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::new(
                    "--timeout",
                    &self.timeout,
                    "expected a duration like 500ms, 30s or 5m",
                )
            })?;
        opts.role = parse_role(&self.role)?;
        opts.keep_conn = !self.no_keep_conn;
        Ok(opts)
    }
}

/// The SPEC argument; one with a URI glued on (`127.0.0.1:9000/hello`)
/// is refused with the command split in two.
pub(super) fn parse_spec(spec: &str) -> Result<ListenSpec, Error> {
    spec.parse::<ListenSpec>().map_err(|e| {
        let reason = match glued_uri(spec) {
            Some((spec, uri)) => {
                format!("SPEC and URI are separate arguments: fastgate request {spec} {uri}")
            }
            None => {
                let quoted = format!("{spec:?}: ");
                e.0.strip_prefix(&quoted).unwrap_or(&e.0).to_string()
            }
        };
        Error::new("SPEC", spec, reason)
    })
}

/// `127.0.0.1:9000/hello` → (`127.0.0.1:9000`, `/hello`), when the part
/// before the first `/` after the host is a good spec.
fn glued_uri(spec: &str) -> Option<(&str, &str)> {
    let host = spec.find("://").map_or(0, |i| i + 3);
    let slash = host + spec[host..].find('/')?;
    let (head, uri) = spec.split_at(slash);
    let tcp = matches!(head.parse::<ListenSpec>(), Ok(s) if matches!(s.address, Address::Tcp(_)));
    tcp.then_some((head, uri))
}

/// `--data STRING` or `--data @FILE`.
pub(super) fn read_data(data: &str) -> Result<Vec<u8>, Error> {
    match data.strip_prefix('@') {
        None => Ok(data.as_bytes().to_vec()),
        Some(path) => std::fs::read(Path::new(path))
            .map_err(|e| Error::new("--data", data, lowercase_first(&e.to_string()))),
    }
}

/// An HTTP method is a token: letters, digits and a few marks.
fn check_method(method: &str) -> Result<String, Error> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(token) {
        return Err(Error::new(
            "--method",
            method,
            "expected a method like GET or POST",
        ));
    }
    Ok(method.to_string())
}

/// `Name: value`.
fn parse_header(header: &str) -> Result<(String, String), Error> {
    let bad = || Error::new("--header", header, "expected 'Name: value'");
    let (name, value) = header.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if name.is_empty() || !name.bytes().all(token) {
        return Err(bad());
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// `NAME=VALUE`.
fn parse_param(param: &str) -> Result<(String, String), Error> {
    match param.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(Error::new("--param", param, "expected NAME=VALUE")),
    }
}

fn parse_role(role: &str) -> Result<Role, Error> {
    match role {
        "responder" => Ok(Role::Responder),
        "authorizer" => Ok(Role::Authorizer),
        "filter" => Ok(Role::Filter),
        _ => Err(Error::new(
            "--role",
            role,
            "expected responder, authorizer or filter",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Protocol;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct Request {
        #[command(flatten)]
        args: RequestArgs,
    }

    fn options(argv: &[&str]) -> Result<RequestOptions, Error> {
        let argv = std::iter::once("request").chain(argv.iter().copied());
        Request::try_parse_from(argv)
            .expect("clap accepts")
            .args
            .to_options()
    }

    #[test]
    fn defaults() {
        let o = options(&["127.0.0.1:9000"]).unwrap();
        assert_eq!((o.uri.as_str(), o.method.as_str()), ("/", "GET"));
        assert_eq!((o.role, o.keep_conn), (Role::Responder, true));
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(o.spec.protocol, Protocol::Auto);
    }

    #[test]
    fn every_option_is_read() {
        let o = options(&[
            "scgi:/run/a.sock",
            "/x?y",
            "-X",
            "PATCH",
            "-d",
            "-body-",
            "-H",
            "X-A: 1 ",
            "--header",
            "Host:example",
            "--param",
            "K=V=W",
            "--timeout",
            "500ms",
            "--role",
            "filter",
            "--no-keep-conn",
        ])
        .unwrap();
        assert_eq!((o.uri.as_str(), o.method.as_str()), ("/x?y", "PATCH"));
        assert_eq!(o.body, b"-body-");
        assert_eq!(
            o.headers,
            [
                ("X-A".into(), "1".into()),
                ("Host".into(), "example".into())
            ]
        );
        assert_eq!(o.params, [("K".to_string(), "V=W".to_string())]);
        assert_eq!(o.timeout, Duration::from_millis(500));
        assert_eq!((o.role, o.keep_conn), (Role::Filter, false));
        assert_eq!(options(&["/a.sock", "-d", "x"]).unwrap().method, "POST");
    }

    #[test]
    fn data_from_a_file() {
        let path = std::env::temp_dir().join(format!("fastgate-data-{}", std::process::id()));
        std::fs::write(&path, b"from file").unwrap();
        let arg = format!("@{}", path.display());
        let body = options(&["/a.sock", "-d", &arg]).map(|o| o.body);
        let _ = std::fs::remove_file(&path);
        assert_eq!(body.unwrap(), b"from file");
    }

    #[test]
    fn bad_options_name_the_flag() {
        for (argv, flag) in [
            (&["nope"][..], "SPEC"),
            (&["/a.sock", "x"], "URI"),
            (&["/a.sock", "-X", "GE T"], "--method"),
            (&["/a.sock", "-H", "X-A"], "--header"),
            (&["/a.sock", "-H", ": v"], "--header"),
            (&["/a.sock", "--param", "novalue"], "--param"),
            (&["/a.sock", "--timeout", "0"], "--timeout"),
            (&["/a.sock", "--role", "x"], "--role"),
            (&["/a.sock", "--timeout", "-3s"], "--timeout"),
            (&["/a.sock", "--role", "-x"], "--role"),
            (&["/a.sock", "-X", "-G T"], "--method"),
            (&["/a.sock", "-H", "-x"], "--header"),
            (&["/a.sock", "--param", "-x"], "--param"),
        ] {
            assert_eq!(options(argv).unwrap_err().flag, flag, "{argv:?}");
        }
    }

    #[test]
    fn a_uri_glued_to_the_spec_is_explained() {
        for (glued, spec, uri) in [
            ("127.0.0.1:9000/hello", "127.0.0.1:9000", "/hello"),
            (
                "fastcgi://127.0.0.1:9000/a/b?c",
                "fastcgi://127.0.0.1:9000",
                "/a/b?c",
            ),
            ("scgi://[::1]:4000/", "scgi://[::1]:4000", "/"),
        ] {
            let e = options(&[glued]).unwrap_err();
            let fix = format!("SPEC and URI are separate arguments: fastgate request {spec} {uri}");
            assert_eq!((e.flag.as_str(), e.reason), ("SPEC", fix));
        }
        for other in ["fastcgi:run/a.sock", "unix:a/b.sock", "ftp://x:1/y"] {
            let e = options(&[other]).unwrap_err();
            assert!(!e.reason.contains("separate"), "{other}: {e}");
        }
    }
}
