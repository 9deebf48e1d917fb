//! fastgate: a backend that answers a front web server (nginx, lighttpd,
//! Apache, HAProxy) over FastCGI and SCGI, on TCP or Unix sockets.
//!
//! The crate is a library with a thin binary on top (`src/main.rs`):
//!
//! - [`protocol`] holds the pure codecs: bytes in, events out, no sockets.
//! - [`server`] holds the event loop, the connections and the worker pool.
//! - [`apps`] holds the built-in applications the binary mounts.
//! - [`config`] holds the resolved configuration of `fastgate serve`.
//! - [`client`] sends one request to a backend (`fastgate request`).
//!
//! A server is built in a few lines:
//!
//! ```no_run
//! use std::io::Write;
//! use fastgate::{Server, Request, Response};
//!
//! let mut server = Server::builder();
//! server.listen("fastcgi://127.0.0.1:9000".parse().unwrap());
//! server.mount("/", |_req: &mut Request, resp: &mut Response| {
//!     resp.set_header("Content-Type", "text/plain");
//!     resp.write_all(b"Hello from Rust\n")
//! });
//! server.build().unwrap().run().unwrap();
//! ```

pub mod apps;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod client;
pub mod logfile;
pub mod protocol;
pub mod server;
pub mod spec;

pub use server::{Handler, Options, Request, Response, Server, ServerBuilder};
pub use spec::ListenSpec;
