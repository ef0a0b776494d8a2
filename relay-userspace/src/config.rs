//! relayd's settings: command line (rtpengine's option names, so it is a
//! drop-in) merged over an optional TOML file with the same keys
//! (`--config FILE`; the command line wins).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::Parser;
use serde::Deserialize;

use crate::{
    calls::learning::LearningMode,
    datapath::xdp::{ModePolicy, DEFAULT_PIN_DIR},
    interfaces::{InterfaceAlias, InterfaceError, InterfaceSet, InterfaceSpec},
};

/// Which forwarding backend carries media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathMode {
    /// XDP (native, else generic), else userspace; the reason is logged.
    #[default]
    Auto,
    /// XDP or refuse to start.
    Xdp,
    /// Userspace forwarding only.
    Userspace,
}

/// What XDP does with UDP to the media port range that matches no stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShieldMode {
    /// Drop it in XDP (counted as `dropped_no_stream`).
    #[default]
    Drop,
    /// Let the kernel stack have it (hosts running other UDP services there).
    Pass,
}

/// Command line of relayd. Every value may also come from `--config`.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(
    name = "relayd",
    version,
    about = "xrelay media relay daemon (rtpengine NG compatible)"
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// TOML file with the same keys as these options.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Logical interface address `[NAME/]ADDRESS[!ADVERTISED]`, or alias
    /// `ALIAS=NAME` (repeatable; a NAME given again adds an address, the
    /// first of each family is the one media uses; `BASE:SUFFIX` names
    /// form round-robin group BASE).
    #[arg(long = "interface", short = 'i', value_name = "SPEC")]
    #[serde(default)]
    pub interface: Vec<String>,
    /// NG control socket, `[ADDR:]PORT` (UDP).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub listen_ng: Option<String>,
    /// NG over TCP, `[ADDR:]PORT` (rtpengine's framing: `cookie SP
    /// dictionary` messages back to back); off unless given.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub listen_tcp_ng: Option<String>,
    /// Who may send NG commands: `ADDRESS[/LEN]` prefixes (repeatable or
    /// comma-separated); others are dropped unanswered and counted.
    /// Default: anyone, as rtpengine.
    #[arg(long, value_name = "PREFIX", value_delimiter = ',')]
    #[serde(default)]
    pub ng_allow: Vec<String>,
    /// relayctl's socket, `[ADDR:]PORT` (TCP).
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub listen_cli: Option<String>,
    /// HTTP socket, `[ADDR:]PORT`: Prometheus /metrics, /ping, NG as
    /// `POST /ng` and over WebSocket (subprotocol ng.rtpengine.com); off
    /// unless given.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub listen_http: Option<String>,
    /// Lowest media port.
    #[arg(long)]
    pub port_min: Option<u16>,
    /// Highest media port.
    #[arg(long)]
    pub port_max: Option<u16>,
    /// Seconds without media before a call is deleted.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Seconds between `delete` and the call's removal.
    #[arg(long)]
    pub delete_delay: Option<u64>,
    /// Like --timeout, for calls whose media is all on hold or muted.
    #[arg(long)]
    pub silent_timeout: Option<u64>,
    /// Hard limit on a call's duration in seconds (default: none).
    #[arg(long)]
    pub final_timeout: Option<u64>,
    /// Forwarding backend.
    #[arg(long, value_enum)]
    pub datapath: Option<DatapathMode>,
    /// XDP DoS shield for the media port range: drop packets that match no
    /// stream, or pass them to the stack.
    #[arg(long, value_enum)]
    pub dos_shield: Option<ShieldMode>,
    /// XDP attach mode (native with self-test and fallback, or forced).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<ModePolicy>,
    /// bpffs directory of this instance.
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Default endpoint learning.
    #[arg(long, value_enum)]
    pub endpoint_learning: Option<LearningMode>,
    /// Streams forwarded in XDP at once (their counters and RTP figures).
    #[arg(long)]
    pub max_streams: Option<u32>,
    /// Per-stream packet-rate cap in XDP (packets per second, one second of
    /// burst); floods beyond it are dropped. 0 or absent: no cap.
    #[arg(long)]
    pub max_stream_pps: Option<u32>,
    /// How long XDP reuses a stream's next hop (egress interface, MACs)
    /// before asking the FIB again, in milliseconds; route and neighbour
    /// changes take effect within it. 0: look up every packet.
    #[arg(long)]
    pub next_hop_cache_ms: Option<u64>,
    /// Most calls at once; new offers beyond it get `load limit` (or
    /// "Parallel session limit reached") so the SIP proxy tries another relay.
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// New offers get `load limit` ("Load limit exceeded") while the host's
    /// 1-minute load average is at least this. 0 or absent: no limit.
    #[arg(long, value_name = "FLOAT")]
    pub max_load: Option<f64>,
    /// New offers get `load limit` ("CPU usage limit exceeded") while the
    /// host's CPU use (percent of all CPUs, softirq included: XDP runs
    /// there) is at least this. 0 or absent: no limit.
    #[arg(long, value_name = "PERCENT")]
    pub max_cpu: Option<f64>,
    /// New offers get `load limit` ("Bandwidth limit exceeded") while media
    /// forwarded (XDP and userspace) is at least this many bytes per
    /// second. 0 or absent: no limit.
    #[arg(long, value_name = "BYTES")]
    pub max_bandwidth: Option<u64>,
    /// Fail instead of turning on IPv4 forwarding on the XDP interfaces.
    #[arg(long)]
    #[serde(default)]
    pub no_enable_forwarding: bool,
    /// Forwarding entry installed at start-up (see README), repeatable.
    #[arg(long = "static-stream", value_name = "SPEC")]
    #[serde(default)]
    pub static_stream: Vec<String>,
    /// Directory of the call state journal (default:
    /// /var/lib/xrelay/INSTANCE, INSTANCE being the last part of --pin-dir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep no call state: calls end with the process.
    #[arg(long)]
    #[serde(default)]
    pub no_state: bool,
    /// When the journal reaches the disk: `interval` (written before each
    /// reply, which survives a crash of relayd; flushed to disk every
    /// second) or `always` (flushed before each reply; survives power loss).
    #[arg(long, value_enum)]
    pub state_sync: Option<StateSync>,
    /// Replicate calls to Redis, `[PASSWORD@]HOST:PORT/DB` (rtpengine's
    /// syntax; the password may instead come from RTPENGINE_REDIS_AUTH_PW):
    /// written asynchronously, never delaying an NG reply (docs/ha.md).
    #[arg(long, value_name = "[PASSWORD@]HOST:PORT/DB")]
    pub redis: Option<String>,
    /// Run as the standby of an active/standby pair: mirror the active's
    /// calls from --redis and serve none (offers and answers are refused).
    #[arg(long)]
    #[serde(default)]
    pub standby: bool,
    /// The address that moves between the two relays of a pair (the
    /// ADDRESS of an --interface): where it is local, relayd is the active;
    /// where it is not, the standby, which takes over when it appears
    /// (docs/ha.md). Needs --redis.
    #[arg(long, value_name = "IP")]
    pub floating_address: Option<IpAddr>,
    /// Key of the DTLS certificate made at start: `prime256v1` (default) or
    /// `RSA` (rtpengine's option).
    #[arg(long, value_name = "prime256v1|RSA")]
    pub dtls_cert_cipher: Option<String>,
    /// RSA key size in bits for `--dtls-cert-cipher=RSA` (default 2048).
    #[arg(long, value_name = "BITS")]
    pub dtls_rsa_key_size: Option<u32>,
    /// Hash of the certificate's self-signature: `SHA-256` (default) or `SHA-1`.
    #[arg(long, value_name = "SHA-256|SHA-1")]
    pub dtls_signature: Option<String>,
    /// OpenSSL cipher list for DTLS (rtpengine's default if absent).
    #[arg(long, value_name = "LIST")]
    pub dtls_ciphers: Option<String>,
    /// Largest DTLS datagram (default 1200, at least 576).
    #[arg(long, value_name = "BYTES")]
    pub dtls_mtu: Option<u32>,
    /// PEM certificate to use instead of one made at start (with --dtls-key-file).
    #[arg(long, value_name = "FILE")]
    pub dtls_cert_file: Option<PathBuf>,
    /// PEM private key of --dtls-cert-file.
    #[arg(long, value_name = "FILE")]
    pub dtls_key_file: Option<PathBuf>,
    /// Check the call state journal (of --state-dir, or the default one of
    /// --pin-dir) without changing it, print what it holds and exit: 0 when
    /// it is consistent, 1 when it has damage or problems.
    #[arg(long)]
    #[serde(skip)]
    pub check_state: bool,
    /// What to do instead of relaying.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Subcommand>,
}

