//! Bencode, the NG protocol's native encoding.
//!
//! [`Value`] is the document model shared by the bencode and JSON decoders.
//! [`decode`](fn@decode) is strict about form (canonical integers and lengths, one
//! complete value, bounded nesting) but accepts dictionaries whose keys are
//! out of order, because rtpengine does and Kamailio relies on it.
//! [`encode`](fn@encode) always writes canonical bencode (keys sorted);
//! [`Writer`] writes it without a tree, keys in the order given.
//! [`scan_prefix`] finds where a value ends without decoding it (stream
//! framing).

mod decode;
mod encode;
mod scan;
mod value;
mod writer;

pub use decode::{decode, decode_prefix, BencodeError, MAX_DEPTH};
pub use encode::{encode, encode_into};
pub use scan::{scan_prefix, Scan};
pub use value::{Dict, Value};
pub use writer::Writer;
