//! NG codec: decode a typical Kamailio offer (framing, bencode, command
//! parsing) and encode an offer reply.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use relay_ng::{encode_reply, parse_datagram, reply, Dict, Value};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);
