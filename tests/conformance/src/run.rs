//! Running one case against one relay: requests built from the case with
//! this relay's own call-ids, replies rendered by a fresh [`Normalizer`].

use relay_ng::Value;

use crate::{
    corpus::Case,
    normalize::{Line, Normalizer},
    relays::{Relay, ADDRESSES},
};

/// Stands for the to-tag a `subscribe request` returned, in step values
/// and in normalised replies.
const TO_TAG: &str = "{TO-TAG}";

/// What one relay answered to one case.
#[derive(Debug, Default)]
pub struct Transcript {
    /// The normalised replies, step after step.
    pub lines: Vec<Line>,
    /// Warning texts by step (1-based): free text, reported, not compared.
    pub warnings: Vec<(usize, String)>,
    /// What went wrong beyond a difference: no reply, a crash.
    pub problems: Vec<String>,
}

/// Sends `case`'s steps to `relay`; `serial` keeps call-ids unique over
/// the run (a relay must never see an earlier case's call again).
pub fn run_case(case: &Case, relay: &Relay, serial: usize) -> Transcript {
    let mut norm = Normalizer::new(ADDRESSES, relay.port_range);
    let mut out = Transcript::default();
    let mut calls: Vec<String> = Vec::new();
    // The to-tag the latest `subscribe request` got: `{TO-TAG}` in a
    // later step's values stands for it (rtpengine makes one up at random).
    let mut to_tag: Option<String> = None;
    for (i, step) in case.steps.iter().enumerate() {
        let index = i + 1;
        // Which call of the case: its own call-id and placeholder.
        let (suffix, placeholder) = match step.call.as_str() {
            "" => (String::new(), "{CALL-ID}".to_owned()),
            call => (format!("-{call}"), format!("{{CALL-ID-{call}}}")),
        };
        let call_id = format!("conf-{serial}-{}-{}{suffix}", case.name, relay.kind.name());
        norm.call_id(&call_id, &placeholder);
        let mut dict = step.args.clone();
        dict.insert(b"command".to_vec(), Value::str(&step.command));
        if step.wants_call_id() {
            dict.insert(b"call-id".to_vec(), Value::str(&call_id));
            if !calls.contains(&call_id) {
                calls.push(call_id.clone());
            }
        }
        for (key, value) in step.defaults() {
            dict.insert(key.as_bytes().to_vec(), Value::str(value));
        }
        if let Some(tag) = &to_tag {
            for value in dict.values_mut() {
                if value.as_str() == Some(TO_TAG) {
                    *value = Value::str(tag);
                }
            }
        }
        if let Some(sdp) = &step.sdp {
            dict.insert(b"sdp".to_vec(), Value::str(sdp));
        }
        let reply = relay
            .request(&Value::Dict(dict))
            .map_err(|e| format!("{e:#}"));
        match &reply {
            Err(e) => out
                .problems
                .push(format!("step {index} ({}): {e}", step.command)),
            Ok(v) => {
                if let Some(w) = v.get("warning").and_then(Value::as_str) {
                    out.warnings.push((index, w.to_owned()));
                }
                if let Some(tag) = v.get("to-tag").and_then(Value::as_str) {
                    norm.call_id(tag, TO_TAG);
                    to_tag = Some(tag.to_owned());
                }
            }
        }
        let lines = norm.reply(index, &step.command, step.sdp.as_deref(), &reply);
        out.lines.extend(lines);
    }
    // Ports back for the next case; the replies do not matter.
    for call_id in calls {
        let _ = relay.request(&Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(&call_id)),
            ("delete-delay", Value::Int(0)),
        ]));
    }
    out
}
