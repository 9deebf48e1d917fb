//! Binary upgrade (USR2) as the new master sees it: the old master
//! re-executes the binary on disk with its listening sockets open and
//! their fd numbers in `FASTGATE_UPGRADE_FDS`, and a pipe in
//! `FASTGATE_UPGRADE_READY` on which the new master writes one byte once
//! its children serve. Both variables are removed as they are read, so
//! nothing the new process starts sees them.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::listener::Listener;
use super::{Error, Options};
use crate::spec::Address;

/// The fds of the sockets handed over.
pub const FDS_VAR: &str = "FASTGATE_UPGRADE_FDS";
/// The pipe to write the readiness byte to.
pub const READY_VAR: &str = "FASTGATE_UPGRADE_READY";

/// The sockets an old master handed over, if this process is its
/// successor; the Unix socket files named by `--listen` become this
/// process's to remove at its stop.
pub fn take_handed_over(options: &Options) -> Result<Option<Vec<Listener>>, Error> {
    let Some(list) = std::env::var_os(FDS_VAR) else {
        return Ok(None);
    };
    std::env::remove_var(FDS_VAR);
    let fds = parse_fds(&list.to_string_lossy())?;
    let mut listeners = Vec::new();
    for raw in fds {
        // SAFETY: the old master left these fds open for this process
        // and named them in FDS_VAR; nothing else here owns them.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut l = Listener::inherited(fd, &format!("handed-over fd {raw}"))
            .map_err(|e| Error::new(format!("{FDS_VAR}: fd {raw}: {e}")))?;
        if options.listen.iter().any(|s| s.address == l.spec.address) {
            l.own_file();
            l.spec.protocol = protocol_of(options, &l.spec.address);
        }
        listeners.push(l);
    }
    Ok(Some(listeners))
}

/// The protocol `--listen` gave the socket at `address`.
fn protocol_of(options: &Options, address: &Address) -> crate::spec::Protocol {
    options
        .listen
        .iter()
        .find(|s| &s.address == address)
        .map_or(crate::spec::Protocol::Auto, |s| s.protocol)
}

fn parse_fds(list: &str) -> Result<Vec<RawFd>, Error> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<RawFd>()
                .ok()
                .filter(|&fd| fd > 2)
                .ok_or_else(|| Error::new(format!("{FDS_VAR}: {s:?} is not an fd above 2")))
        })
        .collect()
}

/// The readiness pipe of an upgrade in progress (taken: written once).
pub fn take_ready_pipe() -> Option<OwnedFd> {
    let raw = std::env::var(READY_VAR).ok()?.parse::<RawFd>().ok()?;
    std::env::remove_var(READY_VAR);
    // SAFETY: the old master left this pipe's writing end open for this
    // process and named it in READY_VAR.
    (raw > 2).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_lists_parse_and_refuse_the_standard_fds() {
        assert_eq!(parse_fds("3,4,7").unwrap(), vec![3, 4, 7]);
        assert!(parse_fds("1").is_err());
        assert!(parse_fds("x").is_err());
    }
}
