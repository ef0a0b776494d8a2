//! relayctl: inspect a running relayd.
//!
//! `calls` and `show` ask relayd over its `--listen-cli` socket; `counters`,
//! `interfaces` and `streams` read the maps relayd pinned under its
//! `--pin-dir`, so they work even while relayd restarts.
//!
//! Exit codes: 0 success, 2 relayd not reachable (no CLI socket, no pins),
//! 3 no such call, 1 anything else.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use relay_common::CounterId;
use relay_userspace::datapath::xdp::{mode_text, reason_text, versioned_dir, RelayMaps};
use serde_json::json;

mod cli;

use cli::{Args, Command};

mod top;

const EXIT_NOT_RUNNING: u8 = 2;
const EXIT_NO_SUCH_CALL: u8 = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Command::Calls => return cli_command(&args, json!({"command": "calls"})),
        Command::Totals => return cli_command(&args, json!({"command": "totals"})),
        Command::Top => {
            return match top::run(&args.cli) {
                Ok(()) => ExitCode::SUCCESS,
                Err(CliError::Unreachable(m) | CliError::Refused { message: m, .. }) => {
                    eprintln!("relayctl: {m}");
                    ExitCode::from(EXIT_NOT_RUNNING)
                }
            }
        }
        Command::Show { call_id } => {
            return cli_command(&args, json!({"command": "show", "call_id": call_id}))
        }
        Command::Stop => return cli_command(&args, json!({"command": "stop"})),
        Command::Takeover => return cli_command(&args, json!({"command": "takeover"})),
        _ => {}
    }
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
    warn_if_unowned(&args, &maps);
    let result = match args.command {
        Command::Counters => counters(&maps, args.json),
        Command::Interfaces => interfaces(&maps, args.json),
        Command::Streams => streams(&maps, args.json),
        Command::Calls
        | Command::Totals
        | Command::Top
        | Command::Show { .. }
        | Command::Stop
        | Command::Takeover => {
            unreachable!("handled above")
        }
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
    for (local, target) in maps.installed()? {
        // Pass entries (ports still learning) count nothing and have no slot.
        let slotted = target.flags & relay_common::TF_TO_USERSPACE == 0;
        let stats = if slotted {
            maps.stream_stats(target.stats_slot)?
        } else {
            relay_common::StreamStats::default()
        };
        // RTP and RTCP ports' packet classes, which only the JSON shows.
        let tracked = target.flags & (relay_common::TF_RTP | relay_common::TF_RTCP) != 0;
        let rtp = if as_json && slotted && tracked {
            Some(maps.rtp_stats(target.stats_slot)?)
        } else {
            None
        };
        let peer = SocketAddr::new(from_abi(target.peer_addr), u16::from_be(target.peer_port));
        let source = SocketAddr::new(from_abi(target.src_addr), u16::from_be(target.src_port));
        rows.push((local, source, peer, target.flags, stats, rtp));
    }
    rows.sort_by_key(|r| r.0);
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(local, source, peer, flags, s, rtp)| {
                let mut row = json!({"local": local.to_string(), "source": source.to_string(), "peer": peer.to_string(),
                       "strict_source": flags & relay_common::TF_STRICT_SOURCE != 0,
                       "to_userspace": flags & relay_common::TF_TO_USERSPACE != 0,
                       "ice": flags & relay_common::TF_ICE != 0,
                       "rtcp_demux": flags & relay_common::TF_RTCP_DEMUX != 0,
                       "media": media_kind(*flags),
                       "packets": s.packets, "bytes": s.bytes, "dropped": s.dropped, "passed": s.passed,
                       "max_pps": s.max_pps});
                if let Some(q) = rtp {
                    row["rtp_packets"] = q.rtp_packets.into();
                    row["rtcp_packets"] = q.rtcp_packets.into();
                    row["other_packets"] = q.other_packets.into();
                }
                row
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    println!(
        "{:<22} {:<22} {:<22} {:>10} {:>12} {:>8} {:>8}",
        "LOCAL", "SOURCE", "PEER", "PACKETS", "BYTES", "DROPPED", "PASSED"
    );
    for (local, source, peer, flags, s, _) in &rows {
        if flags & relay_common::TF_TO_USERSPACE != 0 {
            // A port still learning: its packets go to relayd's socket.
            println!(
                "{:<22} {:<22} {:<22}",
                local.to_string(),
                "-",
                "(to userspace: learning)"
            );
            continue;
        }
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

/// What a stream's port carries, from its flags.
fn media_kind(flags: u32) -> &'static str {
    if flags & relay_common::TF_RTP != 0 {
        "rtp"
    } else if flags & relay_common::TF_RTCP != 0 {
        "rtcp"
    } else {
        "other"
    }
}

/// What asking relayd's CLI socket can end in.
enum CliError {
    /// No relayd there (or it hung up).
    Unreachable(String),
    /// relayd answered with an error; `not_found` says the call is unknown.
    Refused { message: String, not_found: bool },
}

/// One request to relayd's CLI socket; the `data` of a successful reply.
fn request(cli: &str, request: &serde_json::Value) -> Result<serde_json::Value, CliError> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let unreachable = |e: std::io::Error| {
        CliError::Unreachable(format!(
            "cannot reach relayd at {cli} ({e}); is it running with --listen-cli {cli}?"
        ))
    };
    // Bounded waits: `relayctl top` runs with the terminal in raw mode, where
    // a hung relayd would otherwise make it deaf to q and Ctrl-C.
    let addr = std::net::ToSocketAddrs::to_socket_addrs(cli)
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| unreachable(std::io::Error::other("no address")))?;
    let stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .map_err(unreachable)?;
    // A takeover restores every call before it answers.
    let wait = match request["command"] == "takeover" {
        true => std::time::Duration::from_secs(120),
        false => std::time::Duration::from_secs(3),
    };
    stream.set_read_timeout(Some(wait)).map_err(unreachable)?;
    let mut line = request.to_string();
    line.push('\n');
    let mut reply = String::new();
    (&stream)
        .write_all(line.as_bytes())
        .and_then(|()| BufReader::new(&stream).read_line(&mut reply))
        .map_err(unreachable)?;
    let reply: serde_json::Value = serde_json::from_str(&reply).map_err(|_| CliError::Refused {
        message: "relayd sent something that is not JSON".into(),
        not_found: false,
    })?;
    if reply["ok"] != true {
        return Err(CliError::Refused {
            message: reply["error"].as_str().unwrap_or("error").to_owned(),
            not_found: reply["code"] == "not_found",
        });
    }
    Ok(reply["data"].clone())
}

