//! Comparing the two transcripts of a case, and reporting the run: a table
//! by feature and the diffs on the terminal, everything as JSON for
//! docs/ng-compatibility.md.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    corpus::{self, Case},
    diff,
    inventory::Coverage,
    normalize::{Line, Part},
    run::Transcript,
};

/// How a case came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Same normalised replies.
    Identical,
    /// Different normalised replies.
    Differs,
    /// Different, on purpose: listed in `deviations.toml` with the reason.
    Deviation,
    /// A relay did not reply or exited: not a measurement.
    Broken,
}

/// One case's result.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Case name.
    pub name: String,
    /// Feature tag.
    pub feature: String,
    /// Why the case exists.
    pub description: String,
    /// Identical, differs or broken.
    pub status: Status,
    /// Which parts of the replies differ.
    pub differing: BTreeSet<Part>,
    /// Why the difference is kept, for a documented deviation.
    pub deviation: Option<String>,
    /// NG options the case uses (see [`corpus::options`]).
    pub options: Vec<String>,
    /// Unified diff, rtpengine → relayd (empty when identical).
    pub diff: String,
    /// No replies, crashes.
    pub problems: Vec<String>,
    /// Warning texts by relay and step.
    pub warnings: BTreeMap<&'static str, Vec<(usize, String)>>,
    /// The normalised transcripts.
    pub rtpengine: Vec<String>,
    /// See `rtpengine`.
    pub relayd: Vec<String>,
}

/// Lines of one part of one step.
fn by_step_and_part(lines: &[Line]) -> BTreeMap<(usize, Part), Vec<&str>> {
    let mut map: BTreeMap<(usize, Part), Vec<&str>> = BTreeMap::new();
    let mut step = 0;
    for l in lines {
        if l.part == Part::Header && l.text.starts_with("## ") {
            step += 1;
        }
        map.entry((step, l.part)).or_default().push(&l.text);
    }
    map
}

/// Compares the two transcripts of `case`.
pub fn compare(
    case: &Case,
    deviation: Option<&str>,
    rtpengine: Transcript,
    relayd: Transcript,
) -> Outcome {
    let (a, b) = (
        by_step_and_part(&rtpengine.lines),
        by_step_and_part(&relayd.lines),
    );
    let differing: BTreeSet<Part> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(k) != b.get(k))
        .map(|(_, part)| *part)
        .collect();
    let text = |t: &Transcript| t.lines.iter().map(|l| l.text.clone()).collect::<Vec<_>>();
    let (ta, tb) = (text(&rtpengine), text(&relayd));
    let mut problems: Vec<String> = Vec::new();
    problems.extend(rtpengine.problems.iter().map(|p| format!("rtpengine: {p}")));
    problems.extend(relayd.problems.iter().map(|p| format!("relayd: {p}")));
    let status = if !problems.is_empty() {
        Status::Broken
    } else if differing.is_empty() {
        Status::Identical
    } else if deviation.is_some() {
        Status::Deviation
    } else {
        Status::Differs
    };
    let mut options: Vec<String> = case.steps.iter().flat_map(corpus::options).collect();
    options.sort();
    options.dedup();
    Outcome {
        name: case.name.clone(),
        feature: case.feature.clone(),
        description: case.description.clone(),
        status,
        differing,
        deviation: deviation.map(str::to_owned),
        options,
        diff: diff::unified(&ta, &tb, "rtpengine", "relayd", 2),
        problems,
        warnings: BTreeMap::from([
            ("rtpengine", rtpengine.warnings),
            ("relayd", relayd.warnings),
        ]),
        rtpengine: ta,
        relayd: tb,
    }
}

/// Counts of one feature (or all).
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    /// Cases.
    pub cases: usize,
    /// Identical.
    pub identical: usize,
    /// Differing on purpose (documented deviations).
    pub deviations: usize,
    /// Differing.
    pub differing: usize,
    /// Differing (not documented deviations) in the SDP.
    pub sdp_differs: usize,
    /// Broken (no reply, crash).
    pub broken: usize,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        self.cases += 1;
        match o.status {
            Status::Identical => self.identical += 1,
            Status::Deviation => self.deviations += 1,
            Status::Differs => self.differing += 1,
            Status::Broken => self.broken += 1,
        }
        if o.status == Status::Differs && o.differing.contains(&Part::Sdp) {
            self.sdp_differs += 1;
        }
    }
}

/// Tallies by feature, and the total.
pub fn tallies(outcomes: &[Outcome]) -> (BTreeMap<&str, Tally>, Tally) {
    let mut by_feature: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for o in outcomes {
        by_feature.entry(&o.feature).or_default().add(o);
        total.add(o);
    }
    (by_feature, total)
}

