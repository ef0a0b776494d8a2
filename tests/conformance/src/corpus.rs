//! The corpus: one TOML file per case under `cases/`, SDP bodies under
//! `sdp/` (written with LF endings, sent with CRLF as SIP carries them).
//!
//! ```toml
//! feature = "replace"
//! description = "why this case exists"
//!
//! [[step]]
//! command = "offer"
//! sdp = "deskphone"                # sdp/deskphone.sdp, or inline text starting with "v="
//! sdp-edit = [["a=sendrecv", "a=sendonly"]]   # text substitutions, each must match
//! replace = ["origin"]             # every other key goes into the NG dictionary as is
//! ```
//!
//! The runner adds `command`, a fresh `call-id` per relay and default tags
//! (see [`Step::defaults`]); `omit = ["call-id"]` leaves a default out and
//! `call = "b"` picks a second call of the case. A top-level
//! `interfaces = ["pub:1/192.0.2.1", ...]` runs the case on relays started
//! with those `--interface` values (addresses of [`crate::relays::ADDRESSES`]).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{bail, ensure, Context as _, Result};
use relay_ng::{Dict, Value};
use serde::Deserialize;

/// One case: a named sequence of NG commands.
#[derive(Clone, Debug)]
pub struct Case {
    /// File stem.
    pub name: String,
    /// What the case measures (the report groups by it).
    pub feature: String,
    /// Why the case exists.
    pub description: String,
    /// The commands, sent in order to each relay.
    pub steps: Vec<Step>,
    /// `--interface` values both relays run this case with (None: the
    /// default set, `pub` and `priv`).
    pub interfaces: Option<Vec<String>>,
}

/// One NG command of a case.
#[derive(Clone, Debug)]
pub struct Step {
    /// `offer`, `answer`, `delete`, `query`, `ping`, ...
    pub command: String,
    /// The SDP body, CRLF-terminated lines unless the case asked for LF.
    pub sdp: Option<String>,
    /// Every other NG key of the step, as written in the case.
    pub args: Dict,
    /// Defaults the runner must not add (`call-id`, `from-tag`, `to-tag`).
    pub omit: BTreeSet<String>,
    /// Which call of the case (`""` for the first): its own call-id.
    pub call: String,
}

/// A case file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    feature: String,
    description: String,
    #[serde(default)]
    interfaces: Option<Vec<String>>,
    #[serde(rename = "step")]
    steps: Vec<toml::Table>,
}

/// Keys of a step that steer the harness and never reach a relay.
const HARNESS_KEYS: &[&str] = &["command", "sdp", "sdp-edit", "sdp-lf", "omit", "call"];

/// Caller's and callee's tags when a step names none.
pub const CALLER_TAG: &str = "caller-tag";
/// See [`CALLER_TAG`].
pub const CALLEE_TAG: &str = "callee-tag";

impl Step {
    /// The keys the runner adds unless the step sets or omits them: a
    /// call-id for call commands, and the tags a SIP proxy would send.
    pub fn defaults(&self) -> Vec<(&'static str, &'static str)> {
        let mut keys = Vec::new();
        match self.command.as_str() {
            "ping" | "list" | "statistics" => return keys,
            "offer" | "delete" => keys.push(("from-tag", CALLER_TAG)),
            "answer" => keys.extend([("from-tag", CALLER_TAG), ("to-tag", CALLEE_TAG)]),
            _ => {}
        }
        keys.retain(|(k, _)| !self.omit.contains(*k) && !self.args.contains_key(k.as_bytes()));
        keys
    }

    /// Whether the runner gives this step a call-id.
    pub fn wants_call_id(&self) -> bool {
        !matches!(self.command.as_str(), "ping" | "list" | "statistics")
            && !self.omit.contains("call-id")
            && !self.args.contains_key(&b"call-id"[..])
    }
}

/// Loads every `cases/*.toml` under `root`, sorted by name.
pub fn load(root: &Path, filter: Option<&str>) -> Result<Vec<Case>> {
    let dir = root.join("cases");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let case = load_case(root, &path).with_context(|| format!("case {}", path.display()))?;
        if filter.is_none_or(|f| case.name.contains(f) || case.feature == f) {
            cases.push(case);
        }
    }
    ensure!(!cases.is_empty(), "no case in {} matches", dir.display());
    Ok(cases)
}

fn load_case(root: &Path, path: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(path)?;
    let file: CaseFile = toml::from_str(&text)?;
    ensure!(!file.steps.is_empty(), "a case needs at least one [[step]]");
    let steps = file
        .steps
        .into_iter()
        .enumerate()
        .map(|(i, table)| load_step(root, table).with_context(|| format!("step {}", i + 1)))
        .collect::<Result<_>>()?;
    Ok(Case {
        name: path
            .file_stem()
            .context("case file name")?
            .to_string_lossy()
            .into_owned(),
        feature: file.feature,
        description: file.description,
        steps,
        interfaces: file.interfaces,
    })
}

pub(crate) fn load_step(root: &Path, table: toml::Table) -> Result<Step> {
    let command = table
        .get("command")
        .and_then(toml::Value::as_str)
        .context("`command` (a string) is required")?
        .to_owned();
    let sdp = match table.get("sdp") {
        None => None,
        Some(v) => {
            let text = v.as_str().context("`sdp` must be a string")?;
            let lf = table.get("sdp-lf").and_then(toml::Value::as_bool) == Some(true);
            Some(sdp_body(root, text, table.get("sdp-edit"), lf)?)
        }
    };
    let omit = match table.get("omit") {
        None => BTreeSet::new(),
        Some(v) => strings(v).context("`omit` must be a list of strings")?,
    };
    let call = match table.get("call") {
        None => String::new(),
        Some(v) => v.as_str().context("`call` must be a string")?.to_owned(),
    };
    let mut args = Dict::new();
    for (key, value) in table {
        if !HARNESS_KEYS.contains(&key.as_str()) {
            let v = ng_value(&value).with_context(|| format!("key {key:?}"))?;
            args.insert(key.into_bytes(), v);
        }
    }
    Ok(Step {
        command,
        sdp,
        args,
        omit,
        call,
    })
}

