//! Who may connect: `--allow-from` ranges for TCP peers and
//! `--allow-uid`/`--allow-gid` credentials (SO_PEERCRED) for Unix peers.
//! An empty list allows everyone of that kind. [`Cidr`], the network type
//! of the allow list, lives here too.

use std::net::IpAddr;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::listener::Stream;

/// An IPv4 or IPv6 network for `--allow-from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, host bits cleared.
    pub addr: IpAddr,
    /// How many leading bits of `addr` make the network.
    pub prefix_len: u8,
}

impl Cidr {
    /// A network of `prefix_len` leading bits of `addr`; the host bits are
    /// cleared (as nginx's `allow` does) and the length is capped at the
    /// address width. An IPv4-mapped network (`::ffff:10.0.0.0/104`) is
    /// its IPv4 network (`10.0.0.0/8`): peers are matched by their IPv4
    /// address, whether a dual-stack socket reports them mapped or not.
    ///
    /// ```
    /// use fastgate::server::Cidr;
    /// let mapped = Cidr::new("::ffff:10.0.0.0".parse().unwrap(), 104);
    /// assert_eq!(mapped, Cidr::new("10.0.0.0".parse().unwrap(), 8));
    /// assert!(mapped.contains("10.1.2.3".parse().unwrap()));
    /// ```
    pub fn new(addr: IpAddr, prefix_len: u8) -> Cidr {
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), 96..) = (v6.to_ipv4_mapped(), prefix_len) {
                return Cidr::new(IpAddr::V4(v4), prefix_len - 96);
            }
        }
        match addr {
            IpAddr::V4(a) => {
                let len = prefix_len.min(32);
                let bits = u32::from(a) & mask_v4(len);
                Cidr {
                    addr: IpAddr::V4(bits.into()),
                    prefix_len: len,
                }
            }
            IpAddr::V6(a) => {
                let len = prefix_len.min(128);
                let bits = u128::from(a) & mask_v6(len);
                Cidr {
                    addr: IpAddr::V6(bits.into()),
                    prefix_len: len,
                }
            }
        }
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 peer
    /// (`::ffff:10.1.2.3`, what a dual-stack socket reports) counts as its
    /// IPv4 address.
    ///
    /// ```
    /// use fastgate::server::Cidr;
    /// let net = Cidr::new("10.0.0.0".parse().unwrap(), 8);
    /// assert!(net.contains("10.9.8.7".parse().unwrap()));
    /// assert!(net.contains("::ffff:10.9.8.7".parse().unwrap()));
    /// assert!(!net.contains("11.0.0.1".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                u32::from(a) & mask_v4(self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(len: u8) -> u32 {
    match len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

fn mask_v6(len: u8) -> u128 {
    match len {
        0 => 0,
        n => u128::MAX << (128 - u32::from(n.min(128))),
    }
}

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

    #[test]
    fn a_mapped_network_matches_ipv4_peers_either_way() {
        let net = Cidr::new("::ffff:127.0.0.0".parse().unwrap(), 104);
        assert_eq!(net, Cidr::new("127.0.0.0".parse().unwrap(), 8));
        assert!(net.contains("127.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all_v4 = Cidr::new("::ffff:0.0.0.0".parse().unwrap(), 96);
        assert!(all_v4.contains("192.0.2.1".parse().unwrap()));
        let v6 = Cidr::new("::1".parse().unwrap(), 128);
        assert!(!v6.contains("127.0.0.1".parse().unwrap()));
    }
}
