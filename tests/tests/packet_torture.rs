//! Packet torture for the XDP program (issue 19 part 3, issue 25 part 4):
//! generated frames of every category (`relay_tests::torture`) through the
//! compiled program (BPF_PROG_TEST_RUN), each compared with the host-side
//! model (`relay_tests::xdp_model`): the action, the one outcome counter
//! that moves, the stream counters, and for a forwarded frame every byte,
//! with its checksums verified again from scratch. A frame the model's
//! second opinion calls inconsistent must never be forwarded.

use std::{collections::BTreeMap, time::Duration};

use relay_common::{CounterId, StreamStats};
use relay_tests::{
    packet::{checksums_ok, udp4_partial_checksum, udp6_partial_checksum},
    require_root,
    torture::{self, network_header, Case, Fixup, Rng},
    xdp_harness::{only_counter, run_frame, with_datapath, XDP_PASS, XDP_REDIRECT, XDP_TX},
    xdp_model::{expect, inconsistency, Expected, StreamEffect, World},
};
use relay_userspace::datapath::{xdp::XdpDatapath, Datapath as _, MediaTracking, StreamSpec};

/// The seed of every run (`XRELAY_TORTURE_SEED` explores others).
const SEED: u64 = 0x19_0325;

/// Every generated frame, by category.
fn all_cases(world: &World, seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let rng = &mut rng;
    let mut cases: Vec<Case> = (0..3000)
        .map(|_| ("valid", torture::random_valid(rng, world)))
        .collect();
    cases.extend(torture::truncations(world));
    cases.extend(torture::ipv4_options(rng, world));
    cases.extend(torture::fragments(rng, world));
    cases.extend(torture::lengths(rng, world));
    cases.extend(torture::zero_checksums(rng, world));
    cases.extend(torture::vlans(world));
    cases.extend(torture::ipv6_extension_chains(rng, world));
    cases.extend(torture::ttls(world));
    cases.extend(torture::group_destinations(world));
    cases.extend(torture::wrong_family(world));
    cases.extend(torture::stack_would_drop(rng, world));
    cases.extend(torture::surplus(rng, world));
    for fixup in [Fixup::None, Fixup::Header, Fixup::All] {
        cases.extend(torture::mutations(rng, world, 3000, fixup));
    }
    cases
}

/// The world's streams and shields in the datapath.
fn install(dp: &mut XdpDatapath, world: &World) {
    for s in &world.streams {
        dp.install(&StreamSpec {
            local: s.local,
            peer: s.peer,
            source: s.source,
            strict_source: s.strict,
            stats_slot: s.slot,
            to_userspace: s.to_userspace,
            max_pps: 0,
            media: MediaTracking::None,
            ice: s.ice,
            rtcp_demux: s.rtcp_demux,
        })
        .unwrap();
    }
    for (addr, ports) in &world.shields {
        dp.shield(*addr, ports.clone(), true).unwrap();
    }
}

/// A stream's counters as (packets, bytes, dropped, passed).
type StreamCounts = (u64, u64, u64, u64);

fn counts(s: &StreamStats) -> StreamCounts {
    (s.packets, s.bytes, s.dropped, s.passed)
}

fn effect_counts(effect: StreamEffect) -> StreamCounts {
    match effect {
        StreamEffect::Forwarded { payload } => (1, payload, 0, 0),
        StreamEffect::Dropped => (0, 0, 1, 0),
        StreamEffect::Passed => (0, 0, 0, 1),
    }
}

fn add(a: StreamCounts, b: StreamCounts) -> StreamCounts {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
}

fn sub(a: StreamCounts, b: StreamCounts) -> StreamCounts {
    (a.0 - b.0, a.1 - b.1, a.2 - b.2, a.3 - b.3)
}

/// Whether a received frame's UDP checksum is right (or IPv4's "none"), or
/// a same-host sender's partial one: then what leaves must verify.
fn udp_checksum_good_or_partial(frame: &[u8]) -> bool {
    if checksums_ok(frame) {
        return true;
    }
    let (l3, ethertype) = network_header(frame);
    let ip = &frame[l3..];
    let (udp, partial) = if ethertype == 0x0800 {
        let a = |at: usize| std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&ip[at..at + 4]).unwrap());
        let udp = &ip[20..];
        let len = u16::from_be_bytes([udp[4], udp[5]]);
        (udp, udp4_partial_checksum(a(12), a(16), len))
    } else {
        let a =
            |at: usize| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&ip[at..at + 16]).unwrap());
        let udp = &ip[40..];
        let len = u16::from_be_bytes([udp[4], udp[5]]);
        (udp, udp6_partial_checksum(a(8), a(24), len))
    };
    u16::from_be_bytes([udp[6], udp[7]]) == partial
}

/// Checks what the program made of a frame it forwarded: the model's bytes,
/// and checksums that verify from scratch exactly when the received ones
/// were right (a wrong UDP checksum stays wrong; the receiver drops it).
fn check_forwarded(frame: &[u8], out: &[u8], want: &[u8]) -> Result<(), String> {
    if out != want {
        let at = out
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(out.len().min(want.len()));
        return Err(format!(
            "output differs from the model at byte {at} (lengths {} and {})\n  got  {}\n  want {}",
            out.len(),
            want.len(),
            hex(out),
            hex(want)
        ));
    }
    let (out_ok, in_ok) = (checksums_ok(out), udp_checksum_good_or_partial(frame));
    if out_ok != in_ok {
        return Err(format!(
            "output checksums verify: {out_ok}; input UDP checksum right or partial: {in_ok}"
        ));
    }
    Ok(())
}

