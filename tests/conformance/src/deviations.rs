//! Documented deviations: cases where relayd differs from rtpengine on
//! purpose, each with the reason (`deviations.toml` beside `cases/`).
//!
//! ```toml
//! [[deviation]]
//! reason = "why relayd's reply is the better one for users"
//! cases = ["errors-bad-port", "errors-garbage-sdp"]
//! ```
//!
//! A listed case that comes out identical is reported, so the list does
//! not outlive the difference it explains.

use std::{collections::BTreeMap, path::Path};

use anyhow::{ensure, Context as _, Result};
use serde::Deserialize;

use crate::corpus::Case;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    deviation: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    reason: String,
    cases: Vec<String>,
}

/// Reasons by case name.
#[derive(Debug, Default)]
pub struct Deviations {
    reasons: BTreeMap<String, String>,
}

impl Deviations {
    /// Reads `deviations.toml` under `root` (none: no deviations). Every
    /// case it names must exist in `all` (the whole corpus).
    pub fn load(root: &Path, all: &[Case]) -> Result<Self> {
        let path = root.join("deviations.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: File =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut reasons = BTreeMap::new();
        for entry in file.deviation {
            for case in entry.cases {
                ensure!(
                    all.iter().any(|c| c.name == case),
                    "{} names {case:?}, which is not a case",
                    path.display()
                );
                let previous = reasons.insert(case.clone(), entry.reason.clone());
                ensure!(previous.is_none(), "{case:?} is listed twice");
            }
        }
        Ok(Self { reasons })
    }

    /// The documented reason `case` differs, if it is listed.
    pub fn reason(&self, case: &str) -> Option<&str> {
        self.reasons.get(case).map(String::as_str)
    }
}
