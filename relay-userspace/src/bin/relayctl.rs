//! relayctl: inspect a running relayd.
//!
//! Reads the maps relayd pinned under its `--pin-dir`, so it works without
//! any control socket and even while relayd restarts.
//!
//! Exit codes: 0 success, 2 no relayd instance at that pin directory,
//! 1 anything else.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use relay_common::CounterId;
use relay_userspace::datapath::xdp::{
    mode_text, reason_text, versioned_dir, RelayMaps, DEFAULT_PIN_DIR,
};
use serde_json::json;

/// Inspect a running xrelay relayd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// relayd's --pin-dir.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Program-wide packet counters by outcome.
    Counters,
    /// Interfaces, their XDP mode and why.
    Interfaces,
    /// Installed kernel streams and their counters.
    Streams,
}

const EXIT_NOT_RUNNING: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = versioned_dir(&args.pin_dir);
    let maps = match RelayMaps::open_pinned(&dir) {
        Ok(maps) => maps,
        Err(e) => {
            eprintln!(
                "relayctl: no relayd instance at {} ({e}); is relayd running with this --pin-dir?",
                args.pin_dir.display()
            );
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };
    let result = match args.command {
        Command::Counters => counters(&maps, args.json),
        Command::Interfaces => interfaces(&maps, args.json),
        Command::Streams => streams(&maps, args.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relayctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn counters(maps: &RelayMaps, as_json: bool) -> Result<()> {
    let counters = maps.counters()?;
    if as_json {
        let map: serde_json::Map<_, _> = CounterId::ALL
            .iter()
            .map(|&id| {
                (
                    id.name().to_owned(),
                    json!({"packets": counters.packets(id), "bytes": counters.bytes(id)}),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(map));
        return Ok(());
    }
    println!(
        "{:<24} {:>14} {:>16}  MEANING",
        "COUNTER", "PACKETS", "BYTES"
    );
    for &id in CounterId::ALL {
        println!(
            "{:<24} {:>14} {:>16}  {}",
            id.name(),
            counters.packets(id),
            counters.bytes(id),
            id.description()
        );
    }
    Ok(())
}

fn interfaces(maps: &RelayMaps, as_json: bool) -> Result<()> {
    let statuses = maps.iface_statuses()?;
    let name = |raw: &[u8; 16]| {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    if as_json {
        let list: Vec<_> = statuses
            .iter()
            .map(|s| {
                json!({"name": name(&s.name), "ifindex": s.ifindex,
                       "xdp_mode": mode_text(s.mode), "reason": reason_text(s.reason)})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    println!("{:<16} {:>7} {:<8} WHY", "INTERFACE", "IFINDEX", "XDP");
    for s in &statuses {
        println!(
            "{:<16} {:>7} {:<8} {}",
            name(&s.name),
            s.ifindex,
            mode_text(s.mode),
            reason_text(s.reason)
        );
    }
    Ok(())
}

fn streams(maps: &RelayMaps, as_json: bool) -> Result<()> {
    use relay_common::addr::from_abi;
    use std::net::SocketAddr;
    let mut rows = Vec::new();
    for entry in maps.streams.iter() {
        let (key, target) = entry?;
        let stats = maps.stream_stats(target.stats_slot)?;
        let local = SocketAddr::new(from_abi(key.addr), u16::from_be(key.port));
        let peer = SocketAddr::new(from_abi(target.peer_addr), u16::from_be(target.peer_port));
        let source = SocketAddr::new(from_abi(target.src_addr), u16::from_be(target.src_port));
        rows.push((local, source, peer, target.flags, stats));
    }
    rows.sort_by_key(|r| r.0);
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(local, source, peer, flags, s)| {
                json!({"local": local.to_string(), "source": source.to_string(), "peer": peer.to_string(),
                       "strict_source": flags & relay_common::TF_STRICT_SOURCE != 0,
                       "packets": s.packets, "bytes": s.bytes, "dropped": s.dropped, "passed": s.passed})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    println!(
        "{:<22} {:<22} {:<22} {:>10} {:>12} {:>8} {:>8}",
        "LOCAL", "SOURCE", "PEER", "PACKETS", "BYTES", "DROPPED", "PASSED"
    );
    for (local, source, peer, _, s) in &rows {
        println!(
            "{:<22} {:<22} {:<22} {:>10} {:>12} {:>8} {:>8}",
            local.to_string(),
            source.to_string(),
            peer.to_string(),
            s.packets,
            s.bytes,
            s.dropped,
            s.passed
        );
    }
    Ok(())
}
