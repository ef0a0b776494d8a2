//! The XDP datapath: loads the embedded object, attaches it to interfaces,
//! pins maps and links under a per-instance bpffs directory, and programs
//! streams into the maps.
//!
//! Attach policy ([`ModePolicy::Auto`]): native on every interface, then the
//! transmit self-test ([`selftest`]) on every interface; if the driver
//! refuses native mode or any interface loses probe frames, every interface
//! is re-attached in generic mode. All or nothing, because a frame
//! redirected from a native interface leaves through the target's native
//! transmit path even when the target itself runs generic.

pub mod adopt;
pub mod batch_read;
pub mod maps;
pub mod memory;
pub mod object;
pub mod predecessor;
pub mod selftest;
pub mod state_array;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use aya::{
    pin::PinError,
    programs::{links::FdLink, links::PinnedLink, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfError, EbpfLoader,
};
use relay_common::{
    IfaceStatus, StreamStats, ABI_VERSION, MAP_ADDRESSES, MAP_COUNTERS, MAP_IFACES, MAP_IFACE_MACS,
    MAP_STREAMS, MAP_STREAM_STATE, MAP_TX_PORTS, MODE_REASON_CONFIGURED, MODE_REASON_NATIVE_OK,
    MODE_REASON_NATIVE_REFUSED, MODE_REASON_NATIVE_TX_LOST, XDP_MODE_GENERIC, XDP_MODE_NATIVE,
};
use relay_ebpf::{PROGRAM_RELAY, PROGRAM_TX_PROBE};

pub use self::maps::RelayMaps;
use self::selftest::{probe_native_tx, ProbeError, TxProbe};
use super::{Counters, Datapath, DatapathError, StreamSpec};
use crate::{bpffs, netdev};

/// Default bpffs directory for one relayd instance.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/xrelay/default";

/// How to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModePolicy {
    /// Native if it attaches and transmits on every interface, else generic.
    #[default]
    Auto,
    /// Native or fail (also when the transmit self-test fails).
    Native,
    /// Generic (SKB) mode: slower, works on every interface.
    Generic,
}

/// Mode an interface ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) XDP.
    Native,
    /// Generic (SKB) XDP.
    Generic,
}

impl AttachMode {
    fn abi(self) -> u32 {
        match self {
            AttachMode::Native => XDP_MODE_NATIVE,
            AttachMode::Generic => XDP_MODE_GENERIC,
        }
    }

    fn xdp(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// Why an interface is in its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeReason {
    /// Native attach and the transmit self-test passed.
    NativeOk,
    /// The driver refused native XDP (the kernel's error).
    NativeRefused(String),
    /// Native XDP transmit lost the self-test frames (or could not be shown
    /// to deliver them) on this interface.
    NativeTxLost {
        /// Interface that failed the probe.
        iface: String,
        /// What the probe saw.
        probe: TxProbe,
    },
    /// The operator asked for this mode.
    Configured,
    /// Kept from the relayd this one took over (its `MODE_REASON_*`).
    Adopted(u32),
}

impl ModeReason {
    fn abi(&self) -> u32 {
        match self {
            ModeReason::Adopted(reason) => *reason,
            ModeReason::NativeOk => MODE_REASON_NATIVE_OK,
            ModeReason::NativeRefused(_) => MODE_REASON_NATIVE_REFUSED,
            ModeReason::NativeTxLost { .. } => MODE_REASON_NATIVE_TX_LOST,
            ModeReason::Configured => MODE_REASON_CONFIGURED,
        }
    }
}

impl fmt::Display for ModeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeReason::NativeOk => write!(f, "native attach and transmit self-test passed"),
            ModeReason::NativeRefused(e) => write!(f, "the driver refused native XDP: {e}"),
            ModeReason::NativeTxLost { iface, probe } => {
                let sent = selftest::PROBE_FRAMES;
                match probe {
                    TxProbe::Dropped(n) => write!(f, "native XDP transmit on {iface} dropped {n} of {sent} self-test frames")?,
                    _ => write!(f, "native XDP transmit on {iface} did not account for its {sent} self-test frames")?,
                }
                write!(f, " (on veth the peer needs an XDP program of its own)")
            }
            ModeReason::Configured => write!(f, "configured"),
            ModeReason::Adopted(reason) => {
                write!(
                    f,
                    "kept from the previous relayd ({})",
                    reason_text(*reason)
                )
            }
        }
    }
}

