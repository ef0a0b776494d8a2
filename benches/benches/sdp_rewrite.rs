//! SDP: parse and rewrite a typical offer (G.711 phone), and an audio+video
//! WebRTC-style offer whose ICE attributes are stripped.

use std::net::IpAddr;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use relay_sdp::{MediaRewrite, RewritePlan, RtcpMux};

const PHONE: &[u8] = include_bytes!("../../relay-sdp/tests/golden/phone_g711.in.sdp");
const WEBRTC: &[u8] = include_bytes!("../../relay-sdp/tests/golden/webrtc_ice_removed.in.sdp");

fn plan(medias: usize, remove_ice: bool) -> RewritePlan {
    let address: IpAddr = "203.0.113.7".parse().unwrap();
    RewritePlan {
        origin_address: None,
        session_connection: Some(address),
        medias: (0..medias)
            .map(|i| MediaRewrite {
                address,
                port: 30000 + 2 * i as u16,
                rtcp_port: Some(30001 + 2 * i as u16),
                rtcp_mux: RtcpMux::Keep,
                formats: None,
                ptime: None,
                mid: None,
                protocol: None,
                ice: None,
                crypto: None,
                dtls: relay_sdp::DtlsRewrite::Keep,
            })
            .collect(),
        remove_ice,
        replace_zero_address: false,
        rtcp_attribute: Default::default(),
        origin_version: None,
        strip_extmap: false,
        original_direction: false,
        session_attributes: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    for (name, sdp, remove_ice) in [
        ("phone g711", PHONE, false),
        ("audio+video, ICE stripped", WEBRTC, true),
    ] {
        let medias = relay_sdp::parse(sdp).unwrap().media_count();
        let plan = plan(medias, remove_ice);
        c.bench_function(&format!("sdp/parse+rewrite {name}"), |b| {
            b.iter(|| {
                let parsed = relay_sdp::parse(black_box(sdp)).unwrap();
                relay_sdp::rewrite(&parsed, &plan).unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
