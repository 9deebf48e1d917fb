//! A backend built on the fastgate library: two handlers, one listener.
//!
//! ```text
//! cargo run --example library -- fastcgi://127.0.0.1:9000
//! ```
//!
//! Put nginx in front (`fastcgi_pass 127.0.0.1:9000;`), or ask it directly:
//! `fastgate request fastcgi://127.0.0.1:9000 /greet?name=Ada`.

use std::io::{Read, Write};

use fastgate::{Request, Response, Server};

fn greet(req: &mut Request, resp: &mut Response) -> std::io::Result<()> {
    // Decoded: `?name=Ada+L%C3%B6w` greets "Ada Löw".
    let name = req.query_param("name");
    let name = name.as_deref().unwrap_or("world");
    resp.set_header("Content-Type", "text/plain; charset=utf-8");
    writeln!(resp, "Hello, {name}!")
}

fn count(req: &mut Request, resp: &mut Response) -> std::io::Result<()> {
    // The body streams in while it arrives; memory stays flat.
    let mut total = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match req.body().read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    resp.set_header("Content-Type", "text/plain");
    writeln!(resp, "{total} bytes")
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fastcgi://127.0.0.1:9000".into());
    let spec = spec.parse().unwrap_or_else(|e| {
        eprintln!("library: {e}");
        std::process::exit(2);
    });
    let mut builder = Server::builder();
    builder.handle_signals(true);
    builder
        .listen(spec)
        .mount("/greet", greet)
        .mount("/count", count);
    let server = builder.build().unwrap_or_else(|e| {
        eprintln!("library: {e}");
        std::process::exit(1);
    });
    for spec in server.listen_specs() {
        log::info!("listening on {spec}");
    }
    if let Err(e) = server.run() {
        eprintln!("library: {e}");
        std::process::exit(1);
    }
}