fn cli_command(args: &Args, req: serde_json::Value) -> ExitCode {
    let reply = match request(&args.cli, &req) {
        Ok(data) => serde_json::json!({ "data": data }),
        Err(CliError::Unreachable(message)) => {
            eprintln!("relayctl: {message}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
        Err(CliError::Refused { message, not_found }) => {
            eprintln!("relayctl: {message}");
            return ExitCode::from(if not_found { EXIT_NO_SUCH_CALL } else { 1 });
        }
    };
    let data = &reply["data"];
    if args.json {
        println!("{data}");
    } else if matches!(args.command, Command::Calls) {
        print_calls(data);
    } else if matches!(args.command, Command::Totals) {
        print_totals(data);
    } else if matches!(args.command, Command::Stop) {
        println!("relayd stopping; {} call(s) ended", data["calls"]);
    } else if matches!(args.command, Command::Takeover) {
        println!(
            "active now: {} call(s) restored, {} failed, {} ended (timed out) in {} ms",
            data["restored"], data["failed"], data["ended"], data["took_ms"]
        );
    } else {
        print_call(data);
    }
    ExitCode::SUCCESS
}

/// Says so when no relayd holds this instance (its state directory is not
/// locked): the program then forwards what a relayd that stopped or died
/// left, and nobody programs it.
fn warn_if_unowned(args: &Args, maps: &RelayMaps) {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| relay_userspace::config::default_state_dir(&args.pin_dir));
    if relay_state::FileJournal::in_use(&state_dir) != Some(false) {
        return;
    }
    let ifaces: Vec<String> = maps
        .iface_statuses()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let end = s.name.iter().position(|&b| b == 0).unwrap_or(s.name.len());
            String::from_utf8_lossy(&s.name[..end]).into_owned()
        })
        .collect();
    let streams = maps.installed().map_or(0, |s| s.len());
    eprintln!(
        "relayctl: warning: no relayd owns {} (its state directory {} is not locked): the XDP \
         program on {} forwards the {streams} kernel streams a stopped or dead relayd left. \
         Start relayd with this --pin-dir to take them over, or `rm -r {}` to detach it.",
        args.pin_dir.display(),
        state_dir.display(),
        if ifaces.is_empty() {
            "?".to_owned()
        } else {
            ifaces.join(", ")
        },
        args.pin_dir.display()
    );
}

