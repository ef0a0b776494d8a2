//! SRTP ↔ RTP bridging throughput: relayd and rtpengine, side by side in
//! the throughput bench's bed ([`Bed`]), each terminating SDES-SRTP for
//! calls set up over NG as a plain RTP caller would ask for it
//! (`transport-protocol: RTP/SAVP`, `DTLS: off`): the relay offers
//! `a=crypto` lines to the callee, whose answer picks the
//! AES_CM_128_HMAC_SHA1_80 one by its tag and carries a key the bench chose.
//!
//! Two directions, measured separately:
//! - RTP → SRTP: the caller sends plain RTP; the relay encrypts it toward
//!   the callee under the key it offered.
//! - SRTP → RTP: the callee sends SRTP under its own key; the relay
//!   authenticates, decrypts and sends plain RTP to the caller.
//!
//! The in-kernel generator cannot encrypt, so both directions send frames
//! built beforehand ([`build`]: RTP, SRTP-protected with `relay_media`'s
//! libsrtp context where the direction needs it, every packet a new
//! sequence number of its call, since replay protection refuses old ones)
//! out of a packet socket on the traffic veth ([`send`]), unpaced (flood)
//! or paced; the throughput bench's sink counts what comes back. Before
//! any load, a few packets each way through the first and the last call
//! are received on sockets and checked: RTP → SRTP output decrypts under
//! the key the relay offered to exactly what was sent, SRTP → RTP output is
//! exactly the plain packet, so a relay forwarding garbage cannot pass.
//!
//! relayd runs as an operator starts it (no `--datapath`: here XDP
//! native on the veth); SRTP-bridged streams never go into XDP, so its
//! userspace forwarder does all of this work. rtpengine is userspace
//! (`--table=-1`). Both are pinned to CPU 1, the sender to CPU 0.

use std::{
    net::{SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use relay_media::{
    sdes::Crypto,
    srtp::{Direction, SrtpContext, SrtpKey},
    SrtpProfile,
};
use relay_ng::Value;
use relay_tests::{
    ng_client::{audio_sdp, sdp_endpoint, NgClient},
    packet::UdpFrame,
};

use super::{
    bed::{party, relay_addr, Bed, RELAY_MAC, TRAFFIC_IF, TRAFFIC_MAC},
    calls::wait_for_ng,
    cpu, measure,
    relays::{self, Kind},
    sustained::search::{Limits, Search},
};
use crate::traffic::{Flow, Traffic};

/// The suite measured: the most common SDES one.
pub const PROFILE: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;
/// The relays compared, in slot order.
pub const RELAYS: [Kind; 2] = [Kind::RelaydDefault, Kind::Rtpengine];
/// Plain RTP packet: 12-byte header, 160 bytes of G.711 (as the
/// forwarding bench's frames).
const RTP_LEN: usize = 172;
/// SRTP authentication tag of [`PROFILE`]: 80 bits.
const TAG_LEN: usize = 10;
/// Packets each way through each checked call before any load.
const CHECKS: u64 = 4;
/// Frames per `sendmmsg`.
const BATCH: usize = 256;
/// Pacing period of paced sends.
const TICK: Duration = Duration::from_micros(100);
/// Rate of the warm-up pass before each relay's first point.
const WARMUP_PPS: u64 = 20_000;

/// Which way media crosses the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Plain RTP from the caller, SRTP out to the callee.
    RtpToSrtp,
    /// SRTP from the callee, plain RTP out to the caller.
    SrtpToRtp,
}

impl Way {
    /// Both, in report order.
    pub const ALL: [Way; 2] = [Way::RtpToSrtp, Way::SrtpToRtp];

    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Way::RtpToSrtp => "RTP → SRTP",
            Way::SrtpToRtp => "SRTP → RTP",
        }
    }
}

