//! An evenly paced RTP sender, the load an operator's test set offers: one
//! thread sends a target total rate spread evenly over every flow (each
//! call's caller and callee to their relay ports), in round-robin flow
//! order, released every [`TICK`] of wall clock instead of in bursts.
//!
//! Frames go out of a packet socket on the traffic veth with each party's
//! own address and port as their source (as its SDP says), so the traffic
//! namespace needs neither the parties' addresses nor a socket per party,
//! and the relay's replies still reach the sink's XDP counter, which sees
//! only what arrives, never what this socket sends.
//!
//! Every packet is RTP (version 2, PT 0, sequence +1 and timestamp +160 per
//! packet of its flow, one SSRC per flow) with 160 bytes of payload that
//! start with the send time (CLOCK_MONOTONIC ns), the flow's packet count
//! and the flow index, all big-endian, so a receiver can tell loss and
//! latency per flow. The UDP checksum is computed, as phones send it.

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use relay_tests::packet::{udp4_checksum, UdpFrame, ETH_LEN, IPV4_LEN, UDP_LEN};

use crate::traffic::{Flow, PAYLOAD_LEN};

/// Pacing period: every tick releases what became due since the last one.
pub const TICK: Duration = Duration::from_micros(100);
/// Whole frame: Ethernet, IPv4, UDP, 172 bytes of RTP.
const FRAME_LEN: usize = ETH_LEN + IPV4_LEN + UDP_LEN + PAYLOAD_LEN;
/// Where the UDP header starts.
const UDP_AT: usize = ETH_LEN + IPV4_LEN;
/// Where the RTP header starts.
const RTP_AT: usize = UDP_AT + UDP_LEN;
/// Where the send stamp starts (after the 12-byte RTP header).
const STAMP_AT: usize = RTP_AT + 12;
/// G.711 samples per 20 ms packet: the RTP timestamp step.
const TS_STEP: u32 = 160;

/// One flow's frame and RTP state.
#[derive(Debug)]
struct FlowFrame {
    flow: Flow,
    template: Vec<u8>,
    ssrc: u32,
    packets: u64,
}

/// What one paced run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Packets handed to the kernel.
    pub packets: u64,
    /// Packets the schedule asked for by the end.
    pub due: u64,
    /// Packets of the schedule dropped because the thread woke too late to
    /// send them without bursting (see [`PacedSender::run`]).
    pub skipped: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Largest number of packets released in one tick.
    pub largest_batch: u64,
    /// Packets the traffic veth refused (`ENOBUFS`: the relay side's
    /// receive ring was full, as a NIC's ring overflows); counted as sent,
    /// so they are loss.
    pub refused: u64,
    /// Latest wake-up after a tick was due.
    pub worst_lateness: Duration,
}

/// The sender: a packet socket bound to the traffic veth, and the flows.
#[derive(Debug)]
pub struct PacedSender {
    fd: OwnedFd,
    flows: Vec<FlowFrame>,
    /// Frame buffers of one batch: a flow can occur more than once in it.
    slots: Vec<[u8; FRAME_LEN]>,
}

impl PacedSender {
    /// A sender on interface `ifindex` (call from its namespace), frames
    /// from `src_mac` to `dst_mac`, for `flows`.
    pub fn new(ifindex: u32, src_mac: [u8; 6], dst_mac: [u8; 6], flows: &[Flow]) -> Result<Self> {
        if flows.is_empty() {
            bail!("no flows to send");
        }
        let fd = packet_socket(ifindex)?;
        let flows = flows
            .iter()
            .enumerate()
            .map(|(i, &flow)| {
                let mut frame = UdpFrame::new(SocketAddr::V4(flow.from), SocketAddr::V4(flow.to));
                frame.src_mac = src_mac;
                frame.dst_mac = dst_mac;
                frame.payload = relay_tests::packet::rtp_packet(0, 0, 0, 0);
                let template = frame.build();
                debug_assert_eq!(template.len(), FRAME_LEN);
                FlowFrame {
                    flow,
                    template,
                    // Distinct per flow and unlike the in-kernel generator's.
                    ssrc: 0x5e00_0000 | i as u32,
                    packets: 0,
                }
            })
            .collect();
        Ok(PacedSender {
            fd,
            flows,
            slots: Vec::new(),
        })
    }

