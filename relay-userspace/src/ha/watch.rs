//! Whether the floating address is on one of this host's interfaces, and
//! word when that changes.
//!
//! A thread of its own listens on a NETLINK_ROUTE socket subscribed to
//! address events (RTM_NEWADDR / RTM_DELADDR, IPv4 and IPv6). After any
//! event it looks again (getifaddrs, as start-up does) instead of parsing
//! the event: one definition of "local", and an event lost to a full
//! socket (ENOBUFS) is made good by the next look, as is anything missed
//! between two events (it also looks every few seconds).

use std::{
    net::IpAddr,
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::{
        socket::{
            bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
            SockFlag, SockProtocol, SockType,
        },
        time::TimeVal,
    },
};
use tokio::sync::mpsc;

/// The floating address arrived or left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressEvent {
    /// It is now on one of this host's interfaces.
    Appeared,
    /// It is on none of them any more.
    Gone,
}

/// How long the thread waits for an event before it checks whether it
/// should stop (its receiver gone).
const POLL: Duration = Duration::from_secs(1);
/// Looks at the addresses this often even without events.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Whether `address` is on one of this network namespace's interfaces.
pub fn is_local(address: IpAddr) -> bool {
    crate::interfaces::netdev_of(address).is_some()
}

/// Watches `address`, which is local now or not as `local` says, and
/// sends an event to `events` each time that changes, until `events`'
/// receiver goes.
pub fn spawn(
    address: IpAddr,
    local: bool,
    events: mpsc::UnboundedSender<AddressEvent>,
) -> std::io::Result<()> {
    let socket = subscribe()?;
    std::thread::Builder::new()
        .name("addr-watch".into())
        .spawn(move || run(&socket, address, local, &events))?;
    Ok(())
}

/// A NETLINK_ROUTE socket in the address multicast groups.
fn subscribe() -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::from(libc::timeval {
            tv_sec: POLL.as_secs() as libc::time_t,
            tv_usec: 0,
        }),
    )?;
    Ok(fd)
}

fn run(
    socket: &OwnedFd,
    address: IpAddr,
    mut local: bool,
    events: &mpsc::UnboundedSender<AddressEvent>,
) {
    let mut buf = vec![0u8; 16384];
    let mut looked = Instant::now();
    while !events.is_closed() {
        let look = match recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            // An event, or events lost to a full socket: look either way.
            Ok(_) | Err(Errno::ENOBUFS) => true,
            Err(Errno::EAGAIN | Errno::EINTR) => looked.elapsed() >= LOOK_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "netlink address watch failed; looking every second");
                std::thread::sleep(POLL);
                true
            }
        };
        if !look {
            continue;
        }
        looked = Instant::now();
        let now = is_local(address);
        if now == local {
            continue;
        }
        local = now;
        let event = match now {
            true => AddressEvent::Appeared,
            false => AddressEvent::Gone,
        };
        tracing::info!(%address, ?event, "floating address changed");
        if events.send(event).is_err() {
            return;
        }
    }
}
