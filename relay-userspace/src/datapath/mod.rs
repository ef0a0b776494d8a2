//! Forwarding backends behind one small trait.
//!
//! The call/session logic programs streams through [`Datapath`] and never
//! knows whether packets move in XDP or elsewhere; tests use it the same way.

use std::net::SocketAddr;

use relay_common::{CounterId, RtpStats, StreamStats};

pub mod xdp;

/// One forwarding entry: packets arriving at `local` go to `peer`, leaving
/// the relay from `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// Relay address and port the packets arrive at (the key).
    pub local: SocketAddr,
    /// Where they are sent (the other party).
    pub peer: SocketAddr,
    /// Relay address and port they leave from.
    pub source: SocketAddr,
    /// With `Some`, packets from any other sender are dropped (strict-source).
    pub strict_source: Option<SocketAddr>,
    /// Slot of this stream's counters; the caller allocates slots.
    pub stats_slot: u32,
    /// Not forwarded in the kernel yet: packets go to the stack (relayd's
    /// socket), and the DoS shield leaves them alone. `peer`, `source` and
    /// `strict_source` are ignored.
    pub to_userspace: bool,
    /// Packet-rate cap (one bucket for all CPUs, one second of burst); 0 = none.
    pub max_pps: u32,
    /// What the port carries, for its RTP figures.
    pub media: MediaTracking,
    /// The port runs an ICE-lite agent: STUN arriving while the stream is
    /// forwarded in the kernel still goes to relayd's socket.
    pub ice: bool,
    /// rtcp-mux demux: RTCP arriving here is forwarded by the entry of
    /// port + 1 (the party's RTCP port), not by this one.
    pub rtcp_demux: bool,
}

/// What a stream carries, which decides the RTP figures kept for it
/// ([`RtpStats`], see `relay_common::rtp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaTracking {
    /// Not RTP (T.38 `udptl`, static streams): no figures.
    #[default]
    None,
    /// An RTP port (rtcp-mux and non-RTP packets on it counted apart).
    Rtp {
        /// Clock rate of its codec in Hz; 0 = unknown (no jitter).
        clock_rate: u32,
    },
    /// An RTCP port.
    Rtcp,
}

impl MediaTracking {
    /// The `TF_RTP`/`TF_RTCP` stream flag.
    pub fn flags(self) -> u32 {
        match self {
            MediaTracking::None => 0,
            MediaTracking::Rtp { .. } => relay_common::TF_RTP,
            MediaTracking::Rtcp => relay_common::TF_RTCP,
        }
    }

    /// The clock rate for jitter (0: none).
    pub fn clock_rate(self) -> u32 {
        match self {
            MediaTracking::Rtp { clock_rate } => clock_rate,
            _ => 0,
        }
    }
}

/// Program-wide counters summed over CPUs, indexed by [`CounterId`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// (packets, bytes) per counter, in [`CounterId::ALL`] order.
    pub values: Vec<(u64, u64)>,
}

impl Counters {
    /// Packets counted under `id`.
    pub fn packets(&self, id: CounterId) -> u64 {
        self.values.get(id as usize).map_or(0, |v| v.0)
    }

    /// Bytes counted under `id`.
    pub fn bytes(&self, id: CounterId) -> u64 {
        self.values.get(id as usize).map_or(0, |v| v.1)
    }

    /// Packets forwarded in the kernel (TX + redirect).
    pub fn forwarded(&self) -> u64 {
        CounterId::ALL
            .iter()
            .filter(|c| c.is_forwarded())
            .map(|c| self.packets(*c))
            .sum()
    }

    /// Per-counter difference `self - earlier` (for tests and rates).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let values = CounterId::ALL
            .iter()
            .map(|&id| {
                let (p, b) = (self.packets(id), self.bytes(id));
                (
                    p.saturating_sub(earlier.packets(id)),
                    b.saturating_sub(earlier.bytes(id)),
                )
            })
            .collect();
        Counters { values }
    }
}

