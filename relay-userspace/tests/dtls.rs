//! relayd's DTLS-SRTP against an independent WebRTC stack: aiortc (full ICE,
//! DTLS-SRTP over OpenSSL, rtcp-mux) in host A's namespace as the browser,
//! a plain RTP phone in host B's, with Kamailio's usual gateway flags
//! (`ICE=remove transport-protocol=RTP/AVP rtcp-mux-demux` toward the phone,
//! `ICE=force transport-protocol=UDP/TLS/RTP/SAVPF rtcp-mux-offer` back to
//! the browser). With `DTLS=passive` relayd is the DTLS server, without it
//! (rtpengine's default answer to an actpass offer) the client. aiortc's
//! DTLS transport must reach "connected" and relayd's per-stream DTLS state
//! must say connected with the negotiated profile; a browser whose
//! certificate does not match the fingerprint its SDP carried is refused
//! and counted.
//!
//! Needs python3 with aiortc (`pip install aiortc`); the test installs it
//! when missing and skips, saying why, only if that fails.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
};

use relay_ng::Value;
use relay_tests::{
    ng_client::{audio_sdp, sdp_endpoint},
    require_root,
    topology::{bind_udp, HOST_A, HOST_B},
};

mod common;

use common::{s, Bed};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtls/aiortc_peer.py");
const CHROMIUM_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dtls/chromium_peer.py");

