//! The packaging files (packaging/) checked against relayd's own
//! definitions, so that they cannot drift from it: the example
//! configuration lists every option once with its real default, and the
//! unit grants the capabilities relayd checks for and an open-files limit
//! its default port range fits in. (tests/package.rs installs and runs the
//! built package.)

use std::collections::BTreeSet;

use clap::CommandFactory as _;
use relay_userspace::{
    caps,
    config::{Config, Options},
    open_files,
};

const CONFIG: &str = include_str!("../../packaging/relayd.toml");
const UNIT: &str = include_str!("../../packaging/xrelay.service");

/// A commented-out setting of the example configuration: `#key = value`,
/// ending in `# example` when the value is not the default.
struct Setting {
    key: String,
    /// The line without its leading `#`.
    line: String,
    example: bool,
}

fn settings() -> Vec<Setting> {
    CONFIG
        .lines()
        .filter_map(|line| {
            let body = line.strip_prefix('#')?;
            let (key, _) = body.split_once(" = ")?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                return None; // prose
            }
            Some(Setting {
                key: key.to_owned(),
                line: body.to_owned(),
                example: body.trim_end().ends_with("# example"),
            })
        })
        .collect()
}

fn resolve(toml: &str) -> Config {
    Options::default()
        .merge_file("relayd.toml".as_ref(), toml)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
        .resolve()
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

#[test]
fn example_config_lists_every_option_once() {
    // Options that cannot be in a file (serde(skip)) or are clap's own.
    let not_in_file = ["config", "check-state", "help", "version"];
    let options: BTreeSet<String> = Options::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|long| !not_in_file.contains(long))
        .map(str::to_owned)
        .collect();
    let listed: Vec<String> = settings().into_iter().map(|s| s.key).collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a key listed twice: {listed:?}");
    assert_eq!(
        unique, options,
        "packaging/relayd.toml against relayd's options"
    );
}

#[test]
fn example_config_defaults_are_relayds() {
    let all = settings();
    let interface = all.iter().find(|s| s.key == "interface").unwrap();
    let interface_only = resolve(&interface.line);
    let defaults: Vec<&str> = all
        .iter()
        .filter(|s| !s.example)
        .map(|s| s.line.as_str())
        .chain([interface.line.as_str()])
        .collect();
    let with_defaults = resolve(&defaults.join("\n"));
    // Config has no PartialEq (sockets, prefixes); its Debug shows every field.
    assert_eq!(
        format!("{with_defaults:?}"),
        format!("{interface_only:?}"),
        "a `#key = value` line of packaging/relayd.toml that is not relayd's default"
    );
}

#[test]
fn example_config_examples_are_valid_together() {
    // The DTLS certificate files are read at start; they exist only where
    // an operator put them.
    let every: Vec<String> = settings()
        .into_iter()
        .filter(|s| !s.key.starts_with("dtls-") || !s.key.ends_with("-file"))
        .map(|s| s.line)
        .collect();
    let config = resolve(&every.join("\n"));
    assert!(config.redis.is_some() && config.floating_address.is_some());
}

/// `Key=` values of the unit (the last one wins, as in systemd).
fn unit_value(key: &str) -> String {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_else(|| panic!("xrelay.service has no {key}="))
        .trim()
        .to_owned()
}

#[test]
fn unit_grants_what_relayd_checks_for() {
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let granted: BTreeSet<&str> = UNIT
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .flat_map(str::split_whitespace)
            .collect();
        assert_eq!(granted, caps::FOR_XDP.into_iter().collect(), "{key}");
    }
    assert_eq!(unit_value("Type"), "notify");
    assert_eq!(
        unit_value("ExecStart"),
        "/usr/bin/relayd --config /etc/xrelay/relayd.toml"
    );
    // Restarts keep calls only if systemd signals relayd and waits.
    assert_eq!(unit_value("KillMode"), "mixed");
    assert!(
        !UNIT.contains("ExecStop="),
        "a stop command would end the calls"
    );
}

#[test]
fn unit_open_files_fit_the_default_port_range() {
    let limit: u64 = unit_value("LimitNOFILE").parse().unwrap();
    let c = resolve("interface = [\"127.0.0.1\"]");
    let ports = u64::from(c.port_max - c.port_min) + 1;
    // The unit's comment promises six interface addresses.
    let files = open_files::OpenFiles {
        limit,
        raised_from: None,
    };
    assert!(
        !files.below_port_ranges(6 * ports),
        "LimitNOFILE={limit} is short of {} sockets",
        6 * ports + open_files::RESERVED
    );
}
