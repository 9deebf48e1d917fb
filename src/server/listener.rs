//! Listening sockets: bound from `--listen` specs, inherited on fd 0
//! (spawn-fcgi, lighttpd `bin-path`) or from systemd (`LISTEN_FDS`), and the
//! non-blocking accept that hands the loop a [`Stream`].
//!
//! A Unix socket file left behind by a dead process is replaced; one that a
//! live process answers on is an error naming the path. A file we created
//! is removed when the listener is dropped; an inherited one is left alone.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage,
};

use super::privileges::Owner;
use super::Error;
use crate::spec::{Address, ListenSpec, Protocol};

/// A bound, listening, non-blocking socket.
pub struct Listener {
    fd: OwnedFd,
    /// The spec with the real address (port 0 resolved).
    pub spec: ListenSpec,
    /// Set when we created the socket file and must remove it.
    created: Option<PathBuf>,
    /// The process that created it: a forked child holds a copy of this
    /// listener, and must leave the file to the process that made it.
    creator: u32,
}

/// What a Unix socket file that fastgate creates looks like.
#[derive(Clone, Debug)]
pub struct UnixOptions {
    /// `--socket-mode`; 0660 by default (owner and group may connect).
    pub mode: u32,
    /// Owner and group to chown to (`--socket-owner`, else `--user` /
    /// `--group`); `None` keeps the running user's.
    pub owner: Option<Owner>,
}

impl Default for UnixOptions {
    fn default() -> Self {
        UnixOptions {
            mode: 0o660,
            owner: None,
        }
    }
}

impl Listener {
    /// Binds and listens on `spec`.
    pub fn bind(spec: &ListenSpec, unix: &UnixOptions) -> Result<Listener, Error> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(format!("--listen {spec}: {what}: {e}"))
        };
        match &spec.address {
            Address::Tcp(addr) => {
                let fd = bind_tcp(addr).map_err(|e| fail("cannot listen", &tcp_hint(addr, e)))?;
                let real = local_tcp_addr(&fd).map_err(|e| fail("getsockname", &e))?;
                let spec = ListenSpec {
                    protocol: spec.protocol,
                    address: Address::Tcp(real),
                };
                Ok(Listener {
                    fd,
                    spec,
                    created: None,
                    creator: std::process::id(),
                })
            }
            Address::Unix(path) => {
                clear_stale(path).map_err(|e| Error::new(format!("--listen {spec}: {e}")))?;
                let fd = bind_unix(path).map_err(|e| fail("cannot listen", &unix_hint(path, e)))?;
                let l = Listener {
                    fd,
                    spec: spec.clone(),
                    created: Some(path.clone()),
                    creator: std::process::id(),
                };
                apply_unix_options(path, unix)
                    .map_err(|e| Error::new(format!("--listen {spec}: {e}")))?;
                Ok(l)
            }
        }
    }

    /// fd 0 when it is a listening socket (the spawn-fcgi convention).
    pub fn from_stdin() -> Option<Listener> {
        let stdin = io::stdin();
        let listening = socket::getsockopt(&stdin.as_fd(), sockopt::AcceptConn).ok()?;
        if !listening {
            return None;
        }
        // SAFETY: fd 0 is open (getsockopt succeeded) and fastgate never
        // reads standard input, so ownership moves to the listener alone.
        let fd = unsafe { OwnedFd::from_raw_fd(0) };
        Listener::inherited(fd, "fd 0").ok()
    }

    /// Sockets passed by systemd socket activation (`LISTEN_PID`,
    /// `LISTEN_FDS`), starting at fd 3.
    pub fn from_systemd() -> Vec<Listener> {
        let pid_ok = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        let n: RawFd = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if !pid_ok || !(1..=1024).contains(&n) {
            return Vec::new();
        }
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        (3..3 + n)
            .filter_map(|raw| {
                // SAFETY: systemd passes these fds open and to this pid
                // (checked above); nothing else in the process owns them.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                let _ = nix::fcntl::fcntl(
                    &fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
                Listener::inherited(fd, &format!("LISTEN_FDS fd {raw}")).ok()
            })
            .collect()
    }

    /// Wraps an inherited listening socket; its protocol is auto-detected.
    pub(crate) fn inherited(fd: OwnedFd, what: &str) -> io::Result<Listener> {
        set_nonblocking(&fd)?;
        let addr: SockaddrStorage = socket::getsockname(fd.as_raw_fd())?;
        let address = if let Some(un) = addr.as_unix_addr() {
            Address::Unix(
                un.path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(what)),
            )
        } else {
            Address::Tcp(local_tcp_addr(&fd)?)
        };
        Ok(Listener {
            fd,
            spec: ListenSpec {
                protocol: Protocol::Auto,
                address,
            },
            created: None,
            creator: std::process::id(),
        })
    }

    /// Accepts one connection; `Ok(None)` when none is waiting.
    pub fn accept(&self) -> io::Result<Option<Stream>> {
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let raw = match socket::accept4(self.fd.as_raw_fd(), flags) {
            Ok(raw) => raw,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNABORTED) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // SAFETY: accept4 returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Some(match self.spec.address {
            Address::Tcp(_) => {
                let s = TcpStream::from(fd);
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Address::Unix(_) => Stream::Unix(UnixStream::from(fd)),
        }))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// This process will not remove the socket file (a successor owns it).
    pub fn forget_file(&mut self) {
        self.created = None;
    }

    /// Takes over the file of an inherited socket: this process removes it
    /// when it stops (a binary upgrade's new master).
    pub fn own_file(&mut self) {
        if let Address::Unix(path) = &self.spec.address {
            self.created = Some(path.clone());
            self.creator = std::process::id();
        }
    }

    /// Another handle on the same socket (a new fd), owning no file.
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(Listener {
            fd: self.fd.try_clone()?,
            spec: self.spec.clone(),
            created: None,
            creator: self.creator,
        })
    }

    /// The socket file this listener created (and removes when dropped).
    pub fn created_path(&self) -> Option<&Path> {
        self.created.as_deref()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if std::process::id() != self.creator {
            return;
        }
        if let Some(path) = &self.created {
            let _ = fs::remove_file(path);
        }
    }
}