/// Errors of a datapath backend.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// A stream's peer and source (or its key and expected sender) are of
    /// different address families.
    #[error("stream {local}: {what} are not of the same address family")]
    MixedFamilies {
        /// The stream's key.
        local: SocketAddr,
        /// Which pair disagrees.
        what: &'static str,
    },
    /// The stream table or a map operation failed.
    #[error("{op} failed: {source}")]
    Map {
        /// What was being done.
        op: &'static str,
        /// The aya error.
        #[source]
        source: aya::maps::MapError,
    },
    /// A system call outside the map API failed.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Every stream counters slot is taken.
    #[error("no free kernel stream slot (raise --max-streams)")]
    NoSlot,
    /// A stream state slot beyond the end of the array.
    #[error("stream state slot {0} is beyond the stream state array")]
    NoSuchSlot(u32),
    /// No stream is installed for that local address.
    #[error("no stream installed for {0}")]
    NoSuchStream(SocketAddr),
    /// Every row of the stream table belongs to another relay address.
    #[error(
        "cannot forward for {address} in the kernel: the stream table has rows for {max} relay \
         addresses and all are taken (relayd sizes it from its interfaces and static streams)"
    )]
    TooManyAddresses {
        /// The address that found no row.
        address: std::net::IpAddr,
        /// Rows in the table.
        max: u32,
    },
    /// The stream's port is outside the ports its relay address has stream
    /// table entries for (the media port range and static streams' ports
    /// relayd started with); its packets go through relayd's socket.
    #[error(
        "cannot forward for {local} in the kernel: the stream table covers ports {first}-{last} \
         of that address (the media port range relayd started with)"
    )]
    PortOutsideRow {
        /// The stream's relay address and port.
        local: SocketAddr,
        /// First port of the address's row.
        first: u16,
        /// Last port of the row.
        last: u16,
    },
    /// Taking over from a relayd of another ABI version failed.
    #[error("taking over the running XDP program: {0}")]
    Takeover(String),
    /// Every slot the program would look in for this address is taken by
    /// others (a table with thousands of relay addresses, unluckily hashed).
    #[error(
        "cannot forward for {address} in the kernel: the relay address table has no free slot \
         where the program looks for it"
    )]
    AddressTableFull {
        /// The address that found no slot.
        address: std::net::IpAddr,
    },
}

/// What the session layer needs from a forwarding backend.
pub trait Datapath {
    /// Installs `stream`, replacing any entry for the same local address,
    /// zeroes its counters slot and starts its RTP figures from `rtp` (what
    /// relayd saw while the stream was in userspace).
    fn install_seeded(&mut self, stream: &StreamSpec, rtp: &RtpStats) -> Result<(), DatapathError>;
    /// [`Datapath::install_seeded`] with RTP figures from scratch.
    fn install(&mut self, stream: &StreamSpec) -> Result<(), DatapathError> {
        self.install_seeded(stream, &RtpStats::default())
    }
    /// Removes the entry for `local`.
    fn remove(&mut self, local: SocketAddr) -> Result<(), DatapathError>;
    /// Sets the packet-rate cap of an installed stream in place (counters
    /// and figures untouched).
    fn set_max_pps(&mut self, _stats_slot: u32, _max_pps: u32) -> Result<(), DatapathError> {
        Ok(())
    }
    /// Counters of one stream slot, summed over CPUs.
    fn stream_stats(&self, stats_slot: u32) -> Result<StreamStats, DatapathError>;
    /// Program-wide counters, summed over CPUs.
    fn counters(&self) -> Result<Counters, DatapathError>;
    /// RTP figures of one stream slot (backends without them: none seen).
    fn rtp_stats(&self, _stats_slot: u32) -> Result<RtpStats, DatapathError> {
        Ok(RtpStats::default())
    }
    /// Releases the backend for good (XDP: detach and unpin). Idempotent.
    /// Without it, dropping the backend leaves the kernel forwarding (XDP:
    /// pins and links stay) for the next relayd to adopt.
    fn close(&mut self) {}
    /// Lets go after a failed start: [`Datapath::close`], unless the
    /// kernel still forwards for calls an earlier relayd left (adopted or
    /// about to be taken over), which stay for the next start.
    fn abandon(&mut self) {
        self.close();
    }
    /// Whether the backend took over the streams of an earlier relayd.
    fn adopted(&self) -> bool {
        false
    }
    /// Starts forwarding, once the restored calls are installed (XDP: takes
    /// over the program of a relayd of another ABI version, if one runs).
    fn go_live(&mut self) -> Result<(), DatapathError> {
        Ok(())
    }
    /// Every entry installed now (`stats_slot` as installed; `media` and
    /// `max_pps` are not read back).
    fn installed(&self) -> Result<Vec<StreamSpec>, DatapathError> {
        Ok(Vec::new())
    }
    /// Guards `ports` on `address`: UDP to one of them without a stream is
    /// dropped (`drop`) or left to the stack.
    fn shield(
        &mut self,
        _address: std::net::IpAddr,
        _ports: std::ops::RangeInclusive<u16>,
        _drop: bool,
    ) -> Result<(), DatapathError> {
        Ok(())
    }
}