/// Resolves an `sdp` value (file name or inline text), applies `sdp-edit`
/// and puts SIP's CRLF line endings on (unless `lf`).
fn sdp_body(root: &Path, sdp: &str, edits: Option<&toml::Value>, lf: bool) -> Result<String> {
    let mut text = if sdp.starts_with("v=") {
        sdp.to_owned()
    } else {
        let path = root.join("sdp").join(format!("{sdp}.sdp"));
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
    };
    for pair in edits.and_then(toml::Value::as_array).into_iter().flatten() {
        let [from, to] = pair.as_array().map(Vec::as_slice).unwrap_or_default() else {
            bail!("`sdp-edit` entries are [from, to] pairs");
        };
        let (Some(from), Some(to)) = (from.as_str(), to.as_str()) else {
            bail!("`sdp-edit` entries are pairs of strings");
        };
        // An edit that matches nothing is a stale case, not a no-op.
        ensure!(
            text.contains(from),
            "`sdp-edit`: {from:?} is not in the SDP"
        );
        text = text.replace(from, to);
    }
    let text = text.replace("\r\n", "\n");
    Ok(if lf { text } else { text.replace('\n', "\r\n") })
}

fn strings(v: &toml::Value) -> Option<BTreeSet<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// A TOML value as an NG value: strings are byte strings, tables
/// dictionaries; bencode has no booleans or floats.
fn ng_value(v: &toml::Value) -> Result<Value> {
    Ok(match v {
        toml::Value::String(s) => Value::str(s),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Array(items) => {
            Value::List(items.iter().map(ng_value).collect::<Result<_>>()?)
        }
        toml::Value::Table(t) => Value::Dict(
            t.iter()
                .map(|(k, v)| Ok((k.as_bytes().to_vec(), ng_value(v)?)))
                .collect::<Result<_>>()?,
        ),
        other => bail!("{} values have no NG form", other.type_str()),
    })
}

/// The NG options a step exercises, as `key`, `key=value` or
/// `key.sub=value` strings (flags one each), for the coverage list.
pub fn options(step: &Step) -> Vec<String> {
    const IDENTITY: &[&str] = &["call-id", "from-tag", "to-tag", "sdp"];
    let mut out = Vec::new();
    for (key, value) in &step.args {
        let key = String::from_utf8_lossy(key);
        if IDENTITY.contains(&key.as_ref()) {
            continue;
        }
        match value {
            Value::List(items) => {
                for item in items {
                    out.push(format!("{key}={}", short(item)));
                }
            }
            Value::Dict(d) => {
                for (sub, v) in d {
                    out.push(format!(
                        "{key}.{}={}",
                        String::from_utf8_lossy(sub),
                        short(v)
                    ));
                }
            }
            v => out.push(format!("{key}={}", short(v))),
        }
    }
    out
}

fn short(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::List(items) => items.iter().map(short).collect::<Vec<_>>().join(","),
        Value::Dict(d) => d
            .iter()
            .map(|(k, v)| format!("{}:{}", String::from_utf8_lossy(k), short(v)))
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn every_case_loads_with_endpoint_ports_below_the_relays() {
        let cases = load(&corpus_root(), None).expect("corpus loads");
        assert!(cases.len() >= 60, "{} cases", cases.len());
        for case in &cases {
            assert!(
                !case.description.is_empty(),
                "{}: no description",
                case.name
            );
            // The normaliser takes a port in a relay's range for one that
            // relay allocated, so the endpoints' ports must stay below.
            for sdp in case.steps.iter().filter_map(|s| s.sdp.as_deref()) {
                for l in sdp.lines() {
                    let port = match l.split_once(' ') {
                        Some((m, rest)) if m.starts_with("m=") => rest.split(' ').next(),
                        _ => l
                            .strip_prefix("a=rtcp:")
                            .map(|r| r.trim_end().split(' ').next().unwrap_or(r)),
                    };
                    if let Some(port) = port.and_then(|p| p.parse::<u32>().ok()) {
                        assert!(
                            port < u32::from(crate::relays::LOWEST_RELAY_PORT) || port > 65535,
                            "{}: port {port} in {l:?}",
                            case.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn harness_keys_stay_out_of_the_request() {
        let table: toml::Table = toml::from_str(
            "command = \"offer\"\nsdp = \"v=0\\no=x\\n\"\nsdp-edit = [[\"o=x\", \"o=y\"]]\n\
             omit = [\"from-tag\"]\nreplace = [\"origin\"]\nICE = \"remove\"\n",
        )
        .unwrap();
        let step = load_step(Path::new("/nonexistent"), table).unwrap();
        assert_eq!(step.sdp.as_deref(), Some("v=0\r\no=y\r\n"));
        let keys: Vec<_> = step
            .args
            .keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect();
        assert_eq!(keys, ["ICE", "replace"]);
        assert!(step.defaults().is_empty(), "from-tag omitted");
        assert!(step.wants_call_id());
        assert_eq!(options(&step), ["ICE=remove", "replace=origin"]);
    }

    #[test]
    fn a_stale_edit_is_an_error() {
        let edits: toml::Value = toml::from_str::<toml::Table>("e = [[\"nope\", \"x\"]]")
            .unwrap()
            .remove("e")
            .unwrap();
        assert!(sdp_body(Path::new("/"), "v=0\n", Some(&edits), false).is_err());
    }
}
