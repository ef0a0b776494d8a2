//! Codec manipulations that need no transcoding, as rtpengine applies them
//! to the payload types of an `m=` line (checked against rtpengine 10.5):
//! stripping and masking codecs from an offer, and pruning an answer to the
//! codecs that were offered.

use crate::model::{MediaInfo, RtpMap};

/// What a codec is, for comparing two SDPs' payload types: encoding
/// (case-insensitive), clock rate and channels (absent counts as one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecId {
    /// Encoding name, lowercase.
    pub encoding: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels.
    pub channels: u8,
}

impl CodecId {
    fn of(m: &RtpMap) -> Self {
        CodecId {
            encoding: m.encoding.to_ascii_lowercase(),
            clock_rate: m.clock_rate,
            channels: m.channels.unwrap_or(1),
        }
    }

    /// Whether `spec` (`all`, `NAME`, `NAME/RATE`, `NAME/RATE/CHANNELS`,
    /// as rtpengine's codec options name codecs) names this codec.
    pub fn matches(&self, spec: &str) -> bool {
        if spec.eq_ignore_ascii_case("all") {
            return true;
        }
        let mut parts = spec.split('/');
        let name_ok = parts
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(&self.encoding));
        let rate_ok = parts
            .next()
            .is_none_or(|r| r.parse::<u32>().ok() == Some(self.clock_rate));
        let channels_ok = parts
            .next()
            .is_none_or(|c| c.parse::<u8>().ok() == Some(self.channels));
        name_ok && rate_ok && channels_ok
    }
}

/// The codecs of `media`'s payload types, in `m=` order (None for a type
/// without `a=rtpmap` that is not a static one).
pub fn codecs(media: &MediaInfo) -> Vec<(String, Option<CodecId>)> {
    media
        .formats
        .iter()
        .map(|f| {
            let id = f
                .parse::<u8>()
                .ok()
                .and_then(|pt| media.codec(pt))
                .map(|m| CodecId::of(&m));
            (f.clone(), id)
        })
        .collect()
}

/// The payload types of `media` left by `strip`/`mask` (and kept anyway by
/// `except`), or None when nothing changes. A type whose codec is unknown
/// is kept. When nothing would be left, nothing is stripped (rtpengine
/// keeps an SDP it would empty).
pub fn strip(
    media: &MediaInfo,
    strip: &[String],
    mask: &[String],
    except: &[String],
) -> Option<Vec<String>> {
    if !media.is_rtp() || (strip.is_empty() && mask.is_empty()) {
        return None;
    }
    let named = |id: &CodecId, list: &[String]| list.iter().any(|s| id.matches(s));
    let kept: Vec<(String, Option<CodecId>)> = codecs(media)
        .into_iter()
        .filter(|(_, id)| match id {
            Some(id) => !(named(id, strip) || named(id, mask)) || named(id, except),
            None => true,
        })
        .collect();
    let kept = without_orphan_dtmf(kept);
    (!kept.is_empty() && kept.len() != media.formats.len()).then_some(kept)
}

/// `single-codec` on an answer: the payload types of `formats` (else all
/// of `media`'s) cut to the first codec and the DTMF events of its clock
/// rate, or None when nothing changes. Types of unknown codec count as
/// codecs.
pub fn single(media: &MediaInfo, formats: Option<&[String]>) -> Option<Vec<String>> {
    if !media.is_rtp() {
        return None;
    }
    let listed: Vec<(String, Option<CodecId>)> = codecs(media)
        .into_iter()
        .filter(|(f, _)| formats.is_none_or(|keep| keep.contains(f)))
        .collect();
    let first = listed
        .iter()
        .position(|(_, id)| id.as_ref().is_none_or(|id| !is_dtmf(id)))?;
    let rate = listed[first].1.as_ref().map(|id| id.clock_rate);
    let kept: Vec<String> = listed
        .iter()
        .enumerate()
        .filter(|(i, (_, id))| {
            *i == first
                || id
                    .as_ref()
                    .is_some_and(|id| is_dtmf(id) && Some(id.clock_rate) == rate)
        })
        .map(|(_, (f, _))| f.clone())
        .collect();
    (kept.len() != listed.len()).then_some(kept)
}

