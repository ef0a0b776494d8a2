//! Batched datagram receive for the userspace forwarder: `recvmmsg` takes
//! up to [`BATCH`] datagrams per system call (sending is
//! [`super::send_batch`]). At RTP rates (50 packets per second per stream,
//! many streams per port only in floods) batches are usually small, but
//! under load this is what keeps the fallback path from paying one system
//! call per packet.

use std::{io, mem::MaybeUninit, net::SocketAddr, os::fd::RawFd};

/// Datagrams per `recvmmsg`. The forwarder keeps one set of buffers per
/// worker thread, shared by all ports.
pub const BATCH: usize = 16;
/// Largest datagram relayed (anything longer is truncated by the kernel and
/// flagged, and then dropped).
pub const MAX_DATAGRAM: usize = 2048;

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
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
        for ((msg, len), truncated) in msgs
            .iter()
            .zip(&mut self.lens)
            .zip(&mut self.truncated)
            .take(self.count)
        {
            *len = (msg.msg_len as usize).min(MAX_DATAGRAM);
            *truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        Ok(self.count)
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
    fn ipv6_addresses_convert_both_ways() {
        let a: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let (ss, _) = std_to_sockaddr(a);
        assert_eq!(sockaddr_to_std(&ss), Some(a));
        let b: SocketAddr = "192.0.2.9:5".parse().unwrap();
        let (ss, _) = std_to_sockaddr(b);
        assert_eq!(sockaddr_to_std(&ss), Some(b));
    }
}
