//! placeholder, filled by the protocol work
