//! The boolean flags a forwarding relay understands.

/// Flags from the `flags` list, `rtpp-flags` and a few keys, after spelling
/// normalization (see the crate's `normalize` rules: case, `-`, `_` and space
/// are not significant).
///
/// Setting a flag here only records that the request asked for it; which
/// ones take effect is the call logic's business.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `strict-source`: drop media from anything but the learned source.
    pub strict_source: bool,
    /// `symmetric`: send to where media comes from (rtpengine's default
    /// behaviour; it does not list this flag, but clients send it).
    pub symmetric: bool,
    /// `asymmetric`: do not send to the learned source.
    pub asymmetric: bool,
    /// `trust-address`: use the SDP's address, not `received-from`.
    pub trust_address: bool,
    /// `SIP-source-address`: use `received-from` instead of the SDP's address.
    pub sip_source_address: bool,
    /// `port-latching`: after learning, keep the peer's port fixed.
    pub port_latching: bool,
    /// `no-port-latching`.
    pub no_port_latching: bool,
    /// `no-rtcp-attribute`: do not add `a=rtcp`.
    pub no_rtcp_attribute: bool,
    /// `full-rtcp-attribute`: add `a=rtcp` with the address.
    pub full_rtcp_attribute: bool,
    /// `loop-protect`: mark our SDP and pass already marked SDP through.
    pub loop_protect: bool,
    /// `media-handover`: re-learn the source when media moves.
    pub media_handover: bool,
    /// `record-call` (flag, or key `record-call` = `yes`/`on`); not acted on
    /// by a forwarding relay.
    pub record_call: bool,
    /// `all` (flag, or key `all` = `all`): for delete/query, every party.
    pub all: bool,
    /// `fatal`: a failed `delete` is an error rather than a warning.
    pub fatal: bool,
    /// `new-branch`: an unseen to-tag starts a new branch, not an alias.
    pub new_branch: bool,
    /// `to-tag` (flag): `delete` honours the message's `to-tag`.
    pub to_tag_flag: bool,
    /// `fast`: `delete` replies without statistics.
    pub fast: bool,
    /// `unidirectional`: allow one-way streams on the fast path.
    pub unidirectional: bool,
    /// `single-codec`: an answer keeps only its first codec (and the DTMF
    /// events of its clock rate).
    pub single_codec: bool,
    /// `reuse-codecs`: a re-offer lists the codecs the peer answered
    /// first, in the answer's order.
    pub reuse_codecs: bool,
    /// `generate-mid`: number media without `a=mid`.
    pub generate_mid: bool,
    /// `strip-extmap`: drop `a=extmap` lines.
    pub strip_extmap: bool,
    /// `original-sendrecv`: keep the SDP's direction attributes as they are.
    pub original_sendrecv: bool,
    /// `fragment`: the offer's SDP is a trickle-ICE fragment (candidates
    /// of a call already offered), not a new offer.
    pub fragment: bool,
    /// SDES options (`SDES-off`, `SDES-no-<SUITE>`, ... as flags, or the
    /// `SDES` list): what follows `SDES-`, in the spelling received.
    pub sdes: Vec<String>,
    /// OSRTP `offer` (or `offer-RFC`; as an `OSRTP-` flag or in the `OSRTP`
    /// list): a plain offer goes out as an opportunistic SRTP one.
    pub osrtp_offer: bool,
    /// OSRTP `accept` (or `accept-RFC`): a plain answer to an OSRTP offer
    /// still gives the offerer SRTP, ending at the relay.
    pub osrtp_accept: bool,
    /// Flags not understood, in the spelling received.
    pub unknown: Vec<String>,
}

impl Flags {
    /// Sets the flag named `name` (already normalized); false if unknown.
    pub(crate) fn set(&mut self, name: &str) -> bool {
        let flag = match name {
            "strict-source" => &mut self.strict_source,
            "symmetric" => &mut self.symmetric,
            "asymmetric" => &mut self.asymmetric,
            "trust-address" => &mut self.trust_address,
            "sip-source-address" => &mut self.sip_source_address,
            "port-latching" => &mut self.port_latching,
            "no-port-latching" => &mut self.no_port_latching,
            "no-rtcp-attribute" => &mut self.no_rtcp_attribute,
            "full-rtcp-attribute" => &mut self.full_rtcp_attribute,
            "loop-protect" => &mut self.loop_protect,
            "media-handover" => &mut self.media_handover,
            "record-call" => &mut self.record_call,
            "all" => &mut self.all,
            "fatal" => &mut self.fatal,
            "new-branch" => &mut self.new_branch,
            "to-tag" => &mut self.to_tag_flag,
            "fast" => &mut self.fast,
            "unidirectional" => &mut self.unidirectional,
            "single-codec" => &mut self.single_codec,
            "reuse-codecs" => &mut self.reuse_codecs,
            "generate-mid" => &mut self.generate_mid,
            "strip-extmap" => &mut self.strip_extmap,
            "original-sendrecv" => &mut self.original_sendrecv,
            "fragment" => &mut self.fragment,
            _ => return false,
        };
        *flag = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_set_their_field() {
        let mut f = Flags::default();
        assert!(f.set("strict-source"));
        assert!(f.set("sip-source-address"));
        assert!(f.set("to-tag"));
        assert!(!f.set("strict_source"), "callers normalize first");
        assert!(!f.set("bogus"));
        assert!(f.strict_source && f.sip_source_address && f.to_tag_flag);
        assert!(!f.trust_address);
    }
}
