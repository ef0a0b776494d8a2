//! Per-interface checks: driver, MTU against the driver's XDP limit, ENA
//! channels, receive queues against CPUs, IRQ spread, forwarding, rp_filter,
//! and (for `relayd doctor` itself) a trial native attach.

use std::{path::Path, process::Command};

use super::Check;
use crate::{
    config::{Config, DatapathMode},
    datapath::xdp::ModePolicy,
    interfaces::netdev_for,
    netdev,
};

/// The netdevs that own the configured addresses (each once; the
/// floating address's while elsewhere: the one of its subnet), and the
/// addresses that are on none (named `!ADDRESS`).
pub fn netdevs(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for spec in &config.interfaces {
        let dev = netdev_for(spec.address, config.floating_address)
            .unwrap_or_else(|| format!("!{}", spec.address));
        if !out.contains(&dev) {
            out.push(dev);
        }
    }
    out
}

/// The largest MTU a driver takes native XDP with, without multi-buffer
/// (the program is single-buffer): ENA documents 3498; veth and
/// virtio_net allow a page less headroom and skb_shared_info (3506 with 4 KiB
/// pages; veth checks its peer's MTU, which doctor cannot see from here);
/// others are taken as ENA's.
pub fn xdp_mtu_limit(driver: &str) -> u32 {
    match driver {
        "veth" | "virtio_net" => 3506,
        _ => 3498,
    }
}

/// `ethtool -i` fields of `dev`: (driver, version).
fn driver(dev: &str) -> (String, String) {
    if let Ok(out) = Command::new("ethtool").args(["-i", dev]).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
        };
        if let Some(driver) = field("driver:") {
            return (driver, field("version:").unwrap_or_default());
        }
    }
    let link = std::fs::read_link(format!("/sys/class/net/{dev}/device/driver")).ok();
    let name = link
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into());
    (name, String::new())
}

fn read_u32(path: impl AsRef<Path>) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `ethtool -l`: channel counts, maximum and current.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Channels {
    max_combined: u32,
    rx: u32,
    combined: u32,
}

impl Channels {
    /// Receive queues in use.
    fn receive_queues(&self) -> u32 {
        self.rx + self.combined
    }
}

/// Parses `ethtool -l` output (its "Pre-set maximums" section first, then
/// "Current hardware settings"; "n/a" counts as 0).
fn parse_channels(text: &str) -> Option<Channels> {
    let (max, current) = text.split_once("Current hardware settings")?;
    let value = |section: &str, key: &str| {
        section
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map_or(0, |v| v.trim().parse().unwrap_or(0))
    };
    Some(Channels {
        max_combined: value(max, "Combined:"),
        rx: value(current, "RX:"),
        combined: value(current, "Combined:"),
    })
}

/// `ethtool -l` of `dev` (ioctls in this namespace, unlike sysfs).
fn channels(dev: &str) -> Option<Channels> {
    let out = Command::new("ethtool").args(["-l", dev]).output().ok()?;
    parse_channels(&String::from_utf8_lossy(&out.stdout))
}

/// Every check of one interface.
pub fn checks(dev: &str, config: &Config, trial_attach: bool) -> Vec<Check> {
    if let Some(address) = dev.strip_prefix('!') {
        return vec![Check::error(
            format!("address {address}"),
            "on no local interface: relayd cannot bind its media ports",
            "add the address to an interface, or fix -i",
        )];
    }
    let (driver, version) = driver(dev);
    let mut out = vec![Check::ok(
        format!("driver {dev}"),
        if version.is_empty() {
            driver.clone()
        } else {
            format!("{driver} {version}")
        },
    )];
    if config.datapath == DatapathMode::Userspace {
        return out;
    }
    out.push(mtu(dev, &driver, config.xdp_mode));
    if driver == "ena" {
        out.push(ena_channels(dev));
    }
    out.push(queues(dev));
    out.push(forwarding(dev, config.enable_forwarding));
    out.push(rp_filter(dev, config.interfaces.len()));
    if trial_attach {
        out.push(native_attach(dev));
    }
    out
}

fn mtu(dev: &str, driver: &str, policy: ModePolicy) -> Check {
    let name = format!("mtu {dev}");
    let Ok(mtu) = netdev::mtu(dev) else {
        return Check::warn(name, "cannot read the MTU", "check `ip link show`");
    };
    let limit = xdp_mtu_limit(driver);
    if mtu <= limit {
        return Check::ok(
            name,
            format!("{mtu}, within {driver}'s native XDP limit of {limit}"),
        );
    }
    let detail = format!(
        "{mtu} is above {driver}'s native XDP limit of {limit}: the driver refuses native XDP"
    );
    let fix = format!(
        "ip link set {dev} mtu {limit} (or 1500; VPC traffic beyond the VPC is 1500 anyway)"
    );
    match policy {
        ModePolicy::Native => Check::error(name, detail, fix),
        _ => Check::warn(
            name,
            format!("{detail}; relayd falls back to generic mode, several times slower"),
            fix,
        ),
    }
}

