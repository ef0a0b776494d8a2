//! The throughput benchmark's load generator and sink (`bpf/bench.bpf.c`):
//! loading them, giving the generator its flows, running it in live-frames
//! mode, and reading both sides' counters.

use std::net::SocketAddrV4;

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, PerCpuArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfLoader, Pod,
};
use relay_tests::packet::UdpFrame;

/// Frames per live-frames batch (the kernel's default and maximum is 256;
/// 64 is what the issue asks for).
pub const BATCH: u32 = 64;
/// Flows the generator's map holds (`BENCH_MAX_FLOWS` in the C file).
pub const MAX_FLOWS: usize = 262_144;
/// UDP payload: a 12-byte RTP header and 160 bytes of G.711 (20 ms).
pub const PAYLOAD_LEN: usize = 172;

const XDP_TX: u32 = 3;

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/bench.bpf.o")));

/// `BENCH_LAT_BUCKETS`: 1 us latency buckets, the last one open-ended.
pub const LATENCY_BUCKETS: u32 = 20_001;

/// One direction of one call: a party's address sending to its relay port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The party (an address of the traffic namespace, as in its SDP).
    pub from: SocketAddrV4,
    /// The relay port the party was told to send to.
    pub to: SocketAddrV4,
}

/// `struct bench_flow`: addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct RawFlow {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
}

// SAFETY: plain `#[repr(C)]` integers with no padding, valid for any bytes.
unsafe impl Pod for RawFlow {}

impl From<Flow> for RawFlow {
    fn from(f: Flow) -> Self {
        RawFlow {
            saddr: u32::from_ne_bytes(f.from.ip().octets()),
            daddr: u32::from_ne_bytes(f.to.ip().octets()),
            sport: u16::from_ne_bytes(f.from.port().to_be_bytes()),
            dport: u16::from_ne_bytes(f.to.port().to_be_bytes()),
        }
    }
}

/// `struct bench_count`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawCount {
    packets: u64,
    bytes: u64,
}

// SAFETY: two u64s, no padding, valid for any bytes.
unsafe impl Pod for RawCount {}

/// The loaded object: the generator ready for test runs on one interface,
/// the sink attached to the same interface. Detached on drop.
#[derive(Debug)]
pub struct Traffic {
    ebpf: Ebpf,
    template: Vec<u8>,
    ifindex: u32,
}

