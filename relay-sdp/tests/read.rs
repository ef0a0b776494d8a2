//! The read side: what [`Sdp`](relay_sdp::Sdp) reports about origin, connections and
//! media sections.

use std::net::IpAddr;

use relay_sdp::{parse, ConnectionAddr, Direction, RtcpAttr, RtpMap};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn conn(s: &str) -> Option<ConnectionAddr> {
    Some(ConnectionAddr { addr: ip(s) })
}

const OFFER: &[u8] = b"v=0\r
o=alice 2890844526 2890844527 IN IP4 198.51.100.1\r
s=-\r
c=IN IP4 198.51.100.1\r
t=0 0\r
a=sendrecv\r
m=audio 49170 RTP/AVP 0 8 97 101\r
a=rtpmap:97 opus/48000/2\r
a=rtpmap:101 telephone-event/8000\r
a=rtpmap:bogus\r
a=rtcp:49171 IN IP4 198.51.100.9\r
a=ptime:20\r
m=video 51372/2 RTP/AVPF 96\r
c=IN IP6 2001:db8::7\r
a=rtpmap:96 H264/90000\r
a=recvonly\r
a=rtcp-mux\r
a=rtcp:51372\r
m=image 0 udptl t38\r
a=T38FaxVersion:0\r
";

#[test]
fn origin_fields() {
    let sdp = parse(OFFER).expect("valid");
    let o = sdp.origin();
    assert_eq!(o.username, "alice");
    assert_eq!(o.session_id, "2890844526");
    assert_eq!(o.version_number(), Some(2_890_844_527));
    assert_eq!((o.net_type.as_str(), o.addr_type.as_str()), ("IN", "IP4"));
    assert_eq!(o.ip(), Some(ip("198.51.100.1")));
}

#[test]
fn session_level() {
    let sdp = parse(OFFER).expect("valid");
    assert_eq!(sdp.session_connection(), conn("198.51.100.1"));
    assert_eq!(sdp.session_direction(), Some(Direction::SendRecv));
    assert_eq!(sdp.media_count(), 3);
}

#[test]
fn audio_media() {
    let sdp = parse(OFFER).expect("valid");
    let a = &sdp.medias()[0];
    assert_eq!(a.index, 0);
    assert_eq!((a.kind.as_str(), a.port, a.port_count), ("audio", 49170, 1));
    assert_eq!(a.proto, "RTP/AVP");
    assert_eq!(a.formats, ["0", "8", "97", "101"]);
    assert_eq!(
        a.connection,
        conn("198.51.100.1"),
        "inherited from the session"
    );
    assert_eq!(
        a.direction,
        Some(Direction::SendRecv),
        "inherited from the session"
    );
    assert_eq!(
        a.rtcp,
        Some(RtcpAttr {
            port: 49171,
            address: conn("198.51.100.9"),
        })
    );
    assert!(!a.rtcp_mux && !a.has_ice && a.is_rtp() && !a.is_rejected());
    // The unparsable rtpmap is skipped, the others read with clock rate and channels.
    assert_eq!(
        a.rtpmaps,
        [
            RtpMap {
                payload_type: 97,
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: Some(2),
            },
            RtpMap {
                payload_type: 101,
                encoding: "telephone-event".into(),
                clock_rate: 8000,
                channels: None,
            },
        ]
    );
    // Static payload types without rtpmap fall back to RFC 3551.
    let pcma = a.codec(8).expect("static");
    assert_eq!((pcma.encoding.as_str(), pcma.clock_rate), ("PCMA", 8000));
    assert_eq!(a.codec(97).map(|c| c.clock_rate), Some(48000));
    assert_eq!(a.codec(100), None);
}

#[test]
fn video_media() {
    let sdp = parse(OFFER).expect("valid");
    let v = &sdp.medias()[1];
    assert_eq!((v.kind.as_str(), v.port, v.port_count), ("video", 51372, 2));
    assert_eq!(v.connection, conn("2001:db8::7"), "media level wins");
    assert_eq!(v.direction, Some(Direction::RecvOnly), "media level wins");
    assert!(v.rtcp_mux);
    assert_eq!(
        v.rtcp,
        Some(RtcpAttr {
            port: 51372,
            address: None
        })
    );
    assert_eq!(v.codec(96).map(|c| c.clock_rate), Some(90000));
}

#[test]
fn rejected_non_rtp_media() {
    let sdp = parse(OFFER).expect("valid");
    let t = &sdp.medias()[2];
    assert!(t.is_rejected());
    assert!(!t.is_rtp());
    assert_eq!(t.formats, ["t38"]);
    assert_eq!(t.rtcp, None);
}

#[test]
fn ice_detection() {
    let media_level = b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 9 RTP/AVP 0\nc=IN IP4 0.0.0.0\na=ice-ufrag:abcd\nm=audio 9 RTP/AVP 0\nc=IN IP4 0.0.0.0\n";
    let sdp = parse(media_level).expect("valid");
    assert!(sdp.medias()[0].has_ice);
    assert!(!sdp.medias()[1].has_ice);
    assert!(sdp.medias()[1]
        .connection
        .is_some_and(|c| c.is_unspecified()));

    let session_level = b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\na=ice-ufrag:abcd\na=ice-pwd:0123456789012345678901\nm=audio 9 RTP/AVP 0\nc=IN IP4 1.2.3.4\n";
    let sdp = parse(session_level).expect("valid");
    assert!(sdp.medias()[0].has_ice);

    let options_only = b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 9 RTP/AVP 0\nc=IN IP4 1.2.3.4\na=ice-options:trickle\n";
    assert!(!parse(options_only).expect("valid").medias()[0].has_ice);
}

#[test]
fn lenient_forms_read_correctly() {
    // Trailing whitespace, bare LF, no final newline, lowercase network tokens.
    let sloppy = b"v=0 \no=- 1 1 IN IP4 1.2.3.4\t\ns=-\nt=0 0\nc=in ip4 198.51.100.5 \nm=audio 4000 RTP/AVP 0 \na=sendonly ";
    let sdp = parse(sloppy).expect("tolerated");
    let m = &sdp.medias()[0];
    assert_eq!(m.formats, ["0"]);
    assert_eq!(m.connection, conn("198.51.100.5"));
    assert_eq!(m.direction, Some(Direction::SendOnly));
    assert_eq!(sdp.origin().address, "1.2.3.4");
}

#[test]
fn multicast_ttl_is_dropped_from_the_address() {
    let sdp =
        parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 224.2.36.42/127\r\nt=0 0\r\n")
            .expect("valid");
    assert_eq!(sdp.session_connection(), conn("224.2.36.42"));
}