/// The sustained-rate search (loss ≤ `max_loss` over `window`).
#[derive(Debug, Clone)]
pub struct Sustained {
    /// Seconds each point sends.
    pub window: Duration,
    /// Highest loss of a sustained rate (fraction).
    pub max_loss: f64,
    /// Bounds of each search.
    pub limits: Limits,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relayd binary.
    pub relayd: PathBuf,
    /// Call counts, each on freshly started relays.
    pub calls: Vec<u32>,
    /// Longest flood; shorter when the frames run out first.
    pub flood: Duration,
    /// Most frames built for one flood.
    pub flood_frames: u64,
    /// The sustained-rate search, if wanted.
    pub sustained: Option<Sustained>,
}

/// One relay, one direction, one call count.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which relay.
    pub kind: Kind,
    /// Which way.
    pub way: Way,
    /// Calls.
    pub calls: u32,
    /// Sent pps during the flood.
    pub offered_pps: f64,
    /// Received pps during the flood.
    pub forwarded_pps: f64,
    /// The relay's CPU during the flood (percent of one CPU).
    pub relay_cpu: f64,
    /// Most forwarded pps of any point (the flood or a sustained-search
    /// one).
    pub peak_pps: f64,
    /// Highest offered rate with loss ≤ the bound, if searched and any
    /// passed.
    pub sustained: Option<u64>,
}

/// One bridged call on one relay.
struct Call {
    /// The caller's flow (to the relay port the answer named).
    caller: Flow,
    /// The callee's flow (to the relay port the offer named).
    callee: Flow,
    /// What the relay encrypts toward the callee with (its offered line).
    relay_key: SrtpKey,
    /// The callee's key: what the callee protects with.
    callee_key: SrtpKey,
    /// Next packet index of the caller's and the callee's stream.
    next: [u64; 2],
    /// SSRCs of the caller's and the callee's stream.
    ssrc: [u32; 2],
}

/// The callee key of call `i`: chosen by the bench, different per call.
fn callee_key(i: u32) -> Result<SrtpKey> {
    let material: Vec<u8> = (0..PROFILE.key_len() + PROFILE.salt_len())
        .map(|j| (j as u32 * 7 + i * 13 + 1) as u8)
        .collect();
    let (key, salt) = material.split_at(PROFILE.key_len());
    Ok(SrtpKey::new(PROFILE, key, salt)?)
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn reply_sdp(reply: &Value) -> Result<String> {
    let sdp = reply
        .get("sdp")
        .and_then(Value::as_bytes)
        .context("reply without sdp")?;
    Ok(String::from_utf8_lossy(sdp).into_owned())
}

fn endpoint(sdp: &str) -> Result<SocketAddrV4> {
    let (addr, port) = sdp_endpoint(sdp.as_bytes()).context("no c=/m= in the reply's SDP")?;
    Ok(SocketAddrV4::new(addr.parse()?, port))
}

/// Offer (plain caller, `transport-protocol: RTP/SAVP`) and answer (SRTP
/// callee picking the relay's AES_CM_128_HMAC_SHA1_80 line) of call `i`.
fn one_call(ng: &NgClient, generation: u32, i: u32) -> Result<Call> {
    let (caller, callee) = (party(i, 0), party(i, 1));
    let id = call_id(generation, i);
    let offer = ng.ok(&Value::dict([
        ("command", s("offer")),
        ("call-id", s(&id)),
        ("from-tag", s("a")),
        (
            "sdp",
            s(&audio_sdp(&caller.ip().to_string(), caller.port())),
        ),
        ("direction", Value::str_list(["if0", "if0"])),
        ("transport-protocol", s("RTP/SAVP")),
        ("DTLS", s("off")),
    ]))?;
    let to_callee = reply_sdp(&offer)?;
    ensure!(
        to_callee.contains(" RTP/SAVP "),
        "the offer toward the callee is not RTP/SAVP: {to_callee}"
    );
    let line = to_callee
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .find(|l| l.split_whitespace().nth(1) == Some(PROFILE.sdes_name()))
        .with_context(|| format!("no {} line offered: {to_callee}", PROFILE.sdes_name()))?;
    let offered = Crypto::parse(line.trim()).with_context(|| format!("a=crypto:{line}"))?;
    let key = callee_key(i)?;
    let mine = Crypto {
        tag: offered.tag,
        key: key.clone(),
        lifetime: None,
        params: Vec::new(),
    };
    let answer_sdp = format!(
        "v=0\r\no=- 2 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=crypto:{mine}\r\na=sendrecv\r\n",
        ip = callee.ip(),
        port = callee.port()
    );
    let answer = ng.ok(&Value::dict([
        ("command", s("answer")),
        ("call-id", s(&id)),
        ("from-tag", s("a")),
        ("to-tag", s("b")),
        ("sdp", s(&answer_sdp)),
        ("direction", Value::str_list(["if0", "if0"])),
    ]))?;
    let to_caller = reply_sdp(&answer)?;
    ensure!(
        to_caller.contains(" RTP/AVP ") && !to_caller.contains("a=crypto"),
        "the answer toward the caller is not plain RTP: {to_caller}"
    );
    Ok(Call {
        caller: Flow {
            from: caller,
            to: endpoint(&to_caller)?,
        },
        callee: Flow {
            from: callee,
            to: endpoint(&to_callee)?,
        },
        relay_key: offered.key,
        callee_key: key,
        next: [0, 0],
        ssrc: [0x1000_0000 | i, 0x2000_0000 | i],
    })
}

/// Call-id of call `i` of set-up `generation`.
fn call_id(generation: u32, i: u32) -> String {
    format!("srtp-{generation}-{i}")
}

/// Sets `n` calls of `generation` up on the relay behind `ng`; checks
/// they are on the relay's address of `slot`.
fn set_up(ng: &NgClient, slot: usize, generation: u32, n: u32) -> Result<Vec<Call>> {
    let calls = (0..n)
        .map(|i| one_call(ng, generation, i).with_context(|| format!("call {i}")))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        calls
            .iter()
            .all(|c| *c.caller.to.ip() == relay_addr(slot, 0)),
        "a call's relay address is not the relay's"
    );
    Ok(calls)
}

