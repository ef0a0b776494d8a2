//! Writes relayd's and relayctl's man pages and shell completions, generated
//! from their clap definitions, for the Debian package:
//!
//! ```text
//! cargo run -p relay-userspace --example package-docs -- OUT_DIR
//! ```
//!
//! gives `OUT_DIR/man/{relayd,relayctl}{,-SUBCOMMAND}.8` and `OUT_DIR/completions/`
//! (bash, zsh, fish). `cargo xtask deb` runs it. An example, not a binary,
//! so that clap_mangen and clap_complete stay out of relayd's dependencies.

use std::{fs, io, path::Path};

use clap::CommandFactory as _;
use clap_complete::Shell;

// relayctl's definitions live in its binary; this is the same file.
#[allow(dead_code)]
#[path = "../src/bin/relayctl/cli.rs"]
mod relayctl_cli;

fn main() -> io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .ok_or_else(|| io::Error::other("usage: package-docs OUT_DIR"))?;
    let out = Path::new(&out);
    let commands = [
        relay_userspace::config::Options::command(),
        relayctl_cli::Args::command(),
    ];
    for command in commands {
        write_man(command.clone(), &out.join("man"))?;
        write_completions(command, &out.join("completions"))?;
    }
    Ok(())
}

/// Section 8: both are system administration commands. A page per
/// subcommand too (`relayctl-calls.8`), as the parent's page refers to them.
fn write_man(mut command: clap::Command, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    // Propagates global options (relayctl's --pin-dir, ...) to subcommands.
    command.build();
    let name = command.get_name().to_owned();
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        // clap names are &'static str without its "string" feature; this
        // program runs once and exits.
        let page_name: &'static str = format!("{name}-{}", sub.get_name()).leak();
        render(sub.clone().name(page_name), &dir.join(page_name))?;
    }
    render(command, &dir.join(name))
}

fn render(command: clap::Command, path_stem: &Path) -> io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .section("8")
        .manual("xrelay")
        .render(&mut page)?;
    fs::write(path_stem.with_extension("8"), page)
}

/// `relayd.bash`, `_relayd` (zsh), `relayd.fish`: the packaging renames
/// the bash one to the bare command name bash-completion looks up.
fn write_completions(mut command: clap::Command, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let name = command.get_name().to_owned();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, &name, dir)?;
    }
    Ok(())
}
