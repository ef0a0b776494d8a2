//! Batched datagram receive for the userspace forwarder: `recvmmsg` takes
//! up to [`BATCH`] datagrams per system call (sending is
//! [`super::send_batch`]). At RTP rates (50 packets per second per stream,
//! many streams per port only in floods) batches are usually small, but
//! under load this is what keeps the fallback path from paying one system
//! call per packet.
//!
//! Each datagram comes with the time the kernel received it
//! (`SO_TIMESTAMPNS`, which relayd's media sockets set, as rtpengine's do):
//! RTP jitter is about arrival times, and a batch read under load holds
//! datagrams that arrived milliseconds apart.

use std::{io, mem::MaybeUninit, net::SocketAddr, os::fd::RawFd};

use super::kernel::clock_ns;

/// Datagrams per `recvmmsg`. The forwarder keeps one set of buffers per
/// worker thread, shared by all ports.
pub const BATCH: usize = 16;
/// Largest datagram relayed (anything longer is truncated by the kernel and
/// flagged, and then dropped).
pub const MAX_DATAGRAM: usize = 2048;

/// Room for one `SCM_TIMESTAMPNS` control message (`CMSG_SPACE` of a
/// timespec is 32 bytes on 64-bit Linux), aligned for a `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct StampCmsg([u8; 64]);

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    cmsgs: Vec<StampCmsg>,
    /// Kernel receive time per datagram, CLOCK_MONOTONIC ns (0: none).
    arrivals: Vec<u64>,
    count: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            // SAFETY: sockaddr_storage is plain data; all-zero is valid.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            lens: vec![0; BATCH],
            truncated: vec![false; BATCH],
            cmsgs: vec![StampCmsg([0; 64]); BATCH],
            arrivals: vec![0; BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Receives what is queued (at least one datagram, or WouldBlock).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: plain data, zero is a valid initial value.
        let mut iovs: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
        for i in 0..BATCH {
            iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            msgs[i].msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            msgs[i].msg_hdr.msg_controllen = self.cmsgs[i].0.len();
        }
        // SAFETY: every mmsghdr points at live buffers owned by `self` and
        // `iovs`, which outlive the call; the kernel writes within the
        // lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        // Kernel stamps are CLOCK_REALTIME; RTP figures (userspace and XDP
        // alike) run on CLOCK_MONOTONIC.
        let realtime_ahead = i128::from(clock_ns(libc::CLOCK_REALTIME))
            - i128::from(clock_ns(libc::CLOCK_MONOTONIC));
        for (i, msg) in msgs.iter().enumerate().take(self.count) {
            self.lens[i] = (msg.msg_len as usize).min(MAX_DATAGRAM);
            self.truncated[i] = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.arrivals[i] =
                receive_stamp(&msg.msg_hdr).map_or(0, |real| (real - realtime_ahead).max(1) as u64);
        }
        Ok(self.count)
    }

    /// When the kernel received datagram `i` of the last batch
    /// (CLOCK_MONOTONIC ns), or `fallback` when the socket gave no stamp.
    pub fn arrival_ns(&self, i: usize, fallback: u64) -> u64 {
        match self.arrivals.get(i) {
            Some(&ns) if i < self.count && ns != 0 => ns,
            _ => fallback,
        }
    }

    /// Datagram `i` of the last batch: (payload, source); None when the
    /// source is not IP or the datagram was truncated.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count || self.truncated[i] {
            return None;
        }
        Some((
            &self.bufs[i][..self.lens[i]],
            sockaddr_to_std(&self.addrs[i])?,
        ))
    }
}

/// The `SCM_TIMESTAMPNS` stamp of a received message, in ns.
fn receive_stamp(hdr: &libc::msghdr) -> Option<i128> {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed control messages; CMSG_FIRSTHDR/NXTHDR stay within them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                return Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: a sockaddr_storage holds the sockaddr its family names.
    unsafe { crate::netdev::socket_addr((ss as *const libc::sockaddr_storage).cast()) }
}

pub(super) fn std_to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: plain data; zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd as _, sync::atomic::AtomicBool};

    use super::{super::send_batch::send_all, *};

    #[test]
    fn batches_round_trip_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        assert_eq!(
            send_all(
                tx.as_raw_fd(),
                &refs,
                rx.local_addr().unwrap(),
                &AtomicBool::new(false)
            )
            .unwrap(),
            40
        );
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = batch.recv(rx.as_raw_fd()).unwrap();
            assert!(n <= BATCH);
            for i in 0..n {
                let (p, src) = batch.get(i).unwrap();
                assert_eq!(src, tx.local_addr().unwrap());
                got.push(p.to_vec());
            }
        }
        assert_eq!(got, payloads);
        let e = batch.recv(rx.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn each_datagram_carries_its_own_kernel_arrival_time() {
        use crate::calls::kernel::monotonic_ns;
        use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        setsockopt(&rx, ReceiveTimestampns, &true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        // The kernel turns receive stamping on for the whole machine
        // through a work queue, a moment after the first socket asks.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let first_sent = monotonic_ns();
        tx.send_to(b"first", to).unwrap();
        let first_done = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(30));
        tx.send_to(b"second", to).unwrap();
        let second_done = monotonic_ns();
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 2, "one batch");
        let (first, second) = (batch.arrival_ns(0, 0), batch.arrival_ns(1, 0));
        // Loopback delivers within the send call; allow for clock steps
        // between the two clocks of a few microseconds.
        let slack = 1_000_000;
        assert!(
            first + slack >= first_sent && first <= first_done + slack,
            "{first_sent} <= {first} <= {first_done}"
        );
        assert!(
            second - first >= 25_000_000,
            "30 ms apart: {first} {second}"
        );
        assert!(second <= second_done + slack);

        // A socket without stamps: the caller's clock reading.
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"plain", plain.local_addr().unwrap()).unwrap();
        assert_eq!(batch.recv(plain.as_raw_fd()).unwrap(), 1);
        assert_eq!(batch.arrival_ns(0, 42), 42);
    }

    #[test]
    fn ipv6_addresses_convert_both_ways() {
        let a: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let (ss, _) = std_to_sockaddr(a);
        assert_eq!(sockaddr_to_std(&ss), Some(a));
        let b: SocketAddr = "192.0.2.9:5".parse().unwrap();
        let (ss, _) = std_to_sockaddr(b);
        assert_eq!(sockaddr_to_std(&ss), Some(b));
    }
}