/// Deletes the `n` calls of `generation` (no delete delay: their ports
/// are free again at once).
fn tear_down(ng: &NgClient, generation: u32, n: u32) -> Result<()> {
    for i in 0..n {
        ng.ok(&Value::dict([
            ("command", s("delete")),
            ("call-id", s(&call_id(generation, i))),
            ("from-tag", s("a")),
            ("delete-delay", Value::Int(0)),
        ]))
        .with_context(|| format!("deleting call {i}"))?;
    }
    Ok(())
}

/// Plain RTP packet `n` of a stream: G.711 sized, the index in the payload.
fn rtp(n: u64, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0xd5u8; RTP_LEN];
    // Version 2, PCMU (a second byte of 0xd5 would read as RTCP).
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    p[4..8].copy_from_slice(&(n as u32).wrapping_mul(160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12..20].copy_from_slice(&n.to_be_bytes());
    p
}

impl Way {
    /// The sending party: 0 caller, 1 callee.
    fn side(self) -> usize {
        match self {
            Way::RtpToSrtp => 0,
            Way::SrtpToRtp => 1,
        }
    }
}

/// The callee's protecting context for `call`'s next packets: a fresh one
/// (libsrtp refuses to protect an index twice, and frames built but never
/// sent are built again, see [`rewind`]) with the rollover counter of the
/// next packet's index, so the relay's receiving side sees one continuous
/// stream.
fn protector(call: &Call) -> Result<SrtpContext> {
    let mut tx = SrtpContext::new(call.callee_key.clone(), Direction::Outbound)?;
    tx.set_roc(call.ssrc[1], (call.next[1] >> 16) as u32)?;
    Ok(tx)
}

/// The next packet of `way`'s sending party in `call`, as it goes on the
/// wire (protected by `tx` when the callee sends SRTP), and the plain
/// packet.
fn next_packet(
    call: &mut Call,
    way: Way,
    tx: Option<&mut SrtpContext>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let side = way.side();
    let plain = rtp(call.next[side], call.ssrc[side]);
    call.next[side] += 1;
    let mut wire = plain.clone();
    if way == Way::SrtpToRtp {
        tx.context("SRTP needs the callee's context")?
            .protect_rtp(&mut wire)?;
    }
    Ok((wire, plain))
}

