//! relayd binaries of earlier builds, for the upgrade test
//! (`restart.rs`, `a_relayd_of_an_earlier_build_takes_over_without_losing_a_packet`):
//! an operator upgrades from what they run, so this build must take over
//! the program and maps an earlier relayd left, in its layout.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, run, workspace_root};

/// The layouts an upgrade starts from: (commit, what it is).
const EARLIER: &[(&str, &str)] = &[
    (
        "9bd5417",
        "ABI v7: per-CPU counters, RTP figures apart, rows of all 65536 ports",
    ),
    (
        "b3e0121",
        "first ABI v8 build: shared records, rows of all 65536 ports",
    ),
];

/// Builds (once; kept under target/earlier/) the relayd of every earlier
/// layout and returns their paths. Fails when a commit is not in the
/// repository (a shallow clone).
pub fn build() -> Result<Vec<PathBuf>> {
    let root = workspace_root()?;
    let dir = root.join("target/earlier");
    let mut built = Vec::new();
    for (commit, what) in EARLIER {
        let bin = dir.join(format!("relayd-{commit}"));
        // A target directory per commit: cargo does not tell two trees of
        // the same crates apart by their path, and `git archive` dates the
        // files at their commit, older than the last build's outputs, so a
        // shared one would link the first commit's XDP object into the
        // second's relayd.
        let target = dir.join(format!("target-{commit}"));
        if !bin.exists() {
            eprintln!("building relayd of {commit} ({what})");
            let src = dir.join(format!("src-{commit}"));
            unpack(&root, commit, &src)?;
            run(cargo()
                .current_dir(&src)
                .env("CARGO_TARGET_DIR", &target)
                .args(["build", "-p", "relay-userspace", "--bin", "relayd"]))?;
            std::fs::copy(target.join("debug/relayd"), &bin)
                .with_context(|| format!("copying relayd of {commit}"))?;
            std::fs::remove_dir_all(&src).ok();
        }
        built.push(bin);
    }
    Ok(built)
}

/// The tree of `commit` written to `to` (replacing what is there).
fn unpack(root: &Path, commit: &str, to: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to)?;
    let mut archive = Command::new("git")
        .current_dir(root)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting git archive")?;
    let tar = Command::new("tar")
        .current_dir(to)
        .arg("-x")
        .stdin(archive.stdout.take().context("git archive's output")?)
        .status()
        .context("starting tar")?;
    let git = archive.wait()?;
    if !git.success() || !tar.success() {
        bail!(
            "commit {commit} is not in this repository (a shallow clone?): \
             `git fetch --unshallow` brings it"
        );
    }
    Ok(())
}