/// Every stream of a call summary (all parties, all medias).
fn streams_of(call: &serde_json::Value) -> Vec<&serde_json::Value> {
    call["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["medias"].as_array().into_iter().flatten())
        .flat_map(|m| m["streams"].as_array().into_iter().flatten())
        .collect()
}

fn count(v: &serde_json::Value, side: &str, what: &str) -> u64 {
    v[side][what].as_u64().unwrap_or(0)
}

fn print_calls(calls: &serde_json::Value) {
    println!(
        "{:<36} {:>7} {:>7} {:>7} {:>10} {:>12} {:>12}",
        "CALL-ID", "PARTIES", "STREAMS", "KERNEL", "AGE(s)", "PACKETS", "BYTES"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for call in calls.as_array().into_iter().flatten() {
        let tags = call["tags"].as_array().cloned().unwrap_or_default();
        let streams = streams_of(call);
        let kernel = streams.iter().filter(|s| s["kernelized"] == true).count();
        // Calls an earlier relayd set up are marked with a '*'.
        let restored = if call["restored"] == true { "*" } else { "" };
        println!(
            "{:<36} {:>7} {:>7} {:>7} {:>10} {:>12} {:>12}",
            format!("{}{restored}", call["call_id"].as_str().unwrap_or("")),
            tags.len(),
            streams.len(),
            kernel,
            now.saturating_sub(call["created"].as_u64().unwrap_or(now)),
            count(call, "totals", "packets"),
            count(call, "totals", "bytes"),
        );
    }
}

fn print_call(call: &serde_json::Value) {
    println!("call {}", call["call_id"].as_str().unwrap_or(""));
    for tag in call["tags"].as_array().into_iter().flatten() {
        let peer = tag["in_dialogue_with"].as_str().unwrap_or("-");
        println!(
            "  tag {:?} on interface {} (talks to {peer})",
            tag["tag"].as_str().unwrap_or(""),
            tag["interface"].as_str().unwrap_or("")
        );
        for media in tag["medias"].as_array().into_iter().flatten() {
            println!(
                "    media {} {} {}",
                media["index"],
                media["kind"].as_str().unwrap_or(""),
                media["protocol"].as_str().unwrap_or("")
            );
            println!(
                "      {:<5} {:<22} {:<22} {:<22} {:<7} {:>9} {:>9} {:>7} {:>9}",
                "",
                "LOCAL",
                "SDP ENDPOINT",
                "LEARNED",
                "KERNEL",
                "PKTS(K)",
                "PKTS(U)",
                "ERRORS",
                "LAST PKT"
            );
            for s in media["streams"].as_array().into_iter().flatten() {
                let addr = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
                let age = s["last_packet_age_ms"].as_u64().map_or_else(
                    || "never".to_owned(),
                    |ms| format!("{:.1}s ago", ms as f64 / 1000.0),
                );
                println!(
                    "      {:<5} {:<22} {:<22} {:<22} {:<7} {:>9} {:>9} {:>7} {:>9}",
                    if s["rtcp"] == true { "RTCP" } else { "RTP" },
                    addr("local"),
                    addr("sdp_endpoint"),
                    addr("confirmed"),
                    if s["kernelized"] == true { "yes" } else { "no" },
                    count(s, "kernel", "packets"),
                    count(s, "user", "packets"),
                    count(s, "kernel", "errors") + count(s, "user", "errors"),
                    age,
                );
                if let Some(q) = s["rtp_quality"].as_object() {
                    println!("            {}", quality_line(q, s["rtcp"] == true));
                }
                if let Some(srtp) = s["srtp"].as_object() {
                    println!(
                        "            SRTP {} (relay terminates): auth failures {}, replays {}",
                        srtp["suite"].as_str().unwrap_or("?"),
                        srtp["auth_failures"],
                        srtp["replays"]
                    );
                }
                if let Some(d) = s["dtls"].as_object() {
                    let c = &d["counters"];
                    println!(
                        "            DTLS {} ({}) profile {}; timeouts {} fingerprint mismatches {} failures {}",
                        d["state"].as_str().unwrap_or("?"),
                        d["role"].as_str().unwrap_or("?"),
                        d["profile"].as_str().unwrap_or("-"),
                        c["timeouts"].as_u64().unwrap_or(0),
                        c["fingerprint_mismatches"].as_u64().unwrap_or(0),
                        c["failures"].as_u64().unwrap_or(0),
                    );
                }
            }
        }
    }
}

/// One stream's RTP figures as a line under its row in `relayctl show`
/// (an RTCP port's: its RTCP and other packets).
fn quality_line(q: &serde_json::Map<String, serde_json::Value>, rtcp_port: bool) -> String {
    let n = |k: &str| q.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    if rtcp_port {
        return format!(
            "rtcp {}  non-rtcp {}",
            n("rtcp_packets"),
            n("other_packets")
        );
    }
    let rtp = n("rtp_packets");
    let lost = n("lost");
    let mut line = match q.get("ssrc").and_then(|v| v.as_u64()) {
        Some(ssrc) => format!("SSRC {ssrc:#010x} PT {}", n("payload_type")),
        None => "no RTP yet".to_owned(),
    };
    let loss_pct = if rtp + lost == 0 {
        0.0
    } else {
        100.0 * lost as f64 / (rtp + lost) as f64
    };
    let jitter = match q.get("jitter_us").and_then(|v| v.as_u64()) {
        Some(us) => format!("{:.2} ms", us as f64 / 1000.0),
        None => format!("{} units", n("jitter_units")),
    };
    line.push_str(&format!(
        "  rtp {rtp}  lost {lost} ({loss_pct:.1}%)  jitter {jitter}  rtcp {}  non-rtp {}",
        n("rtcp_packets"),
        n("other_packets")
    ));
    if n("ssrc_changes") > 0 {
        line.push_str(&format!("  ssrc changes {}", n("ssrc_changes")));
    }
    line
}

/// `role:` and, with `--redis`, the link, what waits and the lag.
fn print_replication(r: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let role = r["role"].as_str().unwrap_or("active");
    println!("role: {role}");
    let redis = &r["redis"];
    if redis.is_null() {
        return;
    }
    let lag = match redis["lag_ms"].as_u64() {
        Some(ms) => format!("{:.3} s", ms as f64 / 1000.0),
        None => "unknown".into(),
    };
    let what = match role {
        "standby" => format!(
            "{} calls mirrored, lag {lag}, {} skipped",
            n(&redis["calls"]),
            n(&redis["skipped"])
        ),
        _ => format!(
            "{} calls replicated, {} pending, lag {lag}",
            n(&redis["calls"]),
            n(&redis["pending"])
        ),
    };
    println!(
        "redis {}: link {}, {what}, {} errors, {} resyncs",
        redis["target"].as_str().unwrap_or(""),
        redis["link"].as_str().unwrap_or("?"),
        n(&redis["errors"]),
        n(&redis["resyncs"])
    );
}

/// The load signals: each figure, its limit and the headroom to it.
fn print_load(l: &serde_json::Value) {
    if l.is_null() {
        return; // a relayd from before the load signals
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let f = |v: &serde_json::Value, places: usize| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.places$}"))
    };
    let limit = |max: &serde_json::Value, room: &serde_json::Value, places: usize| {
        if max.is_null() {
            "no limit".to_owned()
        } else {
            format!("limit {}, headroom {}", f(max, places), f(room, places))
        }
    };
    let (lim, room, rates) = (&l["limits"], &l["headroom"], &l["rates"]);
    println!(
        "load average: {} ({})",
        f(&l["load_average"], 2),
        limit(&lim["max_load"], &room["load"], 2)
    );
    println!(
        "cpu (host, softirq included): {} % ({})",
        f(&l["cpu_percent"], 2),
        limit(&lim["max_cpu"], &room["cpu"], 2)
    );
    println!(
        "bandwidth: {} B/s, kernel {} + userspace {} ({})",
        n(&rates["kernel_bytes"]) + n(&rates["user_bytes"]),
        n(&rates["kernel_bytes"]),
        n(&rates["user_bytes"]),
        limit(&lim["max_bandwidth"], &room["bandwidth"], 0)
    );
    println!(
        "headroom: {}{}",
        f(&room["ratio"], 3),
        l["refusing"]
            .as_str()
            .map(|why| format!(", refusing new calls: {why}"))
            .unwrap_or_default()
    );
}

fn print_totals(t: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!(
        "sessions: {} now, {} since start",
        n(&t["sessions"]),
        n(&t["sessions_total"])
    );
    for p in t["ports"].as_array().into_iter().flatten() {
        println!(
            "ports {}: {} pairs used, {} free",
            p["interface"].as_str().unwrap_or(""),
            n(&p["used"]),
            n(&p["free"])
        );
    }
    if let Some(slots) = t["kernel_slots"].as_object() {
        println!(
            "kernel counter slots: {} used, {} free",
            slots.get("used").map_or(0, n),
            slots.get("free").map_or(0, n)
        );
    }
    println!("{:<12} {:>14} {:>16}", "PATH", "PACKETS", "BYTES");
    for path in ["kernel", "userspace"] {
        println!(
            "{:<12} {:>14} {:>16}",
            path,
            n(&t[path]["packets"]),
            n(&t[path]["bytes"])
        );
    }
    println!(
        "dropped in userspace (strict source): {}",
        n(&t["userspace_dropped"])
    );
    print_replication(&t["replication"]);
    print_load(&t["load"]);
    if let Some(shed) = t["ng_shed"].as_object().filter(|s| !s.is_empty()) {
        let reasons: Vec<String> = shed.iter().map(|(k, v)| format!("{k}={}", n(v))).collect();
        println!("NG requests shed under load: {}", reasons.join(" "));
    }
    if let Some(xdp) = t["xdp"].as_object() {
        let drops: Vec<String> = xdp
            .iter()
            .filter(|(k, v)| k.starts_with("dropped") && n(v) > 0)
            .map(|(k, v)| format!("{k}={}", n(v)))
            .collect();
        println!(
            "dropped in XDP: {}",
            if drops.is_empty() {
                "none".into()
            } else {
                drops.join(" ")
            }
        );
    }
    let rtp = &t["rtp"];
    println!(
        "rtp (live calls): {} streams, {} packets, {} lost, {} rtcp, {} non-rtp, {} ssrc changes, worst jitter {:.1} ms",
        n(&rtp["streams"]),
        n(&rtp["packets"]),
        n(&rtp["lost"]),
        n(&rtp["rtcp_packets"]),
        n(&rtp["other_packets"]),
        n(&rtp["ssrc_changes"]),
        n(&rtp["max_jitter_us"]) as f64 / 1000.0
    );
    println!(
        "{:<12} {:>10} {:>8} {:>10} {:>12}",
        "NG COMMAND", "REQUESTS", "ERRORS", "LOADLIMIT", "AVG LATENCY"
    );
    for (cmd, s) in t["ng"].as_object().into_iter().flatten() {
        let reqs = n(&s["requests"]);
        let avg = n(&s["latency_sum_us"]).checked_div(reqs).unwrap_or(0);
        println!(
            "{:<12} {:>10} {:>8} {:>10} {:>10}us",
            cmd,
            reqs,
            n(&s["errors"]),
            n(&s["load_limit"]),
            avg
        );
    }
}