/// Whether Debian's Chromium runs, installing it with apt when missing.
fn chromium_available() -> Result<(), String> {
    let runs = || {
        Command::new("chromium")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if runs() {
        return Ok(());
    }
    let apt = Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    match apt {
        Ok(_) if runs() => Ok(()),
        Ok(status) => Err(format!("apt-get install chromium failed ({status})")),
        Err(e) => Err(format!("apt-get not runnable: {e}")),
    }
}

/// Whether python3 can import aiortc, installing it with pip if needed.
fn aiortc_available() -> Result<(), String> {
    relay_tests::python::ensure_module("aiortc", "aiortc")
}

/// The aiortc peer, speaking JSON lines.
struct Peer {
    child: Child,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Peer {
    fn start(bed: &Bed, script: &str) -> Peer {
        let mut child = bed
            .t
            .a
            .command("python3")
            .unwrap()
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the aiortc peer");
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer { child, out }
    }

    fn read(&mut self) -> serde_json::Value {
        let line = self
            .out
            .next()
            .expect("aiortc peer ended early")
            .expect("aiortc peer output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn write(&mut self, v: serde_json::Value) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{v}").expect("write to aiortc peer");
        stdin.flush().expect("flush");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // End of input asks the peer to close (and the Chromium peer to end
        // its browser); then our own child, by its handle, if it lingers.
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DTLS dictionaries of the streams of party `tag` in a `query`.
fn dtls_of(q: &Value, tag: &str) -> Vec<Value> {
    let t = q
        .get("tags")
        .and_then(Value::as_dict)
        .and_then(|d| d.get(tag.as_bytes()))
        .unwrap_or_else(|| panic!("no tag {tag} in {q:?}"));
    t.get("medias")
        .and_then(Value::as_list)
        .unwrap()
        .iter()
        .flat_map(|m| m.get("streams").and_then(Value::as_list).unwrap().iter())
        .filter_map(|st| st.get("DTLS").cloned())
        .collect()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_int).unwrap_or(-1)
}

/// What one call through relayd left: aiortc's verdict, relayd's SDP to
/// the browser and to the phone, the `query` taken after the verdict, and
/// the aiortc peer, still running.
struct Outcome {
    verdict: serde_json::Value,
    to_browser: String,
    to_phone: String,
    query: Value,
    peer: Peer,
}

/// One call: aiortc offers (its SDP edited by `tamper`), the phone answers,
/// aiortc gets relayd's answer.
fn call(
    bed: &Bed,
    call_id: &str,
    dtls_flag: Option<&str>,
    tamper: impl Fn(&str) -> String,
) -> Outcome {
    call_with(bed, SCRIPT, call_id, dtls_flag, tamper)
}

/// [`call`] with the peer of `script`.
fn call_with(
    bed: &Bed,
    script: &str,
    call_id: &str,
    dtls_flag: Option<&str>,
    tamper: impl Fn(&str) -> String,
) -> Outcome {
    let mut peer = Peer::start(bed, script);
    let offer = peer.read();
    let Some(offer_sdp) = offer["offer"].as_str() else {
        panic!("no offer from the WebRTC peer: {offer}");
    };
    let offer_sdp = tamper(offer_sdp);
    let o = bed
        .ng
        .ok(&Value::dict([
            ("command", s("offer")),
            ("call-id", s(call_id)),
            ("from-tag", s("browser")),
            ("sdp", s(&offer_sdp)),
            ("direction", Value::str_list(["a", "b"])),
            ("ICE", s("remove")),
            ("transport-protocol", s("RTP/AVP")),
            ("rtcp-mux", Value::str_list(["demux"])),
        ]))
        .unwrap();
    let to_phone =
        String::from_utf8(o.get("sdp").and_then(Value::as_bytes).unwrap().to_vec()).unwrap();
    assert!(to_phone.contains(" RTP/AVP "), "{to_phone}");
    assert!(
        !to_phone.contains("a=fingerprint") && !to_phone.contains("a=setup"),
        "{to_phone}"
    );

    let mut answer = vec![
        ("command", s("answer")),
        ("call-id", s(call_id)),
        ("from-tag", s("browser")),
        ("to-tag", s("phone")),
        ("sdp", s(&audio_sdp(HOST_B, 40000))),
        ("ICE", s("force")),
        ("transport-protocol", s("UDP/TLS/RTP/SAVPF")),
        ("rtcp-mux", Value::str_list(["offer"])),
    ];
    if let Some(flag) = dtls_flag {
        answer.push(("DTLS", s(flag)));
    }
    let a = bed.ng.ok(&Value::dict(answer)).unwrap();
    let to_browser =
        String::from_utf8(a.get("sdp").and_then(Value::as_bytes).unwrap().to_vec()).unwrap();
    peer.write(serde_json::json!({ "answer": to_browser }));
    let verdict = peer.read();
    // Give relayd's tick a moment to settle counters after aiortc's verdict.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let q = bed
        .ng
        .ok(&Value::dict([
            ("command", s("query")),
            ("call-id", s(call_id)),
        ]))
        .unwrap();
    Outcome {
        verdict,
        to_browser,
        to_phone,
        query: q,
        peer,
    }
}

#[test]
fn aiortc_completes_dtls_with_relayd_as_server_and_as_client() {
    require_root!();
    if let Err(why) = aiortc_available() {
        eprintln!("SKIPPED: aiortc unavailable: {why}");
        return;
    }
    let bed = Bed::new("dtls");
    let _relayd = bed.relayd(&[]);

    for (flag, setup, role) in [
        (Some("passive"), "passive", "server"),
        (None, "active", "client"),
    ] {
        let call_id = format!("dtls-{role}");
        // The peer stays up until the checks are done: dropping it closes
        // the DTLS session, and relayctl show would see it closed.
        let Outcome {
            verdict,
            to_browser,
            query: q,
            peer: _peer,
            ..
        } = call(&bed, &call_id, flag, |sdp| sdp.to_owned());
        assert!(to_browser.contains(" UDP/TLS/RTP/SAVPF "), "{to_browser}");
        assert!(
            to_browser.contains(&format!("\r\na=setup:{setup}\r\n")),
            "{to_browser}"
        );
        assert!(
            to_browser.contains("\r\na=fingerprint:sha-256 "),
            "{to_browser}"
        );
        assert_eq!(
            verdict["dtls"], "connected",
            "relayd as DTLS {role}: {verdict} {q:?}"
        );
        let streams = dtls_of(&q, "browser");
        // One handshake: the browser muxes RTCP, so its RTCP port runs none.
        assert_eq!(
            streams.len(),
            1,
            "DTLS on the browser's RTP port only: {q:?}"
        );
        let rtp = &streams[0];
        assert_eq!(text(rtp, "state"), "connected", "{q:?}");
        assert_eq!(text(rtp, "role"), role, "{q:?}");
        let profile = text(rtp, "profile");
        assert!(
            relay_media::SrtpProfile::from_sdes_name(&profile).is_some(),
            "negotiated profile {profile:?}"
        );
        assert_eq!(int(rtp, "fingerprint mismatches"), 0);
        // The phone's side speaks plain RTP: no DTLS there.
        assert!(dtls_of(&q, "phone").is_empty(), "{q:?}");
        // relayctl show prints the same.
        let show = bed.relayctl_cli(&["show", &call_id]);
        let show = String::from_utf8_lossy(&show.stdout);
        assert!(
            show.contains(&format!("DTLS connected ({role}) profile {profile}; timeouts 0 fingerprint mismatches 0 failures 0")),
            "{show}"
        );
        eprintln!("relayd as DTLS {role}: connected, profile {profile}");
        bed.ng
            .ok(&Value::dict([
                ("command", s("delete")),
                ("call-id", s(&call_id)),
            ]))
            .unwrap();
    }
}

#[test]
fn a_browser_whose_certificate_does_not_match_its_fingerprint_is_refused() {
    require_root!();
    if let Err(why) = aiortc_available() {
        eprintln!("SKIPPED: aiortc unavailable: {why}");
        return;
    }
    let bed = Bed::new("dtlsfp");
    let _relayd = bed.relayd(&[]);
    // Another certificate's fingerprint in the browser's SDP.
    let forged = |sdp: &str| -> String {
        sdp.lines()
            .map(|l| match l.strip_prefix("a=fingerprint:sha-256 ") {
                Some(hex) => {
                    let flipped: String = hex
                        .chars()
                        .map(|c| match c {
                            '0' => '1',
                            '1' => '0',
                            c => c,
                        })
                        .collect();
                    assert_ne!(flipped, hex);
                    format!("a=fingerprint:sha-256 {flipped}")
                }
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n"
    };
    let Outcome {
        verdict, query: q, ..
    } = call(&bed, "dtls-forged", Some("passive"), forged);
    assert_ne!(verdict["dtls"], "connected", "{verdict}");
    let streams = dtls_of(&q, "browser");
    let rtp = streams.first().unwrap_or_else(|| panic!("no DTLS: {q:?}"));
    assert_eq!(text(rtp, "state"), "failed", "{q:?}");
    assert!(int(rtp, "fingerprint mismatches") >= 1, "{q:?}");
    assert!(rtp.get("profile").is_none(), "{q:?}");
}

/// Plain RTP the phone sends: PCMU silence (0xFF) in 20 ms packets.
fn phone_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xff, 160));
    p
}

/// The `stats` dictionary of the browser's RTP stream in a `query`.
fn browser_rtp_stats(q: &Value) -> Option<Value> {
    q.get("tags")?
        .get("browser")?
        .get("medias")?
        .as_list()?
        .first()?
        .get("streams")?
        .as_list()?
        .first()?
        .get("stats")
        .cloned()
}

/// The SRTP dictionary of the browser's RTP stream in a `query`.
fn srtp_of_browser(q: &Value) -> Option<Value> {
    let t = q.get("tags")?.as_dict()?.get(b"browser".as_slice())?;
    t.get("medias")?
        .as_list()?
        .iter()
        .flat_map(|m| {
            m.get("streams")
                .and_then(Value::as_list)
                .into_iter()
                .flatten()
        })
        .find_map(|st| st.get("SRTP").cloned())
}

#[test]
fn media_flows_both_ways_between_a_browser_and_a_plain_phone() {
    require_root!();
    if let Err(why) = aiortc_available() {
        eprintln!("SKIPPED: aiortc unavailable: {why}");
        return;
    }
    let bed = Bed::new("dtlsmedia");
    let _relayd = bed.relayd(&[]);
    // The phone's RTP port, as audio_sdp(HOST_B, 40000) declares it.
    let phone = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    phone
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();

    for (flag, role) in [(Some("passive"), "server"), (None, "client")] {
        // Nothing of the previous call may count for this one.
        let mut buf = [0u8; 2048];
        while phone.recv_from(&mut buf).is_ok() {}
        let call_id = format!("dtls-media-{role}");
        let Outcome {
            verdict,
            to_phone,
            mut peer,
            ..
        } = call(&bed, &call_id, flag, |sdp| sdp.to_owned());
        assert_eq!(
            verdict["dtls"], "connected",
            "relayd as DTLS {role}: {verdict}"
        );
        let (relay_ip, relay_port) = sdp_endpoint(to_phone.as_bytes()).unwrap();
        let relay: std::net::SocketAddr = format!("{relay_ip}:{relay_port}").parse().unwrap();

        // Browser -> phone: aiortc's SRTP arrives as plain RTP, its
        // silence readable (an SRTP packet would carry random bytes and
        // an authentication tag).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        let mut plain = 0;
        while plain < 25 && std::time::Instant::now() < deadline {
            let Ok((n, src)) = phone.recv_from(&mut buf) else {
                continue;
            };
            let pkt = &buf[..n];
            assert_eq!(src, relay, "sent from the phone's relay port");
            assert_eq!(pkt[0] >> 6, 2, "RTP version: {pkt:02x?}");
            assert_eq!(pkt[1] & 0x7f, 0, "PCMU, the answer's first codec");
            assert_eq!(n, 12 + 160, "20 ms of PCMU and no SRTP tag: {pkt:02x?}");
            assert!(
                pkt[12..].iter().all(|&b| b == 0xff),
                "decrypted silence: {pkt:02x?}"
            );
            plain += 1;
        }
        assert!(
            plain >= 25,
            "relayd as DTLS {role}: {plain} plain packets reached the phone"
        );

        // Phone -> browser: plain RTP out as SRTP aiortc accepts (it
        // drops what fails authentication, so a frame is proof).
        for seq in 0..100u16 {
            phone.send_to(&phone_packet(seq), relay).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        peer.write(serde_json::json!({ "count": true }));
        let frames = peer.read()["frames"].as_u64().unwrap_or(0);
        assert!(
            frames >= 50,
            "relayd as DTLS {role}: aiortc decoded {frames} of 100 frames"
        );

        let q = bed
            .ng
            .ok(&Value::dict([
                ("command", s("query")),
                ("call-id", s(&call_id)),
            ]))
            .unwrap();
        let srtp =
            srtp_of_browser(&q).unwrap_or_else(|| panic!("no SRTP on the browser's stream: {q:?}"));
        assert_eq!(int(&srtp, "auth failures"), 0, "{q:?}");
        eprintln!(
            "relayd as DTLS {role}: {plain}+ packets browser -> phone, {frames} frames phone -> browser, suite {}",
            text(&srtp, "suite")
        );
        peer.write(serde_json::json!({ "close": true }));
        bed.ng
            .ok(&Value::dict([
                ("command", s("delete")),
                ("call-id", s(&call_id)),
            ]))
            .unwrap();
    }
}

/// Garbage at a browser's relay port (empty, runts, RTP-looking bytes
/// that fail authentication, DTLS- and STUN-looking junk) is dropped and
/// counted: nothing of it reaches the phone, the DTLS session and media
/// both ways carry on, and a plain call beside it is untouched.
#[test]
fn garbage_at_a_browser_port_is_dropped_and_harms_nothing() {
    require_root!();
    if let Err(why) = aiortc_available() {
        eprintln!("SKIPPED: aiortc unavailable: {why}");
        return;
    }
    let bed = Bed::new("dtlsjunk");
    let _relayd = bed.relayd(&[]);
    let timeout = Some(std::time::Duration::from_millis(200));
    let phone = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    phone.set_read_timeout(timeout).unwrap();

    // Another call, plain RTP both ways, beside the browser's.
    let plain_a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let plain_b = bind_udp(&bed.t.b, &format!("{HOST_B}:40010")).unwrap();
    plain_b.set_read_timeout(timeout).unwrap();
    bed.ng
        .ok(&Value::dict([
            ("command", s("offer")),
            ("call-id", s("plain-beside")),
            ("from-tag", s("a")),
            ("sdp", s(&audio_sdp(HOST_A, 5000))),
        ]))
        .unwrap();
    let to_a = bed
        .ng
        .ok(&Value::dict([
            ("command", s("answer")),
            ("call-id", s("plain-beside")),
            ("from-tag", s("a")),
            ("to-tag", s("b")),
            ("sdp", s(&audio_sdp(HOST_B, 40010))),
        ]))
        .unwrap();
    // Where A sends: the relay's address in the answer to A.
    let (ip, port) = sdp_endpoint(to_a.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    let plain_relay: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();

    let Outcome {
        verdict,
        to_browser,
        to_phone,
        mut peer,
        ..
    } = call(&bed, "junk", Some("passive"), |sdp| sdp.to_owned());
    assert_eq!(verdict["dtls"], "connected", "{verdict}");
    let endpoint = |sdp: &str| -> std::net::SocketAddr {
        let (ip, port) = sdp_endpoint(sdp.as_bytes()).unwrap();
        format!("{ip}:{port}").parse().unwrap()
    };
    let (browser_port, phone_port) = (endpoint(&to_browser), endpoint(&to_phone));

    let stranger = bind_udp(&bed.t.a, &format!("{HOST_A}:0")).unwrap();
    let mut rtp_looking = phone_packet(7);
    rtp_looking.extend_from_slice(&[0xa5; 16]); // a "tag" that cannot verify
    let mut stun_looking = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun_looking.extend_from_slice(&[0x11; 12]);
    let mut dtls_looking = vec![0x16, 0xfe, 0xfd];
    dtls_looking.extend_from_slice(&[0x5a; 60]);
    let junk: [(&str, &[u8]); 6] = [
        ("empty", &[]),
        ("one byte", &[0x80]),
        ("RTP-looking", &rtp_looking),
        ("STUN-looking", &stun_looking),
        ("DTLS-looking", &dtls_looking),
        ("other", &[0x42; 300]),
    ];
    // Each kind is counted on the browser's stream.
    let errors = || {
        let q = bed
            .ng
            .ok(&Value::dict([
                ("command", s("query")),
                ("call-id", s("junk")),
            ]))
            .unwrap();
        let srtp = srtp_of_browser(&q).unwrap();
        let stats = browser_rtp_stats(&q).unwrap();
        (int(&stats, "errors"), int(&srtp, "auth failures"))
    };
    for (kind, bytes) in junk {
        let before = errors();
        for _ in 0..5 {
            stranger.send_to(bytes, browser_port).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let after = errors();
        // A forgery that parses is an authentication failure; the rest are
        // errors of the stream.
        let counted = (after.0 - before.0) + (after.1 - before.1);
        assert_eq!(
            counted, 5,
            "{kind}: (errors, auth failures) {before:?} -> {after:?}"
        );
    }

    // Browser -> phone: only aiortc's decrypted silence arrives.
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut silence = 0;
    while std::time::Instant::now() < deadline {
        let Ok((n, _)) = phone.recv_from(&mut buf) else {
            continue;
        };
        let pkt = &buf[..n];
        assert!(
            n == 172 && pkt[12..].iter().all(|&b| b == 0xff),
            "not the browser's decrypted media: {pkt:02x?}"
        );
        silence += 1;
    }
    assert!(silence >= 50, "{silence} packets from the browser in 2 s");
    // Phone -> browser still encrypted and accepted.
    for seq in 0..50u16 {
        phone.send_to(&phone_packet(seq), phone_port).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    peer.write(serde_json::json!({ "count": true }));
    let frames = peer.read()["frames"].as_u64().unwrap_or(0);
    assert!(frames >= 25, "aiortc decoded {frames} of 50 after the junk");
    // The plain call forwards every packet.
    for seq in 0..20u16 {
        plain_a.send_to(&phone_packet(seq), plain_relay).unwrap();
    }
    let mut plain = 0;
    while let Ok((n, src)) = plain_b.recv_from(&mut buf) {
        assert_eq!(
            &buf[..4],
            &phone_packet(plain)[..4],
            "plain call's packet from {src} (relay ports: browser {browser_port}, phone {phone_port}, plain {plain_relay}): {:02x?}",
            &buf[..n]
        );
        plain += 1;
    }
    assert_eq!(plain, 20, "the plain call beside lost packets");

    let q = bed
        .ng
        .ok(&Value::dict([
            ("command", s("query")),
            ("call-id", s("junk")),
        ]))
        .unwrap();
    let dtls = dtls_of(&q, "browser");
    assert_eq!(text(&dtls[0], "state"), "connected", "{q:?}");
    assert_eq!(int(&dtls[0], "failures"), 0, "{q:?}");
    peer.write(serde_json::json!({ "close": true }));
}

/// A browser's call outlives relayd: after `kill -9` and a new relayd on
/// the same state, the restored port still decrypts the browser's SRTP
/// (DTLS keys and packet indices from the state store) and encrypts toward
/// it, and its ICE-lite agent answers the browser's consent checks, with
/// no new offer, answer or handshake.
#[test]
fn a_browser_call_survives_kill_9_of_relayd() {
    require_root!();
    if let Err(why) = aiortc_available() {
        eprintln!("SKIPPED: aiortc unavailable: {why}");
        return;
    }
    let bed = Bed::new("dtlskill");
    let mut relayd = bed.relayd(&[]);
    let phone = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    phone
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let Outcome {
        verdict,
        to_phone,
        mut peer,
        ..
    } = call(&bed, "webrtc-kill", Some("passive"), |sdp| sdp.to_owned());
    assert_eq!(verdict["dtls"], "connected", "{verdict}");
    let (ip, port) = sdp_endpoint(to_phone.as_bytes()).unwrap();
    let relay: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();

    // Media both ways through the relayd of the moment; `seq` goes on.
    let mut seq = 0u16;
    let mut both_ways = |peer: &mut Peer, when: &str| {
        let mut buf = [0u8; 2048];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut plain = 0;
        while plain < 25 && std::time::Instant::now() < deadline {
            if let Ok((n, _)) = phone.recv_from(&mut buf) {
                assert!(
                    n == 172 && buf[12..n].iter().all(|&b| b == 0xff),
                    "{when}: not the browser's decrypted silence: {:02x?}",
                    &buf[..n]
                );
                plain += 1;
            }
        }
        assert!(plain >= 25, "{when}: {plain} packets from the browser");
        peer.write(serde_json::json!({ "count": true }));
        let before = peer.read()["frames"].as_u64().unwrap_or(0);
        for _ in 0..50 {
            phone.send_to(&phone_packet(seq), relay).unwrap();
            seq += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        peer.write(serde_json::json!({ "count": true }));
        let now = peer.read();
        let frames = now["frames"].as_u64().unwrap_or(0) - before;
        assert!(frames >= 25, "{when}: aiortc decoded {frames} of 50: {now}");
        now
    };
    both_ways(&mut peer, "before the kill");
    // The tick records the handshake's keys and the SSRCs within a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    relayd.0.kill().unwrap();
    relayd.0.wait().unwrap();
    let _relayd = bed.relayd(&[]);
    both_ways(&mut peer, "after the restart");
    // aiortc checks consent every 5 s or so: the restored agent answers
    // (a check it could not authenticate would count as an error).
    std::thread::sleep(std::time::Duration::from_secs(6));
    let states = both_ways(&mut peer, "after a consent check");
    assert_eq!(states["dtls"], "connected", "{states}");
    assert!(
        matches!(states["ice"].as_str(), Some("completed" | "connected")),
        "{states}"
    );
    let q = bed
        .ng
        .ok(&Value::dict([
            ("command", s("query")),
            ("call-id", s("webrtc-kill")),
        ]))
        .unwrap();
    let dtls = dtls_of(&q, "browser");
    let dtls = dtls
        .first()
        .unwrap_or_else(|| panic!("no DTLS after the restart: {q:?}"));
    assert_eq!(text(dtls, "state"), "connected", "{q:?}");
    let srtp = srtp_of_browser(&q).unwrap_or_else(|| panic!("no SRTP: {q:?}"));
    assert_eq!(int(&srtp, "auth failures"), 0, "{q:?}");
    let errors = browser_rtp_stats(&q).map(|s| int(&s, "errors"));
    assert_eq!(errors, Some(0), "{q:?}");
    peer.write(serde_json::json!({ "close": true }));
}

/// G.711 mu-law of a linear sample (ITU-T G.711, with the usual bias).
fn ulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(32635) + 0x84;
    let mut exponent = 7;
    while exponent > 0 && s & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// The linear sample of a mu-law byte.
fn linear(u: u8) -> i32 {
    let u = !u;
    let magnitude = (((i32::from(u & 0x0f)) << 3) + 0x84) << ((u >> 4) & 7);
    if u & 0x80 != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    }
}

/// A 440 Hz tone at about -6 dBFS, PCMU, 20 ms packet `seq`.
fn tone_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x5eed_0002u32.to_be_bytes());
    p.extend((0..160u32).map(|i| {
        let t = f64::from(u32::from(seq) * 160 + i) / 8000.0;
        ulaw((16000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16)
    }));
    p
}

#[test]
fn ulaw_round_trips() {
    for sample in [-32000i16, -1000, -100, 0, 100, 1000, 32000] {
        let back = linear(ulaw(sample));
        let tolerance = (i32::from(sample).abs() / 16).max(8);
        assert!(
            (back - i32::from(sample)).abs() <= tolerance,
            "{sample} -> {back}"
        );
    }
    assert_eq!(ulaw(0), 0xff);
}

/// Acceptance 1 of issue 18: a real browser. Headless Chromium (its fake
/// microphone beeps) in host A's namespace, a plain G.711 phone in host B's,
/// relayd between them with Kamailio's WebRTC gateway flags.
#[test]
fn a_real_chromium_talks_to_a_plain_phone() {
    require_root!();
    if let Err(why) = chromium_available() {
        eprintln!("SKIPPED: Chromium unavailable: {why}");
        return;
    }
    let bed = Bed::new("chromium");
    let _relayd = bed.relayd(&[]);
    let phone = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    phone
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let Outcome {
        verdict,
        to_browser,
        to_phone,
        mut peer,
        ..
    } = call_with(
        &bed,
        CHROMIUM_SCRIPT,
        "chromium-call",
        Some("passive"),
        |sdp| sdp.to_owned(),
    );
    assert!(to_browser.contains(" UDP/TLS/RTP/SAVPF "), "{to_browser}");
    assert_eq!(
        verdict["connection"], "connected",
        "{verdict}\n{to_browser}"
    );
    assert_eq!(verdict["dtls"], "connected", "{verdict}");
    let (relay_ip, relay_port) = sdp_endpoint(to_phone.as_bytes()).unwrap();
    let relay: std::net::SocketAddr = format!("{relay_ip}:{relay_port}").parse().unwrap();

    // Browser -> phone: decodable G.711 (the answer's first codec), the
    // fake microphone's beeps audible in it.
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut packets, mut loudest) = (0, 0);
    while (packets < 100 || loudest < 2000) && std::time::Instant::now() < deadline {
        let Ok((n, src)) = phone.recv_from(&mut buf) else {
            continue;
        };
        let pkt = &buf[..n];
        assert_eq!(src, relay, "sent from the phone's relay port");
        assert_eq!(pkt[0] >> 6, 2, "RTP version: {pkt:02x?}");
        assert_eq!(pkt[1] & 0x7f, 0, "PCMU: {pkt:02x?}");
        // 20 ms of PCMU after a 12-byte header (no CSRCs, no extension
        // once decrypted? Chromium may add a header extension).
        let header = 12 + 4 * usize::from(pkt[0] & 0x0f);
        let payload = if pkt[0] & 0x10 != 0 {
            let words = usize::from(u16::from_be_bytes([pkt[header + 2], pkt[header + 3]]));
            &pkt[header + 4 + 4 * words..]
        } else {
            &pkt[header..]
        };
        assert_eq!(payload.len(), 160, "20 ms of PCMU: {pkt:02x?}");
        loudest = loudest.max(payload.iter().map(|&u| linear(u).abs()).max().unwrap_or(0));
        packets += 1;
    }
    assert!(
        packets >= 100,
        "{packets} packets from Chromium reached the phone"
    );
    assert!(
        loudest >= 2000,
        "Chromium's beep not heard (peak {loudest})"
    );

    // Phone -> browser: a tone; Chromium must count the packets and hear
    // it in the decoded audio.
    for seq in 0..150u16 {
        phone.send_to(&tone_packet(seq), relay).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    peer.write(serde_json::json!({ "count": true }));
    let stats = peer.read();
    let frames = stats["frames"].as_u64().unwrap_or(0);
    let level = stats["level"].as_f64().unwrap_or(0.0);
    assert!(frames >= 100, "Chromium received {frames} of 150: {stats}");
    assert!(level > 0.05, "the tone not heard in Chromium: {stats}");
    let q = bed
        .ng
        .ok(&Value::dict([
            ("command", s("query")),
            ("call-id", s("chromium-call")),
        ]))
        .unwrap();
    let srtp = srtp_of_browser(&q).unwrap_or_else(|| panic!("no SRTP: {q:?}"));
    assert_eq!(int(&srtp, "auth failures"), 0, "{q:?}");
    // Chromium lists AEAD_AES_256_GCM first in use_srtp, and so does
    // relayd's DTLS server, whose preference decides: both report it.
    assert_eq!(
        (stats["cipher"].as_str(), text(&srtp, "suite").as_str()),
        (Some("AEAD_AES_256_GCM"), "AEAD_AES_256_GCM"),
        "{stats} {q:?}"
    );
    eprintln!(
        "Chromium: {packets} packets to the phone (peak {loudest}), {frames} received, level {level:.3}, cipher {}, relay suite {}",
        stats["cipher"],
        text(&srtp, "suite")
    );
    peer.write(serde_json::json!({ "close": true }));
}
