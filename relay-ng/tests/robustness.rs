//! Malformed and random input: every decoder must return an error, never
//! panic, never allocate what the input does not hold.
//!
//! The random part is a deterministic xorshift generator, so failures
//! reproduce; the seed is in the assertion messages.

use relay_ng::bencode::{self, BencodeError, Value, MAX_DEPTH};
use relay_ng::{command, frame, json};

const KAMAILIO_OFFER: &[u8] = include_bytes!("fixtures/kamailio-offer.ng");

/// Payload of the fixture (after "cookie ").
fn offer_payload() -> &'static [u8] {
    let (_, payload) = frame::split_cookie(KAMAILIO_OFFER).expect("fixture has a cookie");
    payload
}

#[test]
fn every_truncation_of_an_offer_is_an_error() {
    let payload = offer_payload();
    assert!(bencode::decode(payload).is_ok());
    for cut in 0..payload.len() {
        let prefix = payload.get(..cut).expect("in range");
        let e = bencode::decode(prefix).expect_err("truncated");
        assert!(e.is_incomplete(), "cut at {cut}: {e}");
        match bencode::scan_prefix(prefix) {
            Err(bencode::Scan::Incomplete { at_least }) => {
                assert!(at_least > cut && at_least <= payload.len(), "cut at {cut}")
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
        assert!(frame::parse_datagram(KAMAILIO_OFFER.get(..cut).expect("in range")).is_err());
    }
}

#[test]
fn offer_with_trailing_garbage() {
    let mut d = KAMAILIO_OFFER.to_vec();
    d.extend_from_slice(b"\n");
    let e = frame::parse_datagram(&d).expect_err("trailing newline");
    assert!(matches!(
        e,
        frame::FrameError::Bencode {
            source: BencodeError::TrailingData { .. },
            ..
        }
    ));
    assert_eq!(e.cookie(), Some(&b"5323_4711_1"[..]));
}

#[test]
fn hostile_forms() {
    let cases: &[&[u8]] = &[
        b"d7:command99999999999:offere",
        b"d7:command18446744073709551616:xe",
        b"d7:commandi99999999999999999999ee",
        b"d7:commandi-0ee",
        b"d7:commandi007ee",
        b"d7:commandiee",
        b"di1ei2ee",
        b"dd1:ai1ee1:be",
        b"dl1:ae1:be",
        b"d7:command4:pinge garbage",
        b"d7:command4:pingee",
        b"d7:command4:ping",
        b"d-1:xe",
        b"d7:command-4:pinge",
        b"d1:a1:b1:a1:ce",
    ];
    for case in cases {
        assert!(
            bencode::decode(case).is_err(),
            "{}",
            String::from_utf8_lossy(case)
        );
        let datagram = [&b"c "[..], case].concat();
        let e = frame::parse_datagram(&datagram).expect_err("malformed");
        assert_eq!(e.cookie(), Some(&b"c"[..]));
    }
}

#[test]
fn nesting_bombs() {
    for opener in [b'l', b'd'] {
        let mut bomb = vec![b'd', b'1', b':', b'x'];
        bomb.extend(std::iter::repeat_n(opener, 100_000));
        assert!(matches!(
            bencode::decode(&bomb),
            Err(BencodeError::TooDeep { .. } | BencodeError::NonStringKey { .. })
        ));
    }
    let lists = b"l".repeat(10_000_000);
    assert_eq!(
        bencode::decode(&lists),
        Err(BencodeError::TooDeep { offset: MAX_DEPTH })
    );
    let json_bomb = [b"{\"a\":".repeat(50_000), b"1".to_vec()].concat();
    assert!(json::decode(&json_bomb).is_err());
}

/// xorshift64*: small, deterministic, good enough to shake parsers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that matter to the grammars.
const SPECIAL: &[u8] = b"dlie:0123456789- {}[]\",=\\\x00\xff";

fn seeds() -> Vec<Vec<u8>> {
    vec![
        KAMAILIO_OFFER.to_vec(),
        b"5323_1 d7:command4:pinge".to_vec(),
        b"c d7:command6:delete7:call-id1:c8:from-tag1:f5:flagsl5:fatalee".to_vec(),
        b"c d7:command4:list5:limiti5ee".to_vec(),
        b"c d7:command5:query7:call-id3:abce".to_vec(),
        b"c d7:command6:answer7:call-id1:c8:from-tag1:f6:to-tag1:t3:sdp4:v=0\n10:rtpp-flags41:replace-origin ICE=remove direction=[a b]e"
            .to_vec(),
        br#"j {"command":"offer","call-id":"x","from-tag":"y","sdp":"v=0","flags":["all"],"limit":1.5,"received-from":["IP4","1.2.3.4"]}"#
            .to_vec(),
    ]
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..=rng.below(3) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = *rng.pick(SPECIAL);
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, *rng.pick(SPECIAL));
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(16) + 1).min(len);
                input.drain(start..end);
            }
            4 => input.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + rng.below(32) + 1).min(len);
                let chunk = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            _ => {
                let other = rng.pick(seeds);
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
        }
    }
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(64);
    (0..len)
        .map(|_| {
            if rng.below(4) == 0 {
                rng.next() as u8
            } else {
                *rng.pick(SPECIAL)
            }
        })
        .collect()
}

