//! The limits of the configuration that connections enforce, resolved
//! once from the options. Apart from the loop's state because they never
//! change while it runs, and a deadline only needs them, not the loop.

use std::time::Duration;

/// The limits of the configuration that connections enforce.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_conns: usize,
    pub max_reqs: usize,
    pub max_params_bytes: usize,
    /// Params not yet complete one connection may hold, all its requests
    /// together (see [`Limits::params_budgets`]).
    pub params_per_conn: usize,
    /// Params not yet complete the whole process may hold.
    pub params_per_process: usize,
    /// 0: none.
    pub max_body_bytes: u64,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub request_timeout: Option<Duration>,
    /// The longest pause in a body while the connection is read.
    pub body_timeout: Option<Duration>,
    /// How long pending output may go without a byte written.
    pub send_timeout: Option<Duration>,
}

/// Params in progress across the process, at least enough for a whole
/// connection's worth. Fixed rather than a multiple of the params limit,
/// so raising that limit does not raise what the process may hold.
const PARAMS_PER_PROCESS: usize = 64 << 20;
/// How many requests' worth of params one connection may gather at once.
const PARAMS_PER_CONN: usize = 4;

impl Limits {
    /// The budgets of params in progress for a params limit of
    /// `max_params_bytes`: (per connection, per process).
    pub fn params_budgets(max_params_bytes: usize) -> (usize, usize) {
        let per_conn = max_params_bytes.saturating_mul(PARAMS_PER_CONN);
        (per_conn, per_conn.max(PARAMS_PER_PROCESS))
    }
}