/// Whether a codec only accompanies others (RFC 4733 DTMF events).
fn is_dtmf(id: &CodecId) -> bool {
    id.encoding == "telephone-event"
}

/// rtpengine's supplemental codecs: DTMF events and comfort noise (RFC 3389).
fn is_supplemental(id: &CodecId) -> bool {
    is_dtmf(id) || id.encoding == "cn"
}

/// `kept` without the telephone-event types whose clock rate no remaining
/// audio codec has: once opus is stripped, telephone-event/48000 has
/// nothing to accompany, and rtpengine drops it too. Nothing is dropped
/// when no codec but DTMF is left.
fn without_orphan_dtmf(kept: Vec<(String, Option<CodecId>)>) -> Vec<String> {
    let rates: Vec<u32> = kept
        .iter()
        .filter_map(|(_, id)| id.as_ref())
        .filter(|id| !is_dtmf(id))
        .map(|id| id.clock_rate)
        .collect();
    let has_main = kept
        .iter()
        .any(|(_, id)| id.as_ref().is_none_or(|id| !is_dtmf(id)));
    kept.into_iter()
        .filter(|(_, id)| match id {
            Some(id) if has_main && is_dtmf(id) => rates.contains(&id.clock_rate),
            _ => true,
        })
        .map(|(f, _)| f)
        .collect()
}

/// A payload type an SDP carried: its number and its codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// The payload type number.
    pub payload_type: u8,
    /// Its codec.
    pub codec: CodecId,
}

/// The payload types of an answer's `media` whose codec was offered
/// (`offered`), or None when nothing changes. Types of unknown codec stay,
/// and so does everything when nothing would be left.
///
/// As rtpengine 10.5: when the answer's first codec keeps the number it was
/// offered under, the answer passes through, and a telephone-event or CN
/// type it carries under another number than offered has no counterpart
/// on the offerer's side: it is dropped. (When the main codec itself is
/// renumbered, rtpengine maps the answer back to the offer's numbers and
/// rewrites the payload type of the media; relayd keeps the answer's.)
pub fn prune(media: &MediaInfo, offered: &[Carried]) -> Option<Vec<String>> {
    if !media.is_rtp() || offered.is_empty() {
        return None;
    }
    let listed = codecs(media);
    let as_offered = |f: &str, id: &CodecId| {
        f.parse::<u8>().ok().is_some_and(|pt| {
            offered
                .iter()
                .any(|o| o.payload_type == pt && o.codec == *id)
        })
    };
    let main_as_offered = listed
        .iter()
        .find(|(_, id)| id.as_ref().is_none_or(|id| !is_supplemental(id)))
        .is_some_and(|(f, id)| id.as_ref().is_some_and(|id| as_offered(f, id)));
    let kept: Vec<String> = listed
        .into_iter()
        .filter(|(f, id)| {
            id.as_ref().is_none_or(|id| {
                offered.iter().any(|o| o.codec == *id)
                    && !(main_as_offered && is_supplemental(id) && !as_offered(f, id))
            })
        })
        .map(|(f, _)| f)
        .collect();
    (!kept.is_empty() && kept.len() != media.formats.len()).then_some(kept)
}

