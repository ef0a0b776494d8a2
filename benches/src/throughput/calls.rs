//! Setting calls up over NG as an SBC would: an offer with the caller's
//! SDP, an answer with the callee's, `direction` naming the logical
//! interface (one relay address per [`CALLS_PER_ADDRESS`] calls). The
//! relay ports in the rewritten SDPs become the generator's flows.

use std::{
    net::{SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use relay_ng::Value;
use relay_tests::{
    netns::Netns,
    ng_client::{audio_sdp, sdp_endpoint, NgClient},
};

use super::bed::{party, CALLS_PER_ADDRESS};
use crate::traffic::Flow;

/// NG clients working in parallel (the relays answer in tens of µs; one
/// client would spend most of its time waiting for replies).
const CLIENTS: u32 = 4;

/// What set-up achieved.
#[derive(Debug)]
pub struct Established {
    /// Two flows per call (caller, then callee), in call order.
    pub flows: Vec<Flow>,
    /// How long it took.
    pub elapsed: Duration,
    /// Why it stopped short of the calls asked for, if it did.
    pub stopped: Option<String>,
}

fn s(v: &str) -> Value {
    Value::str(v)
}

/// The relay endpoint in a reply's SDP.
fn relay_endpoint(reply: &Value) -> Result<SocketAddrV4> {
    let sdp = reply
        .get("sdp")
        .and_then(Value::as_bytes)
        .context("reply without sdp")?;
    let (addr, port) = sdp_endpoint(sdp).context("no c=/m= in the reply's SDP")?;
    Ok(SocketAddrV4::new(addr.parse()?, port))
}

/// A request that must succeed; the relay's reason otherwise.
fn ok(ng: &NgClient, body: &Value) -> Result<Value> {
    let reply = ng.request(body)?;
    match reply.get("result").and_then(Value::as_str) {
        Some("ok") => Ok(reply),
        result => bail!(
            "{}: {}",
            result.unwrap_or("no result"),
            reply
                .get("error-reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ),
    }
}

/// Call-id of call `i` among calls set up under `tag`.
fn call_id(tag: &str, i: u32) -> String {
    format!("{tag}-{i}")
}

/// Offer and answer of call `i`; returns (caller's flow, callee's flow).
fn one_call(ng: &NgClient, tag: &str, i: u32) -> Result<[Flow; 2]> {
    let (caller, callee) = (party(i, 0), party(i, 1));
    let id = call_id(tag, i);
    let iface = format!("if{}", i / CALLS_PER_ADDRESS);
    let direction = Value::str_list([iface.as_str(), iface.as_str()]);
    let offer = ok(
        ng,
        &Value::dict([
            ("command", s("offer")),
            ("call-id", s(&id)),
            ("from-tag", s("a")),
            (
                "sdp",
                s(&audio_sdp(&caller.ip().to_string(), caller.port())),
            ),
            ("direction", direction.clone()),
        ]),
    )?;
    let answer = ok(
        ng,
        &Value::dict([
            ("command", s("answer")),
            ("call-id", s(&id)),
            ("from-tag", s("a")),
            ("to-tag", s("b")),
            (
                "sdp",
                s(&audio_sdp(&callee.ip().to_string(), callee.port())),
            ),
            ("direction", direction),
        ]),
    )?;
    // The offer's rewritten SDP goes to the callee, the answer's to the caller.
    Ok([
        Flow {
            from: caller,
            to: relay_endpoint(&answer)?,
        },
        Flow {
            from: callee,
            to: relay_endpoint(&offer)?,
        },
    ])
}

/// Sets up calls 0..`calls` against the NG server at `ng` (in `ns`),
/// giving up at `deadline` (what was reached is returned, with the reason).
pub fn establish(ns: &Netns, ng: SocketAddr, calls: u32, budget: Duration) -> Result<Established> {
    establish_tagged(ns, ng, "tput", calls, budget)
}

/// [`establish`] with call-ids of their own (`tag`), so that calls set up
/// again after a [`delete`] are new calls, not re-offers.
pub fn establish_tagged(
    ns: &Netns,
    ng: SocketAddr,
    tag: &str,
    calls: u32,
    budget: Duration,
) -> Result<Established> {
    let start = Instant::now();
    let deadline = start + budget;
    let clients = (0..CLIENTS.min(calls))
        .map(|_| NgClient::new(ns, ng))
        .collect::<Result<Vec<_>>>()?;
    let per = calls.div_ceil(clients.len() as u32);
    let results: Vec<(Vec<[Flow; 2]>, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, client)| {
                let first = c as u32 * per;
                let last = (first + per).min(calls);
                scope.spawn(move || {
                    let mut got = Vec::with_capacity((last - first) as usize);
                    for i in first..last {
                        if Instant::now() > deadline {
                            return (got, Some(format!("set-up budget of {budget:?} spent")));
                        }
                        match one_call(client, tag, i) {
                            Ok(f) => got.push(f),
                            Err(e) => return (got, Some(format!("call {i}: {e:#}"))),
                        }
                    }
                    (got, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), Some("panicked".into())))
            })
            .collect()
    });
    let mut flows = Vec::with_capacity(calls as usize * 2);
    let mut stopped = None;
    for (got, why) in results {
        flows.extend(got.into_iter().flatten());
        stopped = stopped.or(why);
    }
    if flows.is_empty() {
        bail!("no call could be set up: {}", stopped.unwrap_or_default());
    }
    Ok(Established {
        flows,
        elapsed: start.elapsed(),
        stopped,
    })
}

/// Deletes calls 0..`calls` set up under `tag` (with no delete delay, so
/// their ports and sockets are free for the next set), in parallel as
/// [`establish_tagged`] set them up; returns how many the relay did not
/// know (set-up stopped short of them).
pub fn delete(ns: &Netns, ng: SocketAddr, tag: &str, calls: u32) -> Result<u32> {
    let clients = (0..CLIENTS.min(calls))
        .map(|_| NgClient::new(ns, ng))
        .collect::<Result<Vec<_>>>()?;
    let per = calls.div_ceil(clients.len().max(1) as u32);
    std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, client)| {
                let first = c as u32 * per;
                let last = (first + per).min(calls);
                scope.spawn(move || -> Result<u32> {
                    let mut unknown = 0;
                    for i in first..last {
                        let body = Value::dict([
                            ("command", s("delete")),
                            ("call-id", s(&call_id(tag, i))),
                            ("from-tag", s("a")),
                            ("delete-delay", Value::Int(0)),
                        ]);
                        let reply = client.request(&body)?;
                        if reply.get("result").and_then(Value::as_str) != Some("ok") {
                            unknown += 1;
                        }
                    }
                    Ok(unknown)
                })
            })
            .collect();
        handles.into_iter().try_fold(0, |sum, h| {
            let n = h
                .join()
                .map_err(|_| anyhow::anyhow!("an NG client panicked"))??;
            Ok(sum + n)
        })
    })
}

/// Waits (up to 20 s) until the NG server answers a ping.
pub fn wait_for_ng(ns: &Netns, ng: SocketAddr) -> Result<()> {
    let client = NgClient::new(ns, ng)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if client.ok(&Value::dict([("command", s("ping"))])).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no answer to ping on {ng} within 20 s")
}
