//! Typed handles on the program's maps, from a freshly loaded object or from
//! the pins of a running relayd (which is how relayctl reads them).

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
    path::Path,
};

use aya::{
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray},
    Ebpf,
};
use relay_common::{
    addr::{from_abi, to_abi},
    address_probes, Counter, CounterId, IfaceMac, IfaceStatus, RelayAddress, RtpStats, StreamState,
    StreamStats, StreamTarget, ADDR_IN_USE, ADDR_SLOTS, IFACE_MAC_SLOTS, MAP_ADDRESSES,
    MAP_COUNTERS, MAP_IFACES, MAP_IFACE_MACS, MAP_STREAMS, MAP_STREAM_STATE, MAP_TX_PORTS,
    SHIELD_DROP_UNKNOWN, TF_ICE, TF_IN_USE, TF_JITTER, TF_RTCP, TF_RTCP_DEMUX, TF_RTP,
    TF_STRICT_SOURCE, TF_TO_USERSPACE,
};

use super::{
    super::{Counters, DatapathError, MediaTracking, StreamSpec},
    batch_read::read_array_range,
    state_array::StateArray,
};

/// Every map of the relay program.
pub struct RelayMaps {
    /// The stream table: a row of entries per relay address, one per port.
    pub streams: Array<MapData, StreamTarget>,
    /// Per-stream state (counters, rate cap, next hop, RTP figures), mapped.
    pub stream_state: StateArray,
    /// Program-wide counters.
    pub counters: PerCpuArray<MapData, Counter>,
    /// Redirect targets.
    pub tx_ports: DevMapHash<MapData>,
    /// Attach bookkeeping.
    pub ifaces: HashMap<MapData, u32, IfaceStatus>,
    /// MACs of the attached interfaces, by ifindex modulo the table size.
    pub iface_macs: Array<MapData, IfaceMac>,
    /// Relay addresses, their rows of `streams` and DoS shields: a hash
    /// table of slots (relay_abi.h).
    pub addresses: Array<MapData, RelayAddress>,
    /// What `addresses` holds, by address: the slot and its content
    /// (relayd is the only writer).
    rows: Rows,
    /// The ports a new relay address's row covers (see [`Self::with_row_ports`]).
    row_ports: RangeInclusive<u16>,
    /// `streams` again, for batch reads (aya keeps its descriptor private).
    streams_fd: OwnedFd,
}

impl std::fmt::Debug for RelayMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayMaps").finish_non_exhaustive()
    }
}

fn map_err(op: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { op, source }
}

/// A table value that relayd rewrites while the program may read it, with
/// an update sequence the program checks (relay_abi.h).
trait Seqlocked: aya::Pod {
    fn seq(&self) -> u16;
    fn with_seq(self, seq: u16) -> Self;
}

impl Seqlocked for StreamTarget {
    fn seq(&self) -> u16 {
        self.seq
    }
    fn with_seq(self, seq: u16) -> Self {
        StreamTarget { seq, ..self }
    }
}

impl Seqlocked for RelayAddress {
    fn seq(&self) -> u16 {
        self.seq
    }
    fn with_seq(self, seq: u16) -> Self {
        RelayAddress { seq, ..self }
    }
}

/// Rewrites element `index` of `array`, which holds `old`, the way the
/// program can read safely at any moment: its sequence made odd with the
/// old content, the new content with the sequence still odd, then the
/// sequence made even. A packet that meets the element in between is
/// passed to relayd's socket, never forwarded with half an entry. Returns
/// what the element holds now.
fn write_seqlocked<T: Seqlocked>(
    array: &mut Array<MapData, T>,
    index: u32,
    old: T,
    new: T,
    op: &'static str,
) -> Result<T, DatapathError> {
    let mut write = |value: T| array.set(index, value, 0).map_err(map_err(op));
    // Odd already only if a relayd died mid-update: the element is being
    // passed, and its content may be half written.
    let odd = old.seq() | 1;
    if old.seq() != odd {
        write(old.with_seq(odd))?;
    }
    write(new.with_seq(odd))?;
    let done = new.with_seq(odd.wrapping_add(1));
    write(done)?;
    Ok(done)
}

/// The relay addresses in use in an address table, by address: their
/// slots and contents.
pub(super) fn read_rows(addresses: BorrowedFd<'_>) -> Result<Rows, DatapathError> {
    read_rows_as(addresses, |a: RelayAddress| a)
}