fn bind_tcp(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket::socket(family, SockType::Stream, flags, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*addr))?;
    socket::listen(&fd, backlog())?;
    Ok(fd)
}

fn bind_unix(path: &Path) -> io::Result<OwnedFd> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket::socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
    socket::bind(fd.as_raw_fd(), &socket::UnixAddr::new(path)?)?;
    socket::listen(&fd, backlog())?;
    Ok(fd)
}

/// The kernel clamps this to `net.core.somaxconn`.
fn backlog() -> Backlog {
    Backlog::new(4096).unwrap_or(Backlog::MAXCONN)
}

fn local_tcp_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let addr: SockaddrStorage = socket::getsockname(fd.as_raw_fd())?;
    if let Some(v4) = addr.as_sockaddr_in() {
        return Ok(SocketAddr::V4((*v4).into()));
    }
    if let Some(v6) = addr.as_sockaddr_in6() {
        return Ok(SocketAddr::V6((*v6).into()));
    }
    Err(io::Error::other(format!(
        "not an inet socket (family {:?})",
        addr.family()
    )))
}

/// Removes a socket file no process answers on; refuses a live one and any
/// file that is not a socket. Only ECONNREFUSED means nobody listens: any
/// other refusal (EACCES from another user's server, EAGAIN from a full
/// backlog) leaves a live socket in place.
fn clear_stale(path: &Path) -> Result<(), String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{}: exists and is not a socket (remove it, or listen elsewhere)",
            path.display()
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(format!(
            "{}: another process listens there (stop it, or listen elsewhere)",
            path.display()
        )),
        Err(e) if e.raw_os_error() == Some(Errno::ECONNREFUSED as i32) => fs::remove_file(path)
            .map_err(|e| format!("{}: cannot remove stale socket: {e}", path.display())),
        Err(e) => Err(format!(
            "{}: a socket is there and connecting to it fails with \"{e}\": \
             another user's server may own it, so it is left alone \
             (stop that server, or listen elsewhere)",
            path.display()
        )),
    }
}

