//! Typed handles on the program's maps, from a freshly loaded object or from
//! the pins of a running relayd (which is how relayctl reads them).

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
};

use aya::{
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    util::nr_cpus,
    Ebpf,
};
use relay_common::{
    addr::{from_abi, to_abi},
    stream_index, Counter, CounterId, IfaceStatus, RelayAddress, RtpStats, StreamStats,
    StreamTarget, MAP_ADDRESSES, MAP_COUNTERS, MAP_IFACES, MAP_RTP_STATS, MAP_STREAMS,
    MAP_STREAM_STATS, MAP_TX_PORTS, ROW_SHIFT, SHIELD_DROP_UNKNOWN, TF_IN_USE, TF_JITTER,
    TF_STRICT_SOURCE, TF_TO_USERSPACE,
};

use super::{
    super::{Counters, DatapathError, StreamSpec},
    batch_read::read_array_range,
};

/// Every map of the relay program.
pub struct RelayMaps {
    /// The stream table: a row of entries per relay address, one per port.
    pub streams: Array<MapData, StreamTarget>,
    /// Per-stream counters.
    pub stream_stats: PerCpuArray<MapData, StreamStats>,
    /// Program-wide counters.
    pub counters: PerCpuArray<MapData, Counter>,
    /// Redirect targets.
    pub tx_ports: DevMapHash<MapData>,
    /// Attach bookkeeping.
    pub ifaces: HashMap<MapData, u32, IfaceStatus>,
    /// Relay addresses: their rows of `streams` and DoS shields.
    pub addresses: HashMap<MapData, [u8; 16], RelayAddress>,
    /// Per-stream RTP figures.
    pub rtp_stats: Array<MapData, RtpStats>,
    /// What `addresses` holds, by address (relayd is its only writer).
    rows: StdHashMap<[u8; 16], RelayAddress>,
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
            take(MAP_STREAM_STATS)?,
            take(MAP_COUNTERS)?,
            take(MAP_TX_PORTS)?,
            take(MAP_IFACES)?,
            take(MAP_ADDRESSES)?,
            take(MAP_RTP_STATS)?,
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
            open(MAP_STREAM_STATS)?,
            open(MAP_COUNTERS)?,
            open(MAP_TX_PORTS)?,
            open(MAP_IFACES)?,
            open(MAP_ADDRESSES)?,
            open(MAP_RTP_STATS)?,
        )
    }

    fn from_maps(
        streams: Map,
        stream_stats: Map,
        counters: Map,
        tx_ports: Map,
        ifaces: Map,
        addresses: Map,
        rtp_stats: Map,
    ) -> Result<Self, DatapathError> {
        let check = map_err("checking a map's type and sizes");
        let addresses: HashMap<MapData, [u8; 16], RelayAddress> = addresses
            .try_into()
            .map_err(map_err("checking addresses"))?;
        let rows = addresses
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err("reading addresses"))?;
        let streams_fd = match &streams {
            Map::Array(data) => data.fd().as_fd().try_clone_to_owned(),
            _ => Err(std::io::ErrorKind::InvalidInput.into()),
        }
        .map_err(|source| DatapathError::Io {
            op: "duplicating the stream table's descriptor",
            source,
        })?;
        Ok(Self {
            streams: streams
                .try_into()
                .map_err(map_err("checking the streams map"))?,
            stream_stats: stream_stats
                .try_into()
                .map_err(map_err("checking stream_stats"))?,
            counters: counters.try_into().map_err(map_err("checking counters"))?,
            tx_ports: tx_ports.try_into().map_err(map_err("checking tx_ports"))?,
            ifaces: ifaces.try_into().map_err(check)?,
            addresses,
            rtp_stats: rtp_stats
                .try_into()
                .map_err(map_err("checking rtp_stats"))?,
            rows,
            streams_fd,
        })
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

    /// Every installed stream: its relay address and port, and its entry.
    /// Reads every relay address's whole row (4 MiB, in batches), so it is
    /// for start-up and relayctl, not for anything per call.
    pub fn installed(&self) -> Result<Vec<(SocketAddr, StreamTarget)>, DatapathError> {
        let mut out = Vec::new();
        for (addr, a) in &self.rows {
            let row: Vec<StreamTarget> = read_array_range(
                self.streams_fd.as_fd(),
                stream_index(a.row, 0),
                1 << ROW_SHIFT,
            )
            .map_err(|source| DatapathError::Io {
                op: "reading the stream table",
                source,
            })?;
            for (port, entry) in (0..=u16::MAX).zip(row) {
                if entry.flags & TF_IN_USE != 0 {
                    out.push((SocketAddr::new(from_abi(*addr), port), entry));
                }
            }
        }
        Ok(out)
    }

    /// Installs `spec` with RTP figures from scratch.
    pub fn install(&mut self, spec: &StreamSpec) -> Result<(), DatapathError> {
        self.install_seeded(spec, &RtpStats::default())
    }

    /// Inserts or replaces a stream, zeroes its counters and starts its RTP
    /// figures from `rtp`.
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
            strict | jitter | spec.media.flags()
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
        let index = stream_index(self.row(spec.local.ip())?, spec.local.port());
        let old = self.entry(index)?;
        if spec.to_userspace {
            // Nothing is counted for a pass entry: no counters to zero.
            return self.write_entry(index, old, target);
        }
        let cpus = nr_cpus().map_err(|(_, source)| DatapathError::Io {
            op: "counting CPUs",
            source,
        })?;
        let fresh = StreamStats {
            max_pps: spec.max_pps,
            ..StreamStats::default()
        };
        let zeros =
            PerCpuValues::try_from(vec![fresh; cpus]).map_err(|source| DatapathError::Io {
                op: "zeroing stream counters",
                source,
            })?;
        self.stream_stats
            .set(spec.stats_slot, zeros, 0)
            .map_err(map_err("zeroing stream counters"))?;
        let rtp = RtpStats { clock_rate, ..*rtp };
        self.rtp_stats
            .set(spec.stats_slot, rtp, 0)
            .map_err(map_err("seeding RTP figures"))?;
        self.write_entry(index, old, target)
    }

    /// The row of the stream table owned by relay address `addr`, given
    /// one (with no shield) if it has none yet.
    fn row(&mut self, addr: IpAddr) -> Result<u32, DatapathError> {
        if let Some(a) = self.rows.get(&to_abi(addr)) {
            return Ok(a.row);
        }
        let a = self.row_entry(addr)?;
        self.write_address(addr, a, "adding a relay address")?;
        Ok(a.row)
    }

    /// `addr`'s entry of `addresses`, or (not yet written) a fresh one with
    /// the next free row and no shield.
    fn row_entry(&self, addr: IpAddr) -> Result<RelayAddress, DatapathError> {
        if let Some(a) = self.rows.get(&to_abi(addr)) {
            return Ok(*a);
        }
        let max = self.streams.len() >> ROW_SHIFT;
        let row = self.rows.len() as u32;
        if row >= max {
            return Err(DatapathError::TooManyAddresses { address: addr, max });
        }
        Ok(RelayAddress {
            row,
            ..RelayAddress::default()
        })
    }

    fn write_address(
        &mut self,
        addr: IpAddr,
        value: RelayAddress,
        op: &'static str,
    ) -> Result<(), DatapathError> {
        let key = to_abi(addr);
        self.addresses.insert(key, value, 0).map_err(map_err(op))?;
        self.rows.insert(key, value);
        Ok(())
    }

    /// Stream table entry `index` as it is now.
    fn entry(&self, index: u32) -> Result<StreamTarget, DatapathError> {
        self.streams
            .get(&index, 0)
            .map_err(map_err("reading the stream table"))
    }

    /// Rewrites stream table entry `index`, which holds `old`, the way the
    /// program can read safely at any moment (relay_abi.h): its sequence
    /// made odd with the old content, the new content with the sequence
    /// still odd, then the sequence made even. A packet that meets the entry
    /// in between is passed to relayd's socket, never forwarded with half an
    /// entry.
    fn write_entry(
        &mut self,
        index: u32,
        old: StreamTarget,
        new: StreamTarget,
    ) -> Result<(), DatapathError> {
        let write = |streams: &mut Array<MapData, StreamTarget>, value| {
            streams
                .set(index, value, 0)
                .map_err(map_err("writing the stream table"))
        };
        // Odd already only if a relayd died mid-update: the entry is
        // being passed, and its content may be half written.
        let odd = old.seq | 1;
        if old.seq != odd {
            write(&mut self.streams, StreamTarget { seq: odd, ..old })?;
        }
        write(&mut self.streams, StreamTarget { seq: odd, ..new })?;
        write(
            &mut self.streams,
            StreamTarget {
                seq: odd.wrapping_add(1),
                ..new
            },
        )
    }

    /// Sets the DoS shield of one relay address.
    pub fn set_shield(
        &mut self,
        address: IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        drop: bool,
    ) -> Result<(), DatapathError> {
        let value = RelayAddress {
            port_min: *ports.start(),
            port_max: *ports.end(),
            flags: if drop { SHIELD_DROP_UNKNOWN } else { 0 },
            ..self.row_entry(address)?
        };
        self.write_address(address, value, "setting the DoS shield")
    }

    /// Removes the stream of relay address and port `local`.
    pub fn remove(&mut self, local: SocketAddr) -> Result<(), DatapathError> {
        let Some(a) = self.rows.get(&to_abi(local.ip())) else {
            return Err(DatapathError::NoSuchStream(local));
        };
        let index = stream_index(a.row, local.port());
        let old = self.entry(index)?;
        if old.flags & TF_IN_USE == 0 {
            return Err(DatapathError::NoSuchStream(local));
        }
        self.write_entry(index, old, StreamTarget::default())
    }

    /// One stream slot's counters summed over CPUs.
    pub fn stream_stats(&self, slot: u32) -> Result<StreamStats, DatapathError> {
        let per_cpu = self
            .stream_stats
            .get(&slot, 0)
            .map_err(map_err("reading stream counters"))?;
        let mut total = StreamStats::default();
        per_cpu.iter().for_each(|s| total.accumulate(s));
        Ok(total)
    }

    /// One stream slot's RTP figures.
    pub fn rtp_stats(&self, slot: u32) -> Result<RtpStats, DatapathError> {
        self.rtp_stats
            .get(&slot, 0)
            .map_err(map_err("reading RTP figures"))
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