/// Sends [`CHECKS`] packets each way through call `call` on sockets bound
/// to the parties' addresses (added to the traffic namespace for this and
/// removed after) and checks what the relay delivered.
fn check(bed: &Bed, calls: &mut [Call], which: &[usize]) -> Result<()> {
    let ips = [*party(0, 0).ip(), *party(0, 1).ip()];
    for ip in ips {
        bed.traffic
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", TRAFFIC_IF])?;
    }
    let result = (|| -> Result<()> {
        for &i in which {
            let call = &mut calls[i];
            let bind = |a: SocketAddrV4| -> Result<UdpSocket> {
                let sock = bed.traffic.run(move || UdpSocket::bind(a))??;
                sock.set_read_timeout(Some(Duration::from_secs(2)))?;
                Ok(sock)
            };
            let (caller, callee) = (bind(call.caller.from)?, bind(call.callee.from)?);
            let mut rx = SrtpContext::new(call.relay_key.clone(), Direction::Inbound)?;
            let mut tx = protector(call)?;
            let mut buf = [0u8; 2048];
            for _ in 0..CHECKS {
                let (wire, plain) = next_packet(call, Way::RtpToSrtp, None)?;
                caller.send_to(&wire, call.caller.to)?;
                let (n, from) = callee
                    .recv_from(&mut buf)
                    .with_context(|| format!("call {i}: no SRTP at the callee"))?;
                ensure!(
                    from == SocketAddr::V4(call.callee.to),
                    "call {i}: SRTP from {from}, not {}",
                    call.callee.to
                );
                let mut got = buf[..n].to_vec();
                rx.unprotect_rtp(&mut got).with_context(|| {
                    format!(
                        "call {i}: the callee's packet ({n} bytes{}, header {:02x?}) does not decrypt under the offered key",
                        if buf[..n] == plain[..] { ", plain RTP" } else { "" },
                        &buf[..16]
                    )
                })?;
                ensure!(got == plain, "call {i}: decrypted packet differs");

                let (wire, plain) = next_packet(call, Way::SrtpToRtp, Some(&mut tx))?;
                callee.send_to(&wire, call.callee.to)?;
                let (n, _) = caller
                    .recv_from(&mut buf)
                    .with_context(|| format!("call {i}: no RTP at the caller"))?;
                ensure!(
                    buf[..n] == plain[..],
                    "call {i}: the caller got something else than the decrypted packet"
                );
            }
        }
        Ok(())
    })();
    for ip in ips {
        bed.traffic
            .ip(&["addr", "del", &format!("{ip}/32"), "dev", TRAFFIC_IF])?;
    }
    result
}

/// Frames built ahead of a send: `count` frames of `len` bytes each.
struct Frames {
    buf: Vec<u8>,
    len: usize,
    count: usize,
    way: Way,
    /// Each call's next packet index before the build.
    start: Vec<u64>,
}

