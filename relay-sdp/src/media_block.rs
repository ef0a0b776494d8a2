//! The attribute lines of an active RTP media section, in the order
//! rtpengine writes them, so that an operator replacing rtpengine sends
//! their endpoints the same SDP (checked against rtpengine 10.5 itself).
//!
//! rtpengine regenerates what it understands and keeps the rest:
//! 1. every attribute it does not handle, in the order received (`a=ssrc`,
//!    `a=extmap`, `a=maxptime`, `a=rtcp-fb:*`, unknown ones, ...);
//! 2. `a=mid`;
//! 3. per payload type of the `m=` line, in its order: `a=rtpmap` (written
//!    from the RFC 3551 table for a static type the offer left implicit),
//!    `a=fmtp`, the type's `a=rtcp-fb` lines; those of payload types not on
//!    the `m=` line are dropped;
//! 4. the direction, always explicit: the media's, else the session's, else
//!    `sendrecv`; a zero connection address (an old-style hold) makes it
//!    `sendonly` (`recvonly` becomes `inactive`);
//! 5. `a=rtcp` and `a=rtcp-mux` (written by the caller);
//! 6. the first `a=ptime`.

use crate::attr::{self, AttrKind};
use crate::model::{Direction, RtpMap};
use crate::parse::{IndexedLine, LineKind};

/// One output line: copied from the input, or written anew.
#[derive(Debug)]
pub(crate) enum Out<'l> {
    /// Copy this input line.
    Copy(&'l IndexedLine),
    /// Write this content.
    Add(String),
}

/// The attribute lines of a media section, sorted into rtpengine's groups.
#[derive(Debug)]
pub(crate) struct Block<'l> {
    /// Groups 1 to 4 above.
    pub head: Vec<Out<'l>>,
    /// Group 6.
    pub ptime: Option<&'l IndexedLine>,
}

/// How [`block`] treats the section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockSpec<'f> {
    /// The payload types the `m=` line lists after the rewrite.
    pub formats: &'f [String],
    /// The direction to write.
    pub direction: Direction,
    /// Drop ICE attributes.
    pub remove_ice: bool,
    /// Copy the peer's DTLS attributes (the relay neither terminates nor strips DTLS).
    pub keep_dtls: bool,
    /// Drop `a=extmap` lines.
    pub strip_extmap: bool,
    /// Keep direction attributes as received (among the unhandled ones)
    /// instead of writing one.
    pub original_direction: bool,
    /// The `a=mid` to write when the section has none.
    pub mid: Option<&'f str>,
}

/// Sorts the attribute lines of a section (`lines`, content in `raw`).
pub(crate) fn block<'l>(raw: &[u8], lines: &'l [IndexedLine], spec: BlockSpec<'_>) -> Block<'l> {
    let content = |l: &IndexedLine| l.line.content(raw).to_vec();
    let attrs = || {
        lines.iter().filter_map(|l| match &l.kind {
            LineKind::Attr(kind) => Some((l, *kind)),
            _ => None,
        })
    };
    let mut head: Vec<Out<'l>> = attrs()
        .filter(|(l, kind)| match kind {
            AttrKind::Ice { .. } => !spec.remove_ice,
            AttrKind::Dtls => spec.keep_dtls,
            AttrKind::Other => {
                !(spec.strip_extmap && l.line.content(raw).starts_with(b"a=extmap:"))
            }
            AttrKind::Group | AttrKind::RtcpFb { wildcard: true } => true,
            AttrKind::Direction(_) => spec.original_direction,
            _ => false,
        })
        .map(|(l, _)| Out::Copy(l))
        .collect();
    match attrs().find(|(_, k)| *k == AttrKind::Mid) {
        Some((l, _)) => head.push(Out::Copy(l)),
        None => head.extend(spec.mid.map(|mid| Out::Add(format!("a=mid:{mid}")))),
    }
    let for_pt = |kind: fn(&AttrKind) -> bool, pt: u8| {
        attrs().filter(move |(l, k)| kind(k) && attr::payload_type_of(&content(l)) == Some(pt))
    };
    for pt in spec.formats.iter().filter_map(|f| f.parse::<u8>().ok()) {
        match for_pt(|k| *k == AttrKind::RtpMap, pt).next() {
            Some((l, _)) => head.push(Out::Copy(l)),
            None => head.extend(RtpMap::static_payload(pt).map(|m| Out::Add(rtpmap_line(&m)))),
        }
        head.extend(
            for_pt(|k| *k == AttrKind::Fmtp, pt)
                .next()
                .map(|(l, _)| Out::Copy(l)),
        );
        head.extend(
            for_pt(|k| matches!(k, AttrKind::RtcpFb { wildcard: false }), pt)
                .map(|(l, _)| Out::Copy(l)),
        );
    }
    if !spec.original_direction {
        head.push(Out::Add(format!("a={}", spec.direction.as_str())));
    }
    Block {
        head,
        ptime: attrs().find(|(_, k)| *k == AttrKind::Ptime).map(|(l, _)| l),
    }
}

/// `a=rtpmap:PT ENC/RATE[/CHANNELS]`, channels only when more than one.
fn rtpmap_line(m: &RtpMap) -> String {
    match m.channels {
        Some(ch) if ch > 1 => format!(
            "a=rtpmap:{} {}/{}/{ch}",
            m.payload_type, m.encoding, m.clock_rate
        ),
        _ => format!(
            "a=rtpmap:{} {}/{}",
            m.payload_type, m.encoding, m.clock_rate
        ),
    }
}

/// The direction written for a media: its own, else the session's, else
/// `sendrecv`; on hold by a zero address, what is left of it without
/// receiving.
pub(crate) fn direction(
    own: Option<Direction>,
    session: Option<Direction>,
    zero_hold: bool,
) -> Direction {
    let d = own.or(session).unwrap_or(Direction::SendRecv);
    if !zero_hold {
        return d;
    }
    match d {
        Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
        Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_address_holds_stop_receiving() {
        use Direction::*;
        assert_eq!(direction(None, None, false), SendRecv);
        assert_eq!(direction(None, Some(RecvOnly), false), RecvOnly);
        assert_eq!(direction(Some(SendOnly), Some(RecvOnly), false), SendOnly);
        assert_eq!(direction(None, None, true), SendOnly);
        assert_eq!(direction(Some(RecvOnly), None, true), Inactive);
        assert_eq!(direction(Some(Inactive), None, true), Inactive);
    }

    #[test]
    fn static_rtpmaps() {
        let line = |pt| rtpmap_line(&RtpMap::static_payload(pt).unwrap());
        assert_eq!(line(0), "a=rtpmap:0 PCMU/8000");
        assert_eq!(line(10), "a=rtpmap:10 L16/44100/2");
        assert_eq!(line(34), "a=rtpmap:34 H263/90000");
    }
}
