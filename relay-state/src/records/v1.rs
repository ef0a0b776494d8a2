//! Record format 1, frozen: what relayds before subscriptions wrote
//! (format 2 added [`super::MonologueRecord::subscribed`]). Only the types
//! that contain the changed one are copied here; the medias of a format 1
//! monologue are format 2's ([`super::v2::MediaRecord`]), so format 1
//! reads as format 2 and then converts as format 2 does.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{v2, v2::MediaRecord, CookieRecord};

/// Format 1's [`super::CallRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub created_ms: u64,
    pub last_signal_ms: u64,
    pub delete_at_ms: Option<u64>,
    pub monologues: Vec<MonologueRecord>,
}

/// Format 1's [`super::MonologueRecord`]: no subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonologueRecord {
    pub tag: Option<String>,
    pub aliases: Vec<String>,
    pub via_branch: Option<String>,
    pub interface: String,
    pub address: IpAddr,
    pub peer: Option<usize>,
    pub created_ms: u64,
    pub medias: Vec<MediaRecord>,
}

/// Format 1's [`crate::Change`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Put(CallRecord),
    Remove(String),
    Cookie(CookieRecord),
}

impl From<MonologueRecord> for v2::MonologueRecord {
    fn from(m: MonologueRecord) -> Self {
        v2::MonologueRecord {
            tag: m.tag,
            aliases: m.aliases,
            via_branch: m.via_branch,
            interface: m.interface,
            address: m.address,
            peer: m.peer,
            created_ms: m.created_ms,
            medias: m.medias,
            subscribed: Vec::new(),
        }
    }
}

impl From<CallRecord> for v2::CallRecord {
    fn from(c: CallRecord) -> Self {
        v2::CallRecord {
            call_id: c.call_id,
            created_ms: c.created_ms,
            last_signal_ms: c.last_signal_ms,
            delete_at_ms: c.delete_at_ms,
            monologues: c.monologues.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<CallRecord> for super::CallRecord {
    fn from(c: CallRecord) -> Self {
        v2::CallRecord::from(c).into()
    }
}

impl From<Change> for crate::Change {
    fn from(c: Change) -> Self {
        match c {
            Change::Put(call) => crate::Change::Put(call.into()),
            Change::Remove(id) => crate::Change::Remove(id),
            Change::Cookie(cookie) => crate::Change::Cookie(cookie),
        }
    }
}

/// What a relayd of format 1 would have written for `c`: format 2's
/// ([`v2::CallRecord::from_current`]) without subscriptions. For tests and
/// fuzz seeds that write earlier relayds' journals.
impl CallRecord {
    pub fn from_current(c: &super::CallRecord) -> Self {
        let v2 = v2::CallRecord::from_current(c);
        CallRecord {
            call_id: v2.call_id,
            created_ms: v2.created_ms,
            last_signal_ms: v2.last_signal_ms,
            delete_at_ms: v2.delete_at_ms,
            monologues: v2
                .monologues
                .into_iter()
                .map(|m| MonologueRecord {
                    tag: m.tag,
                    aliases: m.aliases,
                    via_branch: m.via_branch,
                    interface: m.interface,
                    address: m.address,
                    peer: m.peer,
                    created_ms: m.created_ms,
                    medias: m.medias,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format 1 change reads as the current one, without subscriptions.
    #[test]
    fn format_1_reads_as_the_current_format() {
        let old = Change::Put(CallRecord {
            call_id: "c".into(),
            created_ms: 1,
            last_signal_ms: 2,
            delete_at_ms: None,
            monologues: vec![MonologueRecord {
                tag: Some("A".into()),
                aliases: Vec::new(),
                via_branch: None,
                interface: "pub".into(),
                address: "10.0.0.1".parse().unwrap(),
                peer: None,
                created_ms: 3,
                medias: Vec::new(),
            }],
        });
        let bytes = postcard::to_allocvec(&old).unwrap();
        let read: Change = postcard::from_bytes(&bytes).unwrap();
        let crate::Change::Put(call) = crate::Change::from(read) else {
            panic!("not a put");
        };
        assert_eq!(call.monologues[0].tag.as_deref(), Some("A"));
        assert!(call.monologues[0].subscribed.is_empty());
    }
}
