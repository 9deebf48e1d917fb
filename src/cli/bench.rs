//! `fastgate bench SPEC [URI]`: the options as clap reads them, checked
//! into the engine's [`BenchOptions`], and the report printed (a summary,
//! or one JSON object with `--json`). The engine is `client::bench`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use super::config::Error;
use super::request::{parse_spec, read_data, ExtraParams};
use super::units::parse_duration;
use crate::client::bench::{self, BenchOptions, Limit, Progress, Report};
use crate::client::RequestOptions;
use crate::server::access_log::json as json_str;
use crate::spec::Protocol;

/// `fastgate bench`: the load, then the report; any failed request exits 1.
pub(crate) fn run(args: &BenchArgs, verbosity: (u8, u8)) -> ExitCode {
    let opts = match args.to_options() {
        Ok(opts) => opts,
        Err(e) => return super::fail(2, &e),
    };
    super::logging::init(verbosity, env_logger::Target::Stderr);
    let progress = Progress::default();
    let live = std::io::stderr().is_terminal();
    let report = bench::run(&opts, &progress, &mut |at| {
        if live {
            progress_line(&progress, at);
        }
    });
    if live {
        eprint!("\r\x1b[K");
    }
    if args.json {
        println!("{}", json(&report));
    } else {
        print!("{}", summary(&report));
    }
    if report.unserved_connections > 0 {
        eprintln!(
            "fastgate: bench: {} of {} connections never got an answer (the backend starved them)",
            report.unserved_connections, opts.connections
        );
    }
    if report.errors == 0 && report.unserved_connections == 0 {
        return ExitCode::SUCCESS;
    }
    if report.errors > 0 {
        let first = report.first_error.as_deref().unwrap_or("unknown");
        eprintln!(
            "fastgate: bench: {} of {} requests failed; the first: {first}",
            report.errors, report.requests
        );
    }
    ExitCode::from(1)
}

/// The options of `fastgate bench`, as clap reads them.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// The backend: fastcgi://HOST:PORT, fastcgi:/path.sock, scgi://..., scgi:/...; a bare
    /// HOST:PORT, /path.sock or unix:/path.sock speaks FastCGI
    #[arg(value_name = "SPEC")]
    pub spec: String,
    /// Path and query to request
    #[arg(value_name = "URI", default_value = "/")]
    pub uri: String,
    /// Connections kept busy
    #[arg(short = 'c', long, value_name = "N", default_value = "16")]
    pub connections: String,
    /// How long to run [default: 5s]
    #[arg(short = 'd', long, value_name = "D", conflicts_with = "requests")]
    pub duration: Option<String>,
    /// Stop after this many requests instead of after a time
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<String>,
    /// FastCGI requests in flight per connection, each with its own id
    #[arg(long, value_name = "N", default_value = "1")]
    pub mux: String,
    /// FastCGI: a new connection per request (SCGI always has one)
    #[arg(long)]
    pub no_keep_conn: bool,
    /// Request body (a POST with CONTENT_LENGTH), or @FILE to read it from a file
    #[arg(long, value_name = "STRING|@FILE", allow_hyphen_values = true)]
    pub data: Option<String>,
    #[command(flatten)]
    pub extra: ExtraParams,
    /// Threads the connections are split over
    #[arg(short = 't', long, value_name = "N", default_value = "1")]
    pub threads: String,
    /// How long a connection may wait with nothing answered before its
    /// requests count as failed
    #[arg(long, value_name = "D", default_value = "30s")]
    pub timeout: String,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Checks every option (naming it on error) and builds the run.
    pub fn to_options(&self) -> Result<BenchOptions, Error> {
        let spec = parse_spec(&self.spec)?;
        if spec.protocol == Protocol::Http {
            let reason = "fastgate bench speaks FastCGI and SCGI only";
            return Err(Error::new("SPEC", &self.spec, reason));
        }
        if !self.uri.starts_with('/') {
            return Err(Error::new("URI", &self.uri, "must start with '/'"));
        }
        let mut request = RequestOptions::new(spec, &self.uri);
        if let Some(data) = &self.data {
            request.body = read_data(data).map_err(|e| Error {
                flag: "--data".into(),
                ..e
            })?;
            request.method = "POST".to_string();
        }
        request.keep_conn = !self.no_keep_conn;
        self.extra.apply(&mut request)?;
        request.timeout = match parse_duration(&self.timeout) {
            Ok(d) if !d.is_zero() => d,
            _ => return Err(Error::new("--timeout", &self.timeout, DURATION_EXAMPLE)),
        };
        let scgi = request.spec.protocol == Protocol::Scgi;
        let mux = count("--mux", &self.mux, u64::from(u16::MAX))?;
        if mux > 1 && (scgi || self.no_keep_conn) {
            let reason = "several requests per connection need FastCGI with keep-conn";
            return Err(Error::new("--mux", &self.mux, reason));
        }
        Ok(BenchOptions {
            request,
            connections: count("-c", &self.connections, 100_000)? as usize,
            threads: count("-t", &self.threads, 1024)? as usize,
            mux: mux as u16,
            limit: self.limit()?,
        })
    }

    fn limit(&self) -> Result<Limit, Error> {
        if let Some(n) = &self.requests {
            return count("-n", n, u64::MAX).map(Limit::Requests);
        }
        let text = self.duration.as_deref().unwrap_or("5s");
        match parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(Limit::Duration(d)),
            _ => Err(Error::new("-d", text, DURATION_EXAMPLE)),
        }
    }
}

