//! NG codec: decode a typical Kamailio offer (framing, bencode, command
//! parsing), encode an offer reply and a delete reply.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use relay_ng::{encode_reply, parse_datagram, reply, Dict, Value};
use relay_userspace::calls::summary::{
    CallSummary, Counts, MediaSummary, RtpSummary, StreamSummary, TagSummary,
};

const OFFER: &[u8] = include_bytes!("../../relay-ng/tests/fixtures/kamailio-offer.ng");
const SDP: &str = include_str!("../../relay-sdp/tests/golden/phone_g711.out.sdp");

fn bench(c: &mut Criterion) {
    c.bench_function("ng/frame+bencode only", |b| {
        b.iter(|| parse_datagram(black_box(OFFER)).unwrap())
    });
    let req = parse_datagram(OFFER).unwrap();
    c.bench_function("ng/command parse only", |b| {
        b.iter(|| relay_ng::parse(black_box(&req.body)).unwrap())
    });
    c.bench_function("ng/decode kamailio offer", |b| {
        b.iter(|| {
            let req = parse_datagram(black_box(OFFER)).unwrap();
            relay_ng::parse(&req.body).unwrap()
        })
    });
    let mut extra = Dict::new();
    extra.insert(b"sdp".to_vec(), Value::str(SDP));
    let body = reply::ok(extra);
    c.bench_function("ng/encode offer reply", |b| {
        b.iter(|| encode_reply(black_box(b"5323_1"), black_box(&body)))
    });
    let summary = delete_summary();
    c.bench_function("ng/encode delete reply", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024);
            relay_userspace::control::summary_reply::write(
                black_box(&summary),
                &[],
                1_700_000_000,
                &mut out,
            );
            out
        })
    });
}

/// A two-party call with one audio media each, after some RTP: what a
/// `delete` reply summarises in the NG benchmark.
fn delete_summary() -> CallSummary {
    let stream = |port: u16, rtcp: bool| StreamSummary {
        local: std::net::SocketAddr::from(([10, 0, 0, 5], port)),
        advertised: std::net::SocketAddr::from(([203, 0, 113, 5], port)),
        sdp_endpoint: Some(std::net::SocketAddr::from(([192, 0, 2, 1], 5000))),
        confirmed: Some(std::net::SocketAddr::from(([192, 0, 2, 1], 5000))),
        rtcp,
        kernelized: false,
        user: Counts {
            packets: 1500,
            bytes: 258_000,
            errors: 0,
        },
        kernel: Counts::default(),
        last_packet_age_ms: Some(20),
        rtp_quality: Some(RtpSummary {
            ssrc: Some(0x1234_5678),
            rtp_packets: 1500,
            last_seq: Some(66_000),
            jitter_us: Some(1250),
            clock_rate: 8000,
            ..RtpSummary::default()
        }),
        srtp: None,
        dtls: None,
    };
    let tag = |name: &str, peer: &str, port: u16| TagSummary {
        tag: name.to_owned(),
        in_dialogue_with: Some(peer.to_owned()),
        created: 1_700_000_000,
        interface: "default".to_owned(),
        medias: vec![MediaSummary {
            index: 1,
            kind: "audio".to_owned(),
            protocol: "RTP/AVP".to_owned(),
            flags: vec!["initialized", "recv", "send"],
            streams: vec![stream(port, false), stream(port + 1, true)],
        }],
    };
    CallSummary {
        call_id: "bench-1".to_owned(),
        created: 1_700_000_000,
        created_us: 250_000,
        last_signal: 1_700_000_001,
        tags: vec![tag("a", "b", 30000), tag("b", "a", 30002)],
        rtp: Counts {
            packets: 3000,
            bytes: 516_000,
            errors: 0,
        },
        rtcp: Counts::default(),
        totals: Counts {
            packets: 3000,
            bytes: 516_000,
            errors: 0,
        },
        restored: false,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