    /// Sends `rate` packets per second in total for `length`, flow after
    /// flow. Each tick sends what became due since the last one, but never
    /// more than one tick's worth plus one of catch-up: a wake-up later than
    /// that drops the overdue packets from the schedule (counted in
    /// [`Sent::skipped`]) rather than bursting them. `on_tick` runs after
    /// every tick with the time since the start and the packets sent so far
    /// (the caller samples counters there).
    pub fn run(
        &mut self,
        rate: u64,
        length: Duration,
        mut on_tick: impl FnMut(Duration, u64),
    ) -> Result<Sent> {
        set_fine_timer_slack();
        let per_tick = (rate as f64 * TICK.as_secs_f64()).ceil().max(1.0) as u64;
        let cap = 2 * per_tick;
        self.slots.resize(cap as usize, [0; FRAME_LEN]);
        let total = (rate as f64 * length.as_secs_f64()) as u64;
        let start = Instant::now();
        let mut sent = Sent::default();
        // Packets of the schedule taken care of (sent or skipped).
        let mut scheduled = 0u64;
        let mut next_flow = 0usize;
        let mut tick = 0u32;
        while scheduled < total {
            let now = Instant::now();
            let elapsed = now - start;
            let due = ((rate as f64 * elapsed.as_secs_f64()) as u64).min(total);
            let mut owed = due.saturating_sub(scheduled);
            if owed > cap {
                sent.skipped += owed - cap;
                owed = cap;
            }
            if owed > 0 {
                sent.refused += self.send_batch(owed as usize, &mut next_flow)?;
                sent.packets += owed;
                sent.largest_batch = sent.largest_batch.max(owed);
            }
            scheduled = due.max(scheduled);
            on_tick(elapsed, sent.packets);
            tick += 1;
            let wake = start + TICK * tick;
            let now = Instant::now();
            if wake > now {
                std::thread::sleep(wake - now);
            }
            sent.worst_lateness = sent
                .worst_lateness
                .max(Instant::now().saturating_duration_since(wake));
        }
        sent.due = total;
        sent.elapsed = start.elapsed();
        Ok(sent)
    }

    /// Builds `n` frames, flow after flow from `next_flow`, and sends them
    /// with as few `sendmmsg` calls as the kernel allows; how many of them
    /// the device refused.
    fn send_batch(&mut self, n: usize, next_flow: &mut usize) -> Result<u64> {
        let stamp = monotonic_ns();
        for slot in &mut self.slots[..n] {
            let index = *next_flow;
            *next_flow = (index + 1) % self.flows.len();
            let f = &mut self.flows[index];
            slot.copy_from_slice(&f.template);
            write_rtp(slot, f, index as u32, stamp);
            f.packets += 1;
        }
        let mut iov: Vec<libc::iovec> = self.slots[..n]
            .iter_mut()
            .map(|s| libc::iovec {
                iov_base: s.as_mut_ptr().cast(),
                iov_len: FRAME_LEN,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain integers and pointers; all-zero is
                // a valid (empty) value.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut done = 0;
        let mut refused = 0;
        while done < n {
            // SAFETY: `msgs[done..]` are valid headers pointing at `iov`,
            // which points at `self.slots`; all outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[done..].as_mut_ptr(),
                    (n - done) as u32,
                    0,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The veth's peer ring is full (its NAPI thread is behind):
                // the frame is dropped where a NIC would drop it.
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    done += 1;
                    refused += 1;
                    continue;
                }
                return Err(e).context("sendmmsg on the packet socket");
            }
            done += r as usize;
        }
        Ok(refused)
    }

    /// Packets sent so far on each flow, in flow order.
    pub fn per_flow(&self) -> impl Iterator<Item = (Flow, u64)> + '_ {
        self.flows.iter().map(|f| (f.flow, f.packets))
    }
}

