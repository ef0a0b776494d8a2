//! The NG control protocol: what arrives on relayd's NG socket.

use relay_ng::bencode::{self, Value, Writer};
use relay_ng::{command, frame, json, reply, Command, Dict};

/// `bencode`: any bytes through the strict decoder. A value that decodes
/// encodes canonically and decodes back to itself; the tree-less
/// [`Writer`] writes the same bytes as [`bencode::encode`]; a prefix
/// decode agrees with a whole decode of the bytes it used.
pub fn bencode(data: &[u8]) {
    if let Ok(value) = bencode::decode(data) {
        let encoded = bencode::encode(&value);
        assert_eq!(
            bencode::decode(&encoded).as_ref(),
            Ok(&value),
            "encode(decode(x)) decodes to another value"
        );
        let mut written = Vec::new();
        write(&value, &mut Writer::new(&mut written));
        assert_eq!(written, encoded, "Writer and encode disagree");
    }
    match bencode::decode_prefix(data) {
        Ok((value, used)) => {
            assert!(
                used > 0 && used <= data.len(),
                "used {used} of {}",
                data.len()
            );
            assert_eq!(bencode::decode(&data[..used]), Ok(value));
            // Stream framing (NG over TCP) ends where the decoder does.
            assert_eq!(
                bencode::scan_prefix(data),
                Ok(used),
                "scan and decode disagree"
            );
        }
        Err(e) => {
            assert!(e.offset() <= data.len(), "{e}");
            let _ = (e.is_incomplete(), e.to_string());
            if e.is_incomplete() {
                // A value the decoder waits for, the scan waits for too,
                // never asking for fewer bytes than are there.
                match bencode::scan_prefix(data) {
                    Err(bencode::Scan::Incomplete { at_least }) => {
                        assert!(at_least > data.len(), "hint {at_least} of {}", data.len())
                    }
                    Err(bencode::Scan::Invalid { .. }) => {}
                    Ok(n) => panic!("scan ends at {n} where the decoder wants more"),
                }
            }
        }
    }
}

/// Writes `value` with the streaming writer (dictionary keys in the
/// tree's sorted order, as the writer requires).
fn write(value: &Value, w: &mut Writer<'_>) {
    match value {
        Value::Int(i) => {
            w.int(*i);
        }
        Value::Bytes(b) => {
            w.bytes(b);
        }
        Value::List(items) => {
            w.list();
            for item in items {
                write(item, w);
            }
            w.end();
        }
        Value::Dict(dict) => {
            w.dict();
            for (k, v) in dict {
                w.key(k);
                write(v, w);
            }
            w.end();
        }
    }
}

/// `ng_datagram`: one datagram as relayd's NG socket receives it: framing
/// (cookie, bencode or JSON), the command, the reply it would get, and
/// for `offer`/`answer` the SDP parsed and rewritten as the handler does.
pub fn ng_datagram(data: &[u8]) {
    match frame::parse_datagram(data) {
        Ok(request) => {
            assert!(!request.cookie.is_empty());
            assert!(
                request.body.as_dict().is_some(),
                "framing yields a dictionary"
            );
            let body = handle(&request.body);
            reply_round_trip(request.cookie, &body);
        }
        Err(e) => {
            let reason = e.error_reason();
            let _ = e.to_string();
            if let Some(cookie) = e.cookie() {
                reply_round_trip(cookie, &reply::error(reason));
            }
        }
    }
}

