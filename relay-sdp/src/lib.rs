//! SDP parsing and rtpengine-compatible rewriting for a media relay.
//!
//! [`parse`] reads an SDP body (RFC 8866) into an [`Sdp`] that keeps the original bytes and
//! indexes its session and media sections; [`Sdp::medias`] gives the call logic what it
//! needs (ports, addresses, RTCP, ICE, direction, codecs). [`rewrite`] then applies a
//! [`RewritePlan`] — the relay's addresses and ports per media — the way rtpengine does for
//! `offer`/`answer` in plain forwarding mode: `o=`/`c=` addresses, `m=` ports and formats,
//! and each media's attributes in rtpengine's order (codec lines per payload type, an
//! explicit direction, RTCP, ptime), copying every line it does not regenerate with its own
//! line ending.
//!
//! The crate is pure (no I/O, no allocation beyond the body's size order) and never
//! panics on any input: untrusted bytes come straight from SIP.
//!
//! ```
//! use relay_sdp::{parse, rewrite, MediaRewrite, RewritePlan, RtcpMux};
//!
//! let offer = b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n\
//!               t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
//! let sdp = parse(offer)?;
//! assert_eq!(sdp.medias()[0].port, 4000);
//! let plan = RewritePlan {
//!     medias: vec![MediaRewrite {
//!         address: "203.0.113.1".parse().unwrap(),
//!         port: 30000,
//!         rtcp_port: Some(30001),
//!         rtcp_mux: RtcpMux::Keep,
//!         formats: None,
//!         ptime: None,
//!         mid: None,
//!         protocol: None,
//!         ice: None,
//!         crypto: None,
//!         dtls: relay_sdp::DtlsRewrite::Keep,
//!     }],
//!     ..RewritePlan::default()
//! };
//! let out = rewrite(&sdp, &plan)?;
//! assert_eq!(
//!     out,
//!     b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\n\
//!       t=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
//!       a=rtcp:30001\r\n"
//! );
//! # Ok::<(), relay_sdp::SdpError>(())
//! ```

mod attr;
pub mod codecs;
mod error;
mod fields;
mod lines;
mod media_block;
mod model;
mod parse;
mod rewrite;

pub use error::{Problem, SdpError};
pub use model::{ConnectionAddr, Direction, MediaInfo, Origin, RtcpAttr, RtpMap};
pub use parse::{parse, Sdp, MAX_SDP_LEN};
pub use rewrite::{
    rewrite, DtlsRewrite, MediaDtls, MediaIce, MediaRewrite, RewritePlan, RtcpAttribute, RtcpMux,
};
