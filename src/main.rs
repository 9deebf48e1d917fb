//! The `fastgate` binary: the CLI only.
fn main() {}