/// Builds `count` frames of `way`, call after call (frame k is call
/// k % calls), each a new packet of its stream.
fn build(calls: &mut [Call], way: Way, count: u64) -> Result<Frames> {
    let payload_len = match way {
        Way::RtpToSrtp => RTP_LEN,
        Way::SrtpToRtp => RTP_LEN + TAG_LEN,
    };
    let headers: Vec<Vec<u8>> = calls
        .iter()
        .map(|c| {
            let flow = match way {
                Way::RtpToSrtp => c.caller,
                Way::SrtpToRtp => c.callee,
            };
            let mut f = UdpFrame::new(SocketAddr::V4(flow.from), SocketAddr::V4(flow.to));
            f.src_mac = TRAFFIC_MAC;
            f.dst_mac = RELAY_MAC;
            // IPv4 allows it; the in-kernel generator sends 0 too.
            f.zero_udp_checksum = true;
            f.payload = vec![0; payload_len];
            let mut frame = f.build();
            frame.truncate(frame.len() - payload_len);
            frame
        })
        .collect();
    let len = headers[0].len() + payload_len;
    let count = count as usize;
    let start = calls.iter().map(|c| c.next[way.side()]).collect();
    let mut tx = calls
        .iter()
        .map(|c| match way {
            Way::SrtpToRtp => protector(c).map(Some),
            Way::RtpToSrtp => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut buf = Vec::with_capacity(len * count);
    for k in 0..count {
        let i = k % calls.len();
        let (wire, _) = next_packet(&mut calls[i], way, tx[i].as_mut())?;
        ensure!(
            wire.len() == payload_len,
            "{} bytes on the wire",
            wire.len()
        );
        buf.extend_from_slice(&headers[i]);
        buf.extend_from_slice(&wire);
    }
    Ok(Frames {
        buf,
        len,
        count,
        way,
        start,
    })
}

/// After a send that got as far as frame `reached` of `frames`: each
/// call's stream continues right after its last frame up to there, so
/// frames built but never sent leave no gap in the sequence (a jump of
/// more than half the sequence space would read as old packets, or under
/// the wrong rollover counter, to the relay).
fn rewind(calls: &mut [Call], frames: &Frames, reached: usize) {
    let n = calls.len();
    for (i, call) in calls.iter_mut().enumerate() {
        let taken = if reached > i {
            (reached - i - 1) / n + 1
        } else {
            0
        };
        call.next[frames.way.side()] = frames.start[i] + taken as u64;
    }
}

/// What one send did.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Frames sent.
    frames: u64,
    /// Frames sent or skipped (paced, after a late wake-up): where the
    /// send stopped.
    reached: usize,
    elapsed: Duration,
}

/// Sends `frames` out of the packet socket `fd`: unpaced (`rate` `None`)
/// until they run out or `length` has passed, or paced at `rate`, released
/// every [`TICK`] (a late wake-up sends at most two ticks' worth and skips
/// the rest).
fn send(fd: &OwnedFd, frames: &Frames, rate: Option<u64>, length: Duration) -> Result<Sent> {
    let mut iov: Vec<libc::iovec> = (0..frames.count)
        .map(|k| libc::iovec {
            iov_base: frames.buf[k * frames.len..].as_ptr() as *mut libc::c_void,
            iov_len: frames.len,
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
    let per_tick = rate.map(|r| ((r as f64 * TICK.as_secs_f64()).ceil() as usize).max(1));
    if rate.is_some() {
        super::paced::set_fine_timer_slack();
    }
    let start = Instant::now();
    // Frames taken care of (sent, or skipped by a late paced wake-up).
    let mut next = 0usize;
    let mut sent = 0u64;
    let mut tick = 0u32;
    while next < frames.count && start.elapsed() < length {
        let upto = match (rate, per_tick) {
            (Some(r), Some(per)) => {
                let due = ((r as f64 * start.elapsed().as_secs_f64()) as usize).min(frames.count);
                if due > next + 2 * per {
                    next = due - 2 * per;
                }
                due
            }
            _ => (next + BATCH).min(frames.count),
        };
        while next < upto {
            let n = (upto - next).min(BATCH);
            // SAFETY: `msgs[next..next + n]` are valid headers pointing at
            // `iov`, which points into `frames.buf`; all outlive the call.
            let r =
                unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs[next..].as_mut_ptr(), n as u32, 0) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The device queue is full: give it a moment.
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                        std::thread::yield_now();
                        continue;
                    }
                    _ => return Err(e).context("sendmmsg on the packet socket"),
                }
            }
            next += r as usize;
            sent += r as u64;
        }
        if rate.is_some() {
            tick += 1;
            let wake = start + TICK * tick;
            let now = Instant::now();
            if wake > now {
                std::thread::sleep(wake - now);
            }
        }
    }
    Ok(Sent {
        frames: sent,
        reached: next,
        elapsed: start.elapsed(),
    })
}

/// What every point sends through and counts with.
#[derive(Clone, Copy)]
struct Rig<'a> {
    bed: &'a Bed,
    traffic: &'a Traffic,
    /// The packet socket on the traffic veth.
    fd: &'a OwnedFd,
}

/// A relay and its calls.
struct Live {
    relay: relays::Relay,
    slot: usize,
    ng: NgClient,
    /// Set-ups so far (each point gets calls of its own).
    generation: u32,
    calls: Vec<Call>,
}

