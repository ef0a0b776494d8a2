//! Sending a run of datagrams to one destination: one `sendmmsg` for the
//! whole run, and within it UDP segmentation offload (GSO, `UDP_SEGMENT`)
//! for consecutive datagrams of one size.
//!
//! A GSO message carries several datagrams as one buffer plus a segment
//! size; the kernel builds one socket buffer for them, routes it, runs the
//! output hooks once, and cuts it into datagrams only at the device (or in
//! the NIC). Per datagram that saves most of `udp_sendmsg`, which a profile
//! of the forwarder under load put at half of its CPU. It pays only when a
//! port has several datagrams queued at once: a relay falling behind, a
//! video frame's burst. At one packet per wake-up nothing changes.
//!
//! Where the kernel refuses GSO (no checksum offload on the egress device,
//! IPsec routes, a kernel without `UDP_SEGMENT`: `EINVAL` or `EIO`), the
//! send is retried as plain datagrams and the caller's flag turns GSO off
//! for that socket. Other errors (no route, a firewall's `EPERM`, full
//! buffers) say nothing about GSO and leave it on.

use std::{
    io,
    mem::MaybeUninit,
    net::SocketAddr,
    ops::Range,
    os::fd::RawFd,
    sync::atomic::{AtomicBool, Ordering},
};

use super::batch_io::std_to_sockaddr;

/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is
/// 64 up to 6.x and 128 since; the lower bound works everywhere).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message: a UDP length is 16 bits, less
/// the headers.
const MAX_GSO_BYTES: usize = 65_000;
/// Largest datagram sent by GSO: what fits IPv6's minimum MTU (1280, less
/// 40 + 8 bytes of headers), so any path takes the segments. The kernel
/// refuses a segment size above the path MTU, and a refusal turns GSO off
/// for the socket; bigger datagrams (rare in RTP: audio is far smaller,
/// video packetizers stay near 1200) simply go out one by one.
pub const MAX_GSO_SEGMENT: usize = 1232;
/// Whether a failed send of a GSO message says the kernel will not do GSO
/// for this socket or route (udp_send_skb: `EINVAL` for a socket without
/// checksums or a segment size above the MTU, `EIO` without checksum
/// offload or over IPsec), rather than something about the destination.
fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO))
}

/// Messages per `sendmmsg`.
const MESSAGES: usize = 16;
/// Datagrams per `sendmmsg` (the iovec array is on the stack).
const DATAGRAMS: usize = 128;

/// Control buffer for one `UDP_SEGMENT` message: `CMSG_SPACE(2)` bytes,
/// aligned for a `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegmentCmsg([u8; 32]);

/// The group of datagrams starting at `start` that may leave as one GSO
/// message: datagrams of the first one's size, of which the last may be
/// shorter (the kernel cuts at the segment size, so only the tail may be
/// short), at most [`MAX_SEGMENTS`] and [`MAX_GSO_BYTES`]. Empty datagrams
/// and ones over [`MAX_GSO_SEGMENT`] travel alone (a segment size of 0
/// means "no GSO").
pub fn gso_group(payloads: &[&[u8]], start: usize) -> Range<usize> {
    let size = payloads[start].len();
    let mut end = start + 1;
    let mut bytes = size;
    let segmentable = size > 0 && size <= MAX_GSO_SEGMENT;
    while segmentable && end < payloads.len() && end - start < MAX_SEGMENTS {
        let len = payloads[end].len();
        if len > size || bytes + len > MAX_GSO_BYTES {
            break;
        }
        bytes += len;
        end += 1;
        if len < size {
            break;
        }
    }
    start..end
}

/// Sends every payload to `to` in order, with as few system calls as the
/// socket allows, as GSO messages while `gso` is set (cleared here when the
/// kernel refuses one). Returns how many were sent: fewer on WouldBlock or
/// an error, which is returned only when nothing was sent.
pub fn send_all(
    fd: RawFd,
    payloads: &[&[u8]],
    to: SocketAddr,
    gso: &AtomicBool,
) -> io::Result<usize> {
    let (mut addr, addr_len) = std_to_sockaddr(to);
    let use_gso = gso.load(Ordering::Relaxed);
    let mut sent = 0;
    while sent < payloads.len() {
        // SAFETY: plain data; zero is a valid value.
        let mut iovs: [libc::iovec; DATAGRAMS] = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; MESSAGES] = unsafe { MaybeUninit::zeroed().assume_init() };
        let mut cmsgs = [SegmentCmsg([0; 32]); MESSAGES];
        // Where each message's datagrams end, to count a partial send.
        let mut ends = [0usize; MESSAGES];
        let mut next = sent;
        let mut count = 0;
        while next < payloads.len() && count < MESSAGES {
            let group = if use_gso {
                gso_group(payloads, next)
            } else {
                next..next + 1
            };
            let first_iov = next - sent;
            if first_iov + group.len() > DATAGRAMS {
                break;
            }
            for (iov, p) in iovs[first_iov..].iter_mut().zip(&payloads[group.clone()]) {
                *iov = libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                };
            }
            let hdr = &mut msgs[count].msg_hdr;
            hdr.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = addr_len;
            hdr.msg_iov = &mut iovs[first_iov];
            hdr.msg_iovlen = group.len();
            if group.len() > 1 {
                let segment = payloads[group.start].len() as u16;
                set_segment_size(hdr, &mut cmsgs[count], segment);
            }
            ends[count] = group.end;
            next = group.end;
            count += 1;
        }
        // SAFETY: the headers point at the caller's payloads, our address
        // and control buffers, all alive for the call; the kernel only
        // reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            let refused_gso = ends[0] - sent > 1 && is_gso_refusal(&e);
            if refused_gso && gso.swap(false, Ordering::Relaxed) {
                tracing::debug!(%to, error = %e, "GSO refused: sending plain datagrams");
                return match send_all(fd, &payloads[sent..], to, gso) {
                    Ok(n) => Ok(sent + n),
                    Err(e) if sent == 0 => Err(e),
                    Err(_) => Ok(sent),
                };
            }
            return if sent == 0 { Err(e) } else { Ok(sent) };
        }
        // A short count means the next message failed or would block: the
        // next call says which (or sends it after all).
        if n == 0 {
            break; // not seen from Linux, but it must not spin
        }
        sent = ends[n as usize - 1];
    }
    Ok(sent)
}

