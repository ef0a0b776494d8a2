//! NG under a flood (issue 25, part 3): one address sends pings as fast as
//! a paced sender goes while another, the SIP proxy, runs offer / answer /
//! delete cycles and a third pings every 50 ms. relayd queues requests per
//! sender and serves each sender's existing calls first, so the proxy's
//! requests wait one turn behind the flood, not behind all of it.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use relay_tests::{
    ng_load::{flood, ping, Proxy},
    require_root,
};

mod common;

use common::{answer, command, offer, Bed, NG};

/// Flood rate and length (the abuse report's: 500 000 pings in 10 s).
const FLOOD_PPS: u64 = 50_000;
const FLOOD_FOR: Duration = Duration::from_secs(5);
/// How long the proxy waits for a reply before it resends the request
/// (Kamailio's rtpengine module waits 1 s, then retries).
const PROXY_TIMEOUT: Duration = Duration::from_millis(500);
/// How many times it resends before it counts the request lost (Kamailio
/// resends up to 5 times): a request delayed by a scheduling hiccup of a
/// loaded CI machine still counts, a starved sender does not.
const PROXY_RETRIES: u32 = 2;

#[test]
fn a_flooding_address_does_not_starve_the_proxy() {
    require_root!();
    let bed = Bed::new("ngf");
    // Deleted calls free their ports at once: the proxy runs hundreds.
    let relayd = bed.relayd(&["--datapath", "userspace", "--delete-delay", "0"]);
    let server = NG.parse().unwrap();
    let stop = AtomicBool::new(false);
    let proxy = |source: &str| {
        Proxy::new(&bed.t.r, source.parse().unwrap(), server, PROXY_TIMEOUT)
            .unwrap()
            .with_retries(PROXY_RETRIES)
    };
    let (sent, cycles, pings) = std::thread::scope(|s| {
        let flooder = s.spawn(|| {
            flood(
                &bed.t.r,
                "127.0.0.66:0".parse().unwrap(),
                server,
                FLOOD_PPS,
                FLOOD_FOR,
                &stop,
            )
            .unwrap()
        });
        let pinger = s.spawn(|| {
            let mut p = proxy("127.0.0.2:0");
            let (mut ok, mut all) = (0, 0);
            let start = Instant::now();
            while start.elapsed() < FLOOD_FOR {
                all += 1;
                ok += u32::from(p.ok(&ping()).is_some());
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, all)
        });
        // Let the flood build up before the proxy's calls start.
        std::thread::sleep(Duration::from_millis(500));
        let mut p = proxy("127.0.0.3:0");
        let (mut ok, mut all) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < FLOOD_FOR - Duration::from_secs(1) {
            let id = format!("flood-call-{all}");
            all += 1;
            let done = p.ok(&offer(&id)).is_some()
                && p.ok(&answer(&id)).is_some()
                && p.ok(&command("delete", &id)).is_some();
            ok += u32::from(done);
        }
        stop.store(true, Ordering::Relaxed);
        (flooder.join().unwrap(), (ok, all), pinger.join().unwrap())
    });
    let totals = bed.relayctl_cli(&["totals", "--json"]);
    let totals: serde_json::Value = serde_json::from_slice(&totals.stdout).unwrap();
    let answered_pings = totals["ng"]["ping"]["requests"].as_u64().unwrap_or(0);
    eprintln!(
        "flood: {sent} pings sent, {answered_pings} pings answered in all, shed {}; \
         proxy: {}/{} cycles, {}/{} pings answered within {PROXY_TIMEOUT:?} and {PROXY_RETRIES} resends",
        totals["ng_shed"], cycles.0, cycles.1, pings.0, pings.1
    );
    assert!(sent > FLOOD_PPS, "the flood ran ({sent} pings)");
    assert!(cycles.1 >= 10, "the proxy ran {} cycles", cycles.1);
    assert_eq!(
        cycles.0, cycles.1,
        "every offer/answer/delete cycle of the proxy succeeded"
    );
    assert_eq!(pings.0, pings.1, "every ping of the proxy was answered");
    drop(relayd);
}

/// `--ng-allow`: commands from outside the list get no answer and are
/// counted; the listed proxy is served as before.
#[test]
fn ng_allow_drops_commands_from_elsewhere() {
    require_root!();
    let bed = Bed::new("nga");
    let relayd = bed.relayd(&[
        "--datapath",
        "userspace",
        "--ng-allow",
        "127.0.0.2,10.99.0.0/16",
    ]);
    let server = NG.parse().unwrap();
    let mut allowed = Proxy::new(
        &bed.t.r,
        "127.0.0.2:0".parse().unwrap(),
        server,
        PROXY_TIMEOUT,
    )
    .unwrap();
    let mut stranger = Proxy::new(
        &bed.t.r,
        "127.0.0.66:0".parse().unwrap(),
        server,
        PROXY_TIMEOUT,
    )
    .unwrap();
    assert!(
        allowed.ok(&ping()).is_some(),
        "the listed proxy is answered"
    );
    for _ in 0..3 {
        assert!(stranger.ok(&ping()).is_none(), "a stranger gets no answer");
    }
    assert!(allowed.ok(&ping()).is_some(), "and the proxy still is");
    let totals = bed.relayctl_cli(&["--json", "totals"]);
    let totals: serde_json::Value = serde_json::from_slice(&totals.stdout).unwrap();
    assert_eq!(totals["ng_shed"]["not_allowed"], 3, "{totals}");
    drop(relayd);
}
