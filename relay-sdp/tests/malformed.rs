//! Malformed input must give an error naming the offending line, never a panic, and
//! plans that do not fit the SDP must be refused.

use relay_sdp::{parse, rewrite, MediaRewrite, Problem, RewritePlan, RtcpMux, SdpError};

const VALID: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

/// Parses `input`, expecting an error at `line` with `problem`.
fn expect_err(input: &[u8], line: usize, problem: Problem) -> SdpError {
    match parse(input) {
        Ok(_) => panic!("accepted: {:?}", String::from_utf8_lossy(input)),
        Err(e) => {
            assert_eq!(e.line(), Some(line), "{e}");
            let SdpError::Syntax { problem: got, .. } = &e else {
                panic!("not a syntax error: {e}");
            };
            assert_eq!(*got, problem, "{e}");
            e
        }
    }
}

/// `VALID` with line `n` (1-based) replaced.
fn with_line(n: usize, replacement: &str) -> Vec<u8> {
    with_line_bytes(n, replacement.as_bytes())
}

/// `VALID` with line `n` (1-based) replaced by arbitrary bytes.
fn with_line_bytes(n: usize, replacement: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in VALID.split_terminator("\r\n").enumerate() {
        out.extend_from_slice(if i + 1 == n {
            replacement
        } else {
            line.as_bytes()
        });
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn valid_baseline_parses() {
    let sdp = parse(VALID.as_bytes()).expect("valid");
    assert_eq!(sdp.media_count(), 1);
    assert_eq!(sdp.as_bytes(), VALID.as_bytes());
}

#[test]
fn empty_and_blank_inputs() {
    expect_err(b"", 1, Problem::Empty);
    expect_err(b"\r\n\r\n", 1, Problem::Empty);
    expect_err(b"   \n\t\n", 1, Problem::Empty);
}

#[test]
fn version_line() {
    expect_err(b"o=- 1 1 IN IP4 1.2.3.4\r\n", 1, Problem::BadVersion);
    expect_err(b"v=1\r\n", 1, Problem::BadVersion);
    expect_err(b"v=0x\r\n", 1, Problem::BadVersion);
    expect_err(b"\r\nv=0\r\n", 1, Problem::BadVersion);
    expect_err(b"v=0\ro=- 1 1 IN IP4 1.2.3.4\r", 1, Problem::BadVersion);
    expect_err(&with_line(5, "v=0"), 5, Problem::MultipleSessions);
}

#[test]
fn garbage_bytes() {
    expect_err(b"\x00\x01\x02\xff\xfe", 1, Problem::BadVersion);
    expect_err(&with_line(3, "\u{1f600}=x"), 3, Problem::NotALine);
    expect_err(&with_line(3, "S=-"), 3, Problem::NotALine);
    expect_err(&with_line(3, "s"), 3, Problem::NotALine);
    expect_err(&with_line(3, "s-"), 3, Problem::NotALine);
    expect_err(&with_line(3, " s=-"), 3, Problem::NotALine);
    let mut bin = VALID.as_bytes().to_vec();
    bin.extend_from_slice(b"\xc3\x28=\xa0\xa1\r\n");
    expect_err(&bin, 8, Problem::NotALine);
}

#[test]
fn invalid_utf8_values_are_kept_not_refused() {
    let mut input = with_line_bytes(3, b"s=R\xe9union");
    input.extend_from_slice(b"a=x:\xff\xfe\r\n");
    let sdp = parse(&input).expect("non-UTF-8 values are tolerated");
    assert_eq!(sdp.as_bytes(), &input[..]);
    // In a field the relay must understand, it is an error with the line number.
    expect_err(
        &with_line_bytes(6, b"m=audio 4\xe900 RTP/AVP 0"),
        6,
        Problem::BadMedia,
    );
    expect_err(
        &with_line_bytes(4, b"c=IN IP4 198.51.100.\xff"),
        4,
        Problem::BadConnection,
    );
}

#[test]
fn empty_line_in_the_middle() {
    expect_err(&with_line(4, ""), 4, Problem::EmptyLine);
    expect_err(&with_line(4, "  "), 4, Problem::EmptyLine);
}

#[test]
fn origin_problems() {
    expect_err(&with_line(2, "s=-"), 2, Problem::MissingOrigin);
    expect_err(&with_line(2, "o=- 1 1 IN IP4"), 2, Problem::BadOrigin);
    expect_err(
        &with_line(3, "o=- 1 1 IN IP4 1.2.3.4"),
        3,
        Problem::DuplicateOrigin,
    );
    expect_err(
        &with_line(7, "o=- 1 1 IN IP4 1.2.3.4"),
        7,
        Problem::MisplacedOrigin,
    );
}

#[test]
fn media_problems() {
    let e = expect_err(&with_line(6, "m=audio x RTP/AVP 0"), 6, Problem::BadMedia);
    assert!(
        e.to_string()
            .starts_with("SDP line 6: bad m= line \"m=audio x RTP/AVP 0\""),
        "{e}"
    );
    for bad in [
        "m=audio 70000 RTP/AVP 0",
        "m=audio -5 RTP/AVP 0",
        "m=audio 4000/0 RTP/AVP 0",
        "m=audio 4000/x RTP/AVP 0",
        "m=audio 4000",
        "m=audio",
        "m=",
    ] {
        expect_err(&with_line(6, bad), 6, Problem::BadMedia);
    }
}

#[test]
fn connection_problems() {
    for bad in [
        "c=IN IP4 999.1.1.1",
        "c=IN IP4 2001:db8::1",
        "c=IN IP6 198.51.100.1",
        "c=IN IP4 pbx.example.com",
        "c=IN IP5 198.51.100.1",
        "c=ATM NSAP 47.0091",
        "c=IN IP4",
        "c=",
        "c=IN IP4 198.51.100.1 extra",
    ] {
        expect_err(&with_line(4, bad), 4, Problem::BadConnection);
    }
    let mut twice = VALID.as_bytes().to_vec();
    twice.extend_from_slice(b"c=IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.5\r\n");
    expect_err(&twice, 9, Problem::DuplicateConnection);
}

#[test]
fn huge_input_is_refused_with_a_line_number() {
    let mut huge = VALID.as_bytes().to_vec();
    while huge.len() <= relay_sdp::MAX_SDP_LEN {
        huge.extend_from_slice(b"a=x-filler:0123456789012345678901234567890123456789\r\n");
    }
    // The limit falls inside filler line number `whole + 1` after VALID's 7 lines.
    let filler_len = 53;
    let whole = (relay_sdp::MAX_SDP_LEN - VALID.len()) / filler_len;
    let line = 7 + whole + 1;
    let e = expect_err(&huge, line, Problem::TooLarge);
    assert!(
        e.to_string().starts_with(&format!("SDP line {line}:")),
        "{e}"
    );
    // One enormous line without any line break.
    expect_err(&vec![b'a'; 10 * 1024 * 1024], 1, Problem::TooLarge);
    // Just under the limit, a long but valid body parses (in well under a second).
    let mut big = VALID.as_bytes().to_vec();
    while big.len() + 60 < relay_sdp::MAX_SDP_LEN {
        big.extend_from_slice(b"a=x-filler:0123456789012345678901234567890123456789\r\n");
    }
    parse(&big).expect("large valid body");
}

fn media(port: u16, rtcp_port: Option<u16>, rtcp_mux: RtcpMux) -> MediaRewrite {
    MediaRewrite {
        address: "203.0.113.1".parse().expect("ip"),
        port,
        rtcp_port,
        rtcp_mux,
        formats: None,
        ptime: None,
        mid: None,
        protocol: None,
        ice: None,
        crypto: None,
        dtls: relay_sdp::DtlsRewrite::Keep,
    }
}

#[test]
fn plan_must_fit_the_sdp() {
    let sdp = parse(VALID.as_bytes()).expect("valid");
    let mut plan = RewritePlan::default();
    assert_eq!(
        rewrite(&sdp, &plan),
        Err(SdpError::PlanMediaCount {
            expected: 1,
            got: 0
        })
    );
    plan.medias = vec![media(1, None, RtcpMux::Keep); 2];
    assert!(matches!(
        rewrite(&sdp, &plan),
        Err(SdpError::PlanMediaCount {
            expected: 1,
            got: 2
        })
    ));
    plan.medias = vec![media(30000, None, RtcpMux::Remove)];
    let e = rewrite(&sdp, &plan).expect_err("mux on the RTP port without a=rtcp-mux");
    assert_eq!(e, SdpError::PlanRtcpConflict { media: 0 });
    assert_eq!(e.line(), None);
    plan.medias = vec![media(30000, Some(30001), RtcpMux::Remove)];
    rewrite(&sdp, &plan).expect("separate RTCP port");
}

#[test]
fn rtcp_conflict_ignored_for_rejected_media() {
    let input = VALID.replace("m=audio 4000", "m=audio 0");
    let sdp = parse(input.as_bytes()).expect("valid");
    let plan = RewritePlan {
        medias: vec![media(30000, None, RtcpMux::Remove)],
        ..RewritePlan::default()
    };
    rewrite(&sdp, &plan).expect("rejected media is not rewritten, so the plan is moot");
}

#[test]
fn no_media_sdp_rewrites_only_origin() {
    let input = b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n";
    let sdp = parse(input).expect("valid");
    let plan = RewritePlan {
        origin_address: Some("203.0.113.1".parse().expect("ip")),
        ..RewritePlan::default()
    };
    let out = rewrite(&sdp, &plan).expect("fits");
    assert_eq!(
        out,
        b"v=0\r\no=- 1 1 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"
    );
}