/// ENA gives XDP its own transmit queues, one per channel, from the same
/// budget: native XDP needs the channels at half the maximum or fewer.
fn ena_channels(dev: &str) -> Check {
    let name = format!("channels {dev}");
    match channels(dev).map(|c| (c.combined, c.max_combined)) {
        Some((current, max)) if current * 2 <= max => Check::ok(name, format!("{current} of {max}: room for the XDP transmit queues")),
        Some((current, max)) => Check::error(
            name,
            format!("{current} of {max} combined channels: ENA has no room for XDP transmit queues and refuses native XDP"),
            format!("ethtool -L {dev} combined {}", max / 2),
        ),
        None => Check::warn(name, "cannot read the channels (ethtool -l)", "install ethtool"),
    }
}

fn queues(dev: &str) -> Check {
    let name = format!("queues {dev}");
    let Some(rx) = channels(dev).map(|c| c.receive_queues().max(1) as usize) else {
        return Check::warn(
            name,
            "cannot read the channels (ethtool -l)",
            "install ethtool",
        );
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if rx >= cpus {
        Check::ok(name, format!("{rx} receive queues for {cpus} CPUs"))
    } else {
        Check::warn(
            name,
            format!(
                "{rx} receive queues for {cpus} CPUs: the fast path runs on at most {rx} of them"
            ),
            format!(
                "ethtool -L {dev} combined {cpus} (where the driver allows; ENA: see channels)"
            ),
        )
    }
}

fn forwarding(dev: &str, enable: bool) -> Check {
    let name = format!("forwarding {dev}");
    match netdev::ipv4_forwarding(dev) {
        Ok(true) => Check::ok(name, "IPv4 forwarding on (the XDP next-hop lookup needs it)"),
        Ok(false) if enable => Check::ok(name, "IPv4 forwarding off; relayd turns it on at start"),
        Ok(false) => Check::error(
            name,
            "IPv4 forwarding off and --no-enable-forwarding: every XDP next-hop lookup fails and media goes through userspace",
            format!("sysctl net.ipv4.conf.{dev}.forwarding=1, or drop --no-enable-forwarding"),
        ),
        Err(e) => Check::warn(name, format!("cannot read: {e}"), "check the sysctl"),
    }
}

fn rp_filter(dev: &str, interfaces: usize) -> Check {
    let name = format!("rp_filter {dev}");
    let read = |scope: &str| read_u32(format!("/proc/sys/net/ipv4/conf/{scope}/rp_filter"));
    // The kernel applies the larger of "all" and the interface's.
    let value = read("all").max(read(dev)).unwrap_or(0);
    if value == 1 && interfaces > 1 {
        Check::warn(
            name,
            "strict reverse-path filtering with several relay interfaces: media a peer sends to one address but routes back through another is dropped in userspace",
            format!("sysctl net.ipv4.conf.{dev}.rp_filter=2 (loose)"),
        )
    } else {
        Check::ok(name, format!("rp_filter={value}"))
    }
}

/// Attaches the object's do-nothing program natively to `dev` and detaches
/// it again: whether the driver takes native XDP as configured now. Maps
/// are pinned under a directory of this process's own, removed after.
fn native_attach(dev: &str) -> Check {
    let name = format!("native attach {dev}");
    let pins =
        std::path::PathBuf::from(format!("/sys/fs/bpf/xrelay-doctor-{}", std::process::id()));
    let tried = (|| -> Result<(), String> {
        crate::bpffs::ensure_pin_dir(&pins).map_err(|e| e.to_string())?;
        let mut ebpf = aya::EbpfLoader::new()
            .default_map_pin_directory(&pins)
            .load(relay_ebpf::relay_object())
            .map_err(|e| e.to_string())?;
        let program: &mut aya::programs::Xdp = ebpf
            .program_mut(relay_ebpf::PROGRAM_PEER_PASS)
            .ok_or("the object has no pass program")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        program.load().map_err(|e| e.to_string())?;
        let link = program
            .attach(dev, aya::programs::XdpMode::Driver)
            .map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            })?;
        program.detach(link).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir_all(&pins);
    match tried {
        Ok(()) => Check::ok(name, "the driver takes a native XDP program"),
        Err(e) if e.contains("busy") || e.contains("exists") => Check::ok(
            name,
            "a program is attached already (relayd's, or another): not tried",
        ),
        Err(e) => Check::warn(
            name,
            format!("native attach refused: {e}"),
            "see the MTU and channels checks; relayd falls back to generic mode",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse() {
        let veth = "Channel parameters for a1:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\nCombined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";
        assert_eq!(
            parse_channels(veth),
            Some(Channels {
                max_combined: 0,
                rx: 1,
                combined: 0
            })
        );
        let ena = "Pre-set maximums:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\tn/a\nCombined:\t32\nCurrent hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\tn/a\nCombined:\t32\n";
        let c = parse_channels(ena).unwrap();
        assert_eq!(
            (c.max_combined, c.combined, c.receive_queues()),
            (32, 32, 32)
        );
        assert_eq!(parse_channels("garbage"), None);
    }

    #[test]
    fn mtu_limits_per_driver() {
        assert_eq!(xdp_mtu_limit("ena"), 3498);
        assert_eq!(xdp_mtu_limit("veth"), 3506);
        assert_eq!(xdp_mtu_limit("mlx5_core"), 3498);
    }
}