/// [`read_rows`] of a table whose slots are `T`, made today's slots by
/// `current` (an older layout's).
pub(super) fn read_rows_as<T: aya::Pod>(
    addresses: BorrowedFd<'_>,
    current: impl Fn(T) -> RelayAddress,
) -> Result<Rows, DatapathError> {
    let slots: Vec<T> =
        read_array_range(addresses, 0, ADDR_SLOTS).map_err(|source| DatapathError::Io {
            op: "reading the relay addresses",
            source,
        })?;
    Ok((0..)
        .zip(slots.into_iter().map(current))
        .filter(|(_, a)| a.flags & ADDR_IN_USE != 0)
        .map(|(slot, a)| (a.addr, (slot, a)))
        .collect())
}

/// Every installed entry of a stream table whose relay addresses are
/// `rows`: its relay address and port, and the entry.
pub(super) fn read_installed(
    rows: &Rows,
    streams: BorrowedFd<'_>,
) -> Result<Vec<(SocketAddr, StreamTarget)>, DatapathError> {
    let mut out = Vec::new();
    for (addr, (_, a)) in rows {
        let ports = a.row_ports();
        let len = ports.clone().count() as u32;
        let row: Vec<StreamTarget> =
            read_array_range(streams, a.row_base, len).map_err(|source| DatapathError::Io {
                op: "reading the stream table",
                source,
            })?;
        for (port, entry) in ports.zip(row) {
            if entry.flags & TF_IN_USE != 0 {
                out.push((SocketAddr::new(from_abi(*addr), port), entry));
            }
        }
    }
    Ok(out)
}

/// Relay addresses and their address table slots and contents.
pub(super) type Rows = StdHashMap<[u8; 16], (u32, RelayAddress)>;

/// A second descriptor of an array map, for batch reads.
pub(super) fn array_fd(map: &Map, op: &'static str) -> Result<OwnedFd, DatapathError> {
    match map {
        Map::Array(data) => data.fd().as_fd().try_clone_to_owned(),
        _ => Err(std::io::ErrorKind::InvalidInput.into()),
    }
    .map_err(|source| DatapathError::Io { op, source })
}