/// `ng_json`: a JSON payload (what follows the cookie when it starts
/// with `{`, but here any bytes) through the JSON decoder and the command
/// parser. A decoded document survives bencode encoding.
pub fn ng_json(data: &[u8]) {
    match json::decode(data) {
        Ok(value) => {
            let encoded = bencode::encode(&value);
            assert_eq!(bencode::decode(&encoded).as_ref(), Ok(&value));
            let body = handle(&value);
            reply_round_trip(b"fuzz", &body);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The SDP an offer in the `rtpp_flags` target carries: two media with
/// several codecs, ICE, rtcp-mux and an extmap, so that codec, ICE,
/// rtcp-mux and `strip-extmap` flags all change something.
const FLAGS_SDP: &[u8] = b"v=0\r\n\
o=- 3900001 3900001 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=rtcp-mux\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=candidate:1 1 UDP 2130706431 192.0.2.10 49170 typ host\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 49172 RTP/AVP 96 97\r\n\
a=rtpmap:96 H264/90000\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=sendrecv\r\n";

/// `rtpp_flags`: Kamailio's raw flags string (`rtpengine_offer("...")`
/// passes it as the `rtpp-flags` key) in an `offer`, an `answer` and a
/// `delete`; the offer's SDP is rewritten with what the flags asked.
pub fn rtpp_flags(data: &[u8]) {
    for (command, extra) in [
        ("offer", None),
        ("answer", Some(("to-tag", "as5e2"))),
        ("delete", None),
    ] {
        let mut dict = Dict::new();
        let mut put = |k: &str, v: Value| {
            dict.insert(k.as_bytes().to_vec(), v);
        };
        put("command", Value::str(command));
        put("call-id", Value::str("a84b4c76e66710@pc33.example.com"));
        put("from-tag", Value::str("1928301774"));
        put("sdp", Value::bytes(FLAGS_SDP));
        put("rtpp-flags", Value::bytes(data));
        if let Some((k, v)) = extra {
            put(k, Value::str(v));
        }
        let body = handle(&Value::Dict(dict));
        reply_round_trip(b"5323_1", &body);
    }
}

/// What relayd's handler would answer, short of touching calls: the
/// command parsed, `offer`/`answer` SDP rewritten, the reply built.
fn handle(body: &Value) -> Value {
    let parsed = match command::parse(body) {
        Ok(parsed) => parsed,
        Err(e) => return reply::error(&e.to_string()),
    };
    assert!(!parsed.command.name().is_empty());
    match &parsed.command {
        Command::Ping => reply::pong(),
        Command::Offer(oa) | Command::Answer(oa) => {
            assert!(!oa.call_id.is_empty() && !oa.from_tag.is_empty() && !oa.sdp.is_empty());
            assert!(oa.direction.len() <= 2, "{:?}", oa.direction);
            let answer = matches!(parsed.command, Command::Answer(_));
            assert!(!answer || oa.to_tag.is_some());
            if oa.supports_load_limit() {
                let _ = reply::load_limit_or_error(true);
            }
            match crate::sdp::rewrite_for(oa, answer) {
                Ok(sdp) => {
                    let mut extra = Dict::new();
                    extra.insert(b"sdp".to_vec(), Value::Bytes(sdp));
                    reply::ok_with_warnings(extra, &parsed.warnings)
                }
                Err(reason) => reply::error(&reason),
            }
        }
        Command::Delete(d) => {
            assert!(!d.call_id.is_empty());
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
        Command::Query(q) => {
            assert!(!q.call_id.is_empty());
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
        Command::List(l) => {
            let _ = l.limit;
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
        Command::Statistics => reply::ok(Dict::new()),
        Command::Publish(oa) => {
            assert!(!oa.call_id.is_empty() && !oa.from_tag.is_empty() && !oa.sdp.is_empty());
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
        Command::SubscribeRequest(s) => {
            assert!(!s.call_id.is_empty() && s.from_tags.iter().all(|t| !t.is_empty()));
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
        Command::SubscribeAnswer(a) => {
            assert!(!a.call_id.is_empty() && !a.to_tag.is_empty() && !a.sdp.is_empty());
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
        Command::Unsubscribe(u) => {
            assert!(!u.call_id.is_empty() && !u.to_tag.is_empty());
            reply::ok_with_warnings(Dict::new(), &parsed.warnings)
        }
    }
}

/// The reply datagram for `body` starts with the cookie and a space, and
/// its payload decodes back to `body`.
fn reply_round_trip(cookie: &[u8], body: &Value) {
    let datagram = frame::encode_reply(cookie, body);
    let (c, payload) = datagram.split_at(cookie.len());
    assert_eq!(c, cookie);
    assert_eq!(payload.first(), Some(&b' '));
    assert_eq!(bencode::decode(&payload[1..]).as_ref(), Ok(body));
}
