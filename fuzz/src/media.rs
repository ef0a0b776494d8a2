//! relay-media's ICE-lite agent: what a relay port does with a datagram
//! that looks like STUN.

use std::time::{Duration, Instant};

use relay_media::{looks_like_stun, IceCredentials, IceEvent, IceLiteAgent};

/// The credentials the seeds are made with (`corpus/stun/`).
fn credentials() -> IceCredentials {
    IceCredentials {
        ufrag: "relay1".into(),
        pwd: "relaypasswordrelaypassword".into(),
    }
}

/// One datagram to a fresh agent, then the same datagram again a minute
/// later. Properties: a response is a STUN message; a nomination comes
/// with a response (the success response), and only for the sender.
pub fn stun(data: &[u8]) {
    let from = "203.0.113.10:16500".parse().expect("address");
    let mut agent = IceLiteAgent::new(credentials(), None);
    let t0 = Instant::now();
    for now in [t0, t0 + Duration::from_secs(60)] {
        let handled = agent.handle(data, from, now);
        if let Some(response) = &handled.response {
            assert!(looks_like_stun(response), "a response is STUN");
        }
        if let Some(IceEvent::Nominated(addr)) = handled.event {
            assert_eq!(addr, from);
            assert!(handled.response.is_some(), "a nomination is answered");
        }
        let _ = agent.consent(now);
    }
}
