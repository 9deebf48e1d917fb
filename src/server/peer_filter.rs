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
    /// address width.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Cidr {
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
        match self.addr {
            IpAddr::V4(net) => {
                let a = match ip {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(a) => a.to_ipv4_mapped(),
                };
                a.is_some_and(|a| u32::from(a) & mask_v4(self.prefix_len) == u32::from(net))
            }
            // A network written in IPv6 (`::ffff:10.0.0.0/104` too) holds
            // an IPv4 peer as its mapped address.
            IpAddr::V6(net) => {
                let a = match ip {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                u128::from(a) & mask_v6(self.prefix_len) == u128::from(net)
            }
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

    /// Found by the `units` fuzz target: a network written as IPv4-mapped
    /// IPv6 held no address at all, not even its own.
    #[test]
    fn mapped_networks_hold_ipv4_peers() {
        let net = Cidr::new("::ffff:10.0.0.0".parse().unwrap(), 104);
        for inside in ["10.1.2.3", "::ffff:10.1.2.3", "::ffff:10.0.0.0"] {
            assert!(net.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["11.0.0.1", "::ffff:11.0.0.1", "::1", "fd00::1"] {
            assert!(!net.contains(outside.parse().unwrap()), "{outside}");
        }
        let v4 = Cidr::new("10.0.0.0".parse().unwrap(), 8);
        assert!(v4.contains("::ffff:10.9.8.7".parse().unwrap()));
        assert!(!v4.contains("::10.9.8.7".parse().unwrap()));
        assert!(Cidr::new("::".parse().unwrap(), 0).contains("10.0.0.1".parse().unwrap()));
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
