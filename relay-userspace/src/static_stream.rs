//! `--static-stream` entries: forwarding set up at start-up without any
//! signalling, for demos, tests and fixed trunks.
//!
//! Syntax: `LOCAL=PEER[,src=ADDR:PORT][,strict=ADDR:PORT][,rtp=HZ|,rtcp][,max-pps=N]`
//! where every address is `IP:PORT`. `src` defaults to LOCAL; `strict`
//! makes the kernel drop packets from any other sender; `rtp` keeps RTP
//! figures for the stream as for a call's RTP port (`HZ`: the codec's clock
//! rate for the jitter, 0 if unknown), `rtcp` counts it as an RTCP port,
//! `max-pps` caps its packet rate in XDP as `--max-stream-pps` caps a
//! call's (a static stream may be a trunk, so it takes no cap by default).

use std::net::SocketAddr;

use crate::datapath::StreamSpec;

/// A malformed `--static-stream` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "bad --static-stream {input:?}: {reason} \
     (expected LOCAL=PEER[,src=IP:PORT][,strict=IP:PORT][,rtp=HZ|,rtcp][,max-pps=N])"
)]
pub struct StaticStreamError {
    input: String,
    reason: String,
}

/// Parses one entry; `stats_slot` is assigned by the caller.
pub fn parse(input: &str, stats_slot: u32) -> Result<StreamSpec, StaticStreamError> {
    let fail = |reason: String| StaticStreamError {
        input: input.to_owned(),
        reason,
    };
    let addr = |text: &str, what: &str| -> Result<SocketAddr, StaticStreamError> {
        text.trim()
            .parse()
            .map_err(|_| fail(format!("{what} {text:?} is not IP:PORT")))
    };
    let mut parts = input.split(',');
    let head = parts.next().unwrap_or_default();
    let (local, peer) = head
        .split_once('=')
        .ok_or_else(|| fail("missing `=`".into()))?;
    let local = addr(local, "LOCAL")?;
    let mut spec = StreamSpec {
        media: crate::datapath::MediaTracking::None,
        local,
        peer: addr(peer, "PEER")?,
        source: local,
        strict_source: None,
        stats_slot,
        to_userspace: false,
        max_pps: 0,
        ice: false,
        rtcp_demux: false,
    };
    for option in parts {
        match option.split_once('=') {
            Some(("src", v)) => spec.source = addr(v, "src")?,
            Some(("strict", v)) => spec.strict_source = Some(addr(v, "strict")?),
            Some(("rtp", v)) => {
                let clock_rate = v
                    .trim()
                    .parse()
                    .map_err(|_| fail(format!("rtp clock rate {v:?} is not a number of Hz")))?;
                spec.media = crate::datapath::MediaTracking::Rtp { clock_rate };
            }
            Some(("max-pps", v)) => {
                spec.max_pps = v
                    .trim()
                    .parse()
                    .map_err(|_| fail(format!("max-pps {v:?} is not a number of packets")))?;
            }
            None if option.trim() == "rtcp" => spec.media = crate::datapath::MediaTracking::Rtcp,
            _ => return Err(fail(format!("unknown option {option:?}"))),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_form() {
        let s = parse(
            "10.0.0.1:30000=10.0.2.2:4000,src=10.0.2.1:30002,strict=10.0.1.2:5000",
            7,
        )
        .unwrap();
        assert_eq!(s.local, "10.0.0.1:30000".parse().unwrap());
        assert_eq!(s.peer, "10.0.2.2:4000".parse().unwrap());
        assert_eq!(s.source, "10.0.2.1:30002".parse().unwrap());
        assert_eq!(s.strict_source, Some("10.0.1.2:5000".parse().unwrap()));
        assert_eq!(s.stats_slot, 7);
    }

    #[test]
    fn rate_cap_option() {
        let s = parse("10.0.0.1:30000=10.0.2.2:4000,max-pps=150", 0).unwrap();
        assert_eq!(s.max_pps, 150);
        assert_eq!(parse("10.0.0.1:30000=10.0.2.2:4000", 0).unwrap().max_pps, 0);
        let e = parse("10.0.0.1:30000=10.0.2.2:4000,max-pps=fast", 0).unwrap_err();
        assert!(e.to_string().contains("max-pps \"fast\""), "{e}");
    }

    #[test]
    fn source_defaults_to_local() {
        let s = parse("10.0.0.1:30000=10.0.2.2:4000", 0).unwrap();
        assert_eq!(s.source, s.local);
        assert_eq!(s.strict_source, None);
        assert_eq!(s.media, crate::datapath::MediaTracking::None);
    }

    #[test]
    fn media_options() {
        use crate::datapath::MediaTracking;
        let rtp = parse("10.0.0.1:30000=10.0.2.2:4000,rtp=8000", 0).unwrap();
        assert_eq!(rtp.media, MediaTracking::Rtp { clock_rate: 8000 });
        let rtcp = parse("10.0.0.1:30001=10.0.2.2:4001,rtcp", 0).unwrap();
        assert_eq!(rtcp.media, MediaTracking::Rtcp);
        let bad = parse("10.0.0.1:30000=10.0.2.2:4000,rtp=fast", 0).unwrap_err();
        assert!(bad.to_string().contains("rtp clock rate \"fast\""), "{bad}");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse("10.0.0.1:30000", 0)
            .unwrap_err()
            .to_string()
            .contains("missing `=`"));
        assert!(parse("10.0.0.1=10.0.2.2:4000", 0)
            .unwrap_err()
            .to_string()
            .contains("LOCAL"));
        assert!(parse("10.0.0.1:1=10.0.2.2:4000,bogus=1", 0)
            .unwrap_err()
            .to_string()
            .contains("unknown option"));
    }
}
