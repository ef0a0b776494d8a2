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

/// A fractional figure the way rtpengine's `statistics` sends one: a
/// decimal string.
fn decimal(v: f64, places: usize) -> Value {
    Value::str(&format!("{v:.places$}"))
}

/// NG `statistics` reply body: rtpengine's `currentstatistics` and
/// `totalstatistics` keys where a figure exists, plus `controlstatistics`
/// and `loadstatistics` (the load signals, see [`load`]). rtpengine nests
/// its dictionaries in `statistics`; xrelay had them at the top level
/// first, so they are in both places.
pub fn statistics(t: &crate::stats::Totals) -> Dict {
    let mut out = Dict::new();
    let r = &t.load.rates;
    out.insert(
        b"currentstatistics".to_vec(),
        dict([
            ("sessionsown", int(t.sessions as u64)),
            ("sessionstotal", int(t.sessions as u64)),
            ("packetrate_user", int(r.user_packets)),
            ("byterate_user", int(r.user_bytes)),
            ("packetrate_kernel", int(r.kernel_packets)),
            ("byterate_kernel", int(r.kernel_bytes)),
            ("packetrate", int(r.packets())),
            ("byterate", int(r.bytes())),
        ]),
    );
    out.insert(b"loadstatistics".to_vec(), load(&t.load));
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
    let nested = Value::Dict(out.clone());
    out.insert(b"statistics".to_vec(), nested);
    out
}

/// `loadstatistics`: the figures `--max-load`, `--max-cpu`,
/// `--max-bandwidth` and `--max-sessions` compare, each limit that is set,
/// the headroom to it (0: new calls are refused) and the smallest headroom
/// as a fraction of its limit (`headroom`, 1 without limits), for a
/// dispatcher to send new calls to the relay with the most.
pub fn load(l: &crate::load::LoadTotals) -> Value {
    let mut d = Dict::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.as_bytes().to_vec(), v);
    };
    if let Some(v) = l.load_average {
        put("loadaverage", decimal(v, 2));
    }
    if let Some(v) = l.cpu_percent {
        put("cpuusage", decimal(v, 2));
    }
    put("byterate", int(l.rates.bytes()));
    if let Some(m) = l.max_sessions {
        put("maxsessions", int(m));
    }
    if let Some(m) = l.limits.max_load {
        put("maxload", decimal(m, 2));
    }
    if let Some(m) = l.limits.max_cpu {
        put("maxcpu", decimal(m, 2));
    }
    if let Some(m) = l.limits.max_bandwidth {
        put("maxbandwidth", int(m));
    }
    let h = &l.headroom;
    let mut room = Dict::new();
    if let Some(v) = h.sessions {
        room.insert(b"sessions".to_vec(), int(v));
    }
    if let Some(v) = h.load {
        room.insert(b"load".to_vec(), decimal(v, 2));
    }
    if let Some(v) = h.cpu {
        room.insert(b"cpu".to_vec(), decimal(v, 2));
    }
    if let Some(v) = h.bandwidth {
        room.insert(b"bandwidth".to_vec(), int(v));
    }
    put("headroomto", Value::Dict(room));
    put("headroom", decimal(h.ratio, 3));
    if let Some(why) = &l.refusing {
        put("refusing", Value::str(why));
    }
    Value::Dict(d)
}
