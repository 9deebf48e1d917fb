//! `env`: every param the front server sent, `NAME=VALUE` per line, sorted
//! by name: what a deployment needs to see when routing goes wrong.

use std::io::{self, Write};

use crate::{Request, Response};

pub fn env(req: &mut Request, resp: &mut Response) -> io::Result<()> {
    let mut pairs: Vec<(&[u8], &[u8])> = req.params().iter().collect();
    pairs.sort();
    let mut out = Vec::with_capacity(1024);
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(b'=');
        // One line per param, whatever the value holds.
        out.extend(value.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        out.push(b'\n');
    }
    resp.set_header("Content-Type", "text/plain");
    resp.write_all(&out)
}