impl Traffic {
    /// Loads both programs and attaches the sink natively to `iface`, whose
    /// index is `ifindex` (call from the interface's namespace). Generated
    /// frames carry `src_mac` -> `dst_mac`.
    pub fn attach(iface: &str, ifindex: u32, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Self> {
        let mut t = Self::load(ifindex, src_mac, dst_mac)?;
        let sink: &mut Xdp = t
            .ebpf
            .program_mut("bench_sink")
            .context("bench_sink missing")?
            .try_into()?;
        sink.attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching bench_sink to {iface}"))?;
        Ok(t)
    }

    /// Loads both programs without attaching anything (tests run them
    /// through plain BPF_PROG_TEST_RUN).
    pub fn load(ifindex: u32, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(&OBJECT.0)
            .context("loading the benchmark object")?;
        for name in ["bench_gen", "bench_sink"] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("{name} missing"))?
                .try_into()?;
            p.load().with_context(|| format!("loading {name}"))?;
        }
        // The generator writes the MACs into every frame (pages come back
        // rewritten by the relay).
        let mut macs: Array<_, RawMacs> =
            Array::try_from(ebpf.map_mut("bench_macs").context("bench_macs")?)?;
        macs.set(
            0,
            RawMacs {
                src: src_mac,
                dst: dst_mac,
            },
            0,
        )?;
        // Addresses, ports and RTP fields are the generator's to fill in.
        let unset = SocketAddrV4::new([0, 0, 0, 0].into(), 0);
        let mut frame = UdpFrame::new(unset, unset);
        frame.src_mac = src_mac;
        frame.dst_mac = dst_mac;
        frame.zero_udp_checksum = true;
        frame.payload = relay_tests::packet::rtp_payload(PAYLOAD_LEN);
        Ok(Traffic {
            ebpf,
            template: frame.build(),
            ifindex,
        })
    }

    /// The frame handed to the kernel before the generator rewrites it.
    pub fn template(&self) -> &[u8] {
        &self.template
    }

    /// Makes the generator cycle through `flows` (frame i: flow i % len).
    pub fn set_flows(&mut self, flows: &[Flow]) -> Result<()> {
        if flows.is_empty() || flows.len() > MAX_FLOWS {
            bail!("{} flows: between 1 and {MAX_FLOWS} supported", flows.len());
        }
        let mut map: Array<_, RawFlow> =
            Array::try_from(self.ebpf.map_mut("bench_flows").context("bench_flows")?)?;
        for (i, f) in flows.iter().enumerate() {
            map.set(i as u32, RawFlow::from(*f), 0)?;
        }
        let mut config: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("bench_config").context("bench_config")?)?;
        config.set(0, flows.len() as u32, 0)?;
        Ok(())
    }

    /// Splits the flows between `lanes` generator CPUs: a generator running
    /// on CPU c sends only flows i with i % lanes == c % lanes (as RSS keeps
    /// a flow on one CPU). 1 (the default) lets any CPU send every flow.
    pub fn set_lanes(&mut self, lanes: u32) -> Result<()> {
        let mut config: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("bench_config").context("bench_config")?)?;
        config.set(1, lanes.max(1), 0)?;
        Ok(())
    }

    fn generator(&self) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program("bench_gen")
            .context("bench_gen missing")?
            .try_into()?)
    }

    /// Emits `frames` frames out of the interface (live frames, XDP_TX),
    /// on the calling thread's CPU.
    pub fn send(&self, frames: u32) -> Result<()> {
        let ctx =
            relay_userspace::datapath::xdp::selftest::xdp_md_for(self.ifindex, self.template.len());
        self.generator()?
            .test_run(TestRunOptions {
                data_in: Some(&self.template),
                ctx_in: Some(&ctx),
                repeat: frames,
                attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN (live frames)")?;
        Ok(())
    }

    /// Runs the generator once without transmitting and returns its output
    /// frame (for tests).
    pub fn generate_one(&self) -> Result<Vec<u8>> {
        self.generate_from(&self.template)
    }

    /// [`Traffic::generate_one`] from `frame` instead of the template, as
    /// when a live-frames page comes back holding what the relay made of
    /// an earlier frame (for tests).
    pub fn generate_from(&self, frame: &[u8]) -> Result<Vec<u8>> {
        let ctx = relay_userspace::datapath::xdp::selftest::xdp_md_for(self.ifindex, frame.len());
        let mut out = vec![0u8; frame.len() + 256];
        let r = self.generator()?.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })?;
        if r.return_value != XDP_TX {
            bail!("bench_gen returned {}, not XDP_TX", r.return_value);
        }
        out.truncate(r.data_size_out as usize);
        Ok(out)
    }

    /// Runs the sink once on `frame` and returns its verdict (for tests).
    pub fn sink_verdict(&self, frame: &[u8]) -> Result<u32> {
        let ctx = relay_userspace::datapath::xdp::selftest::xdp_md_for(self.ifindex, frame.len());
        let p: &Xdp = self
            .ebpf
            .program("bench_sink")
            .context("bench_sink missing")?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        Ok(p.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })?
        .return_value)
    }

    /// Frames the generator has produced so far (all CPUs).
    pub fn generated(&self) -> Result<u64> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("bench_next").context("bench_next")?)?;
        Ok(map.get(&0, 0)?.iter().sum())
    }

    /// Frames the sink has counted (and dropped) so far (all CPUs).
    pub fn received(&self) -> Result<u64> {
        let map: PerCpuArray<_, RawCount> = PerCpuArray::try_from(
            self.ebpf
                .map("bench_sink_count")
                .context("bench_sink_count")?,
        )?;
        Ok(map.get(&0, 0)?.iter().map(|c| c.packets).sum())
    }

    /// Makes the sink record latency and jitter from the paced sender's
    /// stamps (on) or not (off: the generator's frames carry none).
    pub fn set_latency(&mut self, on: bool) -> Result<()> {
        let mut config: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("bench_config").context("bench_config")?)?;
        config.set(2, u32::from(on), 0)?;
        Ok(())
    }

    /// Forgets the previous packet of flows `0..flows`, so a new point's
    /// first packets are not paired with an old point's.
    pub fn reset_transits(&mut self, flows: u32) -> Result<()> {
        let mut map: Array<_, RawTransit> = Array::try_from(
            self.ebpf
                .map_mut("bench_transits")
                .context("bench_transits")?,
        )?;
        for flow in 0..flows.min(MAX_FLOWS as u32) {
            map.set(flow, RawTransit::default(), 0)?;
        }
        Ok(())
    }

    /// What the sink recorded so far (all CPUs summed); subtract two
    /// readings with [`crate::latency::Recorded::since`].
    pub fn latency(&self) -> Result<crate::latency::Recorded> {
        let hist: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("bench_latency").context("bench_latency")?)?;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS as usize);
        for i in 0..LATENCY_BUCKETS {
            buckets.push(hist.get(&i, 0)?.iter().sum());
        }
        let jitter: PerCpuArray<_, RawJitter> =
            PerCpuArray::try_from(self.ebpf.map("bench_jitter").context("bench_jitter")?)?;
        let per_cpu = jitter.get(&0, 0)?;
        Ok(crate::latency::Recorded {
            buckets,
            sum_abs_d_ns: per_cpu.iter().map(|j| j.sum_abs_d_ns).sum(),
            pairs: per_cpu.iter().map(|j| j.pairs).sum(),
            unstamped: per_cpu.iter().map(|j| j.unstamped).sum(),
        })
    }
}

