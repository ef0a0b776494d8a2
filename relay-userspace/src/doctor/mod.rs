//! `relayd doctor`: checks whether this host and relayd's configuration
//! can run the XDP fast path well, each with a one-line verdict and the fix.
//! The same checks (without the trial attach) run at start-up and are
//! logged as warnings.
//!
//! System checks are in [`system`], per-interface ones in [`iface`]. Every
//! check reads what the kernel exposes (`/proc`, `/sys`, ethtool) and
//! changes nothing, except the trial attach, which attaches a do-nothing
//! program natively to an interface without one and detaches it again.

pub mod iface;
pub mod system;

use std::fmt;

use serde::Serialize;

use crate::config::Config;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works, but not as well as it could, or may fail under load.
    Warn,
    /// Will not work (or the fast path will not).
    Error,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write_str: the table aligns on it.
        f.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Error => "ERROR",
        })
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`kernel`, `mtu eth0`, ...).
    pub name: String,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about it (for warnings and errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning, with its fix.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// An error, with its fix.
    pub fn error(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            verdict: Verdict::Error,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// In the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// The worst verdict (Ok when there are no checks).
    pub fn worst(&self) -> Verdict {
        self.checks
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// The exit status `relayd doctor` ends with: 0 ok, 1 warnings, 2 errors.
    pub fn exit_code(&self) -> i32 {
        match self.worst() {
            Verdict::Ok => 0,
            Verdict::Warn => 1,
            Verdict::Error => 2,
        }
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        for c in &self.checks {
            writeln!(f, "{:<5}  {:<width$}  {}", c.verdict, c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "{:<5}  {:<width$}  fix: {fix}", "", "")?;
            }
        }
        Ok(())
    }
}

/// Runs every check for `config`; `trial_attach` also tries a native
/// attach on each interface without a program.
pub fn run(config: &Config, trial_attach: bool) -> Report {
    let mut checks = system::checks(config);
    for dev in iface::netdevs(config) {
        checks.extend(iface::checks(&dev, config, trial_attach));
    }
    Report { checks }
}

/// Logs the checks that did not pass (start-up: no trial attach; a
/// program nobody owns is the one this relayd is about to take over).
pub fn log_warnings(config: &Config) {
    for c in run(config, false).checks {
        if c.name == system::UNOWNED_PROGRAM {
            continue;
        }
        let fix = c.fix.as_deref().unwrap_or("");
        match c.verdict {
            Verdict::Ok => {}
            Verdict::Warn | Verdict::Error => {
                tracing::warn!(check = %c.name, fix, "doctor: {}", c.detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_worst_verdict() {
        let mut r = Report::default();
        assert_eq!(r.exit_code(), 0);
        r.checks.push(Check::ok("a", "fine"));
        assert_eq!(r.exit_code(), 0);
        r.checks.push(Check::warn("b", "meh", "do x"));
        assert_eq!(r.exit_code(), 1);
        r.checks.push(Check::error("c", "broken", "do y"));
        assert_eq!(r.exit_code(), 2);
        assert_eq!(r.get("b").map(|c| c.verdict), Some(Verdict::Warn));
        let text = r.to_string();
        assert!(text.contains("WARN   b  meh"), "{text}");
        assert!(text.contains("fix: do y"), "{text}");
    }
}