impl Live {
    /// Replaces the calls with `n` new ones, and lets each stream carry a
    /// few packets at an easy rate (every relay has learned every endpoint
    /// and made its SRTP contexts) before anything is counted: a flood
    /// guard or a replay window that a previous point tripped does not
    /// carry over (rtpengine stops reading a socket for good once more than
    /// 50 packets were queued on it five times).
    fn fresh(&mut self, rig: &Rig<'_>, way: Way, n: u32) -> Result<()> {
        tear_down(&self.ng, self.generation, n)?;
        self.generation += 1;
        self.calls = set_up(&self.ng, self.slot, self.generation, n)?;
        let count = (4 * u64::from(n)).max(200);
        let length = Duration::from_secs_f64(count as f64 / WARMUP_PPS as f64 + 1.0);
        let (sent, got, _) = point(rig, self, way, Some(WARMUP_PPS), count, length)?;
        ensure!(
            got > 0,
            "{} {}: nothing forwarded of {} warm-up packets (log: {})",
            self.relay.kind.name(),
            way.name(),
            sent.frames,
            self.relay.log.display()
        );
        Ok(())
    }
}

/// One send of `count` fresh frames of `way` at `rate` on `live`; returns
/// what went out and what the sink counted within 200 ms of the end, and
/// the relay's CPU.
fn point(
    rig: &Rig<'_>,
    live: &mut Live,
    way: Way,
    rate: Option<u64>,
    count: u64,
    length: Duration,
) -> Result<(Sent, u64, f64)> {
    let frames = build(&mut live.calls, way, count)?;
    let pid = live.relay.pid();
    let Rig { bed, traffic, fd } = *rig;
    let r = bed.traffic.run(|| -> Result<(Sent, u64, f64)> {
        measure::pin_to_cpu0()?;
        measure::settle(traffic)?;
        let (sink0, cpu0) = (traffic.received()?, cpu::snapshot(pid)?);
        let sent = send(fd, &frames, rate, length)?;
        let cpu1 = cpu::snapshot(pid)?;
        std::thread::sleep(Duration::from_millis(200));
        let got = traffic.received()?.saturating_sub(sink0);
        Ok((
            sent,
            got,
            cpu::usage(&cpu0, &cpu1, measure::cores()).process,
        ))
    })??;
    rewind(&mut live.calls, &frames, r.0.reached);
    Ok(r)
}

/// Runs the whole group (needs root).
pub fn run(cfg: &Config) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for &calls in &cfg.calls {
        out.extend(run_calls(cfg, calls).with_context(|| format!("{calls} SRTP calls"))?);
    }
    Ok(out)
}

