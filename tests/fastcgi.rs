//! FastCGI conformance against the real binary (work in progress).
mod common;
