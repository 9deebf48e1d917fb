//! The `fastgate` binary. All of it is the library's `cli` module (built
//! with the default `cli` feature, hidden from the library's documentation),
//! so that the command line may use what the library keeps to itself (the
//! log files reopened on USR1, user and group lookups).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    fastgate::cli::main()
}