/// `reuse-codecs` on a re-offer, as rtpengine 10.5: the payload types of
/// `formats` (else all of `media`'s) with those the peer last answered
/// (`answered`, by number) first, in the answer's order, then the others
/// in the offer's; None when the order stays.
pub fn reuse(
    media: &MediaInfo,
    formats: Option<&[String]>,
    answered: &[Carried],
) -> Option<Vec<String>> {
    if !media.is_rtp() || answered.is_empty() {
        return None;
    }
    let listed: Vec<String> = formats.map_or_else(|| media.formats.clone(), <[String]>::to_vec);
    let number = |f: &String| f.parse::<u8>().ok();
    let is_answered =
        |f: &String| number(f).is_some_and(|pt| answered.iter().any(|a| a.payload_type == pt));
    let mut ordered: Vec<String> = answered
        .iter()
        .filter_map(|a| {
            listed
                .iter()
                .find(|f| number(f) == Some(a.payload_type))
                .cloned()
        })
        .collect();
    ordered.extend(listed.iter().filter(|f| !is_answered(f)).cloned());
    (ordered != listed).then_some(ordered)
}

/// The payload types an SDP's media will carry once `formats` (or all of
/// its payload types) are written: what the answer is later pruned to.
pub fn carried(media: &MediaInfo, formats: Option<&[String]>) -> Vec<Carried> {
    codecs(media)
        .into_iter()
        .filter(|(f, _)| formats.is_none_or(|keep| keep.contains(f)))
        .filter_map(|(f, id)| {
            Some(Carried {
                payload_type: f.parse().ok()?,
                codec: id?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn media(m_line: &str, attrs: &str) -> MediaInfo {
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n{m_line}\r\n{attrs}"
        );
        parse(sdp.as_bytes()).unwrap().medias()[0].clone()
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The phone offer of the rtpengine comparisons: PCMU, PCMA, G.729,
    /// telephone-event.
    fn phone() -> MediaInfo {
        media(
            "m=audio 2000 RTP/AVP 0 8 18 101",
            "a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
    }

    #[test]
    fn strip_and_mask_as_rtpengine() {
        let m = phone();
        // Each expectation is rtpengine 10.5's answer to the same request.
        assert_eq!(
            strip(&m, &list(&["PCMA", "g729"]), &[], &[]),
            Some(list(&["0", "101"]))
        );
        assert_eq!(
            strip(&m, &[], &list(&["PCMU"]), &[]),
            Some(list(&["8", "18", "101"]))
        );
        assert_eq!(strip(&m, &[], &[], &list(&["PCMA"])), None, "except alone");
        assert_eq!(
            strip(&m, &list(&["all"]), &[], &[]),
            None,
            "nothing would be left"
        );
        assert_eq!(
            strip(&m, &list(&["all"]), &[], &list(&["G729"])),
            Some(list(&["18"]))
        );
        assert_eq!(
            strip(&m, &list(&["PCMU/8000"]), &[], &[]),
            Some(list(&["8", "18", "101"]))
        );
        assert_eq!(strip(&m, &list(&["18"]), &[], &[]), None, "not by number");
    }

    #[test]
    fn dtmf_without_its_codec_goes_with_it() {
        // A softphone's offer: opus with its 48 kHz DTMF, G.722 and G.711
        // with the 8 kHz one. rtpengine 10.5 drops telephone-event/48000
        // once opus is stripped.
        let soft = media(
            "m=audio 7078 RTP/AVP 96 9 0 8 101 97",
            "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=rtpmap:97 telephone-event/8000\r\n",
        );
        assert_eq!(
            strip(&soft, &list(&["opus"]), &[], &[]),
            Some(list(&["9", "0", "8", "97"]))
        );
        assert_eq!(
            strip(
                &soft,
                &list(&["all"]),
                &[],
                &list(&["PCMU", "telephone-event"])
            ),
            Some(list(&["0", "97"]))
        );
        // DTMF that is all that remains is kept (nothing to accompany, but
        // an empty m= line would be worse).
        assert_eq!(
            strip(
                &soft,
                &list(&["all"]),
                &[],
                &list(&["telephone-event/48000"])
            ),
            Some(list(&["101"]))
        );
    }

    #[test]
    fn single_codec_keeps_the_first_and_its_dtmf() {
        // rtpengine 10.5, answer "0 18 101" with single-codec: "0 101".
        let answer = media(
            "m=audio 4000 RTP/AVP 0 18 101",
            "a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        assert_eq!(single(&answer, None), Some(list(&["0", "101"])));
        assert_eq!(
            single(&answer, Some(&list(&["18", "101"]))),
            None,
            "already one codec"
        );
        let soft = media(
            "m=audio 7078 RTP/AVP 101 96 0 97",
            "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=rtpmap:97 telephone-event/8000\r\n",
        );
        assert_eq!(single(&soft, None), Some(list(&["101", "96"])));
    }

    #[test]
    fn an_answer_keeps_only_offered_codecs() {
        let offered = carried(&phone(), Some(&list(&["8", "101"])));
        let answer = media(
            "m=audio 4000 RTP/AVP 9 8 96 101 97",
            "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:97 telephone-event/48000\r\n",
        );
        assert_eq!(prune(&answer, &offered), Some(list(&["8", "101"])));
        assert_eq!(prune(&answer, &[]), None, "nothing known of the offer");
    }

    #[test]
    fn reuse_codecs_puts_the_answered_ones_first() {
        // rtpengine 10.5: offer "0 8 18 101", answer "0 101", re-offer
        // "8 0 18 101" with reuse-codecs: "0 101 8 18".
        let answered = carried(
            &media(
                "m=audio 4000 RTP/AVP 0 101",
                "a=rtpmap:101 telephone-event/8000\r\n",
            ),
            None,
        );
        let reoffer = media(
            "m=audio 2000 RTP/AVP 8 0 18 101",
            "a=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        assert_eq!(
            reuse(&reoffer, None, &answered),
            Some(list(&["0", "101", "8", "18"]))
        );
        assert_eq!(
            reuse(&phone(), None, &answered),
            Some(list(&["0", "101", "8", "18"]))
        );
        assert_eq!(reuse(&reoffer, None, &[]), None, "nothing answered yet");
        let same = media("m=audio 2000 RTP/AVP 0 101 8", "");
        assert_eq!(reuse(&same, None, &answered), None, "order unchanged");
    }

    #[test]
    fn an_answer_renumbering_dtmf_loses_it_as_in_rtpengine() {
        // rtpengine 10.5: offer "0 8 18 101", answer "0 100" with
        // telephone-event at 100: PCMU passes through, DTMF is dropped.
        let offered = carried(&phone(), None);
        let answer = media(
            "m=audio 4000 RTP/AVP 0 100",
            "a=rtpmap:100 telephone-event/8000\r\n",
        );
        assert_eq!(prune(&answer, &offered), Some(list(&["0"])));
        // Comfort noise is supplemental too.
        let answer = media(
            "m=audio 4000 RTP/AVP 0 101 14",
            "a=rtpmap:101 telephone-event/8000\r\na=rtpmap:14 CN/8000\r\n",
        );
        let with_cn = media(
            "m=audio 2000 RTP/AVP 0 101 13",
            "a=rtpmap:101 telephone-event/8000\r\na=rtpmap:13 CN/8000\r\n",
        );
        assert_eq!(
            prune(&answer, &carried(&with_cn, None)),
            Some(list(&["0", "101"]))
        );
        // The main codec renumbered too (opus 96 -> 111): the answer's
        // numbers are kept, its DTMF with them.
        let soft = media(
            "m=audio 7078 RTP/AVP 96 101",
            "a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\n",
        );
        let answer = media(
            "m=audio 4000 RTP/AVP 111 110",
            "a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n",
        );
        assert_eq!(prune(&answer, &carried(&soft, None)), None);
    }

    #[test]
    fn codec_specs() {
        let opus = CodecId {
            encoding: "opus".into(),
            clock_rate: 48000,
            channels: 2,
        };
        for (spec, hit) in [
            ("opus", true),
            ("OPUS/48000", true),
            ("opus/48000/2", true),
            ("opus/48000/1", false),
            ("opus/8000", false),
            ("all", true),
            ("pcmu", false),
        ] {
            assert_eq!(opus.matches(spec), hit, "{spec}");
        }
    }
}
