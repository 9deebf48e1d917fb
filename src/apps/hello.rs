//! `hello`: the smallest useful response, and the benchmark baseline.

use std::io::{self, Write};

use crate::{Request, Response};

pub fn hello(_req: &mut Request, resp: &mut Response) -> io::Result<()> {
    resp.set_header("Content-Type", "text/plain");
    resp.write_all(b"Hello, world!\n")
}
