//! `cargo xtask deb`: the Debian package of relayd and relayctl
//! (cargo-deb; its metadata is relay-userspace/Cargo.toml's
//! `[package.metadata.deb]`, the unit, configuration and maintainer scripts
//! are in packaging/), and the test that installs it.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, deps, is_root, run, Probe};

/// What building the package and its test need besides the build's own
/// packages: dpkg-shlibdeps for the package's library dependencies, and for
/// the test systemd-analyze (the unit is verified, not run: CI has no
/// systemd), setpriv and man (systemd-analyze checks the unit's man: links).
const DEB_PACKAGES: &[(&str, Probe)] = &[
    ("dpkg-dev", Probe::Command("dpkg-shlibdeps")),
    ("adduser", Probe::Command("adduser")),
    ("systemd", Probe::Command("systemd-analyze")),
    ("man-db", Probe::Command("man")),
];

/// Builds the package into target/debian/ and returns its path.
pub fn build() -> Result<PathBuf> {
    deps(crate::PACKAGES, false)?;
    deps(DEB_PACKAGES, false)?;
    ensure_cargo_deb()?;
    // Man pages and completions from the clap definitions, where the
    // package's assets expect them (git ignores the directory).
    let docs = crate::workspace_root()?.join("packaging/generated");
    let _ = std::fs::remove_dir_all(&docs);
    run(cargo()
        .args([
            "run",
            "-q",
            "-p",
            "relay-userspace",
            "--example",
            "package-docs",
            "--",
        ])
        .arg(&docs))?;
    let mut cmd = cargo();
    // --fast: lighter compression. The stripped binaries still make a
    // 2 MB package; xz on the 100 MB of the -dbgsym one took most of a
    // minute.
    cmd.args(["deb", "-p", "relay-userspace", "--fast"]);
    eprintln!("+ {cmd:?}");
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo deb")?;
    if !out.status.success() {
        bail!("cargo deb failed: {}", out.status);
    }
    // cargo-deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| PathBuf::from(l.trim()))
        .with_context(|| format!("no .deb path in cargo deb's output: {stdout}"))?;
    println!("{}", path.display());
    Ok(path)
}

/// Builds the package, then installs it on this machine, runs a call
/// through relayd as the unit would run it, and purges it
/// (relay-userspace/tests/package.rs; root only).
pub fn test() -> Result<()> {
    if !is_root() {
        eprintln!("SKIPPED package test: needs root (dpkg -i, XDP, network namespaces)");
        return Ok(());
    }
    let deb = build()?;
    run(cargo()
        .args(["test", "-p", "relay-userspace", "--test", "package"])
        .args(["--", "--ignored", "--nocapture"])
        .env("XRELAY_DEB", &deb))
}

/// Installs cargo-deb when `cargo deb` is not there (about two minutes).
fn ensure_cargo_deb() -> Result<()> {
    let present = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        run(cargo().args(["install", "cargo-deb", "--locked"]))?;
    }
    Ok(())
}
