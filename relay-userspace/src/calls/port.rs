//! One relay socket of one party (its RTP or its RTCP port) with what the
//! forwarder needs per packet: the party's learned endpoint, the matching
//! port of the other party (where packets leave from), and counters.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
};

use tokio::time::Instant;

use super::{learning::Learner, media_socket::MediaSocket};

/// Counters of packets received on a port from its party, in userspace.
#[derive(Debug, Default)]
pub struct PortStats {
    /// Packets received from the party (and not dropped).
    pub packets: AtomicU64,
    /// Their UDP payload bytes.
    pub bytes: AtomicU64,
    /// Packets that could not be forwarded (no destination yet, send error).
    pub errors: AtomicU64,
    /// Packets dropped as strict-source mismatches.
    pub dropped: AtomicU64,
    /// `packets` when the port was last written to the state store.
    pub recorded: AtomicU64,
    /// SRTP/SRTCP packets from the party that failed authentication (dropped).
    pub srtp_auth_failures: AtomicU64,
    /// SRTP/SRTCP packets from the party that were replays or too old (dropped).
    pub srtp_replays: AtomicU64,
    /// When the last SRTP drop was logged (seconds, monotonic), to rate-limit it.
    pub srtp_warned_s: AtomicU64,
}

/// Mutable per-port state, behind a short-held lock.
#[derive(Debug)]
pub struct PortState {
    /// Where the party sends from / should be sent to.
    pub learner: Learner,
    /// Send to the learned source rather than the SDP endpoint.
    pub symmetric: bool,
    /// The other party's matching port: packets received here leave from it.
    pub sink: Weak<MediaPort>,
    /// rtcp-mux demux: RTCP arriving on this (RTP) port is the party's
    /// RTCP, relayed as if it had arrived on this port, the party's RTCP
    /// port (see [`super::model::Call::link_sinks`]). Empty otherwise.
    pub demux_to: Weak<MediaPort>,
    /// The port's stream as installed in the kernel (slot included).
    pub kernel: Option<crate::datapath::StreamSpec>,
    /// The port was freed: it must never (again) go into the kernel.
    pub closed: bool,
    /// Kernel counters folded in when the stream left the kernel.
    pub kernel_retired: relay_common::StreamStats,
    /// Last packet seen in userspace.
    pub last_packet: Option<Instant>,
    /// What the port carries (from SDP), for its RTP figures.
    pub media: crate::datapath::MediaTracking,
    /// RTP figures of what the party sent while the stream was in
    /// userspace; the kernel continues from them (and hands them back when
    /// the stream leaves it).
    pub rtp: relay_common::RtpStats,
    /// The port's forwarder task, once started (see [`super::deferred`]).
    pub forwarder: Option<tokio::task::AbortHandle>,
    /// The ICE-lite agent, when the SDP the relay sent this port's party
    /// carried the relay's ICE (see [`super::ice`]).
    pub ice: Option<relay_media::IceLiteAgent>,
    /// The agent's peer let consent lapse (RFC 7675): nothing is sent to
    /// it until an authenticated check arrives again. Set by the call
    /// manager's tick, cleared by the agent's next valid request.
    pub ice_consent_lost: bool,
    /// Subscribers' ports (`subscribe request`): each packet received here
    /// is also sent from each of them to its party. While there are any,
    /// the stream stays in userspace (XDP cannot send a frame twice).
    pub subscribers: Vec<Weak<MediaPort>>,
    /// The SDES-SRTP transform, when the relay terminates the party's SRTP
    /// (see [`super::sdes`]).
    pub srtp: Option<Box<super::sdes::PortSrtp>>,
    /// The DTLS-SRTP endpoint, when the port's party speaks DTLS with the
    /// relay (see [`super::dtls`]); it holds the SRTP keys once connected.
    pub dtls: Option<super::dtls::PortDtls>,
}

/// A relay port.
#[derive(Debug)]
pub struct MediaPort {
    /// Local (bind) address: the key of its kernel stream.
    pub local: SocketAddr,
    /// The socket.
    pub socket: MediaSocket,
    /// Userspace counters.
    pub stats: PortStats,
    /// Send runs of equal-size datagrams as GSO messages; cleared when the
    /// kernel refuses one on this socket (see [`super::send_batch`]).
    pub gso: AtomicBool,
    state: Mutex<PortState>,
}

impl MediaPort {
    /// Wraps a socket bound to `local` and already non-blocking (as
    /// [`crate::ports::PortPool`] makes them), registering it with the
    /// runtime. The caller knows the address from the bind, which spares a
    /// `getsockname` per port.
    pub fn new(
        socket: std::net::UdpSocket,
        local: SocketAddr,
        learner: Learner,
    ) -> std::io::Result<Arc<Self>> {
        debug_assert_eq!(socket.local_addr().ok(), Some(local));
        let socket = MediaSocket::from_std(socket)?;
        Ok(Arc::new(MediaPort {
            local,
            socket,
            stats: PortStats::default(),
            gso: AtomicBool::new(true),
            state: Mutex::new(PortState {
                learner,
                symmetric: true,
                sink: Weak::new(),
                demux_to: Weak::new(),
                kernel: None,
                closed: false,
                kernel_retired: Default::default(),
                last_packet: None,
                media: Default::default(),
                rtp: Default::default(),
                forwarder: None,
                ice: None,
                ice_consent_lost: false,
                subscribers: Vec::new(),
                srtp: None,
                dtls: None,
            }),
        }))
    }

    /// Locks the state. Never hold it while locking another port's state
    /// (a port may be paired with itself).
    pub fn state(&self) -> MutexGuard<'_, PortState> {
        crate::lock(&self.state)
    }

    /// Links two ports as each other's sink.
    pub fn pair(a: &Arc<MediaPort>, b: &Arc<MediaPort>) {
        a.state().sink = Arc::downgrade(b);
        b.state().sink = Arc::downgrade(a);
    }

    /// Whether the userspace counters moved since the port was last
    /// recorded.
    pub fn unrecorded(&self) -> bool {
        let s = &self.stats;
        s.packets.load(Ordering::Relaxed) != s.recorded.load(Ordering::Relaxed)
    }

    /// Whether a kernel stream's userspace counters moved since the port
    /// was last recorded (datagrams already queued when it went into the
    /// kernel): worth one more record, so a restart counts them.
    pub fn kernel_stream_unrecorded(&self) -> bool {
        self.unrecorded() && self.state().kernel.is_some_and(|k| !k.to_userspace)
    }

    /// Whether the port's SDES-SRTP transform saw a new SSRC or a ROC
    /// move since the port was last recorded (a restart must continue
    /// the packet index, not start it at ROC 0).
    pub fn srtp_unrecorded(&self) -> bool {
        self.state().srtp.as_ref().is_some_and(|s| s.unrecorded())
    }

    /// Zeroes the userspace counters (a port whose counts must not reach
    /// this relayd's totals).
    pub fn forget_counts(&self) {
        let s = &self.stats;
        for counter in [&s.packets, &s.bytes, &s.errors, &s.dropped] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Userspace counters as plain numbers: (packets, bytes, errors, dropped).
    pub fn user_counts(&self) -> (u64, u64, u64, u64) {
        let s = &self.stats;
        (
            s.packets.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
            s.errors.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
        )
    }
}
