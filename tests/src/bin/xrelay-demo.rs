//! The README demo: relayd forwarding UDP between two namespaces in XDP.
//!
//! Builds host A, relay R and host B namespaces joined by veth, starts
//! `relayd` in R with two static streams (A -> B and B -> A), sends a few
//! datagrams each way, shows what arrived and from where, prints relayctl's
//! view, stops relayd and removes everything it created.
//!
//! Run through `cargo xtask demo`, which builds the binaries first.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use relay_tests::{
    netns::ChildGuard,
    peer::attach_peer_pass,
    ready::ReadySocket,
    topology::{bind_udp, exchange, Topology, HOST_A, HOST_B, RELAY_A, RELAY_B},
    PinDirGuard,
};

#[derive(Debug, Parser)]
struct Args {
    /// Path of the relayd binary.
    #[arg(long)]
    relayd: PathBuf,
    /// Path of the relayctl binary.
    #[arg(long)]
    relayctl: PathBuf,
    /// Datagrams to send each way.
    #[arg(long, default_value_t = 5)]
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

    let streams = [
        format!("{RELAY_A}:30000={HOST_B}:40000,src={RELAY_B}:30002"),
        format!("{RELAY_B}:30002={HOST_A}:5000,src={RELAY_A}:30000"),
    ];
    println!(
        "== starting relayd in R with static streams:\n   {}\n   {}",
        streams[0], streams[1]
    );
    let mut cmd = topo.r.command(&args.relayd)?;
    cmd.args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1", "--pin-dir"])
        .arg(&pins.0);
    for s in &streams {
        cmd.args(["--static-stream", s]);
    }
    let ready = ReadySocket::new()?;
    ready.configure(&mut cmd);
    let mut relayd = ChildGuard(
        cmd.stdout(Stdio::null())
            .spawn()
            .context("starting relayd")?,
    );
    ready.wait(&mut relayd)?;
    relayctl(&args.relayctl, &pins, "interfaces")?;

    let a = bind_udp(&topo.a, &format!("{HOST_A}:5000"))?;
    let b = bind_udp(&topo.b, &format!("{HOST_B}:40000"))?;
    for (label, from, to, rx) in [
        (
            "A -> relay 10.20.1.1:30000",
            &a,
            format!("{RELAY_A}:30000"),
            &b,
        ),
        (
            "B -> relay 10.20.2.1:30002",
            &b,
            format!("{RELAY_B}:30002"),
            &a,
        ),
    ] {
        println!("== {label}: sending {} datagrams", args.count);
        let got = exchange(from, &to, rx, args.count)?;
        for (src, payload) in &got {
            println!(
                "   received {:?} from {src}",
                String::from_utf8_lossy(payload)
            );
        }
        if got.len() != args.count {
            bail!("only {} of {} datagrams arrived", got.len(), args.count);
        }
    }
    relayctl(&args.relayctl, &pins, "streams")?;
    relayctl(&args.relayctl, &pins, "counters")?;

    println!("== stopping relayd (SIGTERM)");
    let status = relayd.terminate()?;
    if !status.success() {
        bail!("relayd exited with {status}");
    }
    println!("== done: relayd detached and unpinned; namespaces are removed on exit");
    Ok(())
}

fn relayctl(relayctl: &PathBuf, pins: &PinDirGuard, what: &str) -> Result<()> {
    println!("== relayctl {what}");
    let status = Command::new(relayctl)
        .arg("--pin-dir")
        .arg(&pins.0)
        .arg(what)
        .status()?;
    if !status.success() {
        bail!("relayctl {what} failed: {status}");
    }
    Ok(())
}