/// Attaches a `UDP_SEGMENT` control message with `segment` to `hdr`.
fn set_segment_size(hdr: &mut libc::msghdr, buf: &mut SegmentCmsg, segment: u16) {
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= buf.0.len());
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes aligned for a cmsghdr,
    // so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for the u16.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, os::fd::AsRawFd as _};

    use super::{super::batch_io::RecvBatch, *};

    fn lens(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes.iter().map(|&n| vec![0; n]).collect()
    }

    fn groups_of(sizes: &[usize]) -> Vec<Range<usize>> {
        let payloads = lens(sizes);
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut groups = Vec::new();
        let mut start = 0;
        while start < refs.len() {
            let group = gso_group(&refs, start);
            start = group.end;
            groups.push(group);
        }
        groups
    }

    #[test]
    fn groups_are_runs_of_one_size_with_a_shorter_tail() {
        assert_eq!(groups_of(&[172, 172, 172]), vec![0..3]);
        // A shorter datagram ends its group; a longer one starts a new one.
        assert_eq!(
            groups_of(&[172, 172, 100, 172, 200, 200]),
            vec![0..3, 3..4, 4..6]
        );
        // Empty datagrams never join a group.
        assert_eq!(groups_of(&[0, 0, 10]), vec![0..1, 1..2, 2..3]);
        assert_eq!(groups_of(&[10, 0, 10]), vec![0..2, 2..3]);
        assert!(groups_of(&[]).is_empty());
    }

    #[test]
    fn groups_respect_the_segment_and_byte_limits() {
        let many = groups_of(&[20; 150]);
        assert_eq!(many, vec![0..64, 64..128, 128..150]);
        let big = groups_of(&[1200; 60]);
        // 54 × 1200 = 64 800 bytes fit, 55 would not.
        assert_eq!(big, vec![0..54, 54..60]);
        // Over the segment size any path takes: one by one.
        assert_eq!(groups_of(&[1233, 1233, 100]), vec![0..1, 1..2, 2..3]);
        assert_eq!(groups_of(&[1232, 1232]), vec![0..2]);
    }

    /// Receives `count` datagrams (or fails after a second without one).
    fn receive(rx: &UdpSocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        rx.set_nonblocking(true).unwrap();
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while got.len() < count && std::time::Instant::now() < deadline {
            match batch.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (p, src) = batch.get(i).unwrap();
                        got.push((p.to_vec(), src));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        got
    }

    /// Mixed sizes, each datagram numbered, so order and boundaries show.
    fn numbered_payloads() -> Vec<Vec<u8>> {
        let sizes = [172usize; 30]
            .into_iter()
            .chain([60, 172, 172, 1200, 1200, 3, 0, 172, 1400, 1400]);
        sizes
            .enumerate()
            .map(|(i, n)| (0..n).map(|b| (i * 7 + b) as u8).collect())
            .collect()
    }

    fn round_trip(tx: &UdpSocket, gso: &AtomicBool) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payloads = numbered_payloads();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let sent = send_all(tx.as_raw_fd(), &refs, rx.local_addr().unwrap(), gso).unwrap();
        assert_eq!(sent, payloads.len());
        let got = receive(&rx, payloads.len());
        let from = tx.local_addr().unwrap();
        assert!(got.iter().all(|(_, src)| *src == from));
        let got: Vec<Vec<u8>> = got.into_iter().map(|(p, _)| p).collect();
        assert_eq!(got, payloads, "every datagram, whole and in order");
    }

    #[test]
    fn gso_runs_arrive_as_the_datagrams_they_were() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gso = AtomicBool::new(true);
        round_trip(&tx, &gso);
        assert!(gso.load(Ordering::Relaxed), "loopback takes GSO");
        let plain = AtomicBool::new(false);
        round_trip(&tx, &plain);
    }

    #[test]
    fn a_socket_refusing_gso_gets_plain_datagrams_and_gso_off() {
        // Linux refuses GSO on a socket sending without UDP checksums
        // (SO_NO_CHECK, 11 on every Linux architecture but a few old ones),
        // just as it does when the egress device lacks checksum offload.
        const SO_NO_CHECK: libc::c_int = 11;
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and an int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                tx.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        let gso = AtomicBool::new(true);
        round_trip(&tx, &gso);
        assert!(!gso.load(Ordering::Relaxed), "GSO turned off after refusal");
    }

    #[test]
    fn an_error_about_the_destination_leaves_gso_on() {
        // Broadcast without SO_BROADCAST: EACCES, whatever the message.
        let tx = UdpSocket::bind("0.0.0.0:0").unwrap();
        let payloads = [[7u8; 100]; 4];
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        let to: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let gso = AtomicBool::new(true);
        let e = send_all(tx.as_raw_fd(), &refs, to, &gso).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        assert!(gso.load(Ordering::Relaxed), "GSO still on");
    }
}
