//! relayd's ICE-lite against an independent, full ICE agent: aioice (the ICE
//! library under aiortc) in host A's namespace as the controlling agent of a
//! WebRTC-style caller, a plain RTP phone in host B's. aioice must complete
//! its connectivity checks against the relay's candidates and nominate a
//! pair; RTP then flows over that pair through relayd (into XDP) to B and
//! back. Binding requests with the wrong password get 401 and move nothing;
//! garbage STUN disturbs nothing; a check arriving while the streams are in
//! XDP still reaches relayd's agent.
//!
//! Needs python3 with aioice (`pip install aioice`); the test installs it
//! when missing and skips, saying why, only if that fails.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    ng_client::{audio_sdp, sdp_endpoint},
    require_root,
    topology::{bind_udp, HOST_A, HOST_B, RELAY_A, RELAY_B},
};
use stun_types::{
    attribute::{
        AttributeStaticType, AttributeType, ErrorCode, MessageIntegrity, RawAttribute, Username,
        XorMappedAddress,
    },
    message::{
        IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageWrite,
        MessageWriteExt, MessageWriteVec, ShortTermCredentials, BINDING,
    },
};

mod common;

use common::{s, wait_kernelized, Bed};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ice/aioice_peer.py");

/// Whether python3 can import aioice, installing it with pip if needed.
fn aioice_available() -> Result<(), String> {
    relay_tests::python::ensure_module("aioice", "aioice")
}

/// The aioice peer, speaking JSON lines.
struct Peer {
    child: Child,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Peer {
    fn read(&mut self) -> serde_json::Value {
        let line = self
            .out
            .next()
            .expect("aioice peer ended early")
            .expect("aioice peer output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn write(&mut self, v: serde_json::Value) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{v}").expect("write to aioice peer");
        stdin.flush().expect("flush");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Binding request from a full agent: USERNAME `LOCAL:REMOTE`,
/// optionally USE-CANDIDATE, MESSAGE-INTEGRITY keyed with `pwd`, FINGERPRINT.
fn binding_request(username: &str, pwd: &str, nominate: bool) -> Vec<u8> {
    let mut m = Message::builder_request(BINDING, MessageWriteVec::new());
    m.add_attribute(&Username::new(username).unwrap()).unwrap();
    if nominate {
        m.add_attribute(&RawAttribute::new(AttributeType::new(0x0025), &[]))
            .unwrap();
    }
    let c = MessageIntegrityCredentials::from(ShortTermCredentials::new(pwd.into()));
    m.add_message_integrity(&c, IntegrityAlgorithm::Sha1)
        .unwrap();
    m.add_fingerprint().unwrap();
    m.finish()
}

fn attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("a={name}:")))
}