const DURATION_EXAMPLE: &str = "expected a duration like 500ms, 5s or 1m";

/// A whole number from 1 to `max`.
fn count(flag: &str, value: &str, max: u64) -> Result<u64, Error> {
    match value.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Error::new(
            flag,
            value,
            format!("expected a whole number from 1 to {max}"),
        )),
    }
}

/// The live line on a terminal: requests so far and the rate.
fn progress_line(progress: &Progress, at: Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    let requests = progress.requests.load(Relaxed);
    let errors = progress.errors.load(Relaxed);
    let rate = requests as f64 / at.as_secs_f64().max(1e-9);
    eprint!(
        "\r\x1b[K{:>4.0}s  {requests} requests, {errors} errors, {rate:.0} req/s",
        at.as_secs_f64()
    );
}

/// p50, p90, p99 and max, in milliseconds.
fn latencies_ms(r: &Report) -> [f64; 4] {
    [50.0, 90.0, 99.0, 100.0].map(|p| r.percentile(p).as_secs_f64() * 1000.0)
}

/// The report for a person.
fn summary(r: &Report) -> String {
    let p = latencies_ms(r);
    format!(
        "requests  {} in {:.2} s, {} errors\n\
         req/s     {:.1}\n\
         latency   p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n\
         bytes     {} received, {} sent\n\
         unserved  {} connections\n",
        r.requests,
        r.elapsed.as_secs_f64(),
        r.errors,
        r.per_second(),
        p[0],
        p[1],
        p[2],
        p[3],
        r.bytes_received,
        r.bytes_sent,
        r.unserved_connections,
    )
}

/// The report for a script: one JSON object.
fn json(r: &Report) -> String {
    let first_error = r
        .first_error
        .as_deref()
        .map_or("null".to_string(), json_str);
    let p = latencies_ms(r);
    format!(
        "{{\"requests\":{},\"errors\":{},\"seconds\":{:.6},\"req_per_sec\":{:.1},\
         \"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\
         \"bytes_received\":{},\"bytes_sent\":{},\"unserved_connections\":{},\
         \"first_error\":{first_error}}}",
        r.requests,
        r.errors,
        r.elapsed.as_secs_f64(),
        r.per_second(),
        p[0],
        p[1],
        p[2],
        p[3],
        r.bytes_received,
        r.bytes_sent,
        r.unserved_connections,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn options(argv: &[&str]) -> Result<BenchOptions, Error> {
        let argv = std::iter::once("bench").chain(argv.iter().copied());
        Bench::try_parse_from(argv)
            .expect("clap accepts")
            .args
            .to_options()
    }

    #[test]
    fn defaults() {
        let o = options(&["127.0.0.1:9000"]).unwrap();
        assert_eq!((o.connections, o.threads, o.mux), (16, 1, 1));
        assert_eq!(o.limit, Limit::Duration(Duration::from_secs(5)));
        assert_eq!(
            (o.request.method.as_str(), o.request.keep_conn),
            ("GET", true)
        );
    }

    #[test]
    fn data_makes_a_post() {
        let o = options(&["127.0.0.1:9000", "/echo", "--data", "hi", "-n", "3"]).unwrap();
        assert_eq!(
            (o.request.method.as_str(), &o.request.body[..]),
            ("POST", &b"hi"[..])
        );
        assert_eq!(o.limit, Limit::Requests(3));
    }

    #[test]
    fn bad_options_name_the_flag() {
        for (argv, flag) in [
            (&["nope"][..], "SPEC"),
            (&["/a.sock", "x"], "URI"),
            (&["/a.sock", "-c", "0"], "-c"),
            (&["/a.sock", "-t", "x"], "-t"),
            (&["/a.sock", "-n", "0"], "-n"),
            (&["/a.sock", "-d", "5x"], "-d"),
            (&["/a.sock", "--mux", "0"], "--mux"),
            (&["scgi:/a.sock", "--mux", "2"], "--mux"),
            (&["/a.sock", "--mux", "2", "--no-keep-conn"], "--mux"),
            (&["/a.sock", "--data", "@/nonexistent/x"], "--data"),
        ] {
            assert_eq!(options(argv).unwrap_err().flag, flag, "{argv:?}");
        }
    }
}