impl RelayMaps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or(DatapathError::Map {
                op: "finding a map in the object",
                source: MapError::InvalidName {
                    name: name.to_owned(),
                },
            })
        };
        Self::from_maps(
            take(MAP_STREAMS)?,
            take(MAP_STREAM_STATE)?,
            take(MAP_COUNTERS)?,
            take(MAP_TX_PORTS)?,
            take(MAP_IFACES)?,
            take(MAP_ADDRESSES)?,
            take(MAP_IFACE_MACS)?,
        )
    }

    /// Opens the maps pinned under `dir` by a running relayd.
    pub fn open_pinned(dir: &Path) -> Result<Self, DatapathError> {
        let open = |name: &str| -> Result<Map, DatapathError> {
            let data =
                MapData::from_pin(dir.join(name)).map_err(map_err("opening a pinned map"))?;
            Map::from_map_data(data).map_err(map_err("opening a pinned map"))
        };
        Self::from_maps(
            open(MAP_STREAMS)?,
            open(MAP_STREAM_STATE)?,
            open(MAP_COUNTERS)?,
            open(MAP_TX_PORTS)?,
            open(MAP_IFACES)?,
            open(MAP_ADDRESSES)?,
            open(MAP_IFACE_MACS)?,
        )
    }

    fn from_maps(
        streams: Map,
        stream_state: Map,
        counters: Map,
        tx_ports: Map,
        ifaces: Map,
        addresses: Map,
        iface_macs: Map,
    ) -> Result<Self, DatapathError> {
        let check = map_err("checking a map's type and sizes");
        // Batch reads need the descriptor, which aya keeps private once it
        // takes the map; slot by slot would be 8192 system calls. The read
        // comes after aya has checked the value size it relies on.
        let addresses_fd = array_fd(&addresses, "duplicating the address table's descriptor")?;
        let addresses: Array<MapData, RelayAddress> = addresses
            .try_into()
            .map_err(map_err("checking addresses"))?;
        let rows = read_rows(addresses_fd.as_fd())?;
        let streams_fd = array_fd(&streams, "duplicating the stream table's descriptor")?;
        Ok(Self {
            streams: streams
                .try_into()
                .map_err(map_err("checking the streams map"))?,
            stream_state: StateArray::new(stream_state)?,
            counters: counters.try_into().map_err(map_err("checking counters"))?,
            tx_ports: tx_ports.try_into().map_err(map_err("checking tx_ports"))?,
            ifaces: ifaces.try_into().map_err(check)?,
            iface_macs: iface_macs
                .try_into()
                .map_err(map_err("checking iface_macs"))?,
            addresses,
            rows,
            row_ports: 0..=u16::MAX,
            streams_fd,
        })
    }

    /// Sets the ports each relay address added from now on gets a row of
    /// stream entries for (relayd's media port range and its static
    /// streams' ports; all 65536 ports until this is called). A stream on
    /// a port outside is refused ([`DatapathError::PortOutsideRow`]).
    pub fn with_row_ports(self, row_ports: RangeInclusive<u16>) -> Self {
        Self { row_ports, ..self }
    }

    /// Empties the redirect ports and interface status a relayd that died
    /// left in its pins. Used at start; the stream table and the relay
    /// addresses are never reused (a starting relayd unpins them, and the
    /// object creates them empty).
    pub fn clear_tables(&mut self) -> Result<(), DatapathError> {
        let ports: Vec<u32> = self
            .tx_ports
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("listing tx ports"))?;
        for port in ports {
            let _ = self.tx_ports.remove(port);
        }
        let ifaces: Vec<u32> = self
            .ifaces
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("listing interfaces"))?;
        for ifindex in &ifaces {
            let _ = self.ifaces.remove(ifindex);
        }
        Ok(())
    }

    /// Writes the MAC of each attached interface (ifindex, MAC) where the
    /// program looks for it. Two interfaces on one slot leave it empty: the
    /// program then takes every frame on them as sent to it.
    pub fn set_iface_macs(&mut self, macs: &[(u32, [u8; 6])]) -> Result<(), DatapathError> {
        let slot = |ifindex: u32| ifindex % IFACE_MAC_SLOTS;
        for &(ifindex, mac) in macs {
            let shared = macs
                .iter()
                .any(|&(other, _)| other != ifindex && slot(other) == slot(ifindex));
            let value = if shared {
                IfaceMac::default()
            } else {
                IfaceMac {
                    ifindex,
                    mac,
                    _pad: 0,
                }
            };
            self.iface_macs
                .set(slot(ifindex), value, 0)
                .map_err(map_err("recording the interfaces' MACs"))?;
        }
        Ok(())
    }

    /// Every installed stream: its relay address and port, and its entry.
    /// Reads every relay address's whole row (64 bytes a port, in batches), so it is
    /// for start-up and relayctl, not for anything per call.
    pub fn installed(&self) -> Result<Vec<(SocketAddr, StreamTarget)>, DatapathError> {
        read_installed(&self.rows, self.streams_fd.as_fd())
    }

    /// [`RelayMaps::installed`] as stream specs: what relayd installed,
    /// read back (`media` without its clock rate, `max_pps` 0).
    pub fn installed_specs(&self) -> Result<Vec<StreamSpec>, DatapathError> {
        Ok(self
            .installed()?
            .into_iter()
            .map(|(local, t)| {
                let at = |addr, port: u16| SocketAddr::new(from_abi(addr), u16::from_be(port));
                let media = if t.flags & TF_RTP != 0 {
                    MediaTracking::Rtp { clock_rate: 0 }
                } else if t.flags & TF_RTCP != 0 {
                    MediaTracking::Rtcp
                } else {
                    MediaTracking::None
                };
                StreamSpec {
                    local,
                    peer: at(t.peer_addr, t.peer_port),
                    source: at(t.src_addr, t.src_port),
                    strict_source: (t.flags & TF_STRICT_SOURCE != 0)
                        .then(|| at(t.expect_addr, t.expect_port)),
                    stats_slot: t.stats_slot,
                    to_userspace: t.flags & TF_TO_USERSPACE != 0,
                    max_pps: 0,
                    media,
                    ice: t.flags & TF_ICE != 0,
                    rtcp_demux: t.flags & TF_RTCP_DEMUX != 0,
                }
            })
            .collect())
    }

    /// Installs `spec` with RTP figures from scratch.
    pub fn install(&mut self, spec: &StreamSpec) -> Result<(), DatapathError> {
        self.install_seeded(spec, &RtpStats::default())
    }

    /// Inserts or replaces a stream, zeroes its state record (a slot no
    /// entry points to yet) and starts its RTP figures from `rtp`.
    pub fn install_seeded(
        &mut self,
        spec: &StreamSpec,
        rtp: &RtpStats,
    ) -> Result<(), DatapathError> {
        // The peer's family is the egress family (bridged when it is not the
        // key's); the source must match it, the expected sender the key.
        let mixed = |what| DatapathError::MixedFamilies {
            local: spec.local,
            what,
        };
        if !spec.to_userspace && spec.peer.is_ipv4() != spec.source.is_ipv4() {
            return Err(mixed("peer and source"));
        }
        let expect = spec.strict_source.unwrap_or(SocketAddr::new(
            if spec.local.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            },
            0,
        ));
        if expect.is_ipv4() != spec.local.is_ipv4() {
            return Err(mixed("local address and expected sender"));
        }
        let clock_rate = spec.media.clock_rate();
        let flags = if spec.to_userspace {
            TF_TO_USERSPACE
        } else {
            let strict = if spec.strict_source.is_some() {
                TF_STRICT_SOURCE
            } else {
                0
            };
            let jitter = if clock_rate > 0 { TF_JITTER } else { 0 };
            let ice = if spec.ice { TF_ICE } else { 0 };
            let demux = if spec.rtcp_demux { TF_RTCP_DEMUX } else { 0 };
            strict | jitter | ice | demux | spec.media.flags()
        };
        let target = StreamTarget {
            peer_addr: to_abi(spec.peer.ip()),
            src_addr: to_abi(spec.source.ip()),
            expect_addr: to_abi(expect.ip()),
            peer_port: spec.peer.port().to_be(),
            src_port: spec.source.port().to_be(),
            expect_port: expect.port().to_be(),
            seq: 0,
            flags: TF_IN_USE | flags,
            stats_slot: spec.stats_slot,
        };
        let index = self.index(spec.local)?;
        let old = self.entry(index)?;
        if spec.to_userspace {
            // Nothing is counted for a pass entry: no counters to zero.
            return self.write_entry(index, old, target);
        }
        let fresh = StreamState {
            stats: StreamStats {
                max_pps: spec.max_pps,
                ..StreamStats::default()
            },
            rtp: RtpStats { clock_rate, ..*rtp },
            ..StreamState::default()
        };
        self.stream_state.reset(spec.stats_slot, &fresh)?;
        self.write_entry(index, old, target)
    }

    /// Copies a stream of another relayd's table into this one, entry as it
    /// was and, for a forwarding entry, its state record (same slot). Only
    /// before this relayd's program runs anywhere: the record is written
    /// whole.
    pub fn import(
        &mut self,
        local: SocketAddr,
        entry: StreamTarget,
        record: Option<&StreamState>,
    ) -> Result<(), DatapathError> {
        if let Some(record) = record {
            self.stream_state.reset(entry.stats_slot, record)?;
        }
        let index = self.index(local)?;
        let old = self.entry(index)?;
        self.write_entry(index, old, entry)
    }

    /// The state slot of the forwarding entry installed for `local`, if any.
    pub fn slot_of(&self, local: SocketAddr) -> Option<u32> {
        let (_, a) = self.rows.get(&to_abi(local.ip()))?;
        let entry = self.entry(a.entry_index(local.port())?).ok()?;
        (entry.flags & TF_IN_USE != 0 && entry.flags & TF_TO_USERSPACE == 0)
            .then_some(entry.stats_slot)
    }

    /// The stream table index of relay address and port `local`, giving
    /// the address a row (with no shield) if it has none yet.
    fn index(&mut self, local: SocketAddr) -> Result<u32, DatapathError> {
        let a = match self.rows.get(&to_abi(local.ip())) {
            Some((_, a)) => *a,
            None => {
                let (slot, a) = self.row_entry(local.ip())?;
                self.write_address(slot, a, "adding a relay address")?;
                a
            }
        };
        a.entry_index(local.port())
            .ok_or(DatapathError::PortOutsideRow {
                local,
                first: a.row_first_port,
                last: a.row_last_port,
            })
    }

    /// `addr`'s slot of `addresses` and what it holds, or (not yet
    /// written) a free slot where the program will look for it, with the
    /// next free row and no shield.
    fn row_entry(&self, addr: IpAddr) -> Result<(u32, RelayAddress), DatapathError> {
        let key = to_abi(addr);
        if let Some(placed) = self.rows.get(&key) {
            return Ok(*placed);
        }
        let len = self.row_ports.clone().count() as u32;
        // After the rows already given (adopted ones included, whatever
        // their length).
        let base = self
            .rows
            .values()
            .map(|(_, a)| a.row_base + a.row_ports().count() as u32)
            .max()
            .unwrap_or(0);
        if u64::from(base) + u64::from(len) > u64::from(self.streams.len()) {
            return Err(DatapathError::TooManyAddresses {
                address: addr,
                max: self.streams.len() / len.max(1),
            });
        }
        let taken = |slot: u32| self.rows.values().any(|(s, _)| *s == slot);
        let slot = address_probes(&key)
            .find(|s| !taken(*s))
            .ok_or(DatapathError::AddressTableFull { address: addr })?;
        Ok((
            slot,
            RelayAddress {
                addr: key,
                row_base: base,
                row_first_port: *self.row_ports.start(),
                row_last_port: *self.row_ports.end(),
                flags: ADDR_IN_USE,
                ..RelayAddress::default()
            },
        ))
    }

    /// Writes `value` (an address in use) to `slot`, which holds what
    /// `rows` says (or nothing yet).
    fn write_address(
        &mut self,
        slot: u32,
        value: RelayAddress,
        op: &'static str,
    ) -> Result<(), DatapathError> {
        let old = self
            .rows
            .get(&value.addr)
            .map_or_else(RelayAddress::default, |(_, a)| *a);
        let written = write_seqlocked(&mut self.addresses, slot, old, value, op)?;
        self.rows.insert(value.addr, (slot, written));
        Ok(())
    }

    /// The relay addresses in use, with their rows and shields.
    pub fn rows(&self) -> impl Iterator<Item = &RelayAddress> {
        self.rows.values().map(|(_, a)| a)
    }

    /// Relay address `addr`'s slot of the address table and what it holds,
    /// if it has one.
    pub fn relay_address(&self, addr: IpAddr) -> Option<(u32, RelayAddress)> {
        self.rows.get(&to_abi(addr)).copied()
    }

    /// Stream table entry `index` as it is now.
    fn entry(&self, index: u32) -> Result<StreamTarget, DatapathError> {
        self.streams
            .get(&index, 0)
            .map_err(map_err("reading the stream table"))
    }

    /// Rewrites stream table entry `index`, which holds `old` (see
    /// [`write_seqlocked`]).
    fn write_entry(
        &mut self,
        index: u32,
        old: StreamTarget,
        new: StreamTarget,
    ) -> Result<(), DatapathError> {
        write_seqlocked(
            &mut self.streams,
            index,
            old,
            new,
            "writing the stream table",
        )?;
        Ok(())
    }

    /// Sets the DoS shield of one relay address.
    pub fn set_shield(
        &mut self,
        address: IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        drop: bool,
    ) -> Result<(), DatapathError> {
        let (slot, entry) = self.row_entry(address)?;
        let value = RelayAddress {
            port_min: *ports.start(),
            port_max: *ports.end(),
            flags: ADDR_IN_USE | if drop { SHIELD_DROP_UNKNOWN } else { 0 },
            ..entry
        };
        self.write_address(slot, value, "setting the DoS shield")
    }

    /// Removes the stream of relay address and port `local`.
    pub fn remove(&mut self, local: SocketAddr) -> Result<(), DatapathError> {
        let Some(index) = self
            .rows
            .get(&to_abi(local.ip()))
            .and_then(|(_, a)| a.entry_index(local.port()))
        else {
            return Err(DatapathError::NoSuchStream(local));
        };
        let old = self.entry(index)?;
        if old.flags & TF_IN_USE == 0 {
            return Err(DatapathError::NoSuchStream(local));
        }
        self.write_entry(index, old, StreamTarget::default())
    }

    /// One stream slot's counters.
    pub fn stream_stats(&self, slot: u32) -> Result<StreamStats, DatapathError> {
        Ok(self.stream_state.read(slot)?.stats)
    }

    /// One stream slot's RTP figures.
    pub fn rtp_stats(&self, slot: u32) -> Result<RtpStats, DatapathError> {
        Ok(self.stream_state.read(slot)?.rtp)
    }

    /// Program-wide counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let mut values = Vec::with_capacity(CounterId::ALL.len());
        for id in CounterId::ALL {
            let per_cpu = self
                .counters
                .get(&(*id as u32), 0)
                .map_err(map_err("reading counters"))?;
            values.push(
                per_cpu
                    .iter()
                    .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)),
            );
        }
        Ok(Counters { values })
    }

    /// Attach bookkeeping of every interface, by ifindex.
    pub fn iface_statuses(&self) -> Result<Vec<IfaceStatus>, DatapathError> {
        let mut out = Vec::new();
        for entry in self.ifaces.iter() {
            out.push(entry.map_err(map_err("reading interface status"))?.1);
        }
        out.sort_by_key(|s| s.ifindex);
        Ok(out)
    }
}
