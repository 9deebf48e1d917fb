//! `sleep`: holds a worker for `?ms=N` milliseconds (at most 60000), to
//! see pool sizing, queueing and timeouts from outside.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::{Request, Response};

const MAX_MS: u64 = 60_000;

pub fn sleep(req: &mut Request, resp: &mut Response) -> io::Result<()> {
    let ms = req
        .query_param("ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_MS);
    let until = Instant::now() + Duration::from_millis(ms);
    // Sleep in slices so an aborted request frees its worker early.
    while let Some(left) = until
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        if req.is_aborted() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "request aborted by the client",
            ));
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    resp.set_header("Content-Type", "text/plain");
    writeln!(resp, "slept {ms} ms")
}