fn run_calls(cfg: &Config, n: u32) -> Result<Vec<Outcome>> {
    super::limits::raise_nofile()?;
    let bed = Bed::new(&[n; RELAYS.len()])?;
    // relayd's start-up self-test wants an XDP program on the veth's peer
    // (else it falls back to generic XDP): a pass-all one until the sink
    // replaces it after the checks, which need frames to reach sockets.
    let pass = bed
        .traffic
        .run(|| relay_tests::peer::attach_peer_pass(TRAFFIC_IF))??;
    let mut live = Vec::new();
    for (slot, &kind) in RELAYS.iter().enumerate() {
        eprintln!("== {} with {n} SRTP-bridged calls", kind.name());
        let relay = relays::start(kind, slot, &bed.relay, &cfg.relayd, n)?;
        let log = relay.log.clone();
        let fail = |e: anyhow::Error| e.context(format!("relay log: {}", log.display()));
        wait_for_ng(&bed.relay, relay.ng).map_err(fail)?;
        let ng = NgClient::new(&bed.relay, relay.ng)?;
        let started = Instant::now();
        let mut calls = set_up(&ng, slot, 0, n).map_err(fail)?;
        eprintln!("   set up in {:.2} s", started.elapsed().as_secs_f64());
        let last = calls.len() - 1;
        check(&bed, &mut calls, &[0, last]).map_err(fail)?;
        eprintln!("   checked: both ways decrypt / encrypt to exactly what was sent");
        live.push(Live {
            relay,
            slot,
            ng,
            generation: 0,
            calls,
        });
    }
    drop(pass);
    let traffic = bed.traffic.run(|| -> Result<Traffic> {
        let ifindex = relay_userspace::netdev::ifindex(TRAFFIC_IF)?;
        Traffic::attach(TRAFFIC_IF, ifindex, TRAFFIC_MAC, RELAY_MAC)
    })??;
    let fd = bed.traffic.run(|| -> Result<OwnedFd> {
        super::paced::packet_socket(relay_userspace::netdev::ifindex(TRAFFIC_IF)?)
    })??;
    let rig = Rig {
        bed: &bed,
        traffic: &traffic,
        fd: &fd,
    };
    let mut results = Vec::new();
    // Each direction on each relay in turn, fresh calls for every point.
    for way in Way::ALL {
        for l in &mut live {
            l.fresh(&rig, way, n)?;
            let (sent, got, relay_cpu) = point(&rig, l, way, None, cfg.flood_frames, cfg.flood)?;
            let secs = sent.elapsed.as_secs_f64();
            let mut o = Outcome {
                kind: l.relay.kind,
                way,
                calls: n,
                offered_pps: sent.frames as f64 / secs,
                forwarded_pps: got as f64 / secs,
                relay_cpu,
                peak_pps: got as f64 / secs,
                sustained: None,
            };
            eprintln!(
                "   {:<10} {} flood: offered {:>9.0} pps  forwarded {:>9.0} pps  ({:.2} s)  relay CPU {:>5.1}%",
                o.kind.name(),
                way.name(),
                o.offered_pps,
                o.forwarded_pps,
                secs,
                o.relay_cpu
            );
            if let Some(sus) = &cfg.sustained {
                let mut search = Search::new(sus.limits);
                while let Some(rate) = search.next() {
                    l.fresh(&rig, way, n)?;
                    let count = (rate as f64 * sus.window.as_secs_f64()) as u64;
                    // Bounded: twice the window at most.
                    let (sent, got, _) = point(&rig, l, way, Some(rate), count, 2 * sus.window)?;
                    let secs = sent.elapsed.as_secs_f64();
                    let loss = 1.0 - got as f64 / sent.frames.max(1) as f64;
                    let offered = sent.frames as f64 / secs;
                    o.peak_pps = o.peak_pps.max(got as f64 / secs);
                    // A point counts at the rate actually offered: the
                    // sender shares CPU 0 with the receive softirq work the
                    // relay's traffic causes, and a late wake-up skips what
                    // is overdue rather than bursting it, so under load it
                    // falls short of the target (the search goes on from
                    // there rather than stopping at the sender's limit).
                    let at = (offered as u64).min(rate);
                    let passed = loss <= sus.max_loss;
                    eprintln!(
                        "   {:<10} {} {:>7} pps: offered {:>9.0} pps  forwarded {:>9.0} pps  loss {:>7.3}%  {}",
                        l.relay.kind.name(),
                        way.name(),
                        rate,
                        offered,
                        got as f64 / secs,
                        loss.max(0.0) * 100.0,
                        if passed { "pass" } else { "fail" }
                    );
                    search.record(at, passed, false);
                }
                o.sustained = search.best();
            }
            results.push(o);
        }
    }
    for l in &mut live {
        if let Ok(Some(status)) = l.relay.child.0.try_wait() {
            bail!(
                "{} exited during the measurement: {status} (log: {})",
                l.relay.kind.name(),
                l.relay.log.display()
            );
        }
        let _ = std::fs::remove_file(&l.relay.log);
    }
    Ok(results)
}

