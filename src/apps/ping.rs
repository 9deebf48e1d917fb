//! `ping`: a health check for load balancers and `fastgate request`.

use std::io::{self, Write};

use crate::{Request, Response};

pub fn ping(_req: &mut Request, resp: &mut Response) -> io::Result<()> {
    resp.set_header("Content-Type", "text/plain");
    resp.write_all(b"pong\n")
}
