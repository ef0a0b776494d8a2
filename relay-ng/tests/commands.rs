//! Whole requests, as Kamailio and other NG clients send them, through
//! framing and command parsing.

use relay_ng::bencode::{self, Value};
use relay_ng::command::{self, Command, NgError, ReceivedFrom, DEFAULT_LIST_LIMIT};
use relay_ng::{frame, reply};

/// A Kamailio offer: unsorted keys, the usual lists, one key we don't know.
const KAMAILIO_OFFER: &[u8] = include_bytes!("fixtures/kamailio-offer.ng");

/// Frames `body` as a request with cookie `c1` and parses it.
fn parse(body: &Value) -> Result<command::Parsed, NgError> {
    let datagram = frame::encode_reply(b"c1", body);
    let request = frame::parse_datagram(&datagram).expect("framing");
    command::parse(&request.body)
}

fn request(entries: &[(&str, Value)]) -> Value {
    Value::dict(entries.iter().cloned())
}

#[test]
fn kamailio_offer() {
    let request = frame::parse_datagram(KAMAILIO_OFFER).expect("framing");
    assert_eq!(request.cookie, b"5323_4711_1");
    let parsed = command::parse(&request.body).expect("valid offer");
    let Command::Offer(offer) = parsed.command else {
        panic!("not an offer: {:?}", parsed.command);
    };
    assert_eq!(offer.call_id, "a84b4c76e66710@pc33.example.com");
    assert_eq!(offer.from_tag, "1928301774");
    assert_eq!(offer.to_tag, None);
    assert!(offer.sdp.starts_with(b"v=0\r\no=alice "));
    assert!(offer.supports_load_limit());
    assert_eq!(
        offer.received_from,
        Some(ReceivedFrom {
            family: "IP4".into(),
            address: "192.0.2.10".into()
        })
    );
    assert!(offer.flags.trust_address && offer.flags.strict_source && offer.flags.loop_protect);
    assert!(offer.flags.unknown.is_empty());
    assert_eq!(offer.replace, ["origin", "session-connection"]);
    assert_eq!(offer.direction, ["pub", "priv"]);
    assert_eq!(offer.rtcp_mux, ["demux"]);
    assert_eq!(offer.ice.as_deref(), Some("remove"));
    assert_eq!(offer.transport_protocol.as_deref(), Some("RTP/AVP"));
    assert_eq!(offer.sip_message_type.as_deref(), Some("sip_request"));
    assert_eq!(
        parsed.warnings,
        ["Ignored unsupported key 'x-kamailio-extra'"]
    );
    let reply = reply::ok_with_warnings(
        [(b"sdp".to_vec(), Value::bytes(offer.sdp))].into(),
        &parsed.warnings,
    );
    let datagram = frame::encode_reply(request.cookie, &reply);
    assert!(datagram.starts_with(b"5323_4711_1 d6:result2:ok3:sdp226:v=0"));
}

#[test]
fn json_offer() {
    let d = br#"j1 {"command": "offer", "call-id": "cfBXzDSZqhYNcXM", "from-tag": "mS9rSAn0Cr",
        "sdp": "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n", "via-branch": "5KiTRPZHH1nL6",
        "flags": [ "trust address" ], "replace": [ "origin" ],
        "address family": "IP6", "received-from": [ "IP4", "10.65.31.43" ],
        "ICE": "force", "transport protocol": "RTP/SAVPF",
        "media address": "2001:d8::6f24:65b", "DTLS": "passive" }"#;
    let request = frame::parse_datagram(d).expect("framing");
    let parsed = command::parse(&request.body).expect("valid");
    let Command::Offer(offer) = parsed.command else {
        panic!("not an offer");
    };
    assert_eq!(offer.via_branch.as_deref(), Some("5KiTRPZHH1nL6"));
    assert!(offer.flags.trust_address);
    assert_eq!(offer.address_family.as_deref(), Some("IP6"));
    assert_eq!(offer.ice.as_deref(), Some("force"));
    assert_eq!(offer.transport_protocol.as_deref(), Some("RTP/SAVPF"));
    assert_eq!(offer.media_address.as_deref(), Some("2001:d8::6f24:65b"));
    assert!(!offer.supports_load_limit());
    assert_eq!(offer.dtls.as_deref(), Some("passive"));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
}