/// The mode and owner a created socket file gets.
fn apply_unix_options(path: &Path, opts: &UnixOptions) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(opts.mode))
        .map_err(|e| format!("--socket-mode {:o}: {e}", opts.mode))?;
    if let Some((uid, gid)) = opts.owner {
        nix::unistd::chown(path, uid, gid).map_err(|e| {
            format!(
                "--socket-owner: chown {}: {e} (only root may give a file away)",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// A bind error on a TCP address, with what to do about it.
fn tcp_hint(addr: &SocketAddr, e: io::Error) -> String {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EADDRINUSE) => format!(
            "{e}: another process listens on port {0} (find it with `ss -lntp 'sport = :{0}'`)",
            addr.port()
        ),
        Some(Errno::EADDRNOTAVAIL) => {
            format!("{e}: {} is not an address of this machine", addr.ip())
        }
        Some(Errno::EACCES) => {
            format!("{e}: ports below 1024 need root (or CAP_NET_BIND_SERVICE); pick a higher port")
        }
        _ => e.to_string(),
    }
}

/// A bind error on a socket path, with what to do about it.
fn unix_hint(path: &Path, e: io::Error) -> String {
    let dir = path.parent().unwrap_or(Path::new("/"));
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) if !dir.exists() => format!(
            "the directory {} does not exist (create it, e.g. with systemd's RuntimeDirectory=)",
            dir.display()
        ),
        Some(Errno::EACCES) => format!("{e}: this user may not create files in {}", dir.display()),
        _ => e.to_string(),
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Who is at the other end of a connection: an address and port over TCP
/// (what `REMOTE_ADDR`/`REMOTE_PORT` are made of where fastgate speaks to
/// the client itself), nothing more over a Unix socket. Shown in log lines
/// as `ip:port` (`[ip]:port` for IPv6) or `unix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Tcp(std::net::SocketAddr),
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// This end of a connection: the listening address over TCP, the socket's
/// path over Unix (what `SERVER_ADDR`/`SERVER_PORT` are made of where
/// fastgate speaks to the client itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    Tcp(std::net::SocketAddr),
    Unix(String),
}

/// An accepted connection, TCP or Unix, non-blocking.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    /// This end's address (unspecified, or an empty path, if it cannot be
    /// read).
    pub fn local(&self) -> Local {
        match self {
            Stream::Tcp(s) => Local::Tcp(s.local_addr().unwrap_or_else(|_| {
                std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
            })),
            Stream::Unix(s) => {
                let addr = s.local_addr().ok();
                let path = addr.as_ref().and_then(|a| a.as_pathname());
                Local::Unix(path.map(|p| p.display().to_string()).unwrap_or_default())
            }
        }
    }

    /// The peer's address (a TCP peer already gone reads as unspecified).
    pub fn peer(&self) -> Peer {
        match self {
            Stream::Tcp(s) => Peer::Tcp(s.peer_addr().unwrap_or_else(|_| {
                std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
            })),
            Stream::Unix(_) => Peer::Unix,
        }
    }

    /// Bytes received and not read yet (FIONREAD); 0 if it cannot tell.
    pub fn unread_bytes(&self) -> usize {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which
        // points at `n` on this stack; the fd is open while `self` lives.
        let rc = unsafe { nix::libc::ioctl(self.raw_fd(), nix::libc::FIONREAD, &mut n) };
        if rc == 0 {
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }

    /// Whether the peer closed both directions, not just its sending side.
    /// Only a Unix socket tells (POLLHUP, always reported, once the peer is
    /// gone); over TCP a close and a half-close both arrive as one FIN, so
    /// this is false there.
    pub fn peer_closed_for_good(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let Stream::Unix(s) = self else {
            return false;
        };
        let mut fds = [PollFd::new(s.as_fd(), PollFlags::empty())];
        let ready = poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0;
        ready
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
    }

    /// Shuts our sending side down (the peer reads an end of stream).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_peer_shows_as_log_lines_always_showed_it() {
        let v4 = Peer::Tcp(([127, 0, 0, 1], 5).into());
        let v6 = Peer::Tcp((std::net::Ipv6Addr::LOCALHOST, 80).into());
        assert_eq!(
            (v4.to_string(), v6.to_string()),
            ("127.0.0.1:5".into(), "[::1]:80".into())
        );
        assert_eq!(Peer::Unix.to_string(), "unix");
    }

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fastgate-listener-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let path = tmp("stale");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dropped UnixListener leaves its file");
        let spec: ListenSpec = format!("fastcgi:{}", path.display()).parse().unwrap();
        let l = Listener::bind(&spec, &UnixOptions::default()).expect("stale file replaced");
        let e = Listener::bind(&spec, &UnixOptions::default())
            .err()
            .expect("live socket refused");
        assert!(
            e.to_string().contains("another process listens there"),
            "{e}"
        );
        drop(l);
        assert!(!path.exists(), "our socket file is removed on drop");
    }

    #[test]
    fn tcp_port_zero_reports_the_real_port() {
        let spec: ListenSpec = "fastcgi://127.0.0.1:0".parse().unwrap();
        let l = Listener::bind(&spec, &UnixOptions::default()).unwrap();
        let Address::Tcp(a) = l.spec.address else {
            panic!("tcp")
        };
        assert_ne!(a.port(), 0);
        assert!(l.accept().unwrap().is_none());
        let _c = TcpStream::connect(a).unwrap();
        let mut accepted = None;
        for _ in 0..100 {
            accepted = l.accept().unwrap();
            if accepted.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(accepted.is_some());
    }

    #[test]
    fn a_regular_file_is_not_replaced() {
        let path = tmp("file");
        fs::write(&path, b"x").unwrap();
        let spec: ListenSpec = format!("scgi:{}", path.display()).parse().unwrap();
        let e = Listener::bind(&spec, &UnixOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a socket"), "{e}");
    }
}
