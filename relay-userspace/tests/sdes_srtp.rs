//! SDES-SRTP <-> RTP bridging against an independent SRTP implementation:
//! pylibsrtp (Python bindings with their own libsrtp build) keys and
//! protects the SRTP caller in host A, who offers `RTP/SAVP` with
//! `a=crypto` through NG with `transport-protocol: RTP/AVP` towards a plain
//! RTP phone in host B. B must get the exact RTP (and RTCP) A encrypted; A
//! must decrypt, under the relay's key from the answer, exactly what B sent.
//! A packet under a wrong key and a replayed one are counted in `query` and
//! never reach B; the SRTP call stays out of XDP while a plain call beside
//! it goes into XDP and keeps its media. Then the other way round: a plain
//! caller with `transport-protocol: RTP/SAVP`, the pylibsrtp callee taking
//! the relay's `a=crypto` line by tag, media both ways. One call each way
//! per suite relayd implements: AES_CM_128_HMAC_SHA1_80/32, AEAD_AES_128_GCM,
//! AEAD_AES_256_GCM, AES_256_CM_HMAC_SHA1_80/32 and NULL_HMAC_SHA1_80/32
//! (pylibsrtp names only the suites with a DTLS-SRTP profile; the peer
//! script fills in its libsrtp's policy for the others). A line whose key
//! does not fit its suite's length is passed over for the next one.
//!
//! Needs python3 with pylibsrtp (`pip install pylibsrtp`); the test installs
//! it when missing and skips, saying why, only if that fails.
//!
//! OSRTP (RFC 8643): the same bridging with `RTP/AVP` kept on the `m=`
//! lines. A pylibsrtp caller offers `RTP/AVP` with `a=crypto` and
//! `OSRTP=accept`; the plain callee declines, so the relay answers the
//! caller with its own key and bridges. A plain caller with `OSRTP-offer`:
//! the pylibsrtp callee answers one of the relay's lines on `RTP/AVP`, or a
//! plain callee declines and the call stays plain (and goes into XDP). An
//! accepted OSRTP call keeps its keys across `kill -9`.
//!
//! Restarts: an SDES call whose SRTP sequence numbers wrap keeps
//! decrypting both ways after `kill -9` and a new relayd on the same
//! state, including when the wrap happened after the last record.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    time::Duration,
};

use relay_ng::Value;
use relay_tests::{
    ng_client::sdp_endpoint,
    require_root,
    topology::{bind_udp, HOST_A, HOST_B, RELAY_A, RELAY_B},
};

mod common;

use common::{s, wait_kernelized, Bed};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/srtp/pylibsrtp_peer.py");

fn pylibsrtp_available() -> Result<(), String> {
    relay_tests::python::ensure_module("pylibsrtp", "pylibsrtp")
}