#[test]
fn offer_requirements_in_rtpengine_order() {
    let full = [
        ("command", Value::str("offer")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("f")),
        ("sdp", Value::str("v=0\r\n")),
    ];
    assert!(parse(&request(&full)).is_ok());
    let without = |key: &str| {
        let entries: Vec<_> = full.iter().filter(|(k, _)| *k != key).cloned().collect();
        parse(&request(&entries))
            .expect_err("incomplete")
            .to_string()
    };
    assert_eq!(without("sdp"), "No SDP body in message");
    assert_eq!(without("call-id"), "No call-id in message");
    assert_eq!(without("from-tag"), "No from-tag in message");
    let only_command = parse(&request(&full[..1])).expect_err("empty");
    assert_eq!(only_command, NgError::NoSdp);
    let empty_call_id = request(&[
        ("command", Value::str("offer")),
        ("call-id", Value::str("")),
        ("from-tag", Value::str("f")),
        ("sdp", Value::str("v=0\r\n")),
    ]);
    assert_eq!(parse(&empty_call_id), Err(NgError::NoCallId));
}

#[test]
fn answer_needs_to_tag() {
    let mut entries = vec![
        ("command", Value::str("answer")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("f")),
        ("sdp", Value::str("v=0\r\n")),
        ("supports", Value::str_list(["load limit"])),
    ];
    let e = parse(&request(&entries)).expect_err("no to-tag");
    assert_eq!(e.to_string(), "No to-tag in message");
    assert_eq!(
        reply::error(&e.to_string()),
        Value::dict([
            ("result", Value::str("error")),
            ("error-reason", Value::str("No to-tag in message")),
        ])
    );
    entries.push(("to-tag", Value::str("t")));
    let parsed = parse(&request(&entries)).expect("valid");
    assert!(matches!(
        parsed.command,
        Command::Answer(ref a) if a.to_tag.as_deref() == Some("t") && a.supports_load_limit()
    ));
}

#[test]
fn delete_without_from_tag() {
    let parsed = parse(&request(&[
        ("command", Value::str("delete")),
        ("call-id", Value::str("c")),
        ("delete-delay", Value::str("0")),
        ("flags", Value::str_list(["fatal", "to-tag"])),
    ]))
    .expect("valid");
    let Command::Delete(d) = parsed.command else {
        panic!("not a delete");
    };
    assert_eq!(d.call_id, "c");
    assert_eq!(d.from_tag, None);
    assert_eq!(d.delete_delay, Some(0));
    assert!(d.flags.fatal && d.flags.to_tag_flag);
    assert!(parsed.warnings.is_empty());

    let e = parse(&request(&[("command", Value::str("delete"))])).expect_err("no call-id");
    assert_eq!(e.to_string(), "No call-id in message");
}

