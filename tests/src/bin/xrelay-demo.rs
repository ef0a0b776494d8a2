//! The README demo: a call set up over NG, media through XDP.
//!
//! Builds host A, relay R and host B namespaces joined by veth, starts
//! `relayd` in R, offers and answers a call over NG as Kamailio would, sends
//! G.711 RTP both ways, 20 ms apart (the first packets are learned in
//! userspace, then the streams move into the kernel; A skips one sequence
//! number, which the RTP figures count as lost), shows what arrived and
//! from where, prints relayctl's view, deletes the call, stops relayd and
//! removes everything it created.
//!
//! Run through `cargo xtask demo`, which builds the binaries first.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use relay_ng::Value;
use relay_tests::{
    ng_client::{audio_sdp, sdp_endpoint, NgClient},
    packet::g711_packet,
    peer::attach_peer_pass,
    ready::spawn_ready,
    topology::{bind_udp, exchange_payloads, Topology, HOST_A, HOST_B, RELAY_A, RELAY_B},
    PinDirGuard,
};

const CALL_ID: &str = "demo-call@xrelay";

#[derive(Debug, Parser)]
struct Args {
    /// Path of the relayd binary.
    #[arg(long)]
    relayd: PathBuf,
    /// Path of the relayctl binary.
    #[arg(long)]
    relayctl: PathBuf,
    /// RTP packets to send each way per round.
    #[arg(long, default_value_t = 10)]
    count: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !relay_tests::privileges::is_root() {
        bail!("the demo creates network namespaces and loads XDP: run it as root");
    }
    println!("== topology: A (10.20.1.2) -- a1 [relay R] b1 -- B (10.20.2.2)");
    let topo = Topology::new("demo")?;
    // veth only delivers native XDP transmits to a peer with an XDP program.
    let _pa = topo.a.run(|| attach_peer_pass("a0"))??;
    let _pb = topo.b.run(|| attach_peer_pass("b0"))??;
    let pins = PinDirGuard::new("demo");

    println!("== starting relayd in R: -i a/{RELAY_A} -i b/{RELAY_B} --listen-ng 127.0.0.1:2223");
    let mut cmd = topo.r.command(&args.relayd)?;
    cmd.args([
        "-i",
        "a/10.20.1.1",
        "-i",
        "b/10.20.2.1",
        "--listen-ng",
        "127.0.0.1:2223",
        "--pin-dir",
    ])
    .arg(&pins.0);
    let relayd = spawn_ready(cmd.stdout(Stdio::null())).context("starting relayd")?;
    relayctl(&topo, &args, &pins, &["interfaces"])?;

    let ng = NgClient::new(&topo.r, "127.0.0.1:2223".parse()?)?;
    let offer = Value::dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str(CALL_ID)),
        ("from-tag", Value::str("caller")),
        ("sdp", Value::str(&audio_sdp(HOST_A, 5000))),
        ("direction", Value::str_list(["a", "b"])),
        ("supports", Value::str_list(["load limit"])),
    ]);
    let reply = ng.ok(&offer)?;
    let (b_addr, b_port) = sdp_endpoint(
        reply
            .get("sdp")
            .and_then(Value::as_bytes)
            .unwrap_or_default(),
    )
    .context("offer reply without SDP")?;
    println!("== NG offer from A ({HOST_A}:5000): B is told to send to {b_addr}:{b_port}");
    let answer = Value::dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str(CALL_ID)),
        ("from-tag", Value::str("caller")),
        ("to-tag", Value::str("callee")),
        ("sdp", Value::str(&audio_sdp(HOST_B, 40000))),
    ]);
    let reply = ng.ok(&answer)?;
    let (a_addr, a_port) = sdp_endpoint(
        reply
            .get("sdp")
            .and_then(Value::as_bytes)
            .unwrap_or_default(),
    )
    .context("answer reply without SDP")?;
    println!("== NG answer from B ({HOST_B}:40000): A is told to send to {a_addr}:{a_port}");

    let a = bind_udp(&topo.a, &format!("{HOST_A}:5000"))?;
    let b = bind_udp(&topo.b, &format!("{HOST_B}:40000"))?;
    let relay_a = format!("{a_addr}:{a_port}");
    let relay_b = format!("{b_addr}:{b_port}");
    let mut next_seq = [1000u16, 7000u16];
    for round in ["learning (userspace)", "kernel (XDP)"] {
        let legs = [
            ("A -> B", &a, &relay_a, &b, 0x0a0a_0a0a),
            ("B -> A", &b, &relay_b, &a, 0x0b0b_0b0b),
        ];
        for (leg, (label, from, to, rx, ssrc)) in legs.into_iter().enumerate() {
            let first = next_seq[leg];
            let mut seqs: Vec<u16> = (0..args.count as u16).map(|i| first + i).collect();
            next_seq[leg] = first + args.count as u16;
            if round.starts_with("kernel") && leg == 0 {
                // A lost packet, for the RTP figures to show.
                let skipped = seqs.remove(seqs.len() / 2);
                println!("   {round}: {label}: sequence {skipped} is never sent");
            }
            let packets = seqs.iter().map(|&seq| g711_packet(seq, ssrc));
            let got = exchange_payloads(from, to, rx, packets, Duration::from_millis(20))?;
            let sources: std::collections::BTreeSet<String> =
                got.iter().map(|(src, _)| src.to_string()).collect();
            println!(
                "   {round}: {label}: {} of {} RTP packets arrived, from {:?}",
                got.len(),
                seqs.len(),
                sources
            );
            if got.len() != seqs.len() {
                bail!("only {} of {} packets arrived", got.len(), seqs.len());
            }
        }
        // Give the manager a moment to move the confirmed streams into XDP.
        std::thread::sleep(Duration::from_millis(200));
    }
    relayctl(&topo, &args, &pins, &["calls"])?;
    relayctl(&topo, &args, &pins, &["show", CALL_ID])?;
    relayctl(&topo, &args, &pins, &["counters"])?;
    let delete = Value::dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str(CALL_ID)),
        ("from-tag", Value::str("caller")),
        ("delete-delay", Value::Int(0)),
    ]);
    ng.ok(&delete)?;
    println!("== NG delete: call removed, kernel entries and ports freed");
    relayctl(&topo, &args, &pins, &["streams"])?;

    // A signal would leave the program and its pins for the next relayd
    // (restarts keep calls); `relayctl stop` ends the relay for good.
    relayctl(&topo, &args, &pins, &["stop"])?;
    let mut relayd = relayd;
    let status = relayd.0.wait()?;
    if !status.success() {
        bail!("relayd exited with {status}");
    }
    println!("== done: relayd detached and unpinned; namespaces are removed on exit");
    Ok(())
}

/// Runs relayctl in the relay namespace (its CLI socket is on loopback there).
fn relayctl(topo: &Topology, args: &Args, pins: &PinDirGuard, what: &[&str]) -> Result<()> {
    println!("== relayctl {}", what.join(" "));
    let status = topo
        .r
        .command(&args.relayctl)?
        .arg("--pin-dir")
        .arg(&pins.0)
        .args(what)
        .status()?;
    if !status.success() {
        bail!("relayctl {what:?} failed: {status}");
    }
    Ok(())
}
