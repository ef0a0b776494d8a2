//! The inventory of rtpengine's documented NG options (`ng_options.toml`
//! beside `cases/`), and which of them the corpus exercises.
//!
//! Every entry is in or out of scope; an in-scope entry no case uses is a
//! gap the unit test below names. Coverage is read from the cases as the
//! runner sends them: the keys of each step (with the call-id, tags and SDP
//! the runner adds), the entries of `flags`, and the strings and nested
//! keys under each key, compared with case folded and `-`, `_` and space
//! alike (as rtpengine and relayd compare them).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{ensure, Context as _, Result};
use relay_ng::Value;
use serde::{Deserialize, Serialize};

use crate::corpus::Case;

/// The inventory file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Documentation file the names come from.
    pub docs: String,
    /// rtpengine commit of that file.
    pub commit: String,
    /// Keys of the request dictionary.
    pub key: Vec<Entry>,
    /// Entries of the `flags` list.
    pub flag: Vec<Entry>,
    /// Documented values of single keys.
    pub values: Vec<Values>,
}

/// One documented option.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The name as the documentation spells it.
    pub name: String,
    /// Other spellings the documentation gives for the same option.
    #[serde(default)]
    pub also: Vec<String>,
    /// A documented `PREFIX-...` form: any name starting with it counts.
    #[serde(default)]
    pub prefix: bool,
    /// `in` or `out`.
    pub scope: Scope,
    /// Why it is out of scope.
    pub why: Option<String>,
}

/// Whether the corpus must exercise an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Must have a case.
    In,
    /// Outside the conformance scope (`why` says why).
    Out,
}

/// The documented values of one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// The key, as the documentation spells it.
    pub key: String,
    /// Its values.
    pub entries: Vec<Entry>,
}

/// The options the corpus uses, normalised.
#[derive(Debug, Default)]
pub struct Usage {
    keys: BTreeSet<String>,
    flags: BTreeSet<String>,
    /// Strings and nested keys under each key.
    values: BTreeMap<String, BTreeSet<String>>,
}

/// How much of the inventory's scope the corpus covers.
#[derive(Debug, Serialize)]
pub struct Coverage {
    /// The documentation the inventory follows: file and rtpengine commit.
    pub source: String,
    /// In-scope entries.
    pub in_scope: usize,
    /// In-scope entries some case uses.
    pub covered: usize,
    /// Entries out of scope.
    pub out_of_scope: usize,
    /// In-scope entries no case uses (`key X`, `flag X`, `X=V`).
    pub uncovered: Vec<String>,
}

/// Case folded, `_` and space as `-`.
fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl Inventory {
    /// Reads `ng_options.toml` under `root` and checks its form.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join("ng_options.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let inv: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for (label, e) in inv.entries() {
            match e.scope {
                Scope::In => ensure!(e.why.is_none(), "{label}: `why` is for scope out"),
                Scope::Out => ensure!(
                    e.why.as_deref().is_some_and(|w| !w.is_empty()),
                    "{label}: scope out needs a `why`"
                ),
            }
        }
        let mut seen = BTreeSet::new();
        for (label, _) in inv.entries() {
            ensure!(seen.insert(normalize(&label)), "{label} is listed twice");
        }
        Ok(inv)
    }

    /// Every entry with a label naming it: `key X`, `flag X`, `K=V`.
    pub fn entries(&self) -> impl Iterator<Item = (String, &Entry)> {
        let keys = self.key.iter().map(|e| (format!("key {}", e.name), e));
        let flags = self.flag.iter().map(|e| (format!("flag {}", e.name), e));
        let values = self.values.iter().flat_map(|v| {
            v.entries
                .iter()
                .map(move |e| (format!("{}={}", v.key, e.name), e))
        });
        keys.chain(flags).chain(values)
    }

    /// Which in-scope entries `usage` covers.
    pub fn coverage(&self, usage: &Usage) -> Coverage {
        let mut cov = Coverage {
            source: format!("{} at {}", self.docs, self.commit),
            in_scope: 0,
            covered: 0,
            out_of_scope: 0,
            uncovered: Vec::new(),
        };
        let mut tally = |label: String, e: &Entry, used: bool| match e.scope {
            Scope::Out => cov.out_of_scope += 1,
            Scope::In => {
                cov.in_scope += 1;
                if used {
                    cov.covered += 1;
                } else {
                    cov.uncovered.push(label);
                }
            }
        };
        for e in &self.key {
            let used = spellings(e).any(|s| usage.keys.contains(&s));
            tally(format!("key {}", e.name), e, used);
        }
        for e in &self.flag {
            let used = spellings(e).any(|s| matches(&usage.flags, &s, e.prefix));
            tally(format!("flag {}", e.name), e, used);
        }
        for v in &self.values {
            let key = normalize(&v.key);
            let under = usage.values.get(&key);
            for e in &v.entries {
                let used = spellings(e).any(|s| {
                    under.is_some_and(|u| matches(u, &s, e.prefix))
                        || matches(&usage.flags, &format!("{key}-{s}"), e.prefix)
                });
                tally(format!("{}={}", v.key, e.name), e, used);
            }
        }
        cov
    }
}