#[test]
fn delete_delay_forms() {
    let delay = |v: Value| {
        let parsed = parse(&request(&[
            ("command", Value::str("delete")),
            ("call-id", Value::str("c")),
            ("delete-delay", v),
        ]))
        .expect("valid");
        match parsed.command {
            Command::Delete(d) => (d.delete_delay, parsed.warnings.len()),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(delay(Value::Int(30)), (Some(30), 0));
    assert_eq!(delay(Value::str(" 12 ")), (Some(12), 0));
    assert_eq!(delay(Value::Int(-1)), (None, 0));
    assert_eq!(delay(Value::Int(i64::MAX)), (Some(u32::MAX), 0));
    assert_eq!(delay(Value::str("soon")), (None, 1));
}

#[test]
fn query_and_list() {
    let parsed = parse(&request(&[
        ("command", Value::str("query")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("f")),
    ]))
    .expect("valid");
    assert!(matches!(
        parsed.command,
        Command::Query(ref q) if q.call_id == "c" && q.from_tag.as_deref() == Some("f") && q.to_tag.is_none()
    ));
    assert_eq!(
        parse(&request(&[("command", Value::str("query"))])),
        Err(NgError::NoCallId)
    );

    let limit = |entries: &[(&str, Value)]| match parse(&request(entries)).map(|p| p.command) {
        Ok(Command::List(l)) => Ok(l.limit),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    let list = ("command", Value::str("list"));
    assert_eq!(limit(std::slice::from_ref(&list)), Ok(DEFAULT_LIST_LIMIT));
    assert_eq!(limit(&[list.clone(), ("limit", Value::Int(5))]), Ok(5));
    assert_eq!(limit(&[list.clone(), ("limit", Value::str("7"))]), Ok(7));
    assert_eq!(
        limit(&[list, ("limit", Value::Int(-1))]).map_err(|e| e.to_string()),
        Err("invalid limit, must be >= 0".to_owned())
    );
}

#[test]
fn ping_and_statistics() {
    let ping = frame::parse_datagram(b"5323_1 d7:command4:pinge").expect("framing");
    let parsed = command::parse(&ping.body).expect("valid");
    assert_eq!(parsed.command, Command::Ping);
    assert_eq!(
        frame::encode_reply(ping.cookie, &reply::pong()),
        b"5323_1 d6:result4:ponge"
    );
    let stats = parse(&request(&[("command", Value::str("statistics"))])).expect("valid");
    assert_eq!(stats.command.name(), "statistics");
}

#[test]
fn command_errors() {
    let reason = |body: &Value| command::parse(body).expect_err("bad").to_string();
    assert_eq!(
        reason(&request(&[("call-id", Value::str("c"))])),
        "Dictionary contains no key \"command\""
    );
    assert_eq!(
        reason(&request(&[("command", Value::Int(1))])),
        "Dictionary contains no key \"command\""
    );
    assert_eq!(
        reason(&request(&[("command", Value::str("explode"))])),
        "Unrecognized command"
    );
    assert_eq!(
        reason(&request(&[("command", Value::str("Ping"))])),
        "Unrecognized command",
        "command names are case-sensitive, as in rtpengine"
    );
    assert_eq!(
        command::parse(&request(&[("command", Value::str("play media"))])),
        Err(NgError::NotImplemented("play media".into()))
    );
    assert_eq!(
        reason(&Value::Int(3)),
        "Could not decode bencode dictionary"
    );
    let bad_utf8 = request(&[
        ("command", Value::str("query")),
        ("call-id", Value::bytes(vec![0xff, 0xfe])),
    ]);
    assert_eq!(reason(&bad_utf8), "Invalid UTF-8 in 'call-id'");
}

#[test]
fn spelling_variants_and_value_forms() {
    let parsed = parse(&request(&[
        ("command", Value::str("offer")),
        ("call_id", Value::str("c")),
        ("From Tag", Value::str("f")),
        ("SDP", Value::str("v=0\r\n")),
        (
            "flags",
            Value::str_list([
                "SIP source address",
                "Strict_Source",
                "replace-origin",
                "RTCP-mux-offer",
                "no-jitter-buffer",
            ]),
        ),
        ("replace", Value::str("session name,SDP-version")),
        ("received from", Value::str("2001:db8::1")),
        (
            "rtcp mux",
            Value::list([Value::str("accept"), Value::Int(5)]),
        ),
        ("from-interface", Value::str("pub")),
        ("to-interface", Value::str("priv")),
        ("all", Value::str("all")),
        ("record call", Value::str("on")),
        ("endpoint-learning", Value::str("Immediate")),
        ("label", Value::Int(7)),
    ]))
    .expect("valid");
    let Command::Offer(o) = parsed.command else {
        panic!("not an offer");
    };
    assert_eq!(o.call_id, "c");
    assert_eq!(o.from_tag, "f");
    assert!(
        o.flags.sip_source_address && o.flags.strict_source && o.flags.all && o.flags.record_call
    );
    assert_eq!(o.flags.unknown, ["no-jitter-buffer"]);
    assert_eq!(o.replace, ["origin", "session-name", "sdp-version"]);
    assert_eq!(o.rtcp_mux, ["offer", "accept"]);
    assert_eq!(
        o.received_from,
        Some(ReceivedFrom {
            family: "IP6".into(),
            address: "2001:db8::1".into()
        })
    );
    assert_eq!(o.direction, ["pub", "priv"]);
    assert_eq!(o.endpoint_learning.as_deref(), Some("immediate"));
    assert_eq!(o.label.as_deref(), Some("7"));
    assert_eq!(
        parsed.warnings,
        [
            "Ignored unsupported flag 'no-jitter-buffer'",
            "Ignored unsupported 'rtcp-mux' value '5'",
        ]
    );
}

#[test]
fn rtpp_flags_string() {
    let parsed = parse(&request(&[
        ("command", Value::str("offer")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("f")),
        ("sdp", Value::str("v=0\r\n")),
        ("supports", Value::str_list(["load limit"])),
        (
            "rtpp-flags",
            Value::str(
                "replace-origin via-branch=auto-next strict-source label=callee \
                 ICE=remove RTP/AVP address-family=IP4 direction=pub direction=priv \
                 rtcp-mux-demux SDES-off",
            ),
        ),
    ]))
    .expect("valid");
    let Command::Offer(o) = parsed.command else {
        panic!("not an offer");
    };
    assert_eq!(o.replace, ["origin"]);
    assert_eq!(o.via_branch.as_deref(), Some("auto-next"));
    assert!(o.flags.strict_source);
    assert_eq!(o.label.as_deref(), Some("callee"));
    assert_eq!(o.ice.as_deref(), Some("remove"));
    assert_eq!(o.transport_protocol.as_deref(), Some("RTP/AVP"));
    assert_eq!(o.address_family.as_deref(), Some("IP4"));
    assert_eq!(o.direction, ["pub", "priv"]);
    assert_eq!(o.rtcp_mux, ["demux"]);
    assert_eq!(o.flags.sdes, ["off"]);
    assert!(o.flags.unknown.is_empty());
    assert!(parsed.warnings.is_empty());
}

#[test]
fn osrtp_key_and_flags() {
    // The key as a list, as a comma-separated string, and the flag form.
    for (osrtp, flags) in [
        (
            Value::str_list(["offer", "accept-RFC"]),
            Value::str_list([]),
        ),
        (Value::str("offer,accept-RFC"), Value::str_list([])),
        (
            Value::str_list([]),
            Value::str_list(["OSRTP-offer", "OSRTP-accept-RFC"]),
        ),
    ] {
        let parsed = parse(&request(&[
            ("command", Value::str("offer")),
            ("call-id", Value::str("c")),
            ("from-tag", Value::str("f")),
            ("sdp", Value::str("v=0\r\n")),
            ("OSRTP", osrtp),
            ("flags", flags),
        ]))
        .expect("valid");
        let Command::Offer(o) = parsed.command else {
            panic!("not an offer");
        };
        assert!(o.flags.osrtp_offer && o.flags.osrtp_accept);
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }
    // Spelling aside, only offer and accept are acted on; the legacy forms
    // and unknown values are warned about and set nothing.
    let parsed = parse(&request(&[
        ("command", Value::str("offer")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("f")),
        ("sdp", Value::str("v=0\r\n")),
        (
            "OSRTP",
            Value::str_list(["offer-legacy", "accept_legacy", "bogus"]),
        ),
    ]))
    .expect("valid");
    let Command::Offer(o) = parsed.command else {
        panic!("not an offer");
    };
    assert!(!o.flags.osrtp_offer && !o.flags.osrtp_accept);
    assert_eq!(
        parsed.warnings,
        [
            "Ignored unsupported OSRTP option 'offer-legacy'",
            "Ignored unsupported OSRTP option 'accept_legacy'",
            "Ignored unsupported OSRTP option 'bogus'",
        ]
    );
    for (value, offer, accept) in [("ACCEPT", false, true), ("Offer_RFC", true, false)] {
        let parsed = parse(&request(&[
            ("command", Value::str("offer")),
            ("call-id", Value::str("c")),
            ("from-tag", Value::str("f")),
            ("sdp", Value::str("v=0\r\n")),
            ("OSRTP", Value::str_list([value])),
        ]))
        .expect("valid");
        let Command::Offer(o) = parsed.command else {
            panic!("not an offer");
        };
        assert_eq!(
            (o.flags.osrtp_offer, o.flags.osrtp_accept),
            (offer, accept),
            "{value}"
        );
    }
}

#[test]
fn bencode_error_reply_uses_the_cookie() {
    let e = frame::parse_datagram(b"77_1 d7:command5:offer").expect_err("truncated");
    let cookie = e.cookie().expect("answerable");
    let datagram = frame::encode_reply(cookie, &reply::error(e.error_reason()));
    assert_eq!(
        bencode::decode(datagram.strip_prefix(b"77_1 ").expect("cookie")),
        Ok(reply::error("Could not decode bencode dictionary"))
    );
}

#[test]
fn warnings_are_capped() {
    let junk: Vec<String> = (0..1000).map(|i| format!("junk-{i}")).collect();
    let parsed = parse(&request(&[
        ("command", Value::str("ping")),
        ("flags", Value::str_list(junk.iter().map(String::as_str))),
    ]))
    .expect("valid");
    assert_eq!(parsed.warnings.len(), 17);
    assert_eq!(
        parsed.warnings.last().map(String::as_str),
        Some("984 more warnings suppressed")
    );
    let reply = reply::ok_with_warnings(Default::default(), &parsed.warnings);
    assert!(bencode::encode(&reply).len() < 1024);

    let long = "é".repeat(10_000);
    let parsed = parse(&request(&[
        ("command", Value::str("ping")),
        ("flags", Value::str_list([long.as_str()])),
    ]))
    .expect("valid");
    let warning = parsed.warnings.first().expect("one warning");
    assert!(
        warning.len() <= 163 && warning.ends_with("..."),
        "{warning}"
    );
}

/// `ICE` as a list (`[force, trickle]`): the last mode counts, `trickle`
/// is no mode; `ICE-lite` is taken without a warning (relayd is always
/// lite).
#[test]
fn ice_list_and_ice_lite() {
    let offer = |ice: Value| {
        let parsed = parse(&request(&[
            ("command", Value::str("offer")),
            ("call-id", Value::str("c")),
            ("from-tag", Value::str("f")),
            ("sdp", Value::str("v=0\r\n")),
            ("ICE", ice),
            ("ICE-lite", Value::str("forward")),
        ]))
        .expect("valid offer");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let Command::Offer(offer) = parsed.command else {
            panic!("not an offer");
        };
        offer.ice
    };
    assert_eq!(
        offer(Value::str_list(["force", "trickle"])).as_deref(),
        Some("force")
    );
    assert_eq!(offer(Value::str_list(["trickle"])), None);
    assert_eq!(offer(Value::str("remove")).as_deref(), Some("remove"));
}

#[test]
fn subscribe_request_collects_from_tag_and_from_tags() {
    let parsed = parse(&request(&[
        ("command", Value::str("subscribe request")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("A")),
        (
            "from-tags",
            Value::List(vec![Value::str("B"), Value::str("A")]),
        ),
        ("flags", Value::List(vec![Value::str("all")])),
    ]))
    .expect("valid");
    let Command::SubscribeRequest(s) = parsed.command else {
        panic!("not a subscribe request: {:?}", parsed.command);
    };
    assert_eq!(s.call_id, "c");
    assert_eq!(s.from_tags, ["A", "B"], "from-tag first, duplicates once");
    assert_eq!(s.to_tag, None);
    assert!(s.flags.all);
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
}

#[test]
fn subscribe_request_takes_the_flag_form_of_from_tags() {
    let parsed = parse(&request(&[
        ("command", Value::str("subscribe request")),
        ("call-id", Value::str("c")),
        (
            "flags",
            Value::str_list(["from-tags-Caller-1", "from-tags-callee", "from-tags-"]),
        ),
    ]))
    .expect("valid");
    let Command::SubscribeRequest(s) = parsed.command else {
        panic!("not a subscribe request: {:?}", parsed.command);
    };
    assert_eq!(s.from_tags, ["Caller-1", "callee"], "spelling kept");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
}

#[test]
fn subscribe_answer_and_unsubscribe_need_their_keys() {
    let answer = |entries: &[(&str, Value)]| {
        let mut all = vec![("command", Value::str("subscribe answer"))];
        all.extend(entries.iter().cloned());
        parse(&request(&all))
    };
    assert_eq!(
        answer(&[("call-id", Value::str("c")), ("to-tag", Value::str("S"))]).unwrap_err(),
        NgError::NoSdp
    );
    assert_eq!(
        answer(&[("call-id", Value::str("c")), ("sdp", Value::str("v=0"))]).unwrap_err(),
        NgError::NoToTag
    );
    let ok = answer(&[
        ("call-id", Value::str("c")),
        ("to-tag", Value::str("S")),
        ("sdp", Value::str("v=0")),
    ])
    .expect("valid");
    assert!(matches!(ok.command, Command::SubscribeAnswer(ref a) if a.to_tag == "S"));
    let unsub = parse(&request(&[
        ("command", Value::str("unsubscribe")),
        ("call-id", Value::str("c")),
        ("to-tag", Value::str("S")),
    ]))
    .expect("valid");
    assert_eq!(unsub.command.name(), "unsubscribe");
    let publish = parse(&request(&[
        ("command", Value::str("publish")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("P")),
        ("sdp", Value::str("v=0")),
    ]))
    .expect("valid");
    assert!(matches!(publish.command, Command::Publish(_)));
}

#[test]
fn sdes_options_relayd_does_not_act_on_are_warned() {
    let parsed = parse(&request(&[
        ("command", Value::str("offer")),
        ("call-id", Value::str("c")),
        ("from-tag", Value::str("f")),
        ("sdp", Value::str("v=0")),
        (
            "SDES",
            Value::List(vec![
                Value::str("off"),
                Value::str("no-AES_CM_128_HMAC_SHA1_32"),
                Value::str("lifetime"),
                Value::str("unencrypted_srtp"),
                Value::str("encrypted_srtcp"),
            ]),
        ),
        (
            "flags",
            Value::List(vec![Value::str("SDES-pad"), Value::str("SDES-nonew")]),
        ),
    ]))
    .expect("valid");
    let Command::Offer(o) = parsed.command else {
        panic!("not an offer");
    };
    assert_eq!(
        o.flags.sdes.len(),
        7,
        "every option is kept: {:?}",
        o.flags.sdes
    );
    assert_eq!(
        parsed.warnings,
        [
            "Ignored unsupported SDES option 'lifetime'",
            "Ignored unsupported SDES option 'unencrypted_srtp'",
            "Ignored unsupported SDES option 'pad'",
        ]
    );
}