/// Runs every decoder on `d`; checks what must hold when one succeeds.
/// Returns whether `d` made it all the way to a valid command.
fn exercise(d: &[u8], seed: u64) -> bool {
    if let Ok(v) = bencode::decode(d) {
        let again = bencode::encode(&v);
        assert_eq!(bencode::decode(&again).as_ref(), Ok(&v), "seed {seed}");
    }
    if let Ok((_, used)) = bencode::decode_prefix(d) {
        assert!(used <= d.len(), "seed {seed}");
    }
    // Stream framing agrees with the decoder wherever the decoder finds a
    // value, and its hint never asks for more than a value takes.
    for start in [0, d.iter().position(|&b| b == b' ').map_or(0, |s| s + 1)] {
        let d = &d[start..];
        let scanned = bencode::scan_prefix(d);
        if let Ok((_, used)) = bencode::decode_prefix(d) {
            assert_eq!(scanned, Ok(used), "seed {seed}");
            for cut in 0..used {
                match bencode::scan_prefix(&d[..cut]) {
                    Err(bencode::Scan::Incomplete { at_least }) => {
                        assert!(at_least <= used, "seed {seed} cut {cut}")
                    }
                    other => panic!("seed {seed} cut {cut}: {other:?}"),
                }
            }
        }
    }
    let _ = json::decode(d);
    match frame::parse_datagram(d) {
        Ok(request) => {
            assert!(!request.cookie.is_empty(), "seed {seed}");
            assert!(request.body.as_dict().is_some(), "seed {seed}");
            command::parse(&request.body).is_ok()
        }
        Err(e) => {
            let _ = (e.cookie(), e.error_reason(), e.to_string());
            false
        }
    }
}

#[test]
fn random_and_mutated_datagrams_never_panic() {
    let seeds = seeds();
    for seed in seeds.iter() {
        assert!(
            frame::parse_datagram(seed).is_ok(),
            "{}",
            String::from_utf8_lossy(seed)
        );
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut valid = 0;
    for case in 0..20_000u64 {
        let d = if case % 4 == 0 {
            random_bytes(&mut rng)
        } else {
            let mut d = rng.pick(&seeds).clone();
            mutate(&mut rng, &mut d, &seeds);
            d
        };
        valid += usize::from(exercise(&d, case));
    }
    // The mutations must not be so wild that the command layer is never reached.
    assert!(valid > 500, "only {valid} cases reached a valid command");
}

/// Random values under the keys the command parser reads.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    const WORDS: &[&str] = &[
        "",
        "offer",
        "answer",
        "delete",
        "list",
        "all",
        "none",
        "IP4",
        "IP6",
        "1.2.3.4",
        "-1",
        "99999999999",
        "load limit",
        "replace-origin",
        "rtcp-mux-demux",
        "x=y",
        "direction=a",
        "key=[a b",
        "]",
        "[[",
        "RTP/AVP",
        "SRTP AVPF DTLS",
        "strict source",
        "to-tag=t",
        "ICE=",
        "=",
        "a,b,,c",
        "\u{fffd}",
    ];
    match rng.below(if depth > 3 { 2 } else { 4 }) {
        0 => Value::Int(match rng.below(4) {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => rng.next() as i64 % 100,
        }),
        1 => {
            if rng.below(8) == 0 {
                Value::bytes(vec![0xff, b'a'])
            } else {
                Value::str(rng.pick::<&str>(WORDS))
            }
        }
        2 => Value::list((0..rng.below(4)).map(|_| random_value(rng, depth + 1))),
        _ => {
            Value::dict((0..rng.below(3)).map(|_| (*rng.pick(WORDS), random_value(rng, depth + 1))))
        }
    }
}

#[test]
fn random_command_fields_never_panic() {
    const KEYS: &[&str] = &[
        "call-id",
        "from-tag",
        "to-tag",
        "via-branch",
        "sdp",
        "flags",
        "replace",
        "direction",
        "from-interface",
        "to-interface",
        "received-from",
        "rtcp-mux",
        "ICE",
        "transport-protocol",
        "media-address",
        "address-family",
        "endpoint-learning",
        "supports",
        "sip-message-type",
        "label",
        "delete-delay",
        "limit",
        "all",
        "record-call",
        "rtpp-flags",
        "unknown",
    ];
    const COMMANDS: &[&str] = &[
        "ping",
        "offer",
        "answer",
        "delete",
        "query",
        "list",
        "statistics",
        "bogus",
    ];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..20_000 {
        let mut entries = vec![("command", Value::str(rng.pick::<&str>(COMMANDS)))];
        for _ in 0..rng.below(8) {
            entries.push((*rng.pick(KEYS), random_value(&mut rng, 0)));
        }
        let _ = command::parse(&Value::dict(entries));
    }
}