/// An entry's name and its other spellings, normalised.
fn spellings(e: &Entry) -> impl Iterator<Item = String> + '_ {
    std::iter::once(&e.name)
        .chain(&e.also)
        .map(|s| normalize(s))
}

fn matches(set: &BTreeSet<String>, name: &str, prefix: bool) -> bool {
    if prefix {
        set.iter()
            .any(|s| s.starts_with(name) && s.len() > name.len())
    } else {
        set.contains(name)
    }
}

/// The options `cases` use, as the runner sends them.
pub fn usage(cases: &[Case]) -> Usage {
    let mut u = Usage::default();
    for step in cases.iter().flat_map(|c| &c.steps) {
        for (key, _) in step.defaults() {
            u.keys.insert(key.to_owned());
        }
        if step.wants_call_id() {
            u.keys.insert("call-id".to_owned());
        }
        if step.sdp.is_some() {
            u.keys.insert("sdp".to_owned());
        }
        for (key, value) in &step.args {
            let key = normalize(&String::from_utf8_lossy(key));
            if key == "flags" {
                let mut items = BTreeSet::new();
                strings(value, &mut items);
                // A single string is a comma-separated list, as both relays
                // read it.
                u.flags.extend(
                    items
                        .iter()
                        .flat_map(|s| s.split(','))
                        .map(|s| normalize(s.trim())),
                );
            }
            let mut found = BTreeSet::new();
            strings(value, &mut found);
            u.values
                .entry(key.clone())
                .or_default()
                .extend(found.iter().map(|s| normalize(s)));
            u.keys.insert(key);
        }
    }
    u
}

/// Every string of `v` (list items, nested dictionaries' keys and values).
fn strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Bytes(b) => {
            out.insert(String::from_utf8_lossy(b).into_owned());
        }
        Value::Int(i) => {
            out.insert(i.to_string());
        }
        Value::List(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Dict(d) => {
            for (k, v) in d {
                out.insert(String::from_utf8_lossy(k).into_owned());
                strings(v, out);
            }
        }
    }
}

