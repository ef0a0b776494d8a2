//! Golden tests: every `tests/golden/NAME.in.sdp` is parsed, rewritten with
//! `NAME.plan` and compared byte for byte with `NAME.out.sdp`.
//!
//! Plan format, one directive per line, `#` starts a comment:
//! ```text
//! origin ADDRESS                       # RewritePlan::origin_address
//! session ADDRESS                      # RewritePlan::session_connection
//! media ADDRESS PORT RTCP keep|offer|remove [ptime=MS] [mid=ID] [proto=P]   # one per m= line; RTCP is a port or `mux`
//! origin-version N                     # RewritePlan::origin_version
//! strip-extmap                         # RewritePlan::strip_extmap
//! original-direction                   # RewritePlan::original_direction
//! session-attribute NAME:VALUE         # RewritePlan::session_attributes (one per line)
//! rtcp-attribute full|omit             # RewritePlan::rtcp_attribute
//! ice remove                           # RewritePlan::remove_ice
//! ```
//!
//! On failure the test prints a line diff with visible line endings and writes the actual
//! output next to the build (`target/tmp/golden/NAME.actual.sdp`) for `diff -u`.
//! `BLESS=1 cargo test -p relay-sdp --test golden` rewrites the expected files instead;
//! review the result with `git diff` before keeping it.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use relay_sdp::{parse, rewrite, MediaRewrite, RewritePlan, RtcpAttribute, RtcpMux};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn parse_addr(word: Option<&str>, line: &str) -> Result<IpAddr, String> {
    word.and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad address in plan line {line:?}"))
}

fn parse_plan(text: &str) -> Result<RewritePlan, String> {
    let mut plan = RewritePlan::default();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("origin") => plan.origin_address = Some(parse_addr(words.next(), line)?),
            Some("session") => plan.session_connection = Some(parse_addr(words.next(), line)?),
            Some("ice") if words.next() == Some("remove") => plan.remove_ice = true,
            Some("strip-extmap") => plan.strip_extmap = true,
            Some("original-direction") => plan.original_direction = true,
            Some("session-attribute") => plan
                .session_attributes
                .extend(words.next().map(str::to_owned)),
            Some("origin-version") => {
                plan.origin_version = Some(
                    words
                        .next()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("bad origin-version in {line:?}"))?,
                )
            }
            Some("rtcp-attribute") => {
                plan.rtcp_attribute = match words.next() {
                    Some("full") => RtcpAttribute::Full,
                    Some("omit") => RtcpAttribute::Omit,
                    _ => return Err(format!("bad rtcp-attribute in {line:?}")),
                }
            }
            Some("media") => {
                let address = parse_addr(words.next(), line)?;
                let port = words
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("bad port in {line:?}"))?;
                let rtcp_port = match words.next() {
                    Some("mux") => None,
                    Some(p) => Some(p.parse().map_err(|_| format!("bad rtcp in {line:?}"))?),
                    None => return Err(format!("missing rtcp in {line:?}")),
                };
                let rtcp_mux = match words.next() {
                    Some("keep") => RtcpMux::Keep,
                    Some("offer") => RtcpMux::Offer,
                    Some("remove") => RtcpMux::Remove,
                    _ => return Err(format!("bad rtcp-mux mode in {line:?}")),
                };
                // Optional: what the recipient declared earlier.
                let (mut ptime, mut mid, mut protocol) = (None, None, None);
                for word in words.by_ref() {
                    if let Some(v) = word.strip_prefix("ptime=") {
                        ptime = Some(v.parse().map_err(|_| format!("bad ptime in {line:?}"))?);
                    } else if let Some(v) = word.strip_prefix("mid=") {
                        mid = Some(v.to_owned());
                    } else if let Some(v) = word.strip_prefix("proto=") {
                        protocol = Some(v.to_owned());
                    } else {
                        return Err(format!("unknown media option {word:?} in {line:?}"));
                    }
                }
                plan.medias.push(MediaRewrite {
                    address,
                    port,
                    rtcp_port,
                    rtcp_mux,
                    formats: None,
                    ptime,
                    mid,
                    protocol,
                    ice: None,
                    crypto: None,
                    dtls: relay_sdp::DtlsRewrite::Keep,
                });
            }
            _ => return Err(format!("unknown plan line {line:?}")),
        }
        if words.next().is_some() {
            return Err(format!("trailing words in plan line {line:?}"));
        }
    }
    Ok(plan)
}