/// The table and the diffs of differing and broken cases.
pub fn print(outcomes: &[Outcome]) {
    for o in outcomes.iter().filter(|o| o.status == Status::Deviation) {
        let reason = o.deviation.as_deref().unwrap_or_default();
        println!(
            "--- {} [{}] documented deviation: {reason}",
            o.name, o.feature
        );
    }
    for o in outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Differs | Status::Broken))
    {
        let parts: Vec<String> = o.differing.iter().map(Part::to_string).collect();
        println!(
            "=== {} [{}] {:?}: {}",
            o.name,
            o.feature,
            o.status,
            parts.join(", ")
        );
        for p in &o.problems {
            println!("!!! {p}");
        }
        print!("{}", o.diff);
        println!();
    }
    let (by_feature, total) = tallies(outcomes);
    println!(
        "{:<20} {:>5} {:>9} {:>9} {:>9} {:>11} {:>6}",
        "feature", "cases", "identical", "deviation", "differing", "SDP differs", "broken"
    );
    let row = |name: &str, t: &Tally| {
        println!(
            "{:<20} {:>5} {:>9} {:>9} {:>9} {:>11} {:>6}",
            name, t.cases, t.identical, t.deviations, t.differing, t.sdp_differs, t.broken
        );
    };
    for (feature, t) in &by_feature {
        row(feature, t);
    }
    row("total", &total);
}

/// The whole run as JSON.
#[derive(Serialize)]
struct Report<'a> {
    rtpengine_version: &'a str,
    summary: Tally,
    features: BTreeMap<&'a str, Tally>,
    /// Every NG option some case uses.
    coverage: BTreeSet<&'a str>,
    /// How much of rtpengine's documented options in scope the corpus
    /// uses (`ng_options.toml`).
    documented_options: &'a Coverage,
    cases: &'a [Outcome],
}

/// Writes the JSON report to `path`.
pub fn write_json(
    path: &Path,
    rtpengine_version: &str,
    outcomes: &[Outcome],
    documented_options: &Coverage,
) -> Result<()> {
    let (features, summary) = tallies(outcomes);
    let coverage = outcomes
        .iter()
        .flat_map(|o| o.options.iter().map(String::as_str))
        .collect();
    let report = Report {
        rtpengine_version,
        summary,
        features,
        coverage,
        documented_options,
        cases: outcomes,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}

/// Where the generated part of docs/ng-compatibility.md starts and ends.
const DOCS_BEGIN: &str =
    "<!-- conformance:begin (generated by `cargo xtask conformance --docs`) -->";
const DOCS_END: &str = "<!-- conformance:end -->";

/// The results as Markdown: the table by feature, the documented
/// deviations with their reasons, and the cases still differing.
pub fn markdown(rtpengine_version: &str, outcomes: &[Outcome], options: &Coverage) -> String {
    use std::fmt::Write as _;
    let (by_feature, total) = tallies(outcomes);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Against rtpengine {rtpengine_version}: {} of {} cases identical, {} documented \
         deviations, {} differing.\n",
        total.identical, total.cases, total.deviations, total.differing
    );
    let _ = writeln!(
        md,
        "The cases use {} of the {} options in scope that rtpengine's NG documentation \
         lists ({}; inventory in `tests/conformance/ng_options.toml`, where {} more are \
         out of scope: transcoding, T.38, playback, DTMF injection, recording).\n",
        options.covered, options.in_scope, options.source, options.out_of_scope
    );
    md.push_str(
        "| feature | cases | identical | documented deviation | differing (SDP among them) |\n",
    );
    md.push_str("|---|---|---|---|---|\n");
    let row = |md: &mut String, name: &str, t: &Tally| {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} ({}) |",
            t.cases, t.identical, t.deviations, t.differing, t.sdp_differs
        );
    };
    for (feature, t) in &by_feature {
        row(&mut md, feature, t);
    }
    row(&mut md, "**total**", &total);
    let mut reasons: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for o in outcomes {
        if let (Status::Deviation, Some(reason)) = (o.status, o.deviation.as_deref()) {
            reasons.entry(reason).or_default().push(&o.name);
        }
    }
    if !reasons.is_empty() {
        md.push_str("\nDocumented deviations (`tests/conformance/deviations.toml`):\n\n");
        for (reason, cases) in reasons {
            let _ = writeln!(md, "- {reason} ({})", code_list(&cases));
        }
    }
    let differing: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Differs | Status::Broken))
        .map(|o| o.name.as_str())
        .collect();
    if !differing.is_empty() {
        let _ = writeln!(md, "\nStill differing: {}.", code_list(&differing));
    }
    md
}

fn code_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces the generated block of the Markdown file at `path` with
/// [`markdown`]'s text.
pub fn write_docs(
    path: &Path,
    rtpengine_version: &str,
    outcomes: &[Outcome],
    options: &Coverage,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(DOCS_BEGIN), text.find(DOCS_END)) else {
        anyhow::bail!(
            "{} has no {DOCS_BEGIN} ... {DOCS_END} block",
            path.display()
        );
    };
    anyhow::ensure!(
        begin < end,
        "{}: the block's markers are out of order",
        path.display()
    );
    let generated = markdown(rtpengine_version, outcomes, options);
    let new = format!(
        "{}{DOCS_BEGIN}\n{generated}{}",
        &text[..begin],
        &text[end..]
    );
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
