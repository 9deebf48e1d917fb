//! Who may connect: `--allow-from` ranges for TCP peers and
//! `--allow-uid`/`--allow-gid` credentials (SO_PEERCRED) for Unix peers.
//! An empty list allows everyone of that kind.

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::listener::Stream;
use crate::config::Cidr;

#[derive(Clone, Debug, Default)]
pub struct PeerFilter {
    pub cidrs: Vec<Cidr>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl PeerFilter {
    /// Ok, or the reason the peer is refused (for the log line).
    pub fn check(&self, stream: &Stream) -> Result<(), String> {
        match stream {
            Stream::Tcp(s) if !self.cidrs.is_empty() => {
                let ip = s
                    .peer_addr()
                    .map_err(|e| format!("peer address: {e}"))?
                    .ip();
                if self.cidrs.iter().any(|c| c.contains(ip)) {
                    Ok(())
                } else {
                    Err(format!("{ip} is outside every --allow-from range"))
                }
            }
            Stream::Unix(s) if !(self.uids.is_empty() && self.gids.is_empty()) => {
                let cred =
                    getsockopt(s, PeerCredentials).map_err(|e| format!("SO_PEERCRED: {e}"))?;
                if self.uids.contains(&cred.uid()) || self.gids.contains(&cred.gid()) {
                    Ok(())
                } else {
                    Err(format!(
                        "uid {} gid {} matches no --allow-uid/--allow-gid",
                        cred.uid(),
                        cred.gid()
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;

    #[test]
    fn tcp_peers_outside_the_ranges_are_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let s = Stream::Tcp(l.accept().unwrap().0);
        let cidr = |a: &str, n| Cidr {
            addr: a.parse().unwrap(),
            prefix_len: n,
        };
        let mut f = PeerFilter::default();
        assert!(f.check(&s).is_ok());
        f.cidrs = vec![cidr("10.0.0.0", 8)];
        assert!(f.check(&s).unwrap_err().contains("--allow-from"));
        f.cidrs.push(cidr("127.0.0.0", 8));
        assert!(f.check(&s).is_ok());
    }

    #[test]
    fn unix_peers_are_matched_by_credentials() {
        let (a, _b) = UnixStream::pair().unwrap();
        let s = Stream::Unix(a);
        let me = nix::unistd::getuid().as_raw();
        let f = PeerFilter {
            uids: vec![me.wrapping_add(1)],
            ..PeerFilter::default()
        };
        assert!(f.check(&s).is_err());
        let f = PeerFilter {
            uids: vec![me],
            ..PeerFilter::default()
        };
        assert!(f.check(&s).is_ok());
    }
}
