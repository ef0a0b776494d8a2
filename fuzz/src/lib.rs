//! The code behind each fuzz target, one function per target.
//!
//! Each `fuzz_targets/NAME.rs` is `fuzz_target!(|data| xrelay_fuzz::NAME(data))`,
//! and `tests/corpus.rs` feeds every file of `corpus/NAME/` to the same
//! function on stable Rust, so the seeds and every crash ever found (kept
//! there as `crash-*`) are checked by a plain `cargo test`.
//!
//! A target fails only by panicking (or by running out of time or memory
//! under libFuzzer): every input is allowed to be rejected, none to crash
//! the relay. Where a property is cheap and always true, a target asserts
//! it too (a bencode value survives encoding, a journal repaired once
//! reads clean), since a violated invariant is a bug a crash would hide.
//!
//! | target | input | reaches |
//! |---|---|---|
//! | [`bencode`] | bytes | `relay_ng::bencode` decode, encode, `Writer` |
//! | [`ng_datagram`] | one NG datagram | framing, bencode/JSON, command parsing, replies, the offer's SDP |
//! | [`ng_json`] | a JSON payload | `relay_ng::json`, command parsing |
//! | [`rtpp_flags`] | a Kamailio `rtpp-flags` string | the flags parser, through `relay_ng::parse` |
//! | [`sdp`] | SDP, then optionally NUL and rewrite options | `relay_sdp` parse, codec strip/prune, rewrite |
//! | [`config_toml`] | a `--config` TOML file | `Options::merge_file`, `resolve`, interfaces, static streams |
//! | [`static_stream`] | one `--static-stream` value | `relay_userspace::static_stream::parse` |
//! | [`state_journal`] | a journal file | `FileJournal::verify`, `open` + `load` (repair), reload |
//! | [`state_record`] | one journal payload | the record decoder (postcard `Change`), one frame through the reader |
//! | [`stun`] | one datagram to an ICE port | relay-media's ICE-lite agent (STUN parse, integrity, fingerprint, responses) |
//! | [`dtls`] | datagrams (2-byte length prefixes) to a DTLS server port | relay-media's DTLS-SRTP endpoint (OpenSSL's record and handshake parsing through the in-memory pipe, state, timers) |

mod config;
mod media;
mod ng;
mod sdp;
mod state;

pub use config::{config_toml, static_stream};
pub use media::{dtls, stun};
pub use ng::{bencode, ng_datagram, ng_json, rtpp_flags};
pub use sdp::sdp;
pub use state::{state_journal, state_record};

/// A fuzz target: panics on an input that shows a bug.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay test (`cargo xtask fuzz`
/// finds the targets as cargo-fuzz does, in `fuzz_targets/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("bencode", bencode),
    ("ng_datagram", ng_datagram),
    ("ng_json", ng_json),
    ("rtpp_flags", rtpp_flags),
    ("sdp", sdp),
    ("config_toml", config_toml),
    ("static_stream", static_stream),
    ("state_journal", state_journal),
    ("state_record", state_record),
    ("stun", stun),
    ("dtls", dtls),
];