/// The results as Markdown: one row per call count and direction, both
/// relays and their ratios (sustained rate, peak forwarded, flood).
pub fn markdown(cfg: &Config, outcomes: &[Outcome]) -> String {
    let mut md = String::from(
        "| calls | direction | relayd sustained (pps) | rtpengine sustained (pps) | relayd / rtpengine \
         | relayd peak (pps) | rtpengine peak (pps) | relayd / rtpengine \
         | relayd flood (pps) | rtpengine flood (pps) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &calls in &cfg.calls {
        for way in Way::ALL {
            let get = |k: Kind| {
                outcomes
                    .iter()
                    .find(|o| o.kind == k && o.way == way && o.calls == calls)
            };
            let (Some(r), Some(e)) = (get(Kind::RelaydDefault), get(Kind::Rtpengine)) else {
                continue;
            };
            let show = |o: &Outcome| match o.sustained {
                Some(v) => v.to_string(),
                None if cfg.sustained.is_none() => "–".into(),
                None => "none passed".into(),
            };
            let sustained_ratio = match (r.sustained, e.sustained) {
                (Some(a), Some(b)) => ratio(a as f64, b as f64),
                _ => "–".into(),
            };
            md.push_str(&format!(
                "| {calls} | {} | {} | {} | {sustained_ratio} | {:.0} | {:.0} | {} | {:.0} | {:.0} |\n",
                way.name(),
                show(r),
                show(e),
                r.peak_pps,
                e.peak_pps,
                ratio(r.peak_pps, e.peak_pps),
                r.forwarded_pps,
                e.forwarded_pps,
            ));
        }
    }
    md
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(i: u32) -> Call {
        let key = callee_key(i).unwrap();
        Call {
            caller: Flow {
                from: party(i, 0),
                to: "10.77.10.10:2000".parse().unwrap(),
            },
            callee: Flow {
                from: party(i, 1),
                to: "10.77.10.10:2002".parse().unwrap(),
            },
            relay_key: callee_key(i + 1000).unwrap(),
            callee_key: key,
            next: [0, 0],
            ssrc: [0x1000_0000 | i, 0x2000_0000 | i],
        }
    }

    /// SRTP frames carry, call after call, new packets of each call's
    /// stream that decrypt under the callee's key in order (a receiver with
    /// replay protection takes every one); plain frames are the RTP itself.
    #[test]
    fn srtp_frames_decrypt_under_the_callee_key_and_never_repeat() {
        let mut calls = vec![call(0), call(1)];
        let frames = build(&mut calls, Way::SrtpToRtp, 6).unwrap();
        assert_eq!(frames.count, 6);
        let mut rx: Vec<SrtpContext> = (0..2)
            .map(|i| SrtpContext::new(callee_key(i).unwrap(), Direction::Inbound).unwrap())
            .collect();
        let header = frames.len - RTP_LEN - TAG_LEN;
        for k in 0..6 {
            let frame = &frames.buf[k * frames.len..(k + 1) * frames.len];
            let mut p = frame[header..].to_vec();
            rx[k % 2].unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, rtp((k / 2) as u64, 0x2000_0000 | (k % 2) as u32));
        }
        assert_eq!(calls[0].next, [0, 3]);
        // The next build continues the streams: still new to the receiver.
        let more = build(&mut calls, Way::SrtpToRtp, 2).unwrap();
        let mut p = more.buf[header..more.len].to_vec();
        rx[0].unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, rtp(3, 0x2000_0000));
        // Only the first of those went out: the next build starts again
        // right after it, for call 1 too.
        rewind(&mut calls, &more, 1);
        assert_eq!((calls[0].next[1], calls[1].next[1]), (4, 3));
        let again = build(&mut calls, Way::SrtpToRtp, 2).unwrap();
        for (k, want) in [(0, rtp(4, 0x2000_0000)), (1, rtp(3, 0x2000_0001))] {
            let mut p = again.buf[k * again.len + header..(k + 1) * again.len].to_vec();
            rx[k].unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, want);
        }

        let plain = build(&mut calls, Way::RtpToSrtp, 2).unwrap();
        let header = plain.len - RTP_LEN;
        assert_eq!(&plain.buf[header..plain.len], &rtp(0, 0x1000_0000)[..]);
        assert!(relay_tests::packet::ipv4_checksum_ok(
            &plain.buf[..plain.len],
            relay_tests::packet::ETH_LEN
        ));
    }

    #[test]
    fn ratio_is_two_decimals() {
        assert_eq!(ratio(150.0, 100.0), "1.50×");
        assert_eq!(ratio(1.0, 0.0), "–");
    }
}