/// Runs one frame and compares everything with the model; returns the
/// outcome counter that moved.
fn check_frame(dp: &mut XdpDatapath, want: &Expected, frame: &[u8]) -> Result<CounterId, String> {
    let before = dp.counters().unwrap();
    let stream_before = want
        .stream
        .map(|(slot, _)| counts(&dp.stream_stats(slot).unwrap()));
    let (action, out) = run_frame(dp, frame);
    let delta = dp.counters().unwrap().since(&before);
    let forwarded = action == XDP_TX || action == XDP_REDIRECT;
    if let (true, Some(why)) = (forwarded, inconsistency(frame)) {
        return Err(format!("an inconsistent frame was forwarded ({why})"));
    }
    if action != want.action() {
        return Err(format!(
            "action {action}, model {} ({})",
            want.action(),
            want.counter.name()
        ));
    }
    let counter =
        only_counter(&delta, frame.len()).map_err(|moved| format!("counters moved: {moved}"))?;
    if counter != want.counter {
        return Err(format!(
            "counter {}, model {}",
            counter.name(),
            want.counter.name()
        ));
    }
    if let Some(want_out) = &want.output {
        check_forwarded(frame, &out, want_out)?;
    } else if action == XDP_PASS && out != frame {
        return Err("a passed frame was modified".into());
    }
    if let (Some((slot, effect)), Some(before)) = (want.stream, stream_before) {
        let moved = sub(counts(&dp.stream_stats(slot).unwrap()), before);
        if moved != effect_counts(effect) {
            return Err(format!(
                "stream {slot} counters moved {moved:?}, model {effect:?}"
            ));
        }
    }
    Ok(counter)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Frames, outcomes and failures of a run, by category.
#[derive(Default)]
struct Tally {
    /// Category -> (frames, forwarded, passed, dropped).
    categories: BTreeMap<&'static str, [usize; 4]>,
    counters: BTreeMap<&'static str, usize>,
    /// Frames the model's second opinion calls inconsistent (none forwarded).
    inconsistent: usize,
    /// Expected stream counters accumulated over the run, by slot.
    streams: BTreeMap<u32, StreamCounts>,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, category: &'static str, counter: CounterId) {
        let row = self.categories.entry(category).or_default();
        row[0] += 1;
        let col = if counter.is_forwarded() {
            1
        } else if counter.is_dropped() {
            3
        } else {
            2
        };
        row[col] += 1;
        *self.counters.entry(counter.name()).or_default() += 1;
    }

    fn print(&self, elapsed: Duration) {
        let total = |col: usize| self.categories.values().map(|r| r[col]).sum::<usize>();
        eprintln!(
            "torture: {} frames in {:.2} s: {} forwarded, {} passed, {} dropped; \
             {} inconsistent, none forwarded",
            total(0),
            elapsed.as_secs_f64(),
            total(1),
            total(2),
            total(3),
            self.inconsistent
        );
        for (category, [n, f, p, d]) in &self.categories {
            eprintln!(
                "  {category:<40} {n:>6} frames: {f:>5} forwarded, {p:>5} passed, {d:>5} dropped"
            );
        }
        let by_counter: Vec<String> = self
            .counters
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        eprintln!("  by counter: {}", by_counter.join(", "));
    }
}

/// Every slot's counters moved exactly by what the model said over the run
/// (so no frame moved a stream the model did not name).
fn check_stream_totals(
    dp: &XdpDatapath,
    world: &World,
    start: &BTreeMap<u32, StreamCounts>,
    tally: &mut Tally,
) {
    for s in &world.streams {
        let moved = sub(counts(&dp.stream_stats(s.slot).unwrap()), start[&s.slot]);
        let want = tally.streams.get(&s.slot).copied().unwrap_or_default();
        if moved != want {
            tally.failures.push(format!(
                "stream {} over the run: moved {moved:?}, model {want:?}",
                s.slot
            ));
        }
    }
}

#[test]
fn packet_torture() {
    require_root!();
    let seed = std::env::var("XRELAY_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let world = torture::world();
    let cases = all_cases(&world, seed);
    with_datapath("torture", 8, Duration::from_millis(500), |_, dp| {
        install(dp, &world);
        let start: BTreeMap<u32, StreamCounts> = world
            .streams
            .iter()
            .map(|s| (s.slot, counts(&dp.stream_stats(s.slot).unwrap())))
            .collect();
        let mut tally = Tally::default();
        let clock = std::time::Instant::now();
        for (category, frame) in &cases {
            let want = expect(&world, frame);
            tally.inconsistent += usize::from(inconsistency(frame).is_some());
            match check_frame(dp, &want, frame) {
                Ok(counter) => tally.record(category, counter),
                Err(e) => tally
                    .failures
                    .push(format!("{category}: {e}\n  frame {}", hex(frame))),
            }
            if let Some((slot, effect)) = want.stream {
                let acc = tally.streams.entry(slot).or_default();
                *acc = add(*acc, effect_counts(effect));
            }
        }
        check_stream_totals(dp, &world, &start, &mut tally);
        tally.print(clock.elapsed());
        for f in tally.failures.iter().take(20) {
            eprintln!("FAIL {f}");
        }
        assert!(
            tally.failures.is_empty(),
            "{} of {} frames disagree with the model (seed {seed:#x})",
            tally.failures.len(),
            cases.len()
        );
    });
}
