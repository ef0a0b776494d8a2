//! Python packages from PyPI that some tests drive as independent peers
//! (aiortc, pylibsrtp): installed with pip when missing, so a fresh machine
//! runs those tests instead of skipping them.

use std::process::{Command, Stdio};

/// Ok once `python3 -c "import <module>"` works, installing `package` with
/// pip first when it does not; Err says why it cannot (for the skip line).
pub fn ensure_module(module: &str, package: &str) -> Result<(), String> {
    let importable = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return Ok(());
    }
    // Debian's python3 is "externally managed": root installs beside it.
    let pip = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--break-system-packages",
            package,
        ])
        .status();
    match pip {
        Ok(_) if importable() => Ok(()),
        Ok(status) => Err(format!("pip install {package} failed ({status})")),
        Err(e) => Err(format!("python3 not runnable: {e}")),
    }
}
