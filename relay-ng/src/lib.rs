//! rtpengine's NG control protocol, parsing and encoding only.
//!
//! No I/O and no async runtime: everything here works on byte slices and
//! values, so it can be unit-tested and fuzzed on its own.
//!
//! - [`bencode`]: the [`Value`] document model and the strict bencode codec;
//! - [`json`]: JSON documents mapped to the same [`Value`];
//! - [`frame`]: `cookie SP payload` datagrams and replies;
//! - [`cookie_cache`]: answers retransmitted requests from cache;
//! - [`command`]: typed `ping`/`offer`/`answer`/`delete`/`query`/`list`/`statistics`;
//! - [`reply`]: the reply dictionaries (`ok`, `error`, `pong`, `load limit`).

pub mod bencode;
pub mod command;
pub mod cookie_cache;
pub mod frame;
pub mod json;
pub mod reply;

pub use bencode::{Dict, Value};
pub use command::{parse, Command, NgError, Parsed};
pub use cookie_cache::CookieCache;
pub use frame::{
    bencode_reply_to_json, encode_reply, encode_reply_as, parse_datagram, Format, FrameError,
    Request,
};