/// The pylibsrtp side, speaking JSON lines.
struct Peer {
    child: Child,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Peer {
    fn start() -> Peer {
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the pylibsrtp peer");
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer { child, out }
    }

    fn call(&mut self, v: serde_json::Value) -> serde_json::Value {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{v}").expect("write to the pylibsrtp peer");
        stdin.flush().expect("flush");
        let line = self
            .out
            .next()
            .expect("pylibsrtp peer ended early")
            .expect("pylibsrtp peer output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn op(&mut self, op: &str, data: &[u8]) -> Result<Vec<u8>, String> {
        let r = self.call(serde_json::json!({ "op": op, "hex": hex(data) }));
        match r["hex"].as_str() {
            Some(h) => Ok(unhex(h)),
            None => Err(r.to_string()),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x42; 20]);
    p
}

fn recv(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Every suite relayd implements, in rtpengine's order.
const SUITES: [&str; 8] = [
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
];

/// Length of a suite's `inline:` key||salt (RFC 4568, RFC 6188, RFC 7714).
fn key_salt_len(suite: &str) -> usize {
    match suite {
        "AEAD_AES_128_GCM" => 16 + 12,
        "AEAD_AES_256_GCM" => 32 + 12,
        "AES_256_CM_HMAC_SHA1_80" | "AES_256_CM_HMAC_SHA1_32" => 32 + 14,
        // AES_CM_128 and NULL: a 128-bit master key and 112-bit salt.
        _ => 16 + 14,
    }
}

fn crypto_line(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .collect()
}

/// The `SRTP` dictionary of the stream on `local port` in `query`.
fn srtp_counts(q: &Value, port: u16) -> Option<(i64, i64)> {
    for t in q.get("tags")?.as_dict()?.values() {
        for m in t.get("medias")?.as_list()? {
            for st in m.get("streams")?.as_list()? {
                if st.get("local port")?.as_int()? == i64::from(port) {
                    let d = st.get("SRTP")?;
                    return Some((
                        d.get("auth failures")?.as_int()?,
                        d.get("replays")?.as_int()?,
                    ));
                }
            }
        }
    }
    None
}

/// How the SRTP party signals SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Srtp {
    /// `RTP/SAVP` with `a=crypto`, bridged by `transport-protocol`.
    Savp,
    /// OSRTP: `RTP/AVP` with `a=crypto`, bridged by the `OSRTP` options.
    Osrtp,
}

impl Srtp {
    /// The SRTP party's profile.
    fn profile(self) -> &'static str {
        match self {
            Srtp::Savp => "RTP/SAVP",
            Srtp::Osrtp => "RTP/AVP",
        }
    }

    /// The NG options of an offer from an SRTP caller to a plain callee.
    fn caller_offer(self) -> (&'static str, Value) {
        match self {
            Srtp::Savp => ("transport-protocol", s("RTP/AVP")),
            Srtp::Osrtp => ("OSRTP", Value::str_list(["accept"])),
        }
    }

    /// The NG options of the plain callee's answer to that offer.
    fn callee_answer(self) -> Vec<(&'static str, Value)> {
        match self {
            Srtp::Savp => Vec::new(),
            Srtp::Osrtp => vec![("OSRTP", Value::str_list(["accept"]))],
        }
    }

    /// The NG options of an offer from a plain caller to an SRTP callee.
    fn callee_offer(self) -> (&'static str, Value) {
        match self {
            Srtp::Savp => ("transport-protocol", s("RTP/SAVP")),
            Srtp::Osrtp => ("flags", Value::str_list(["OSRTP-offer"])),
        }
    }
}

/// A request of `base` entries and `more`.
fn request(base: Vec<(&str, Value)>, more: Vec<(&str, Value)>) -> Value {
    Value::dict(base.into_iter().chain(more))
}

/// One PCMU audio stream from `host` on `port` under `profile` (session
/// version `session`: 1 in the offers here, 2 in the answers), with an
/// `a=crypto:` line for each of `crypto` (`TAG SUITE inline:KEY`).
fn audio_sdp(session: u8, host: &str, port: u16, profile: &str, crypto: &[String]) -> String {
    let crypto: String = crypto.iter().map(|c| format!("a=crypto:{c}\r\n")).collect();
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
         m=audio {port} {profile} 0\r\na=rtpmap:0 PCMU/8000\r\n{crypto}a=sendrecv\r\n"
    )
}

/// A's `offer` of `sdp` in `call`, toward B, with `more` options.
fn offer(bed: &Bed, call: &str, sdp: &str, more: Vec<(&str, Value)>) -> Value {
    bed.ng
        .ok(&request(
            vec![
                ("command", s("offer")),
                ("call-id", s(call)),
                ("from-tag", s("tag-A")),
                ("sdp", s(sdp)),
                ("direction", Value::str_list(["a", "b"])),
            ],
            more,
        ))
        .unwrap()
}

/// B's `answer` of `sdp` in `call`, with `more` options.
fn answer(bed: &Bed, call: &str, sdp: &str, more: Vec<(&str, Value)>) -> Value {
    bed.ng
        .ok(&request(
            vec![
                ("command", s("answer")),
                ("call-id", s(call)),
                ("from-tag", s("tag-A")),
                ("to-tag", s("tag-B")),
                ("sdp", s(sdp)),
            ],
            more,
        ))
        .unwrap()
}