/// relayd's subcommands (without one, it relays).
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum Subcommand {
    /// Check this host and the configuration (options before `doctor`) for
    /// the XDP fast path: one line per check with its fix; exit status 0
    /// all ok, 1 warnings, 2 errors.
    Doctor {
        /// JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Take away what a relayd ended by a signal leaves for the next one:
    /// the calls in the state journal, the XDP program and maps pinned
    /// under --pin-dir, the media range in ip_local_reserved_ports (what
    /// removing the Debian package runs). Refuses while a relayd runs on
    /// the state directory.
    Cleanup,
}

/// `--state-sync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateSync {
    /// Written before the reply, flushed to disk every second.
    #[default]
    Interval,
    /// Flushed to disk before the reply.
    Always,
}

/// Where relayd keeps call state when `--state-dir` is not given: one
/// directory per instance, named after the pin directory's last part.
pub fn default_state_dir(pin_dir: &std::path::Path) -> PathBuf {
    let instance = pin_dir
        .file_name()
        .map_or_else(|| "default".into(), |n| n.to_string_lossy().into_owned());
    PathBuf::from("/var/lib/xrelay").join(instance)
}

/// Resolved settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Interface addresses (the first one's name is the default).
    pub interfaces: Vec<InterfaceSpec>,
    /// `ALIAS=NAME` values.
    pub interface_aliases: Vec<InterfaceAlias>,
    /// NG socket address.
    pub listen_ng: SocketAddr,
    /// NG over TCP, if any.
    pub listen_tcp_ng: Option<SocketAddr>,
    /// Who may send NG commands (empty: anyone).
    pub ng_allow: crate::control::ng_allow::NgAllow,
    /// relayctl socket address.
    pub listen_cli: SocketAddr,
    /// HTTP socket (metrics, NG over HTTP and WebSocket), if any.
    pub listen_http: Option<SocketAddr>,
    /// Media port range.
    pub port_min: u16,
    /// Media port range.
    pub port_max: u16,
    /// Media timeout.
    pub timeout: Duration,
    /// Delete delay.
    pub delete_delay: Duration,
    /// Timeout for calls on hold.
    pub silent_timeout: Duration,
    /// Hard cap on a call's duration.
    pub final_timeout: Option<Duration>,
    /// Backend.
    pub datapath: DatapathMode,
    /// DoS shield.
    pub dos_shield: ShieldMode,
    /// XDP attach policy.
    pub xdp_mode: ModePolicy,
    /// bpffs directory.
    pub pin_dir: PathBuf,
    /// Endpoint learning default.
    pub endpoint_learning: LearningMode,
    /// Kernel table size.
    pub max_streams: u32,
    /// Per-stream packet-rate cap (0: none).
    pub max_stream_pps: u32,
    /// XDP next-hop cache lifetime (zero: none).
    pub next_hop_cache: Duration,
    /// Session limit.
    pub max_sessions: Option<usize>,
    /// Load, CPU and bandwidth limits.
    pub load_limits: crate::load::LoadLimits,
    /// Turn on IPv4 forwarding where XDP needs it.
    pub enable_forwarding: bool,
    /// `--static-stream` values.
    pub static_streams: Vec<String>,
    /// Call state journal directory; None: no state kept.
    pub state_dir: Option<PathBuf>,
    /// When the journal is flushed to disk.
    pub state_sync: StateSync,
    /// Where calls are replicated (`--redis`).
    pub redis: Option<relay_state::redis::RedisTarget>,
    /// Standby of an active/standby pair.
    pub standby: bool,
    /// The address that moves between the relays of a pair.
    pub floating_address: Option<IpAddr>,
    /// How the DTLS certificate is made or loaded.
    pub dtls: crate::calls::dtls::DtlsSettings,
}