/// `struct bench_macs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawMacs {
    src: [u8; 6],
    dst: [u8; 6],
}

// SAFETY: twelve bytes, no padding, valid for any bytes.
unsafe impl Pod for RawMacs {}

/// `struct bench_transit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawTransit {
    transit_ns: u64,
    count: u64,
}

// SAFETY: two u64s, no padding, valid for any bytes.
unsafe impl Pod for RawTransit {}

/// `struct bench_jitter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawJitter {
    sum_abs_d_ns: u64,
    pairs: u64,
    unstamped: u64,
}

// SAFETY: three u64s, no padding, valid for any bytes.
unsafe impl Pod for RawJitter {}

/// `bench_bounce`: a stand-in relay that sends every IPv4 UDP frame
/// straight back, for the floor of the latency figures. Detached on drop.
#[derive(Debug)]
pub struct Bounce {
    ebpf: Ebpf,
}

impl Bounce {
    /// Loads the program without attaching it.
    pub fn load() -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(&OBJECT.0)
            .context("loading the benchmark object")?;
        let p: &mut Xdp = ebpf
            .program_mut("bench_bounce")
            .context("bench_bounce missing")?
            .try_into()?;
        p.load().context("loading bench_bounce")?;
        Ok(Bounce { ebpf })
    }

    /// Loads and attaches natively to `iface` (call from its namespace).
    pub fn attach(iface: &str) -> Result<Self> {
        let mut b = Self::load()?;
        let p: &mut Xdp = b
            .ebpf
            .program_mut("bench_bounce")
            .context("bench_bounce missing")?
            .try_into()?;
        p.attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching bench_bounce to {iface}"))?;
        Ok(b)
    }

    /// Runs the program once on `frame` as if it arrived on `ifindex`;
    /// returns its verdict and output frame (for tests).
    pub fn run_once(&self, ifindex: u32, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let ctx = relay_userspace::datapath::xdp::selftest::xdp_md_for(ifindex, frame.len());
        let p: &Xdp = self
            .ebpf
            .program("bench_bounce")
            .context("bench_bounce missing")?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = p.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }
}