/// Human text for an `IfaceStatus.reason` read back from the map.
pub fn reason_text(reason: u32) -> &'static str {
    match reason {
        MODE_REASON_NATIVE_OK => "native attach and transmit self-test passed",
        MODE_REASON_NATIVE_REFUSED => "the driver refused native XDP",
        MODE_REASON_NATIVE_TX_LOST => {
            "native XDP transmit lost its self-test frames (veth peer without an XDP program?)"
        }
        MODE_REASON_CONFIGURED => "configured by the operator",
        _ => "unknown",
    }
}

/// Human text for an `IfaceStatus.mode` read back from the map.
pub fn mode_text(mode: u32) -> &'static str {
    match mode {
        XDP_MODE_NATIVE => "native",
        XDP_MODE_GENERIC => "generic",
        _ => "none",
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct XdpConfig {
    /// Interfaces to attach to (names in the current network namespace).
    pub interfaces: Vec<String>,
    /// Instance directory on bpffs; maps and links go below it.
    pub pin_dir: PathBuf,
    /// Attach policy.
    pub mode: ModePolicy,
    /// Streams forwarded in the kernel at once: the size of the stream
    /// counters and RTP figures arrays.
    pub max_streams: u32,
    /// Relay addresses streams may be installed for: each owns a row of
    /// stream table entries, 64 bytes per port of `row_ports`.
    pub max_addresses: u32,
    /// The ports every relay address has stream entries for: the media
    /// port range, widened to the static streams' ports. A stream outside
    /// is forwarded by relayd's socket instead.
    pub row_ports: std::ops::RangeInclusive<u16>,
    /// Turn IPv4 forwarding on for the interfaces when it is off (the XDP
    /// FIB lookup refuses to resolve next hops without it). When false, an
    /// interface without forwarding is an error.
    pub enable_forwarding: bool,
    /// Packet fixtures only: the program takes packet arrival times for the
    /// RTP jitter from the `test_clock` map instead of the kernel clock.
    pub test_clock: bool,
    /// How long each CPU reuses a stream's next hop before asking the FIB
    /// again (zero: every packet).
    pub next_hop_cache: std::time::Duration,
}

impl XdpConfig {
    /// Entries of the stream table: a row of `row_ports` per address.
    pub fn stream_entries(&self) -> u32 {
        self.max_addresses * self.row_ports.clone().count() as u32
    }
}

/// Most relay addresses (rows of stream entries, up to 4 MiB each) a
/// stream table may have.
pub const MAX_ADDRESSES: u32 = 1024;
// The address table stays at most one eighth full, so that scattered
// addresses find a free slot among their eight probes (relay_abi.h): a
// simulation of random addresses never ran out at one eighth (0 of 300
// tables), but did at a quarter (29 of 300).
const _: () = assert!(MAX_ADDRESSES * 8 <= relay_common::ADDR_SLOTS);

/// The object's load-time setting behind [`XdpConfig::next_hop_cache`].
const NH_CACHE_GLOBAL: &str = "relay_nh_cache_ns";

/// The object's load-time switch behind [`XdpConfig::test_clock`].
const TEST_CLOCK_GLOBAL: &str = "relay_test_clock";
/// The map the test clock is read from.
const TEST_CLOCK_MAP: &str = "test_clock";

/// Errors starting or running the XDP datapath.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The embedded object is not compatible.
    #[error(transparent)]
    Object(#[from] object::ObjectError),
    /// No bpffs to pin into.
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    /// An interface does not exist.
    #[error(transparent)]
    Netdev(#[from] netdev::NetdevError),
    /// Loading the object into the kernel failed.
    #[error("loading the BPF object: {0}")]
    Load(#[source] EbpfError),
    /// A program operation failed.
    #[error("{op}: {source}")]
    Program {
        /// What was being done.
        op: String,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// Pinning failed.
    #[error("pinning {path}: {source}")]
    Pin {
        /// Pin path.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: PinError,
    },
    /// A map operation failed.
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    /// The transmit self-test could not run.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// `--xdp-mode=native` but native mode does not work here.
    #[error("native XDP does not work here: {0}; use --xdp-mode=auto or generic")]
    NativeUnusable(ModeReason),
    /// Adding an interface to the redirect map failed.
    #[error("adding an interface to tx_ports: {0}")]
    TxPort(#[source] aya::maps::xdp::XdpMapError),
    /// Turning an attachment into a pinnable link failed.
    #[error("XDP link: {0}")]
    Link(#[source] aya::programs::links::LinkError),
    /// No interface given.
    #[error("no interface to attach to")]
    NoInterfaces,
    /// Pins that do not fit could not be moved aside for a takeover.
    #[error("moving {path} aside: {source}")]
    MoveAside {
        /// The versioned pin directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The stream table would have no rows, or more than it can index.
    #[error("{0} relay addresses: the stream table holds between 1 and {MAX_ADDRESSES}")]
    AddressRows(u32),
    /// Forwarding is off and relayd was told not to change it.
    #[error(
        "{family} forwarding is off on {iface}; XDP cannot resolve next hops without it. \
         Run `sysctl -w net.{sysctl}.conf.{iface}.forwarding=1` or let relayd set it"
    )]
    ForwardingOff {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// `ipv4` or `ipv6`.
        sysctl: &'static str,
        /// The interface.
        iface: String,
    },
}

impl XdpError {
    /// Whether the root cause is a permission error (no root / CAP_BPF).
    pub fn is_permission_denied(&self) -> bool {
        let mut source: Option<&dyn std::error::Error> = Some(self);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.raw_os_error() == Some(libc::EPERM) {
                    return true;
                }
            }
            source = e.source();
        }
        false
    }
}

/// One interface the program is attached to.
#[derive(Debug)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Mode it runs in.
    pub mode: AttachMode,
    /// Why.
    pub reason: ModeReason,
    link: Option<PinnedLink>,
}

/// The running XDP datapath. Call [`XdpDatapath::shutdown`] to detach and
/// unpin; dropping it without that detaches but leaves the map pins.
#[derive(Debug)]
pub struct XdpDatapath {
    ebpf: Ebpf,
    maps: RelayMaps,
    dir: PathBuf,
    attachments: Vec<Attachment>,
    /// Took over the maps and links of an earlier relayd.
    adopted: bool,
    /// Links of a relayd of another ABI version, to take over in
    /// [`XdpDatapath::go_live`].
    takeover: Option<Takeover>,
}

/// What [`XdpDatapath::go_live`] takes over.
#[derive(Debug)]
struct Takeover {
    /// The other version's pin directory.
    from: PathBuf,
    /// Its maps, when their layout is one this relayd reads, and the
    /// streams copied from them.
    imported: Option<(predecessor::Predecessor, Vec<predecessor::Imported>)>,
    /// How it attached each interface.
    statuses: Vec<IfaceStatus>,
    /// This relayd's interfaces and their indexes.
    interfaces: Vec<String>,
    ifindexes: Vec<u32>,
}

/// Where the maps and links of an instance live: versioned, so a relayd of
/// another ABI never reuses these pins.
pub fn versioned_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join(format!("abi-v{ABI_VERSION}"))
}

pub(crate) const MAP_NAMES: [&str; 7] = [
    MAP_STREAMS,
    MAP_STREAM_STATE,
    MAP_COUNTERS,
    MAP_TX_PORTS,
    MAP_IFACES,
    MAP_ADDRESSES,
    MAP_IFACE_MACS,
];

fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link_{iface}"))
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, XdpError> {
    let program = ebpf.program_mut(name).ok_or_else(|| XdpError::Program {
        op: format!("finding program {name}"),
        source: ProgramError::UnexpectedProgramType,
    })?;
    program.try_into().map_err(|source| XdpError::Program {
        op: format!("program {name}"),
        source,
    })
}

/// Says what the pinned maps hold of the kernel's memory, and what one
/// stream costs of it (the stream state array is sized by --max-streams).
fn log_memory(dir: &Path, config: &XdpConfig) {
    let memory = memory::MapMemory::of_pins(dir);
    let streams = u64::from(config.max_streams.max(1));
    let per_stream = memory.of(MAP_STREAM_STATE).unwrap_or(0) / streams;
    tracing::info!(
        max_streams = config.max_streams,
        per_stream_bytes = per_stream,
        all_maps_per_stream_bytes = memory.total() / streams,
        stream_table_bytes_per_address =
            memory.of(MAP_STREAMS).unwrap_or(0) / u64::from(config.max_addresses.max(1)),
        "kernel memory pinned: {memory}"
    );
}

impl XdpDatapath {
    /// Loads, attaches and pins. Must run in the interfaces' network namespace.
    pub fn start(config: &XdpConfig) -> Result<Self, XdpError> {
        if config.interfaces.is_empty() {
            return Err(XdpError::NoInterfaces);
        }
        let elf = relay_ebpf::relay_object();
        object::verify(elf)?;
        let ifindexes = config
            .interfaces
            .iter()
            .map(|name| netdev::ifindex(name))
            .collect::<Result<Vec<_>, _>>()?;

        for iface in &config.interfaces {
            ensure_forwarding(iface, config.enable_forwarding)?;
        }

        if !(1..=MAX_ADDRESSES).contains(&config.max_addresses) {
            return Err(XdpError::AddressRows(config.max_addresses));
        }
        let dir = versioned_dir(&config.pin_dir);
        bpffs::ensure_pin_dir(&dir)?;
        let not_adoptable = adopt::not_adoptable(&dir, config);
        let adopting = not_adoptable.is_none();
        if let Some(why) = &not_adoptable {
            // Pins of this version in another layout (another --max-streams,
            // interfaces added) whose program still runs: moved aside, to be
            // taken over like another version's.
            if adopt::holds_links(&dir, &config.interfaces) {
                tracing::warn!(reason = %why, dir = %dir.display(),
                    "the running XDP program's maps do not fit this configuration: replacing them");
                adopt::move_aside(&dir)?;
                bpffs::ensure_pin_dir(&dir)?;
            }
        }
        // A relayd of another ABI version whose program still runs: its
        // links are taken over once this relayd's maps are filled.
        let predecessor = (!adopting)
            .then(|| adopt::predecessor(&config.pin_dir, &dir, &config.interfaces))
            .flatten();
        let keep: Vec<&Path> = std::iter::once(dir.as_path())
            .chain(predecessor.as_deref())
            .collect();
        adopt::remove_instance(&config.pin_dir, &keep);
        if let Some(why) = &not_adoptable {
            if has_pins(&dir) {
                tracing::warn!(reason = %why, dir = %dir.display(),
                    "not adopting the XDP program and maps found there: starting afresh");
            }
            for iface in &config.interfaces {
                release_stale_link(&dir, iface);
            }
            discard_stream_table(&dir);
        }

        let nh_cache_ns = u64::try_from(config.next_hop_cache.as_nanos()).unwrap_or(u64::MAX);
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&dir)
            .map_max_entries(MAP_STREAMS, config.stream_entries())
            .map_max_entries(MAP_STREAM_STATE, config.max_streams)
            .override_global(TEST_CLOCK_GLOBAL, &u8::from(config.test_clock), true)
            .override_global(NH_CACHE_GLOBAL, &nh_cache_ns, true)
            .load(elf)
            .map_err(XdpError::Load)?;
        for name in [PROGRAM_RELAY, PROGRAM_TX_PROBE] {
            program_mut(&mut ebpf, name)?
                .load()
                .map_err(|source| XdpError::Program {
                    op: format!("loading {name}"),
                    source,
                })?;
        }
        let mut maps = RelayMaps::take(&mut ebpf)?.with_row_ports(config.row_ports.clone());
        log_memory(&dir, config);
        let statuses = if adopting {
            maps.iface_statuses()?
        } else {
            maps.clear_tables()?;
            Vec::new()
        };
        for &ifindex in &ifindexes {
            maps.tx_ports
                .insert(ifindex, ifindex, None, 0)
                .map_err(XdpError::TxPort)?;
        }
        let macs = config
            .interfaces
            .iter()
            .zip(&ifindexes)
            .map(|(name, &ifindex)| Ok((ifindex, netdev::mac(name)?)))
            .collect::<Result<Vec<_>, XdpError>>()?;
        maps.set_iface_macs(&macs)?;

        let mut datapath = XdpDatapath {
            ebpf,
            maps,
            attachments: Vec::new(),
            adopted: adopting,
            takeover: None,
            dir,
        };
        if adopting {
            let own = datapath.dir.clone();
            datapath.take_over_all(&config.interfaces, &ifindexes, &statuses, &own)?;
        } else if let Some(from) = predecessor {
            tracing::info!(dir = %from.display(),
                "a relayd of another ABI version runs here: its program is replaced once the calls are restored");
            let imported = datapath.import(&from);
            // The copied entries are adopted by the restored calls as if
            // they were this relayd's own pins.
            datapath.adopted = imported.is_some();
            datapath.takeover = Some(Takeover {
                imported,
                statuses: adopt::statuses(&from),
                from,
                interfaces: config.interfaces.clone(),
                ifindexes,
            });
            return Ok(datapath);
        } else {
            datapath.attach_all(config, &ifindexes)?;
        }
        datapath.record_statuses()?;
        Ok(datapath)
    }

    /// Copies the streams of the relayd at `from` into this relayd's maps
    /// (see [`predecessor`]); None when its maps cannot be read, and then
    /// the restored calls are installed afresh.
    fn import(
        &mut self,
        from: &Path,
    ) -> Option<(predecessor::Predecessor, Vec<predecessor::Imported>)> {
        let old = predecessor::Predecessor::open(from)
            .inspect_err(|e| {
                tracing::warn!(dir = %from.display(), error = %e,
                    "cannot read the running relayd's maps: counters continue from the state store")
            })
            .ok()?;
        let slots = self.maps.stream_state.entries();
        let mut imported = Vec::new();
        let mut skipped = 0usize;
        for &(local, entry) in old.streams() {
            let forwards = entry.flags & relay_common::TF_TO_USERSPACE == 0;
            let copied = if !forwards {
                self.maps.import(local, entry, None)
            } else if entry.stats_slot >= slots {
                skipped += 1;
                continue;
            } else {
                old.record(entry.stats_slot).and_then(|record| {
                    self.maps.import(local, entry, Some(&record))?;
                    imported.push(predecessor::Imported {
                        local,
                        old_slot: entry.stats_slot,
                        new_slot: entry.stats_slot,
                        copied: record,
                    });
                    Ok(())
                })
            };
            if let Err(e) = copied {
                tracing::warn!(%local, error = %e, "stream of the running relayd not copied");
                skipped += 1;
            }
        }
        tracing::info!(
            streams = old.streams().len(),
            skipped,
            "copied the running relayd's streams with their counters"
        );
        Some((old, imported))
    }

    /// Brings the copied streams' records up to what the old program
    /// counted since the copy (it forwards until the links are swapped):
    /// whole records before the swap (`live` false), the counts it added
    /// in its last moments once the links are swapped (`live` true).
    fn catch_up(
        &mut self,
        from: &predecessor::Predecessor,
        imported: &mut [predecessor::Imported],
        live: bool,
    ) {
        for i in imported {
            // Reinstalled since (its slot retired, maybe handed out again):
            // the copy's counters went with the retired slot.
            if self.maps.slot_of(i.local) != Some(i.new_slot) {
                continue;
            }
            let state = &self.maps.stream_state;
            let caught = from.record(i.old_slot).and_then(|now| {
                if live {
                    state.add_counts(i.new_slot, &i.counts_since(&now))
                } else {
                    let record = state.read(i.new_slot)?;
                    state.reset(i.new_slot, &i.catch_up(&record, &now))
                }
            });
            if let Err(e) = caught {
                tracing::warn!(local = %i.local, error = %e, "counters of a copied stream not brought up to date");
            }
        }
    }

    /// Swaps this relayd's program onto the links of the relayd of another
    /// ABI version found at start, now that the maps hold the restored
    /// streams, then removes that relayd's pins. Nothing to do otherwise.
    pub fn go_live(&mut self) -> Result<(), XdpError> {
        let Some(t) = self.takeover.take() else {
            return Ok(());
        };
        let mut imported = t.imported;
        if let Some((from, streams)) = imported.as_mut() {
            self.catch_up(from, streams, false);
        }
        self.take_over_all(&t.interfaces, &t.ifindexes, &t.statuses, &t.from)?;
        if let Some((from, streams)) = imported.as_mut() {
            self.catch_up(from, streams, true);
        }
        self.record_statuses()?;
        adopt::remove_versioned(&t.from);
        tracing::info!(from = %t.from.display(), "took over from a relayd of another ABI version");
        Ok(())
    }

    /// Swaps this relayd's program onto the links an earlier one pinned in
    /// `from` (this relayd's own directory, or another version's), keeping
    /// each interface's mode, and pins them here.
    fn take_over_all(
        &mut self,
        interfaces: &[String],
        ifindexes: &[u32],
        statuses: &[IfaceStatus],
        from: &Path,
    ) -> Result<(), XdpError> {
        for (iface, &ifindex) in interfaces.iter().zip(ifindexes) {
            let status = statuses.iter().find(|s| s.ifindex == ifindex);
            let mode = match status.map(|s| s.mode) {
                Some(XDP_MODE_GENERIC) => AttachMode::Generic,
                _ => AttachMode::Native,
            };
            let reason = ModeReason::Adopted(status.map_or(MODE_REASON_CONFIGURED, |s| s.reason));
            let program = program_mut(&mut self.ebpf, PROGRAM_RELAY)?;
            let link = adopt::take_over_link(
                program,
                &link_pin(from, iface),
                &link_pin(&self.dir, iface),
                iface,
            )?;
            tracing::info!(%iface, ifindex, ?mode, "XDP program replaced on the running link (adopted)");
            self.attachments.push(Attachment {
                iface: iface.clone(),
                ifindex,
                mode,
                reason,
                link: Some(link),
            });
        }
        Ok(())
    }

    /// The interfaces and how each is attached.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The versioned pin directory of this instance.
    pub fn pin_dir(&self) -> &Path {
        &self.dir
    }

    /// The maps, for readers such as tests and benchmarks.
    pub fn maps(&self) -> &RelayMaps {
        &self.maps
    }

    /// The loaded forwarding program (for BPF_PROG_TEST_RUN).
    pub fn relay_program(&mut self) -> Result<&mut Xdp, XdpError> {
        program_mut(&mut self.ebpf, PROGRAM_RELAY)
    }

    /// Packet fixtures: sets the arrival time (CLOCK_MONOTONIC ns) the
    /// program gives the next packets, when started with
    /// [`XdpConfig::test_clock`] (otherwise the program ignores it).
    pub fn set_test_clock(&mut self, now_ns: u64) -> Result<(), DatapathError> {
        let map = self
            .ebpf
            .map_mut(TEST_CLOCK_MAP)
            .ok_or(DatapathError::Map {
                op: "finding the test clock",
                source: aya::maps::MapError::InvalidName {
                    name: TEST_CLOCK_MAP.to_owned(),
                },
            })?;
        let mut clock =
            aya::maps::Array::<_, u64>::try_from(map).map_err(|source| DatapathError::Map {
                op: "opening the test clock",
                source,
            })?;
        clock
            .set(0, now_ns, 0)
            .map_err(|source| DatapathError::Map {
                op: "setting the test clock",
                source,
            })
    }

    fn attach_all(&mut self, config: &XdpConfig, ifindexes: &[u32]) -> Result<(), XdpError> {
        let (first_mode, reason) = match config.mode {
            ModePolicy::Generic => (AttachMode::Generic, ModeReason::Configured),
            ModePolicy::Auto | ModePolicy::Native => (AttachMode::Native, ModeReason::NativeOk),
        };
        let outcome = self.attach_each(config, ifindexes, first_mode, reason.clone());
        let fallback_reason = match (outcome, first_mode) {
            (Ok(()), AttachMode::Generic) => return Ok(()),
            (Ok(()), AttachMode::Native) => match self.probe_all()? {
                None => return Ok(()),
                Some(lost) => lost,
            },
            (Err(XdpError::Program { source, .. }), AttachMode::Native) => {
                ModeReason::NativeRefused(source.to_string())
            }
            (Err(e), _) => return Err(e),
        };
        self.detach_all();
        if config.mode == ModePolicy::Native {
            return Err(XdpError::NativeUnusable(fallback_reason));
        }
        tracing::warn!(reason = %fallback_reason, "falling back to generic XDP on every interface");
        self.attach_each(config, ifindexes, AttachMode::Generic, fallback_reason)
    }

    fn attach_each(
        &mut self,
        config: &XdpConfig,
        ifindexes: &[u32],
        mode: AttachMode,
        reason: ModeReason,
    ) -> Result<(), XdpError> {
        for (iface, &ifindex) in config.interfaces.iter().zip(ifindexes) {
            let program = program_mut(&mut self.ebpf, PROGRAM_RELAY)?;
            let attach_err = |source| XdpError::Program {
                op: format!("attaching to {iface}"),
                source,
            };
            let id = program
                .attach_to_if_index(ifindex, mode.xdp())
                .map_err(attach_err)?;
            let link = program.take_link(id).map_err(attach_err)?;
            let path = link_pin(&self.dir, iface);
            let pinned = FdLink::try_from(link)
                .map_err(XdpError::Link)?
                .pin(&path)
                .map_err(|source| XdpError::Pin {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(%iface, ifindex, ?mode, "XDP program attached");
            self.attachments.push(Attachment {
                iface: iface.clone(),
                ifindex,
                mode,
                reason: reason.clone(),
                link: Some(pinned),
            });
        }
        Ok(())
    }

    /// Runs the transmit self-test on every native attachment; the first
    /// interface that loses frames is the reason to fall back.
    fn probe_all(&mut self) -> Result<Option<ModeReason>, XdpError> {
        let probe = program_mut(&mut self.ebpf, PROGRAM_TX_PROBE)?;
        for a in &self.attachments {
            match probe_native_tx(probe, &a.iface)? {
                TxProbe::Transmitted => {}
                probe => {
                    return Ok(Some(ModeReason::NativeTxLost {
                        iface: a.iface.clone(),
                        probe,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn detach_all(&mut self) {
        for mut a in self.attachments.drain(..) {
            if let Some(link) = a.link.take() {
                detach_pinned(link, &a.iface);
            }
        }
    }

    fn record_statuses(&mut self) -> Result<(), XdpError> {
        for a in &self.attachments {
            let mut name = [0u8; 16];
            let bytes = a.iface.as_bytes();
            name[..bytes.len().min(15)].copy_from_slice(&bytes[..bytes.len().min(15)]);
            let status = IfaceStatus {
                ifindex: a.ifindex,
                mode: a.mode.abi(),
                reason: a.reason.abi(),
                _pad: 0,
                name,
            };
            self.maps
                .ifaces
                .insert(a.ifindex, status, 0)
                .map_err(|source| DatapathError::Map {
                    op: "recording interface status",
                    source,
                })?;
        }
        Ok(())
    }

    /// Detaches from every interface and removes this instance's pins.
    pub fn shutdown(mut self) {
        self.close_xdp();
    }

    fn close_xdp(&mut self) {
        if self.attachments.is_empty() && !self.dir.exists() {
            return;
        }
        self.detach_all();
        // Whatever else is pinned there goes too (the link of an interface
        // an earlier configuration had).
        adopt::remove_versioned(&self.dir);
        if let Some(parent) = self.dir.parent() {
            // The instance directory goes too when nothing else lives there.
            let _ = std::fs::remove_dir(parent);
        }
        tracing::info!("XDP datapath detached and unpinned");
    }
}

/// Forwarding on for both families (an interface without IPv6 is left
/// alone): the FIB lookup of the ingress interface needs it, for IPv6 also
/// when IPv4 is bridged to IPv6. With `--no-enable-forwarding`, IPv4 off is
/// an error; IPv6 off only a warning, so IPv4-only hosts start as before.
fn ensure_forwarding(iface: &str, enable: bool) -> Result<(), XdpError> {
    if !netdev::ipv4_forwarding(iface)? {
        if !enable {
            return Err(XdpError::ForwardingOff {
                family: "IPv4",
                sysctl: "ipv4",
                iface: iface.to_owned(),
            });
        }
        netdev::enable_ipv4_forwarding(iface)?;
        tracing::warn!(
            %iface,
            "enabled IPv4 forwarding on the interface: the XDP next-hop (FIB) lookup needs it"
        );
    }
    if netdev::ipv6_forwarding(iface)? == Some(false) {
        if !enable {
            tracing::warn!(
                %iface,
                "IPv6 forwarding is off on the interface: IPv6 and IPv4-to-IPv6 media \
                 arriving there goes through userspace (sysctl -w net.ipv6.conf.{iface}.forwarding=1)"
            );
            return Ok(());
        }
        let raised = netdev::enable_ipv6_forwarding(iface)?;
        tracing::warn!(
            %iface,
            accept_ra_raised_to_2 = raised,
            "enabled IPv6 forwarding on the interface: the XDP next-hop (FIB) lookup needs it"
        );
    }
    Ok(())
}

/// Unpins the stream table and relay addresses of an earlier relayd, so the
/// object creates them afresh, empty and sized for this configuration
/// (clearing an array entry by entry would cost a system call per port).
/// An earlier program still attached keeps its own copy until ours replaces
/// it.
fn discard_stream_table(dir: &Path) {
    for name in [MAP_STREAMS, MAP_ADDRESSES] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                "discarded the stream table of a previous relayd"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot unpin"),
        }
    }
}

/// Whether anything is pinned under `dir`.
fn has_pins(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// A pinned link left behind by a relayd that did not shut down cleanly:
/// unpin it so its program detaches and ours can attach.
pub(crate) fn release_stale_link(dir: &Path, iface: &str) {
    let path = link_pin(dir, iface);
    if !path.exists() {
        return;
    }
    match PinnedLink::from_pin(&path) {
        Ok(link) => {
            tracing::warn!(%iface, path = %path.display(), "detaching an XDP program left by an earlier relayd");
            detach_pinned(link, iface);
        }
        Err(e) => tracing::warn!(%iface, error = %e, "stale link pin unreadable"),
    }
}

fn detach_pinned(link: PinnedLink, iface: &str) {
    match link.unpin() {
        // Dropping the last reference to the link detaches the program.
        Ok(fd_link) => drop(fd_link),
        Err(e) => tracing::warn!(%iface, error = %e, "could not unpin XDP link"),
    }
}

impl Datapath for XdpDatapath {
    fn install_seeded(
        &mut self,
        stream: &StreamSpec,
        rtp: &relay_common::RtpStats,
    ) -> Result<(), DatapathError> {
        self.maps.install_seeded(stream, rtp)
    }

    fn rtp_stats(&self, stats_slot: u32) -> Result<relay_common::RtpStats, DatapathError> {
        self.maps.rtp_stats(stats_slot)
    }

    fn remove(&mut self, local: SocketAddr) -> Result<(), DatapathError> {
        self.maps.remove(local)
    }

    fn stream_stats(&self, stats_slot: u32) -> Result<StreamStats, DatapathError> {
        self.maps.stream_stats(stats_slot)
    }

    fn counters(&self) -> Result<Counters, DatapathError> {
        self.maps.counters()
    }

    fn close(&mut self) {
        self.close_xdp();
    }

    fn adopted(&self) -> bool {
        self.adopted
    }

    fn set_max_pps(&mut self, stats_slot: u32, max_pps: u32) -> Result<(), DatapathError> {
        self.maps.stream_state.set_max_pps(stats_slot, max_pps)
    }

    fn abandon(&mut self) {
        if !self.adopted && self.takeover.is_none() {
            self.close_xdp();
        }
    }

    fn go_live(&mut self) -> Result<(), DatapathError> {
        XdpDatapath::go_live(self).map_err(|e| DatapathError::Takeover(e.to_string()))
    }

    fn installed(&self) -> Result<Vec<StreamSpec>, DatapathError> {
        self.maps.installed_specs()
    }

    fn shield(
        &mut self,
        address: std::net::IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        drop: bool,
    ) -> Result<(), DatapathError> {
        self.maps.set_shield(address, ports, drop)
    }
}