/// A bad setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {message}")]
    Toml {
        /// File.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// An interface value.
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    /// No interface at all.
    #[error(
        "no --interface given (e.g. --interface=eth0 or --interface=pub/10.0.0.5!203.0.113.7)"
    )]
    NoInterface,
    /// A bad `--listen-ng` or `--listen-cli`.
    #[error("bad --{option} {value:?}: expected [ADDR:]PORT")]
    Listen {
        /// Which option.
        option: &'static str,
        /// Its value.
        value: String,
    },
    /// A bad `--ng-allow` prefix.
    #[error("bad --ng-allow value: {0}")]
    NgAllow(#[from] crate::control::ng_allow::PrefixError),
    /// A bad `--redis` value.
    #[error("bad --redis value: {0}")]
    Redis(#[from] relay_state::redis::TargetError),
    /// `--standby` has nothing to mirror.
    #[error("--standby needs --redis: the standby mirrors the active's calls from Redis")]
    StandbyWithoutRedis,
    /// A bad `--dtls-*` option.
    #[error("{0}")]
    Dtls(String),
    /// `--floating-address` without Redis, or not an interface's address.
    #[error("--floating-address {0}: {1}")]
    Floating(IpAddr, &'static str),
    /// A negative or not-a-number `--max-load` or `--max-cpu`.
    #[error("bad --{option} {value}: expected a number >= 0 (0: no limit)")]
    Limit {
        /// Which option.
        option: &'static str,
        /// Its value.
        value: f64,
    },
    /// An empty port range (or one starting at 0).
    #[error("bad port range --port-min {min} --port-max {max}: need 1 <= min <= max")]
    PortRange {
        /// Min.
        min: u16,
        /// Max.
        max: u16,
    },
}

/// The media port range without `--port-min`/`--port-max` (rtpengine's).
pub const DEFAULT_PORT_MIN: u16 = 30000;
/// See [`DEFAULT_PORT_MIN`].
pub const DEFAULT_PORT_MAX: u16 = 39999;

/// rtpengine's usual NG port in Kamailio examples.
pub const DEFAULT_LISTEN_NG: &str = "127.0.0.1:2223";

/// `[ADDR:]PORT`; a bare port listens on loopback, as rtpengine does.
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().ok()
}

impl Options {
    /// Fills what the command line left out from `file`'s contents.
    pub fn merge_file(mut self, path: &std::path::Path, text: &str) -> Result<Self, ConfigError> {
        let file: Options = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        macro_rules! fill {
            ($($field:ident),*) => { $( if self.$field.is_none() { self.$field = file.$field; } )* };
        }
        fill!(
            listen_ng,
            listen_tcp_ng,
            listen_cli,
            listen_http,
            port_min,
            port_max,
            timeout,
            delete_delay,
            silent_timeout,
            final_timeout,
            datapath,
            dos_shield,
            xdp_mode,
            pin_dir,
            endpoint_learning,
            max_streams,
            max_stream_pps,
            next_hop_cache_ms,
            max_sessions,
            max_load,
            max_cpu,
            max_bandwidth,
            state_dir,
            state_sync,
            redis,
            floating_address
        );
        self.no_state |= file.no_state;
        self.standby |= file.standby;
        if self.interface.is_empty() {
            self.interface = file.interface;
        }
        if self.static_stream.is_empty() {
            self.static_stream = file.static_stream;
        }
        self.no_enable_forwarding |= file.no_enable_forwarding;
        Ok(self)
    }

    /// The state directory these options name, without needing the rest
    /// of a valid configuration (for `--check-state`).
    pub fn state_dir_named(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            default_state_dir(self.pin_dir.as_deref().unwrap_or(DEFAULT_PIN_DIR.as_ref()))
        })
    }

    /// Reads `--config` if given and resolves defaults.
    pub fn load(self) -> Result<Config, ConfigError> {
        self.merged()?.resolve()
    }

    /// These options with what `--config` (if given) adds.
    pub fn merged(self) -> Result<Options, ConfigError> {
        match self.config.clone() {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                self.merge_file(&path, &text)
            }
            None => Ok(self),
        }
    }

    /// Applies defaults and validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        if self.interface.is_empty() {
            return Err(ConfigError::NoInterface);
        }
        let InterfaceSet {
            specs: interfaces,
            aliases: interface_aliases,
        } = InterfaceSet::parse(&self.interface)?;
        if interfaces.is_empty() {
            return Err(ConfigError::NoInterface);
        }
        let listen = |option: &'static str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            parse_listen(&value).ok_or(ConfigError::Listen { option, value })
        };
        let listen_ng = listen("listen-ng", self.listen_ng, DEFAULT_LISTEN_NG)?;
        // 0 is off, as in rtpengine.
        let limit = |option: &'static str, value: Option<f64>| match value {
            Some(v) if !(v >= 0.0 && v.is_finite()) => Err(ConfigError::Limit { option, value: v }),
            v => Ok(v.filter(|&v| v > 0.0)),
        };
        let load_limits = crate::load::LoadLimits {
            max_load: limit("max-load", self.max_load)?,
            max_cpu: limit("max-cpu", self.max_cpu)?,
            max_bandwidth: self.max_bandwidth.filter(|&b| b > 0),
        };
        let ng_allow = crate::control::ng_allow::NgAllow::new(
            self.ng_allow
                .iter()
                .map(|p| crate::control::ng_allow::Prefix::parse(p))
                .collect::<Result<_, _>>()?,
        );
        let listen_tcp_ng = match self.listen_tcp_ng {
            Some(v) => Some(parse_listen(&v).ok_or(ConfigError::Listen {
                option: "listen-tcp-ng",
                value: v,
            })?),
            None => None,
        };
        let listen_http = match self.listen_http {
            Some(v) => Some(parse_listen(&v).ok_or(ConfigError::Listen {
                option: "listen-http",
                value: v,
            })?),
            None => None,
        };
        let listen_cli = listen(
            "listen-cli",
            self.listen_cli,
            crate::control::cli::DEFAULT_LISTEN_CLI,
        )?;
        let (port_min, port_max) = (
            self.port_min.unwrap_or(DEFAULT_PORT_MIN),
            self.port_max.unwrap_or(DEFAULT_PORT_MAX),
        );
        if port_min > port_max {
            return Err(ConfigError::PortRange {
                min: port_min,
                max: port_max,
            });
        }
        let max_streams = self.max_streams.unwrap_or(65536);
        let pin_dir: PathBuf = self.pin_dir.unwrap_or_else(|| DEFAULT_PIN_DIR.into());
        let state_dir = (!self.no_state).then(|| {
            self.state_dir
                .unwrap_or_else(|| default_state_dir(&pin_dir))
        });
        let dos_shield = self.dos_shield.unwrap_or_default();
        let redis = match &self.redis {
            Some(text) => Some(relay_state::redis::RedisTarget::parse(
                text,
                std::env::var(relay_state::redis::PASSWORD_ENV).ok(),
            )?),
            None => None,
        };
        if self.standby && redis.is_none() {
            return Err(ConfigError::StandbyWithoutRedis);
        }
        if let Some(ip) = self.floating_address {
            if redis.is_none() {
                return Err(ConfigError::Floating(
                    ip,
                    "needs --redis (the standby takes the calls over from Redis)",
                ));
            }
            // Calls are restored onto the interface that has the address.
            if !interfaces.iter().any(|i| i.address == ip) {
                return Err(ConfigError::Floating(
                    ip,
                    "is not the ADDRESS of any --interface",
                ));
            }
        }
        let dtls =
            crate::calls::dtls::DtlsSettings::from_options(crate::calls::dtls::DtlsOptions {
                cert_cipher: self.dtls_cert_cipher.as_deref(),
                rsa_key_size: self.dtls_rsa_key_size,
                signature: self.dtls_signature.as_deref(),
                ciphers: self.dtls_ciphers.clone(),
                mtu: self.dtls_mtu,
                cert_file: self.dtls_cert_file.as_deref(),
                key_file: self.dtls_key_file.as_deref(),
            })
            .map_err(ConfigError::Dtls)?;
        Ok(Config {
            interfaces,
            interface_aliases,
            listen_ng,
            listen_tcp_ng,
            ng_allow,
            listen_cli,
            listen_http,
            port_min,
            port_max,
            // rtpengine treats a timeout of 0 as the default.
            timeout: Duration::from_secs(self.timeout.filter(|&t| t > 0).unwrap_or(60)),
            delete_delay: Duration::from_secs(self.delete_delay.unwrap_or(30)),
            silent_timeout: Duration::from_secs(
                self.silent_timeout.filter(|&t| t > 0).unwrap_or(3600),
            ),
            final_timeout: self
                .final_timeout
                .filter(|&t| t > 0)
                .map(Duration::from_secs),
            datapath: self.datapath.unwrap_or_default(),
            dos_shield,
            xdp_mode: self.xdp_mode.unwrap_or_default(),
            pin_dir,
            endpoint_learning: self.endpoint_learning.unwrap_or_default(),
            max_streams,
            max_stream_pps: self.max_stream_pps.unwrap_or(0),
            // A minute at most: beyond that a changed route would blackhole
            // media for longer than any call would tolerate.
            next_hop_cache: Duration::from_millis(
                self.next_hop_cache_ms.unwrap_or(500).min(60_000),
            ),
            max_sessions: self.max_sessions,
            load_limits,
            enable_forwarding: !self.no_enable_forwarding,
            static_streams: self.static_stream,
            state_dir,
            state_sync: self.state_sync.unwrap_or_default(),
            redis,
            standby: self.standby,
            floating_address: self.floating_address,
            dtls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        Options::try_parse_from(std::iter::once("relayd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_follow_rtpengine() {
        let c = opts(&["--interface", "127.0.0.1"]).resolve().unwrap();
        assert_eq!((c.port_min, c.port_max), (30000, 39999));
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.delete_delay, Duration::from_secs(30));
        assert_eq!(c.listen_ng, "127.0.0.1:2223".parse().unwrap());
        assert_eq!(c.datapath, DatapathMode::Auto);
        assert_eq!(c.load_limits, crate::load::LoadLimits::default());
    }

    #[test]
    fn load_limits_as_rtpengine_takes_them() {
        let c = opts(&[
            "-i",
            "127.0.0.1",
            "--max-load",
            "2.5",
            "--max-cpu",
            "0",
            "--max-bandwidth",
            "1000000",
        ])
        .resolve()
        .unwrap();
        let l = c.load_limits;
        assert_eq!(l.max_load, Some(2.5));
        assert_eq!(l.max_cpu, None, "0 is no limit");
        assert_eq!(l.max_bandwidth, Some(1_000_000));
        // A TOML integer is a number for the float limits too.
        let c = opts(&[])
            .merge_file(
                "x.toml".as_ref(),
                "interface = [\"127.0.0.1\"]\nmax-cpu = 90\nmax-load = 4.0\nmax-bandwidth = 0",
            )
            .unwrap()
            .resolve()
            .unwrap();
        let l = c.load_limits;
        assert_eq!(
            (l.max_load, l.max_cpu, l.max_bandwidth),
            (Some(4.0), Some(90.0), None)
        );
    }

    #[test]
    fn several_unnamed_addresses_and_aliases() {
        let c = opts(&["-i", "127.0.0.1", "-i", "127.0.0.2", "-i", "ext=default"])
            .resolve()
            .unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.interface_aliases[0].name, "default");
    }

    #[test]
    fn file_fills_gaps_and_command_line_wins() {
        let toml = r#"
            interface = ["pub/127.0.0.1!203.0.113.7"]
            listen-ng = "127.0.0.1:9999"
            port-min = 40000
            port-max = 40100
            timeout = 10
            datapath = "userspace"
        "#;
        let c = opts(&["--port-max", "40050"])
            .merge_file("x.toml".as_ref(), toml)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.interfaces[0].name, "pub");
        assert_eq!(c.listen_ng.port(), 9999);
        assert_eq!((c.port_min, c.port_max), (40000, 40050));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.datapath, DatapathMode::Userspace);
        let c = opts(&["--standby"])
            .merge_file(
                "x.toml".as_ref(),
                "interface = [\"127.0.0.1\"]\nredis = \"pw@10.0.0.9:6379/3\"",
            )
            .unwrap()
            .resolve()
            .unwrap();
        let redis = c.redis.unwrap();
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.db),
            ("10.0.0.9", 6379, 3)
        );
        assert_eq!(redis.password.as_deref(), Some("pw"));
        assert!(c.standby);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = opts(&[])
            .merge_file("f.toml".as_ref(), "bogus-key = 1")
            .unwrap_err();
        assert!(e.to_string().contains("bogus-key"), "{e}");
        assert!(matches!(opts(&[]).resolve(), Err(ConfigError::NoInterface)));
        let e = opts(&["-i", "ext=pub"]).resolve().unwrap_err();
        assert!(e.to_string().contains("not the NAME of any"), "{e}");
        let e = opts(&["-i", "pub/127.0.0.1", "-i", "pub=pub"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("already the name"), "{e}");
        let e = opts(&["-i", "127.0.0.1", "--listen-ng", "nope"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--listen-ng"), "{e}");
        let e = opts(&["-i", "127.0.0.1", "--port-min", "5", "--port-max", "4"])
            .resolve()
            .unwrap_err();
        assert!(matches!(e, ConfigError::PortRange { .. }));
        let e = opts(&["-i", "127.0.0.1", "--redis", "127.0.0.1:6379"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--redis"), "{e}");
        let e = opts(&["-i", "127.0.0.1", "--standby"])
            .resolve()
            .unwrap_err();
        assert!(matches!(e, ConfigError::StandbyWithoutRedis), "{e}");
        let e = opts(&["-i", "127.0.0.1", "--floating-address", "127.0.0.1"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("needs --redis"), "{e}");
        let e = opts(&[
            "-i",
            "127.0.0.1",
            "--redis",
            "127.0.0.1:6379/0",
            "--floating-address",
            "10.0.0.9",
        ])
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("not the ADDRESS"), "{e}");
        let e = opts(&["-i", "127.0.0.1", "--max-load=-1"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("--max-load -1"), "{e}");
        let e = opts(&["-i", "127.0.0.1", "--max-cpu", "NaN"])
            .resolve()
            .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Limit {
                    option: "max-cpu",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            parse_listen("2223"),
            Some("127.0.0.1:2223".parse().unwrap())
        );
    }
}
