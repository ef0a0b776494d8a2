//! The `list` and `statistics` reply dictionaries (`query` and `delete`
//! replies are written by [`super::summary_reply`]).

use relay_ng::{Dict, Value};

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn dict<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::dict(entries)
}

/// `list` reply body.
pub fn list_reply(ids: &[String]) -> Dict {
    let mut out = Dict::new();
    out.insert(
        b"calls".to_vec(),
        Value::str_list(ids.iter().map(String::as_str)),
    );
    out
}

/// NG `statistics` reply body: rtpengine's `currentstatistics` and
/// `totalstatistics` keys where a figure exists, plus `controlstatistics`.
pub fn statistics(t: &crate::stats::Totals) -> Dict {
    let mut out = Dict::new();
    out.insert(
        b"currentstatistics".to_vec(),
        dict([
            ("sessionsown", int(t.sessions as u64)),
            ("sessionstotal", int(t.sessions as u64)),
        ]),
    );
    out.insert(
        b"totalstatistics".to_vec(),
        dict([
            ("managedsessions", int(t.sessions_total)),
            ("packetsuser", int(t.userspace.packets)),
            ("bytesuser", int(t.userspace.bytes)),
            ("packetskernel", int(t.kernel.packets)),
            ("byteskernel", int(t.kernel.bytes)),
        ]),
    );
    let commands =
        t.ng.iter()
            .map(|(name, s)| {
                (
                    name.as_bytes().to_vec(),
                    dict([
                        ("requests", int(s.requests)),
                        ("errors", int(s.errors)),
                        ("load limit", int(s.load_limit)),
                    ]),
                )
            })
            .collect();
    out.insert(b"controlstatistics".to_vec(), Value::Dict(commands));
    out
}
