//! relayctl's command line, apart from main.rs so that the Debian
//! package's man page and shell completions are generated from these same
//! definitions (relay-userspace/examples/package-docs.rs includes this file).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use relay_userspace::datapath::xdp::DEFAULT_PIN_DIR;

/// Inspect a running xrelay relayd.
#[derive(Debug, Parser)]
// The doc comment above is the about text (a bare `about` would take the
// crate's description instead).
#[command(name = "relayctl", version)]
pub(crate) struct Args {
    /// relayd's --pin-dir.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pub(crate) pin_dir: PathBuf,
    /// relayd's --state-dir (default: the one relayd derives from --pin-dir).
    #[arg(long, global = true)]
    pub(crate) state_dir: Option<PathBuf>,
    /// relayd's --listen-cli address.
    #[arg(long, global = true, default_value = "127.0.0.1:9900")]
    pub(crate) cli: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Calls: id, age, parties, streams, kernelized, packets and bytes.
    #[command(alias = "list")]
    Calls,
    /// Live full-screen view: rates, drops, a pps sparkline and the busiest
    /// calls, refreshed every second; `q` quits.
    Top,
    /// Relay-wide totals: sessions, ports, packets by path, drops, NG commands.
    Totals,
    /// One call: every stream with its endpoints and counters.
    Show {
        /// The Call-ID.
        call_id: String,
    },
    /// Program-wide packet counters by outcome.
    Counters,
    /// Interfaces, their XDP mode and why.
    Interfaces,
    /// Installed kernel streams and their counters.
    Streams,
    /// Stop relayd for good: end every call, detach XDP, remove the pins
    /// and the stored call state. (A signal, as `systemctl restart` sends,
    /// keeps calls for the next relayd.)
    Stop,
    /// Make this standby the active now: restore the mirrored calls (bind
    /// their ports, install their streams), replicate and serve offers
    /// (docs/ha.md). The floating address arriving does the same.
    Takeover,
}