/// Writes the flow's next RTP header, the send stamp, the flow's packet
/// count and its index into `frame`, and the UDP checksum over it all.
fn write_rtp(frame: &mut [u8; FRAME_LEN], f: &FlowFrame, index: u32, stamp: u64) {
    let n = f.packets;
    frame[RTP_AT + 2..RTP_AT + 4].copy_from_slice(&(n as u16).to_be_bytes());
    frame[RTP_AT + 4..RTP_AT + 8].copy_from_slice(&(n as u32).wrapping_mul(TS_STEP).to_be_bytes());
    frame[RTP_AT + 8..RTP_AT + 12].copy_from_slice(&f.ssrc.to_be_bytes());
    frame[STAMP_AT..STAMP_AT + 8].copy_from_slice(&stamp.to_be_bytes());
    frame[STAMP_AT + 8..STAMP_AT + 16].copy_from_slice(&n.to_be_bytes());
    frame[STAMP_AT + 16..STAMP_AT + 20].copy_from_slice(&index.to_be_bytes());
    frame[UDP_AT + 6..UDP_AT + 8].fill(0);
    let sum = udp4_checksum(*f.flow.from.ip(), *f.flow.to.ip(), &frame[UDP_AT..]);
    frame[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&sum.to_be_bytes());
}

/// An `AF_PACKET` raw socket that sends on `ifindex` and receives nothing
/// (protocol 0).
pub(crate) fn packet_socket(ifindex: u32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain integers; all-zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll of the length passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    Ok(fd)
}

/// CLOCK_MONOTONIC in nanoseconds (what `bpf_ktime_get_ns` reads, so an XDP
/// program could subtract it).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A 100 µs sleep with the default 50 µs timer slack wakes up to half a
/// tick late; 1 µs keeps the ticks even.
pub(crate) fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only this
    // thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_tests::packet::checksums_ok;

    fn flow() -> Flow {
        Flow {
            from: "10.77.100.1:1024".parse().unwrap(),
            to: "10.77.10.10:2000".parse().unwrap(),
        }
    }

    /// Frames carry 172 bytes of UDP payload, RTP version 2 with sequence
    /// and timestamp advancing per packet, the stamp and count after the
    /// header, and valid checksums.
    #[test]
    fn frames_are_rtp_with_stamps_and_valid_checksums() {
        let f = flow();
        let mut frame = UdpFrame::new(SocketAddr::V4(f.from), SocketAddr::V4(f.to));
        frame.payload = relay_tests::packet::rtp_packet(0, 0, 0, 0);
        let mut ff = FlowFrame {
            flow: f,
            template: frame.build(),
            ssrc: 7,
            packets: 5,
        };
        let mut slot = [0u8; FRAME_LEN];
        slot.copy_from_slice(&ff.template);
        write_rtp(&mut slot, &ff, 3, 123_456_789);
        ff.packets += 1;
        let udp_len = u16::from_be_bytes([slot[UDP_AT + 4], slot[UDP_AT + 5]]);
        assert_eq!(usize::from(udp_len) - UDP_LEN, 172);
        assert_eq!(slot[RTP_AT] >> 6, 2);
        assert_eq!(&slot[RTP_AT + 2..RTP_AT + 4], &5u16.to_be_bytes());
        assert_eq!(&slot[RTP_AT + 4..RTP_AT + 8], &800u32.to_be_bytes());
        assert_eq!(&slot[RTP_AT + 8..RTP_AT + 12], &7u32.to_be_bytes());
        assert_eq!(&slot[STAMP_AT..STAMP_AT + 8], &123_456_789u64.to_be_bytes());
        assert_eq!(&slot[STAMP_AT + 8..STAMP_AT + 16], &5u64.to_be_bytes());
        assert_eq!(&slot[STAMP_AT + 16..STAMP_AT + 20], &3u32.to_be_bytes());
        assert!(checksums_ok(&slot));
    }
}