/// Shows a line with its ending made visible.
fn visible(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// Splits keeping line endings, so that endings take part in the comparison.
fn split_keep(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// A minimal LCS line diff: `-` expected only, `+` actual only, ` ` both.
fn line_diff(expected: &[u8], actual: &[u8]) -> String {
    let (e, a) = (split_keep(expected), split_keep(actual));
    let mut lcs = vec![vec![0usize; a.len() + 1]; e.len() + 1];
    for i in (0..e.len()).rev() {
        for j in (0..a.len()).rev() {
            lcs[i][j] = if e[i] == a[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < e.len() || j < a.len() {
        if i < e.len() && j < a.len() && e[i] == a[j] {
            out.push_str(&format!("  {}\n", visible(e[i])));
            i += 1;
            j += 1;
        } else if j < a.len() && (i == e.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", visible(a[j])));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", visible(e[i])));
            i += 1;
        }
    }
    out
}

/// Runs one case; `Ok(None)` on success, `Ok(Some(report))` on mismatch.
fn run_case(input_path: &Path, bless: bool) -> Result<Option<String>, String> {
    let stem = input_path
        .to_str()
        .and_then(|s| s.strip_suffix(".in.sdp"))
        .ok_or("bad case file name")?;
    let name = Path::new(stem)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let input = fs::read(input_path).map_err(|e| format!("{name}: {e}"))?;
    let plan_text =
        fs::read_to_string(format!("{stem}.plan")).map_err(|e| format!("{name}.plan: {e}"))?;
    let plan = parse_plan(&plan_text).map_err(|e| format!("{name}.plan: {e}"))?;
    let sdp = parse(&input).map_err(|e| format!("{name}: parse: {e}"))?;
    let actual = rewrite(&sdp, &plan).map_err(|e| format!("{name}: rewrite: {e}"))?;

    // Whatever the expected bytes, the output must itself be valid SDP with the
    // relay's ports on every media that was not rejected.
    let reparsed = parse(&actual).map_err(|e| format!("{name}: output does not parse: {e}"))?;
    for (before, (after, want)) in sdp
        .medias()
        .iter()
        .zip(reparsed.medias().iter().zip(&plan.medias))
    {
        let expected_port = if before.port == 0 { 0 } else { want.port };
        if after.port != expected_port {
            return Err(format!(
                "{name}: media {} has port {}",
                after.index, after.port
            ));
        }
    }

    let out_path = format!("{stem}.out.sdp");
    if bless {
        fs::write(&out_path, &actual).map_err(|e| format!("{out_path}: {e}"))?;
        return Ok(None);
    }
    let expected = fs::read(&out_path).map_err(|e| format!("{out_path}: {e}"))?;
    if expected == actual {
        return Ok(None);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden");
    let actual_path = dir.join(format!("{name}.actual.sdp"));
    let saved = fs::create_dir_all(&dir)
        .and_then(|()| fs::write(&actual_path, &actual))
        .map(|()| format!("diff -u {out_path} {}", actual_path.display()))
        .unwrap_or_else(|e| format!("(could not save actual output: {e})"));
    Ok(Some(format!(
        "--- {name}: expected (-) vs actual (+)\n{}{saved}\n",
        line_diff(&expected, &actual)
    )))
}

#[test]
fn golden_cases() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut inputs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".in.sdp"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 20,
        "only {} golden cases found",
        inputs.len()
    );

    let mut failures = Vec::new();
    for input in &inputs {
        match run_case(input, bless) {
            Ok(None) => {}
            Ok(Some(report)) => failures.push(report),
            Err(error) => failures.push(format!("--- {error}\n")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.concat()
    );
}

#[test]
fn diff_marks_inserted_and_changed_lines() {
    let d = line_diff(b"a\r\nb\r\nc\r\n", b"a\r\nB\r\nc\r\nd\n");
    assert_eq!(d, "  a\\r\\n\n+ B\\r\\n\n- b\\r\\n\n  c\\r\\n\n+ d\\n\n");
}