#[test]
fn aioice_nominates_relayd_ice_lite_and_media_flows_through_xdp() {
    require_root!();
    if let Err(why) = aioice_available() {
        eprintln!("SKIPPED: aioice unavailable: {why}");
        return;
    }
    let bed = Bed::new("icelite");
    let relayd = bed.relayd(&[]);

    // The WebRTC-style caller: aioice gathers its host candidates in A.
    let mut child = bed
        .t
        .a
        .command("python3")
        .unwrap()
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the aioice peer");
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut peer = Peer { child, out };
    let local = peer.read();
    let candidates: Vec<String> = local["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let host = candidates
        .iter()
        .find(|c| c.split_whitespace().nth(4) == Some(HOST_A))
        .expect("a host candidate on A's address");
    let port: u16 = host.split_whitespace().nth(5).unwrap().parse().unwrap();
    let mut offer_sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {HOST_A}\r\ns=-\r\nc=IN IP4 {HOST_A}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        local["ufrag"].as_str().unwrap(),
        local["pwd"].as_str().unwrap()
    );
    for c in &candidates {
        offer_sdp.push_str(&format!("a=candidate:{c}\r\n"));
    }
    offer_sdp.push_str("a=sendrecv\r\n");

    // Kamailio's usual WebRTC-to-SIP flags: no ICE toward the phone; the
    // answer back to the ICE caller gets the relay's ICE by default.
    let call = "ice-call";
    let o = bed
        .ng
        .ok(&Value::dict([
            ("command", s("offer")),
            ("call-id", s(call)),
            ("from-tag", s("tag-A")),
            ("sdp", s(&offer_sdp)),
            ("direction", Value::str_list(["a", "b"])),
            ("ICE", s("remove")),
        ]))
        .unwrap();
    let to_b = String::from_utf8(o.get("sdp").and_then(Value::as_bytes).unwrap().to_vec()).unwrap();
    assert!(
        !to_b.contains("a=ice-") && !to_b.contains("a=candidate"),
        "{to_b}"
    );
    let (addr, relay_b_port) = sdp_endpoint(to_b.as_bytes()).unwrap();
    assert_eq!(addr, RELAY_B);
    let relay_b: SocketAddr = format!("{RELAY_B}:{relay_b_port}").parse().unwrap();
    let a = bed
        .ng
        .ok(&Value::dict([
            ("command", s("answer")),
            ("call-id", s(call)),
            ("from-tag", s("tag-A")),
            ("to-tag", s("tag-B")),
            ("sdp", s(&audio_sdp(HOST_B, 40000))),
        ]))
        .unwrap();
    let to_a = String::from_utf8(a.get("sdp").and_then(Value::as_bytes).unwrap().to_vec()).unwrap();
    assert!(to_a.contains("\r\na=ice-lite\r\n"), "{to_a}");
    let (ufrag, pwd) = (
        attribute(&to_a, "ice-ufrag")
            .expect("relay's ufrag")
            .to_owned(),
        attribute(&to_a, "ice-pwd").expect("relay's pwd").to_owned(),
    );
    let (addr, relay_a_port) = sdp_endpoint(to_a.as_bytes()).unwrap();
    assert_eq!(addr, RELAY_A);
    let relay_a: SocketAddr = format!("{RELAY_A}:{relay_a_port}").parse().unwrap();
    let relay_candidates: Vec<String> = to_a
        .lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .filter(|c| c.split_whitespace().nth(1) == Some("1"))
        .map(str::to_owned)
        .collect();
    assert_eq!(relay_candidates.len(), 1, "{to_a}");
    assert!(
        relay_candidates[0].contains(&format!(" {RELAY_A} {relay_a_port} typ host")),
        "{to_a}"
    );

    // The phone in B, and checks from aioice until it nominates.
    let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    peer.write(serde_json::json!({
        "ufrag": ufrag, "pwd": pwd, "lite": true, "candidates": relay_candidates,
    }));
    let connected = peer.read();
    let pair = &connected["connected"];
    assert_eq!(
        pair[1],
        serde_json::json!([RELAY_A, relay_a_port]),
        "{connected}"
    );
    assert_eq!(pair[0][0], HOST_A, "{connected}");
    let nominated: SocketAddr = format!("{HOST_A}:{}", pair[0][1]).parse().unwrap();
    assert_eq!(nominated.port(), port);

    // A stranger in A with the wrong password, then with garbage: 401 or
    // nothing, and the nominated endpoint stays.
    let stranger = bind_udp(&bed.t.a, &format!("{HOST_A}:41000")).unwrap();
    let remote_ufrag = local["ufrag"].as_str().unwrap();
    let bad = binding_request(
        &format!("{ufrag}:{remote_ufrag}"),
        "not-the-relays-password!!",
        true,
    );
    stranger.send_to(&bad, relay_a).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = stranger.recv_from(&mut buf).expect("an error response");
    assert_eq!(from, relay_a);
    let resp = Message::from_bytes(&buf[..n]).unwrap();
    assert!(resp.has_class(MessageClass::Error));
    assert_eq!(resp.attribute::<ErrorCode>().unwrap().code(), 401);
    assert!(!resp.has_attribute(MessageIntegrity::TYPE));
    let mut garbage = bad.clone();
    garbage.truncate(30);
    stranger.send_to(&garbage, relay_a).unwrap();
    let mut cookie_junk = vec![0u8; 64];
    cookie_junk[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    stranger.send_to(&cookie_junk, relay_a).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        stranger.recv_from(&mut buf).is_err(),
        "garbage gets no answer"
    );
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        b.recv_from(&mut buf).is_err(),
        "STUN, good or bad, is the agent's: never relayed to B"
    );
    b.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();

    // Media: aioice sends RTP over the nominated pair; B echoes it back to
    // the relay; aioice must get every echo over the same pair.
    const N: usize = 30;
    peer.write(serde_json::json!({ "go": N }));
    let mut echoed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while echoed < N && Instant::now() < deadline {
        match b.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, relay_b, "media reaches B from the relay's B port");
                b.send_to(&buf[..n], relay_b).unwrap();
                echoed += 1;
            }
            Err(_) => break,
        }
    }
    let result = peer.read();
    assert_eq!(echoed, N, "B got every packet: {result}");
    assert_eq!(result["received"], N, "aioice got every echo: {result}");
    assert_eq!(result["echo_ok"], true, "{result}");

    // Both ends confirmed: the call is in XDP. A check now (a valid one
    // from another candidate, without USE-CANDIDATE) still reaches relayd's
    // agent past XDP and is answered with the stranger's mapped address.
    wait_kernelized(&bed.ng, call);
    assert!(bed.forwarding_streams() >= 2, "streams forwarded in XDP");
    let streams = bed.relayctl_json("streams");
    let flagged = |port: u16| {
        streams.as_array().unwrap().iter().any(|s| {
            s["local"] == format!("{RELAY_A}:{port}")
                && s["ice"] == true
                && s["to_userspace"] == false
        })
    };
    assert!(
        flagged(relay_a_port),
        "A's port carries the ICE flag: {streams}"
    );
    let good = binding_request(&format!("{ufrag}:{remote_ufrag}"), &pwd, false);
    stranger.send_to(&good, relay_a).unwrap();
    let (n, from) = stranger.recv_from(&mut buf).expect("a success response");
    assert_eq!(from, relay_a);
    let resp = Message::from_bytes(&buf[..n]).unwrap();
    assert!(resp.has_class(MessageClass::Success));
    let mapped = resp.attribute::<XorMappedAddress>().unwrap();
    assert_eq!(
        mapped.addr(resp.transaction_id()),
        stranger.local_addr().unwrap()
    );
    let c = MessageIntegrityCredentials::from(ShortTermCredentials::new(pwd.clone()));
    assert!(resp.validate_integrity(&c).is_ok());

    // The endpoint is still aioice's: B's media goes there, not to the
    // stranger that only checked.
    b.send_to(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], relay_b)
        .unwrap();
    assert!(
        stranger.recv_from(&mut buf).is_err(),
        "media never goes to an address that was not nominated"
    );

    drop(peer);
    let _ = bed.ng.request(&common::command("delete", call));
    common::stop_relayd(&bed.t.r, relayd);
}