/// The corpus's coverage of the inventory under `root`.
pub fn corpus_coverage(root: &Path, cases: &[Case]) -> Result<Coverage> {
    Ok(Inventory::load(root)?.coverage(&usage(cases)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn every_in_scope_option_has_a_case() {
        let cases = crate::corpus::load(&root(), None).expect("corpus loads");
        let cov = corpus_coverage(&root(), &cases).expect("inventory loads");
        assert!(
            cov.uncovered.is_empty(),
            "{} of {} in-scope NG options have no case: {}",
            cov.uncovered.len(),
            cov.in_scope,
            cov.uncovered.join(", ")
        );
    }

    #[test]
    fn spellings_and_flag_forms_count() {
        let inv: Inventory = toml::from_str(
            r#"
            docs = "d"
            commit = "c"
            key = [{ name = "media address", scope = "in" }, { name = "T.38", scope = "out", why = "fax" }]
            flag = [{ name = "trust address", scope = "in" }, { name = "SDES-", prefix = true, scope = "in" }]
            [[values]]
            key = "SDES"
            entries = [{ name = "off", also = ["no"], scope = "in" }, { name = "pad", scope = "in" }]
            [[values]]
            key = "sdp-attr"
            entries = [{ name = "substitute", scope = "in" }]
            "#,
        )
        .unwrap();
        let table: toml::Table = toml::from_str(
            "command = \"offer\"\nmedia-address = \"192.0.2.9\"\n\
             flags = [\"trust-address\", \"SDES-no\"]\n\
             sdp-attr = { audio = { substitute = [[\"a\", \"b\"]] } }\n",
        )
        .unwrap();
        let step = crate::corpus::load_step(Path::new("/nonexistent"), table).unwrap();
        let case = Case {
            name: "x".into(),
            feature: "x".into(),
            description: "x".into(),
            steps: vec![step],
            interfaces: None,
        };
        let cov = inv.coverage(&usage(&[case]));
        assert_eq!((cov.in_scope, cov.covered, cov.out_of_scope), (6, 5, 1));
        assert_eq!(cov.uncovered, ["SDES=pad"]);
    }

    /// With `RTPENGINE_NG_DOCS` naming rtpengine's
    /// docs/ng_control_protocol.md (of the inventory's commit): every name
    /// of the inventory is spelled as there, and every option the
    /// documentation lists for offer/answer, delete and list is in the
    /// inventory. Skipped without the variable (the file is not vendored).
    #[test]
    fn names_match_rtpengine_docs() {
        let Some(path) = std::env::var_os("RTPENGINE_NG_DOCS") else {
            eprintln!("RTPENGINE_NG_DOCS unset: not checking names against rtpengine's docs");
            return;
        };
        let doc = std::fs::read_to_string(&path).expect("RTPENGINE_NG_DOCS readable");
        let inv = Inventory::load(&root()).unwrap();
        let mut misspelt = Vec::new();
        let names = |e: &Entry| -> Vec<String> {
            std::iter::once(&e.name)
                .chain(&e.also)
                .cloned()
                .collect::<Vec<_>>()
        };
        for (label, e) in inv.entries() {
            for n in names(e) {
                // Backticked in the text, or quoted in an example.
                if !doc.contains(&format!("`{n}")) && !doc.contains(&format!("\"{n}\"")) {
                    misspelt.push(format!("{label} ({n})"));
                }
            }
        }
        for v in &inv.values {
            if !doc.contains(&format!("`{}`", v.key)) {
                misspelt.push(format!("values key {}", v.key));
            }
        }
        assert!(misspelt.is_empty(), "not in the docs: {misspelt:?}");

        // The documented bullets, section by section.
        let section = |from: &str, to: &str| -> Vec<String> {
            let start = doc.find(from).unwrap_or_else(|| panic!("no {from:?}"));
            let end = start + doc[start..].find(to).unwrap_or_else(|| panic!("no {to:?}"));
            doc[start..end]
                .lines()
                .filter_map(|l| l.strip_prefix("* `"))
                .flat_map(|l| {
                    l.split('`')
                        .step_by(2)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|n| !n.is_empty())
                .collect()
        };
        let known = |list: &[Entry]| -> BTreeSet<String> { list.iter().flat_map(&names).collect() };
        let values = |key: &str| -> BTreeSet<String> {
            inv.values
                .iter()
                .filter(|v| v.key == key)
                .flat_map(|v| v.entries.iter().flat_map(&names))
                .collect()
        };
        let checks: [(&str, &str, BTreeSet<String>); 7] = [
            (
                "## `offer` Message",
                "**Optionally included flags are:**",
                known(&inv.key),
            ),
            (
                "**Optionally included flags are:**",
                "**Optionally included replace-flags",
                known(&inv.flag),
            ),
            (
                "**Optionally included replace-flags",
                "**Optionally included codec",
                values("replace"),
            ),
            (
                "**Optionally included codec",
                "**Optionally included SDP attributes",
                values("codec"),
            ),
            (
                "## `delete` Message",
                "Other optional keys are:",
                known(&inv.flag),
            ),
            (
                "Other optional keys are:",
                "## `list` Message",
                known(&inv.key),
            ),
            ("## `list` Message", "## `query` Message", known(&inv.key)),
        ];
        let mut missing = Vec::new();
        for (from, to, known) in checks {
            for name in section(from, to) {
                if !known.contains(&name) {
                    missing.push(format!("{name} (after {from:?})"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "documented, not in the inventory: {missing:?}"
        );
    }
}
