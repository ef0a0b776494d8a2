//! A dependency-free mutation fuzzer: 20 000 mutants of the golden inputs go through
//! `parse` and `rewrite`, which must never panic. Whenever a mutant parses and the plan
//! fits, the output must parse again, keep the media count, carry the planned ports and be
//! a fixed point (rewriting it again with the same plan changes nothing).
//!
//! The generator is a fixed-seed xorshift, so a failure reproduces; the panic message
//! names the case number and shows the mutant.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use relay_sdp::{parse, rewrite, MediaRewrite, RewritePlan, RtcpMux, Sdp, SdpError};

const CASES: usize = 20_000;

/// Marsaglia's xorshift64: tiny, deterministic, good enough to pick mutations.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Fragments that steer mutants towards the interesting parts of the grammar.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"=",
    b":",
    b"/",
    b"0",
    b"65535",
    b"65536",
    b"99999999999",
    b"m=audio 0 RTP/AVP 0\r\n",
    b"m=video 5000/2 RTP/AVP 96\r\n",
    b"m=image 6000 udptl t38\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"c=IN IP6 ::\r\n",
    b"c=IN IP6 2001:db8::1\r\n",
    b"c=IN IP4 ",
    b"a=rtcp:",
    b"a=rtcp:9 IN IP4 0.0.0.0\r\n",
    b"a=rtcp-mux\r\n",
    b"a=ice-ufrag:x\r\n",
    b"a=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n",
    b"a=end-of-candidates\r\n",
    b"a=rtpmap:",
    b"a=sendonly\r\n",
    b"o=- 1 1 IN IP4 h\r\n",
    b"v=0\r\n",
    b"\xff\xfe",
    b"\xc3",
    b"b=AS:64\r\n",
    b"\r\n\r\n",
];

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(len + 1);
                data.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                data.drain(at..end);
            }
            4..=6 => {
                let mut lines: Vec<Vec<u8>> = data
                    .split_inclusive(|&b| b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                if lines.is_empty() {
                    continue;
                }
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                match rng.below(3) {
                    0 => {
                        let dup = lines[a].clone();
                        lines.insert(b, dup);
                    }
                    1 => {
                        lines.remove(a);
                    }
                    _ => lines.swap(a, b),
                }
                data = lines.concat();
            }
            _ => data.truncate(rng.below(len + 1)),
        }
    }
    data
}

fn address(rng: &mut XorShift) -> IpAddr {
    match rng.below(3) {
        0 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + rng.below(200) as u8)),
        1 => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            1 + rng.below(200) as u16,
        )),
        _ => IpAddr::V6(Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped()),
    }
}

/// A random plan; usually one media entry per m= line, sometimes not.
fn plan(rng: &mut XorShift, sdp: &Sdp) -> RewritePlan {
    let mut count = sdp.media_count();
    if rng.chance(20) {
        count += 1;
    }
    let medias = (0..count)
        .map(|_| {
            let port = 1 + rng.below(65535) as u16;
            MediaRewrite {
                address: address(rng),
                port,
                rtcp_port: if rng.chance(3) {
                    None
                } else {
                    Some(port.wrapping_add(1).max(1))
                },
                rtcp_mux: [RtcpMux::Keep, RtcpMux::Offer, RtcpMux::Remove][rng.below(3)],
                formats: None,
                ptime: None,
                mid: None,
                protocol: None,
                ice: None,
                crypto: None,
                dtls: relay_sdp::DtlsRewrite::Keep,
            }
        })
        .collect();
    RewritePlan {
        origin_address: rng.chance(2).then(|| address(rng)),
        session_connection: rng.chance(3).then(|| address(rng)),
        medias,
        remove_ice: rng.chance(2),
        replace_zero_address: rng.chance(2),
        rtcp_attribute: [
            relay_sdp::RtcpAttribute::Port,
            relay_sdp::RtcpAttribute::Full,
            relay_sdp::RtcpAttribute::Omit,
        ][rng.below(3)],
        origin_version: rng.chance(2).then(|| u64::from(rng.below(1000) as u32)),
        strip_extmap: rng.chance(2),
        original_direction: rng.chance(3),
        session_attributes: if rng.chance(4) {
            vec!["rtpengine:mutant".to_owned()]
        } else {
            Vec::new()
        },
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut seeds: Vec<Vec<u8>> = fs::read_dir(dir)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".in.sdp"))
        .map(|p| fs::read(p).expect("readable"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty());
    seeds
}

/// Checks the invariants for one mutant; returns whether it parsed.
fn check(rng: &mut XorShift, case: usize, mutant: &[u8]) -> bool {
    let show = || format!("case {case}: {:?}", String::from_utf8_lossy(mutant));
    let Ok(sdp) = parse(mutant) else {
        return false;
    };
    let plan = plan(rng, &sdp);
    let out = match rewrite(&sdp, &plan) {
        Ok(out) => out,
        Err(SdpError::PlanMediaCount { .. } | SdpError::PlanRtcpConflict { .. }) => return true,
        Err(e) => panic!("{}: unexpected rewrite error {e}", show()),
    };
    let again = parse(&out).unwrap_or_else(|e| {
        panic!(
            "{}: output does not parse ({e}): {:?}",
            show(),
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(again.media_count(), sdp.media_count(), "{}", show());
    for ((before, after), want) in sdp.medias().iter().zip(again.medias()).zip(&plan.medias) {
        let port = if before.port == 0 { 0 } else { want.port };
        assert_eq!(after.port, port, "{}", show());
    }
    let fixed =
        rewrite(&again, &plan).unwrap_or_else(|e| panic!("{}: second rewrite: {e}", show()));
    assert!(
        fixed == out,
        "{}: not a fixed point:\n{}\n---\n{}",
        show(),
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&fixed)
    );
    true
}

#[test]
fn mutants_never_panic_and_rewrites_are_stable() {
    let seeds = seeds();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for case in 0..CASES {
        let seed = &seeds[case % seeds.len()];
        let mutant = mutate(&mut rng, seed);
        if check(&mut rng, case, &mutant) {
            parsed += 1;
        }
    }
    // The mutator must leave a good share parsable, or the rewrite side goes untested.
    assert!(
        parsed > CASES / 10,
        "only {parsed} of {CASES} mutants parsed"
    );
    eprintln!("{parsed} of {CASES} mutants parsed");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    for _ in 0..2_000 {
        let len = rng.below(300);
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.chance(2) {
            data.splice(0..0, b"v=0\r\n".iter().copied());
        }
        if let Ok(sdp) = parse(&data) {
            let plan = plan(&mut rng, &sdp);
            let _ = rewrite(&sdp, &plan);
        }
    }
}
