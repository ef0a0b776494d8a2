//! Typed handles on the program's maps, from a freshly loaded object or from
//! the pins of a running relayd (which is how relayctl reads them).

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

use aya::{
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    util::nr_cpus,
    Ebpf,
};
use relay_common::{
    addr::to_abi, Counter, CounterId, IfaceStatus, RtpStats, Shield, StreamKey, StreamStats,
    StreamTarget, MAP_COUNTERS, MAP_IFACES, MAP_RTP_STATS, MAP_SHIELD, MAP_STREAMS,
    MAP_STREAM_STATS, MAP_TX_PORTS, SHIELD_DROP_UNKNOWN, TF_STRICT_SOURCE, TF_TO_USERSPACE,
};

use super::super::{Counters, DatapathError, StreamSpec};

/// Every map of the relay program.
pub struct RelayMaps {
    /// Forwarding table.
    pub streams: HashMap<MapData, StreamKey, StreamTarget>,
    /// Per-stream counters.
    pub stream_stats: PerCpuArray<MapData, StreamStats>,
    /// Program-wide counters.
    pub counters: PerCpuArray<MapData, Counter>,
    /// Redirect targets.
    pub tx_ports: DevMapHash<MapData>,
    /// Attach bookkeeping.
    pub ifaces: HashMap<MapData, u32, IfaceStatus>,
    /// DoS shield ranges by relay address.
    pub shield: HashMap<MapData, [u8; 16], Shield>,
    /// Per-stream RTP figures.
    pub rtp_stats: Array<MapData, RtpStats>,
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
            take(MAP_SHIELD)?,
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
            open(MAP_SHIELD)?,
            open(MAP_RTP_STATS)?,
        )
    }

    fn from_maps(
        streams: Map,
        stream_stats: Map,
        counters: Map,
        tx_ports: Map,
        ifaces: Map,
        shield: Map,
        rtp_stats: Map,
    ) -> Result<Self, DatapathError> {
        let check = map_err("checking a map's type and sizes");
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
            shield: shield.try_into().map_err(map_err("checking shield"))?,
            rtp_stats: rtp_stats
                .try_into()
                .map_err(map_err("checking rtp_stats"))?,
        })
    }

    /// Empties the tables relayd owns (streams, redirect ports, interface
    /// status, DoS shields). Used at start: pins left by a relayd that died hold entries
    /// for calls nobody remembers, and ports a new call may be given.
    pub fn clear_tables(&mut self) -> Result<usize, DatapathError> {
        let keys: Vec<StreamKey> = self
            .streams
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("listing streams"))?;
        for key in &keys {
            let _ = self.streams.remove(key);
        }
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
        let shielded: Vec<[u8; 16]> = self
            .shield
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("listing shields"))?;
        for addr in &shielded {
            let _ = self.shield.remove(addr);
        }
        Ok(keys.len())
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
        let key = stream_key(spec.local);
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
        let target = StreamTarget {
            peer_addr: to_abi(spec.peer.ip()),
            src_addr: to_abi(spec.source.ip()),
            expect_addr: to_abi(expect.ip()),
            peer_port: spec.peer.port().to_be(),
            src_port: spec.source.port().to_be(),
            expect_port: expect.port().to_be(),
            _pad0: 0,
            flags: if spec.to_userspace {
                TF_TO_USERSPACE
            } else if spec.strict_source.is_some() {
                TF_STRICT_SOURCE | spec.media.flags()
            } else {
                spec.media.flags()
            },
            stats_slot: spec.stats_slot,
            max_pps: spec.max_pps,
            clock_rate: spec.media.clock_rate(),
        };
        if spec.to_userspace {
            // Nothing is counted for a pass entry: no counters to zero.
            return self
                .streams
                .insert(key, target, 0)
                .map_err(map_err("inserting a stream"));
        }
        let cpus = nr_cpus().map_err(|(_, source)| DatapathError::Io {
            op: "counting CPUs",
            source,
        })?;
        let zeros =
            PerCpuValues::try_from(vec![StreamStats::default(); cpus]).map_err(|source| {
                DatapathError::Io {
                    op: "zeroing stream counters",
                    source,
                }
            })?;
        self.stream_stats
            .set(spec.stats_slot, zeros, 0)
            .map_err(map_err("zeroing stream counters"))?;
        self.rtp_stats
            .set(spec.stats_slot, *rtp, 0)
            .map_err(map_err("seeding RTP figures"))?;
        self.streams
            .insert(key, target, 0)
            .map_err(map_err("inserting a stream"))
    }

    /// Sets the DoS shield of one relay address.
    pub fn set_shield(
        &mut self,
        address: IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        drop: bool,
    ) -> Result<(), DatapathError> {
        let value = Shield {
            port_min: *ports.start(),
            port_max: *ports.end(),
            flags: if drop { SHIELD_DROP_UNKNOWN } else { 0 },
        };
        self.shield
            .insert(to_abi(address), value, 0)
            .map_err(map_err("setting the DoS shield"))
    }

    /// Removes the stream keyed by `local`.
    pub fn remove(&mut self, local: SocketAddr) -> Result<(), DatapathError> {
        let key = stream_key(local);
        self.streams.remove(&key).map_err(|e| match e {
            MapError::KeyNotFound => DatapathError::NoSuchStream(local),
            other => DatapathError::Map {
                op: "removing a stream",
                source: other,
            },
        })
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

/// The map key for a relay-side socket address (IPv4 v4-mapped).
pub fn stream_key(local: SocketAddr) -> StreamKey {
    StreamKey {
        addr: to_abi(local.ip()),
        port: local.port().to_be(),
        _pad: 0,
    }
}
