//! Who may connect: `--allow-from` ranges for TCP peers and
//! `--allow-uid`/`--allow-gid` credentials (SO_PEERCRED) for Unix peers.
//! An empty list allows everyone of that kind. [`Cidr`], the network type
//! of the allow list, lives here too. A refusal names the peer by a
//! [`PeerKey`] (its address, or its uid), so its log lines can be limited
//! per peer (`refused_peers.rs`).

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

/// Who may connect, checked on every accepted connection of every
/// listener (bound, inherited on fd 0, from `LISTEN_FDS`, handed over by
/// an upgrade) before anything is read from it.
#[derive(Clone, Debug, Default)]
pub struct PeerFilter {
    pub cidrs: Vec<Cidr>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

/// A refused peer, as remembered between its connections: its IP address
/// over TCP (an IPv4-mapped one as IPv4), its uid over a Unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Ip(IpAddr),
    Uid(u32),
}

/// Why a connection was refused, and whose it was (`None` when the peer
/// could not be told: gone before its address was read).
#[derive(Debug)]
pub struct Refused {
    pub key: Option<PeerKey>,
    pub why: String,
}

impl Refused {
    fn unknown(why: String) -> Refused {
        Refused { key: None, why }
    }
}

impl PeerFilter {
    /// Ok, or why and whom it refuses (for the log line).
    pub fn check(&self, stream: &Stream) -> Result<(), Refused> {
        match stream {
            Stream::Tcp(s) if !self.cidrs.is_empty() => {
                let addr = s.peer_addr();
                let ip = addr.map_err(|e| Refused::unknown(format!("peer address: {e}")))?;
                self.check_ip(ip.ip())
            }
            Stream::Unix(s) if !(self.uids.is_empty() && self.gids.is_empty()) => {
                let cred = getsockopt(s, PeerCredentials)
                    .map_err(|e| Refused::unknown(format!("SO_PEERCRED: {e}")))?;
                self.check_cred(cred.uid(), cred.gid())
            }
            _ => Ok(()),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.cidrs.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        Err(Refused {
            key: Some(PeerKey::Ip(ip)),
            why: format!("{ip} is outside every --allow-from range"),
        })
    }

    fn check_cred(&self, uid: u32, gid: u32) -> Result<(), Refused> {
        if self.uids.contains(&uid) || self.gids.contains(&gid) {
            return Ok(());
        }
        Err(Refused {
            key: Some(PeerKey::Uid(uid)),
            why: format!("uid {uid} gid {gid} matches no --allow-uid/--allow-gid"),
        })
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
        let refused = f.check(&s).unwrap_err();
        assert!(refused.why.contains("--allow-from"), "{refused:?}");
        let local = "127.0.0.1".parse().unwrap();
        assert_eq!(refused.key, Some(PeerKey::Ip(local)));
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
        assert_eq!(f.check(&s).unwrap_err().key, Some(PeerKey::Uid(me)));
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

    #[test]
    fn a_mapped_peer_is_keyed_by_its_ipv4_address() {
        let f = PeerFilter {
            cidrs: vec![Cidr::new("10.0.0.0".parse().unwrap(), 8)],
            ..PeerFilter::default()
        };
        let mapped = f.check_ip("::ffff:127.0.0.1".parse().unwrap());
        let plain = "127.0.0.1".parse().unwrap();
        assert_eq!(mapped.unwrap_err().key, Some(PeerKey::Ip(plain)));
        assert!(f.check_ip("::ffff:10.0.0.9".parse().unwrap()).is_ok());
    }
}
