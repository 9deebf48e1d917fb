//! `echo`: the request body back, byte for byte, streamed both ways (for
//! the FILTER role, the FCGI_DATA stream).

use std::io;

use crate::protocol::fastcgi::Role;
use crate::{Request, Response};

pub fn echo(req: &mut Request, resp: &mut Response) -> io::Result<()> {
    let content_type = req
        .param("CONTENT_TYPE")
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream");
    resp.set_header("Content-Type", content_type);
    if req.role() == Role::Filter {
        io::copy(req.data(), resp)?;
    } else {
        io::copy(req.body(), resp)?;
    }
    Ok(())
}