/// One SRTP call under `suite`: SDP both ways, media both ways, a wrong
/// key and a replay refused.
fn srtp_call(bed: &Bed, peer: &mut Peer, suite: &str, n: u16, mode: Srtp) {
    let call = format!("{mode:?}-{suite}");
    let profile = mode.profile();
    let (a_port, b_port) = (6000 + n * 10, 42000 + n * 10);
    let peer_key: Vec<u8> = (0..key_salt_len(suite))
        .map(|i| (i as u8) ^ (n as u8).wrapping_mul(37).wrapping_add(1))
        .collect();
    let offer_sdp = audio_sdp(
        1,
        HOST_A,
        a_port,
        profile,
        &[format!("1 {suite} inline:{}", b64(&peer_key))],
    );
    let o = offer(bed, &call, &offer_sdp, vec![mode.caller_offer()]);
    let to_b = sdp_of(&o);
    assert!(to_b.contains(" RTP/AVP 0\r\n"), "{to_b}");
    match mode {
        Srtp::Savp => assert!(crypto_line(&to_b).is_empty(), "{to_b}"),
        // Opportunistic: the callee may take the caller's own line.
        Srtp::Osrtp => assert_eq!(
            crypto_line(&to_b),
            [format!("1 {suite} inline:{}", b64(&peer_key))],
            "{to_b}"
        ),
    }
    let (_, relay_b_port) = sdp_endpoint(to_b.as_bytes()).unwrap();
    let relay_b: SocketAddr = format!("{RELAY_B}:{relay_b_port}").parse().unwrap();
    let answer_sdp = audio_sdp(2, HOST_B, b_port, "RTP/AVP", &[]);
    let a = answer(bed, &call, &answer_sdp, mode.callee_answer());
    let to_a = sdp_of(&a);
    assert!(to_a.contains(&format!(" {profile} 0\r\n")), "{to_a}");
    let lines = crypto_line(&to_a);
    assert_eq!(lines.len(), 1, "{to_a}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&fields[..2], ["1", suite], "{to_a}");
    let relay_key = fields[2].strip_prefix("inline:").expect("inline key");
    assert_ne!(
        relay_key,
        b64(&peer_key),
        "the relay answers with a key of its own"
    );
    let (_, relay_a_port) = sdp_endpoint(to_a.as_bytes()).unwrap();
    let relay_a: SocketAddr = format!("{RELAY_A}:{relay_a_port}").parse().unwrap();
    let relay_a_rtcp: SocketAddr = format!("{RELAY_A}:{}", relay_a_port + 1).parse().unwrap();
    let relay_b_rtcp: SocketAddr = format!("{RELAY_B}:{}", relay_b_port + 1).parse().unwrap();

    let r = peer.call(serde_json::json!({
        "op": "keys", "suite": suite, "tx": b64(&peer_key), "rx": relay_key,
    }));
    assert_eq!(r["ok"], true, "{r}");

    let a_rtp = bind_udp(&bed.t.a, &format!("{HOST_A}:{a_port}")).unwrap();
    let a_rtcp = bind_udp(&bed.t.a, &format!("{HOST_A}:{}", a_port + 1)).unwrap();
    let b_rtp = bind_udp(&bed.t.b, &format!("{HOST_B}:{b_port}")).unwrap();
    let b_rtcp = bind_udp(&bed.t.b, &format!("{HOST_B}:{}", b_port + 1)).unwrap();

    // A -> B: SRTP in, the very RTP out.
    const N: u16 = 20;
    let mut sent = Vec::new();
    for seq in 0..N {
        let plain = rtp(seq, 0xa0a0_0000 + u32::from(n), &[seq as u8; 160]);
        let protected = peer.op("protect", &plain).unwrap();
        assert_eq!(
            protected[12..plain.len()] != plain[12..],
            !suite.starts_with("NULL"),
            "{suite}: the NULL suites only authenticate"
        );
        a_rtp.send_to(&protected, relay_a).unwrap();
        let (got, from) = recv(&b_rtp).unwrap_or_else(|| panic!("{suite}: B got no RTP {seq}"));
        assert_eq!(from, relay_b, "{suite}");
        assert_eq!(got, plain, "{suite}: B gets what A encrypted, decrypted");
        sent.push(protected);
    }
    // B -> A: RTP in, SRTP under the relay's key out.
    for seq in 0..N {
        let plain = rtp(
            1000 + seq,
            0xb0b0_0000 + u32::from(n),
            b"from the plain side",
        );
        b_rtp.send_to(&plain, relay_b).unwrap();
        let (got, from) = recv(&a_rtp).unwrap_or_else(|| panic!("{suite}: A got no SRTP {seq}"));
        assert_eq!(from, relay_a, "{suite}");
        assert_ne!(got, plain, "{suite}: protected towards A");
        assert_eq!(peer.op("unprotect", &got).unwrap(), plain, "{suite}");
    }
    // RTCP both ways on the RTCP ports.
    let sr = rtcp_sr(0xa0a0_0000 + u32::from(n));
    a_rtcp
        .send_to(&peer.op("protect_rtcp", &sr).unwrap(), relay_a_rtcp)
        .unwrap();
    assert_eq!(recv(&b_rtcp).expect("B got RTCP").0, sr, "{suite} SRTCP");
    let sr_b = rtcp_sr(0xb0b0_0000 + u32::from(n));
    b_rtcp.send_to(&sr_b, relay_b_rtcp).unwrap();
    let got = recv(&a_rtcp).expect("A got SRTCP").0;
    assert_eq!(
        peer.op("unprotect_rtcp", &got).unwrap(),
        sr_b,
        "{suite} RTCP"
    );

    // A wrong key (a tampered tag is what a wrong key looks like to the
    // relay: the tag does not verify) and a replay: dropped and counted.
    let mut forged = peer
        .op("protect", &rtp(N, 0xa0a0_0000 + u32::from(n), b"forged"))
        .unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 0xff;
    a_rtp.send_to(&forged, relay_a).unwrap();
    a_rtp.send_to(&sent[3], relay_a).unwrap();
    b_rtp
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    assert!(recv(&b_rtp).is_none(), "{suite}: nothing forwarded");
    let q = bed.ng.ok(&common::command("query", &call)).unwrap();
    assert_eq!(
        srtp_counts(&q, relay_a_port),
        Some((1, 1)),
        "{suite}: one auth failure, one replay on A's port: {q:?}"
    );
    // A forged packet from a stranger teaches the relay nothing: B's media
    // still goes to A's own address.
    let stranger = bind_udp(&bed.t.a, &format!("{HOST_A}:{}", a_port + 5)).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stranger.send_to(&forged, relay_a).unwrap();
    let plain = rtp(2000, 0xb0b0_0000 + u32::from(n), b"after the forgery");
    b_rtp.send_to(&plain, relay_b).unwrap();
    let got = recv(&a_rtp).expect("A still gets B's media").0;
    assert_eq!(peer.op("unprotect", &got).unwrap(), plain, "{suite}");
    assert!(recv(&stranger).is_none(), "{suite}: nothing to the forger");
    let q = bed.ng.ok(&common::command("query", &call)).unwrap();
    assert_eq!(
        srtp_counts(&q, relay_a_port),
        Some((2, 1)),
        "{suite}: {q:?}"
    );
    // Bridged streams never go into XDP.
    let kernelized = common::rtp_streams(&q)
        .iter()
        .any(|(_, flags, _, _)| flags.iter().any(|f| f == "kernelized"));
    assert!(
        !kernelized,
        "{suite}: SRTP bridging stays in userspace: {q:?}"
    );
}

/// The other way round: a plain caller in A with `transport-protocol:
/// RTP/SAVP` (or `OSRTP-offer`), the pylibsrtp callee in B picking the
/// relay's line for `suite` by its tag.
fn srtp_callee(bed: &Bed, peer: &mut Peer, suite: &str, n: u16, mode: Srtp) {
    let call = format!("{mode:?}-callee-{suite}");
    let profile = mode.profile();
    let (a_port, b_port) = (7000 + n * 10, 43000 + n * 10);
    let offer_sdp = audio_sdp(1, HOST_A, a_port, "RTP/AVP", &[]);
    let o = offer(
        bed,
        &call,
        &offer_sdp,
        vec![("DTLS", s("off")), mode.callee_offer()],
    );
    let to_b = sdp_of(&o);
    assert!(to_b.contains(&format!(" {profile} 0\r\n")), "{to_b}");
    let line = crypto_line(&to_b)
        .into_iter()
        .find(|l| l.split_whitespace().nth(1) == Some(suite))
        .unwrap_or_else(|| panic!("the relay offers {suite}: {to_b}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (tag, relay_key) = (fields[0], fields[2].strip_prefix("inline:").unwrap());
    let (_, relay_b_port) = sdp_endpoint(to_b.as_bytes()).unwrap();
    let relay_b: SocketAddr = format!("{RELAY_B}:{relay_b_port}").parse().unwrap();
    let callee_key: Vec<u8> = (0..key_salt_len(suite))
        .map(|i| (i as u8) ^ (n as u8).wrapping_mul(91).wrapping_add(7))
        .collect();
    let answer_sdp = audio_sdp(
        2,
        HOST_B,
        b_port,
        profile,
        &[format!("{tag} {suite} inline:{}", b64(&callee_key))],
    );
    let a = answer(bed, &call, &answer_sdp, Vec::new());
    let to_a = sdp_of(&a);
    assert!(to_a.contains(" RTP/AVP 0\r\n"), "{to_a}");
    assert!(crypto_line(&to_a).is_empty(), "{to_a}");
    let (_, relay_a_port) = sdp_endpoint(to_a.as_bytes()).unwrap();
    let relay_a: SocketAddr = format!("{RELAY_A}:{relay_a_port}").parse().unwrap();
    let r = peer.call(serde_json::json!({
        "op": "keys", "suite": suite, "tx": b64(&callee_key), "rx": relay_key,
    }));
    assert_eq!(r["ok"], true, "{r}");

    let a_rtp = bind_udp(&bed.t.a, &format!("{HOST_A}:{a_port}")).unwrap();
    let b_rtp = bind_udp(&bed.t.b, &format!("{HOST_B}:{b_port}")).unwrap();
    for seq in 0..20u16 {
        let plain = rtp(seq, 0xc0c0_0000 + u32::from(n), &[seq as u8; 80]);
        a_rtp.send_to(&plain, relay_a).unwrap();
        let (got, _) = recv(&b_rtp).unwrap_or_else(|| panic!("{suite}: B got no SRTP {seq}"));
        assert_ne!(got, plain, "{suite}: protected towards B");
        assert_eq!(peer.op("unprotect", &got).unwrap(), plain, "{suite}");
        let back = rtp(500 + seq, 0xd0d0_0000 + u32::from(n), b"srtp callee");
        b_rtp
            .send_to(&peer.op("protect", &back).unwrap(), relay_b)
            .unwrap();
        let (got, from) = recv(&a_rtp).unwrap_or_else(|| panic!("{suite}: A got no RTP {seq}"));
        assert_eq!(from, relay_a);
        assert_eq!(got, back, "{suite}: A gets what B encrypted, decrypted");
    }
}

/// An SRTP caller whose first line's key is a 128-bit one under
/// AES_256_CM_HMAC_SHA1_80 (30 bytes where the suite needs 46): the relay
/// passes over it and answers the second line, AEAD_AES_256_GCM, whose
/// media then flows.
fn misfit_key_is_passed_over(bed: &Bed, peer: &mut Peer) {
    let call = "misfit-key";
    let (a_port, b_port) = (6900, 42900);
    let short: Vec<u8> = (0..30u8).collect();
    let gcm: Vec<u8> = (0..44u8).map(|b| b ^ 0x33).collect();
    let offer_sdp = audio_sdp(
        1,
        HOST_A,
        a_port,
        "RTP/SAVP",
        &[
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{}", b64(&short)),
            format!("2 AEAD_AES_256_GCM inline:{}", b64(&gcm)),
        ],
    );
    let answer_sdp = audio_sdp(2, HOST_B, b_port, "RTP/AVP", &[]);
    let (relay_b_port, relay_a_port, relay_key) =
        signal(bed, call, &offer_sdp, &answer_sdp, Srtp::Savp);
    assert_eq!(
        base64_len(&relay_key),
        44,
        "the relay answers tag 2 with a GCM-256 key"
    );
    let r = peer.call(serde_json::json!({
        "op": "keys", "suite": "AEAD_AES_256_GCM", "tx": b64(&gcm), "rx": relay_key,
    }));
    assert_eq!(r["ok"], true, "{r}");
    let a_rtp = bind_udp(&bed.t.a, &format!("{HOST_A}:{a_port}")).unwrap();
    let b_rtp = bind_udp(&bed.t.b, &format!("{HOST_B}:{b_port}")).unwrap();
    let relay_a: SocketAddr = format!("{RELAY_A}:{relay_a_port}").parse().unwrap();
    let relay_b: SocketAddr = format!("{RELAY_B}:{relay_b_port}").parse().unwrap();
    let plain = rtp(1, 0x0909, b"second line");
    a_rtp
        .send_to(&peer.op("protect", &plain).unwrap(), relay_a)
        .unwrap();
    assert_eq!(recv(&b_rtp).map(|r| r.0), Some(plain), "A to B");
    let back = rtp(1, 0x0a0a, b"back");
    b_rtp.send_to(&back, relay_b).unwrap();
    let got = recv(&a_rtp).expect("A gets SRTP").0;
    assert_eq!(peer.op("unprotect", &got), Ok(back), "B to A");
    let _ = bed.ng.request(&common::command("delete", call));
}

fn base64_len(s: &str) -> usize {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .map_or(0, |v| v.len())
}

#[test]
fn pylibsrtp_caller_talks_to_a_plain_phone_through_relayd() {
    require_root!();
    if let Err(why) = pylibsrtp_available() {
        eprintln!("SKIPPED: pylibsrtp unavailable: {why}");
        return;
    }
    let bed = Bed::new("sdes");
    let relayd = bed.relayd(&[]);

    // A plain call beside the SRTP ones: into XDP, and media all along.
    let plain = "plain-call";
    let o = bed.ng.ok(&common::offer(plain)).unwrap();
    let (_, pb) = sdp_endpoint(o.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    let a = bed.ng.ok(&common::answer(plain)).unwrap();
    let (_, pa) = sdp_endpoint(a.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    let plain_a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let plain_b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    let to_b: SocketAddr = format!("{RELAY_B}:{pb}").parse().unwrap();
    let to_a: SocketAddr = format!("{RELAY_A}:{pa}").parse().unwrap();
    let mut plain_seq = 0u16;
    let mut plain_round = |label: &str| {
        for _ in 0..3 {
            plain_seq += 1;
            let p = rtp(plain_seq, 0x5151, b"plain");
            plain_a.send_to(&p, to_a).unwrap();
            assert_eq!(recv(&plain_b).map(|r| r.0), Some(p.clone()), "{label}");
            plain_b.send_to(&p, to_b).unwrap();
            assert_eq!(recv(&plain_a).map(|r| r.0), Some(p), "{label}");
        }
    };
    plain_round("plain call before");
    wait_kernelized(&bed.ng, plain);

    let mut peer = Peer::start();
    for (n, suite) in SUITES.into_iter().enumerate() {
        srtp_call(&bed, &mut peer, suite, n as u16 + 1, Srtp::Savp);
        srtp_callee(&bed, &mut peer, suite, n as u16 + 1, Srtp::Savp);
        plain_round(suite);
    }
    misfit_key_is_passed_over(&bed, &mut peer);
    wait_kernelized(&bed.ng, plain);

    drop(peer);
    for call in [
        plain,
        "Savp-AES_CM_128_HMAC_SHA1_80",
        "Savp-AEAD_AES_128_GCM",
    ] {
        let _ = bed.ng.request(&common::command("delete", call));
    }
    common::stop_relayd(&bed.t.r, relayd);
}

/// The SRTP caller's side of a bridged call: its sockets and where it and
/// the plain callee send to.
struct Bridged {
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    a_rtp: UdpSocket,
    b_rtp: UdpSocket,
    /// The call, its offer and answer, and the relay's key in the answer.
    call: String,
    offer_sdp: String,
    answer_sdp: String,
    relay_key: String,
}

/// Offers `offer_sdp` (SRTP, asked to arrive as RTP) and answers with
/// `answer_sdp`: the relay's ports for B and for A, and its `a=crypto` key.
fn signal(
    bed: &Bed,
    call: &str,
    offer_sdp: &str,
    answer_sdp: &str,
    mode: Srtp,
) -> (u16, u16, String) {
    let o = offer(bed, call, offer_sdp, vec![mode.caller_offer()]);
    let (_, relay_b_port) = sdp_endpoint(o.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    let a = answer(bed, call, answer_sdp, mode.callee_answer());
    let to_a = sdp_of(&a);
    let lines = crypto_line(&to_a);
    assert_eq!(lines.len(), 1, "{to_a}");
    let relay_key = lines[0]
        .split_whitespace()
        .nth(2)
        .and_then(|k| k.strip_prefix("inline:"))
        .expect("inline key");
    let (_, relay_a_port) = sdp_endpoint(to_a.as_bytes()).unwrap();
    (relay_b_port, relay_a_port, relay_key.to_owned())
}

/// `call` set up as in [`srtp_call`] (A: pylibsrtp, `RTP/SAVP` under
/// `suite`; B: plain), the peer keyed, no media yet.
fn bridge_srtp_caller(bed: &Bed, peer: &mut Peer, call: &str, suite: &str, mode: Srtp) -> Bridged {
    let (a_port, b_port) = (6500, 42500);
    let peer_key: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(13) ^ 0x5a).collect();
    let offer_sdp = audio_sdp(
        1,
        HOST_A,
        a_port,
        mode.profile(),
        &[format!("1 {suite} inline:{}", b64(&peer_key))],
    );
    let answer_sdp = audio_sdp(2, HOST_B, b_port, "RTP/AVP", &[]);
    let (relay_b_port, relay_a_port, relay_key) = signal(bed, call, &offer_sdp, &answer_sdp, mode);
    let r = peer.call(serde_json::json!({
        "op": "keys", "suite": suite, "tx": b64(&peer_key), "rx": relay_key,
    }));
    assert_eq!(r["ok"], true, "{r}");
    let a_rtp = bind_udp(&bed.t.a, &format!("{HOST_A}:{a_port}")).unwrap();
    let b_rtp = bind_udp(&bed.t.b, &format!("{HOST_B}:{b_port}")).unwrap();
    Bridged {
        relay_a: format!("{RELAY_A}:{relay_a_port}").parse().unwrap(),
        relay_b: format!("{RELAY_B}:{relay_b_port}").parse().unwrap(),
        a_rtp,
        b_rtp,
        call: call.to_owned(),
        offer_sdp,
        answer_sdp,
        relay_key,
    }
}

impl Bridged {
    /// Packet `seq` each way: A's SRTP must reach B as the very RTP A
    /// encrypted, B's RTP must reach A as SRTP that A decrypts to it.
    fn both_ways(&self, peer: &mut Peer, seq: u16, when: &str) {
        let plain = rtp(seq, 0xa5a5_0001, &[seq as u8; 160]);
        let protected = peer.op("protect", &plain).unwrap();
        self.a_rtp.send_to(&protected, self.relay_a).unwrap();
        let got = recv(&self.b_rtp).map(|r| r.0);
        assert_eq!(got, Some(plain), "{when}: A to B, seq {seq}");

        let plain = rtp(seq, 0xb5b5_0002, b"from the plain side");
        self.b_rtp.send_to(&plain, self.relay_b).unwrap();
        let got = recv(&self.a_rtp).unwrap_or_else(|| panic!("{when}: A got no SRTP {seq}"));
        assert_eq!(
            peer.op("unprotect", &got.0),
            Ok(plain),
            "{when}: B to A, seq {seq}"
        );
    }
}

fn kill_9(mut child: relay_tests::netns::ChildGuard) {
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}

#[test]
fn an_sdes_call_keeps_its_keys_and_rocs_across_kill_9() {
    require_root!();
    if let Err(why) = pylibsrtp_available() {
        eprintln!("SKIPPED: pylibsrtp unavailable: {why}");
        return;
    }
    let bed = Bed::new("sdesk");
    let relayd = bed.relayd(&[]);
    let mut peer = Peer::start();
    let call = bridge_srtp_caller(
        &bed,
        &mut peer,
        "srtp-restart",
        "AES_CM_128_HMAC_SHA1_80",
        Srtp::Savp,
    );

    // Across a wrap of both directions' sequence numbers (ROC 0 to 1),
    // then long enough for the once-a-second tick to record the ROCs.
    for seq in (65500..=65535).chain(0..20) {
        call.both_ways(&mut peer, seq, "before the restart");
    }
    std::thread::sleep(Duration::from_millis(1500));
    kill_9(relayd);
    let relayd = bed.relayd(&[]);
    for seq in 20..60 {
        call.both_ways(&mut peer, seq, "after the first restart");
    }

    // Recorded at ROC 1 near the end of the sequence space; the next wrap
    // comes right before the kill, most likely before any tick records it:
    // the restored relayd must see from the sequence numbers that the ROC
    // is 2 now.
    for seq in (60..65000).step_by(500).chain(65000..65520) {
        call.both_ways(&mut peer, seq, "under ROC 1");
    }
    std::thread::sleep(Duration::from_millis(1500));
    for seq in (65520..=65535).chain(0..4) {
        call.both_ways(&mut peer, seq, "wrapping to ROC 2");
    }
    kill_9(relayd);
    let relayd = bed.relayd(&[]);
    for seq in 4..40 {
        call.both_ways(&mut peer, seq, "after the second restart");
    }
    // A re-INVITE with the same keys keeps the restored transform (its
    // ROCs, now 2, included): the relay answers with the same key.
    let (_, _, relay_key) = signal(
        &bed,
        &call.call,
        &call.offer_sdp,
        &call.answer_sdp,
        Srtp::Savp,
    );
    assert_eq!(
        relay_key, call.relay_key,
        "the restored call re-answers with its key"
    );
    for seq in 40..60 {
        call.both_ways(&mut peer, seq, "after a re-offer");
    }
    let q = bed
        .ng
        .ok(&common::command("query", "srtp-restart"))
        .unwrap();
    let kernelized = common::rtp_streams(&q)
        .iter()
        .any(|(_, flags, _, _)| flags.iter().any(|f| f == "kernelized"));
    assert!(
        !kernelized,
        "a restored SRTP bridge stays in userspace: {q:?}"
    );
    drop(peer);
    common::stop_relayd(&bed.t.r, relayd);
}

/// `OSRTP-offer` toward a plain callee: its plain answer declines, so no
/// side is SRTP: plain media both ways, into XDP like any plain call.
fn osrtp_declined(bed: &Bed) {
    let call = "osrtp-declined";
    let (a_port, b_port) = (7900, 43900);
    let offer_sdp = audio_sdp(1, HOST_A, a_port, "RTP/AVP", &[]);
    let o = offer(
        bed,
        call,
        &offer_sdp,
        vec![("OSRTP", Value::str_list(["offer"]))],
    );
    let to_b = sdp_of(&o);
    assert!(to_b.contains(" RTP/AVP 0\r\n"), "{to_b}");
    assert!(
        !crypto_line(&to_b).is_empty(),
        "offered opportunistically: {to_b}"
    );
    let (_, relay_b_port) = sdp_endpoint(to_b.as_bytes()).unwrap();
    let answer_sdp = audio_sdp(2, HOST_B, b_port, "RTP/AVP", &[]);
    let a = answer(
        bed,
        call,
        &answer_sdp,
        vec![("OSRTP", Value::str_list(["accept"]))],
    );
    let to_a = sdp_of(&a);
    assert!(crypto_line(&to_a).is_empty(), "{to_a}");
    let (_, relay_a_port) = sdp_endpoint(to_a.as_bytes()).unwrap();
    let relay_a: SocketAddr = format!("{RELAY_A}:{relay_a_port}").parse().unwrap();
    let relay_b: SocketAddr = format!("{RELAY_B}:{relay_b_port}").parse().unwrap();
    let a_rtp = bind_udp(&bed.t.a, &format!("{HOST_A}:{a_port}")).unwrap();
    let b_rtp = bind_udp(&bed.t.b, &format!("{HOST_B}:{b_port}")).unwrap();
    for seq in 0..5u16 {
        let p = rtp(seq, 0x0505, b"declined");
        a_rtp.send_to(&p, relay_a).unwrap();
        assert_eq!(recv(&b_rtp).map(|r| r.0), Some(p.clone()), "A to B {seq}");
        b_rtp.send_to(&p, relay_b).unwrap();
        assert_eq!(recv(&a_rtp).map(|r| r.0), Some(p), "B to A {seq}");
    }
    wait_kernelized(&bed.ng, call);
}

#[test]
fn osrtp_calls_carry_media_through_relayd() {
    require_root!();
    if let Err(why) = pylibsrtp_available() {
        eprintln!("SKIPPED: pylibsrtp unavailable: {why}");
        return;
    }
    let bed = Bed::new("osrtp");
    let relayd = bed.relayd(&[]);
    let mut peer = Peer::start();
    for (n, suite) in [
        "AES_CM_128_HMAC_SHA1_80",
        "AEAD_AES_256_GCM",
        "AES_256_CM_HMAC_SHA1_32",
        "NULL_HMAC_SHA1_80",
    ]
    .into_iter()
    .enumerate()
    {
        srtp_call(&bed, &mut peer, suite, n as u16 + 1, Srtp::Osrtp);
        srtp_callee(&bed, &mut peer, suite, n as u16 + 1, Srtp::Osrtp);
    }
    osrtp_declined(&bed);

    // An accepted OSRTP call's keys are in the state store like SDES ones:
    // it keeps decrypting both ways across kill -9.
    let call = bridge_srtp_caller(
        &bed,
        &mut peer,
        "osrtp-restart",
        "AES_CM_128_HMAC_SHA1_80",
        Srtp::Osrtp,
    );
    for seq in 0..20 {
        call.both_ways(&mut peer, seq, "before the restart");
    }
    std::thread::sleep(Duration::from_millis(1500));
    kill_9(relayd);
    let relayd = bed.relayd(&[]);
    for seq in 20..40 {
        call.both_ways(&mut peer, seq, "after the restart");
    }
    drop(peer);
    common::stop_relayd(&bed.t.r, relayd);
}

/// The SDP of an NG reply, as text.
fn sdp_of(reply: &Value) -> String {
    let sdp = reply
        .get("sdp")
        .and_then(Value::as_bytes)
        .expect("the reply has an SDP");
    String::from_utf8(sdp.to_vec()).expect("the SDP is text")
}
