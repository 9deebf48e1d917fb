//! fastgate: a backend that answers a front web server (nginx, lighttpd,
//! Apache, HAProxy) over FastCGI and SCGI, on TCP or Unix sockets.
//!
//! The public API is what this file exports:
//!
//! - [`Server`], built by a [`ServerBuilder`] from [`Options`] (listeners,
//!   limits, timeouts, sockets, access log) and [`Handler`]s mounted on
//!   path prefixes; a handler gets a [`Request`] (params, a streaming
//!   [`Body`]) and writes a [`Response`]. A [`StopHandle`] stops the
//!   server from another thread. The rest of the server's types are in
//!   [`server`].
//! - [`ListenSpec`] (with its [`Protocol`] and [`Address`]): where to
//!   listen, parsed from `fastcgi://127.0.0.1:9000`, `scgi:/run/a.sock`, …
//! - [`protocol`]: the pure codecs, bytes in and events out, no sockets.
//! - [`client`]: sends one request to a backend, as a front server would.
//! - [`apps`]: the built-in applications (`hello`, `echo`, …), mountable
//!   like any handler.
//!
//! The `fastgate` binary is a thin command line over the same library
//! (hidden module `cli`). It needs clap and env_logger, which come with
//! the default `cli` feature; a program that only uses the library
//! depends on `fastgate` with `default-features = false` and gets neither.
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

#![warn(missing_docs)]
// Unsafe code is denied everywhere but in the modules that make a system
// call the safe wrappers lack (each marked `allow(unsafe_code)` where it
// is declared), and forbidden outright in the trees that need none; every
// unsafe block says why it is sound (`// SAFETY:`, checked by clippy).
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[forbid(unsafe_code)]
pub mod apps;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[forbid(unsafe_code)]
pub mod client;
#[forbid(unsafe_code)]
mod logfile;
pub mod master;
#[forbid(unsafe_code)]
pub mod protocol;
pub mod server;
#[forbid(unsafe_code)]
pub mod spec;

pub use server::{
    AsyncHandler, Body, Handler, LoopHandle, Options, Reply, Request, Response, Server,
    ServerBuilder, StopHandle, TimerHandle,
};
pub use spec::{Address, ListenSpec, Protocol};
