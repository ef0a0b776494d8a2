//! Errors from parsing and rewriting SDP.
//!
//! Every parse error names the 1-based line it is about and quotes (a bounded, lossily
//! decoded prefix of) that line, because the person reading the log usually has the SIP
//! trace open next to it and wants to find the culprit without counting lines by hand.

use std::fmt;

/// Longest quote of an offending line kept in an error, in characters.
///
/// SDP lines are short; anything longer is garbage and quoting it whole would only flood logs.
const MAX_QUOTE_CHARS: usize = 100;

/// What went wrong with an SDP body or a rewrite plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body could not be parsed; `line` is 1-based.
    #[error("SDP line {line}: {problem}{}", describe(.text, .detail))]
    Syntax {
        /// 1-based number of the offending line.
        line: usize,
        /// The class of problem.
        problem: Problem,
        /// The offending line (bounded, lossily decoded), empty when there is no such line.
        text: String,
        /// A short explanation of what exactly is wrong, empty when `problem` says it all.
        detail: &'static str,
    },
    /// The plan does not describe exactly one rewrite per `m=` line.
    #[error("rewrite plan has {got} media entries, but the SDP has {expected} m= lines")]
    PlanMediaCount {
        /// Number of `m=` lines in the SDP.
        expected: usize,
        /// Number of entries in [`RewritePlan::medias`](crate::RewritePlan::medias).
        got: usize,
    },
    /// A media rewrite asks for RTCP on the RTP port while also stripping `a=rtcp-mux`,
    /// which would advertise a port the peer can only use with multiplexing.
    #[error("rewrite plan for m= line {media}: rtcp_port None (RTCP on the RTP port) conflicts with RtcpMux::Remove")]
    PlanRtcpConflict {
        /// 0-based index of the media in the plan.
        media: usize,
    },
}

impl SdpError {
    /// The 1-based line number a parse error is about, `None` for plan errors.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. } => Some(*line),
            Self::PlanMediaCount { .. } | Self::PlanRtcpConflict { .. } => None,
        }
    }

    /// Builds a [`SdpError::Syntax`] quoting `raw` (the line's bytes without line ending).
    pub(crate) fn syntax(line: usize, problem: Problem, raw: &[u8], detail: &'static str) -> Self {
        Self::Syntax {
            line,
            problem,
            text: quote(raw),
            detail,
        }
    }
}

/// The classes of parse failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The input holds no SDP at all.
    Empty,
    /// The input is larger than [`MAX_SDP_LEN`](crate::MAX_SDP_LEN).
    TooLarge,
    /// The first line is not `v=0`.
    BadVersion,
    /// A second `v=` line: several sessions in one body are not supported.
    MultipleSessions,
    /// A line is not of the form `x=value` with `x` a lowercase letter.
    NotALine,
    /// An empty line before the end of the body.
    EmptyLine,
    /// No `o=` line in the session section.
    MissingOrigin,
    /// More than one `o=` line.
    DuplicateOrigin,
    /// An `o=` line inside a media section.
    MisplacedOrigin,
    /// An `o=` line that does not parse.
    BadOrigin,
    /// An `m=` line that does not parse.
    BadMedia,
    /// A `c=` line that does not parse.
    BadConnection,
    /// A second `c=` line in the same section.
    DuplicateConnection,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Empty => "empty SDP",
            Self::TooLarge => "SDP too large",
            Self::BadVersion => "first line must be v=0",
            Self::MultipleSessions => "second v= line (several sessions are not supported)",
            Self::NotALine => "not an x=value line",
            Self::EmptyLine => "empty line inside the SDP",
            Self::MissingOrigin => "missing o= line",
            Self::DuplicateOrigin => "second o= line",
            Self::MisplacedOrigin => "o= line inside a media section",
            Self::BadOrigin => "bad o= line",
            Self::BadMedia => "bad m= line",
            Self::BadConnection => "bad c= line",
            Self::DuplicateConnection => "second c= line in the same section",
        };
        f.write_str(s)
    }
}

/// Renders the optional quote and detail that follow the problem in an error message.
fn describe(text: &str, detail: &str) -> String {
    let mut out = String::new();
    if !text.is_empty() {
        out.push_str(&format!(" {text:?}"));
    }
    if !detail.is_empty() {
        out.push_str(&format!(" ({detail})"));
    }
    out
}

/// Decodes a line for quoting: lossy UTF-8, at most [`MAX_QUOTE_CHARS`] characters.
fn quote(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text.chars().take(MAX_QUOTE_CHARS).collect();
    if text.chars().nth(MAX_QUOTE_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_line_quote_and_detail() {
        let e = SdpError::syntax(
            5,
            Problem::BadMedia,
            b"m=audio x RTP/AVP 0",
            "port is not a number",
        );
        assert_eq!(
            e.to_string(),
            "SDP line 5: bad m= line \"m=audio x RTP/AVP 0\" (port is not a number)"
        );
        assert_eq!(e.line(), Some(5));
    }

    #[test]
    fn long_and_binary_lines_are_bounded() {
        let raw = vec![0xffu8; 10_000];
        let e = SdpError::syntax(1, Problem::NotALine, &raw, "");
        let SdpError::Syntax { text, .. } = &e else {
            panic!("wrong variant");
        };
        assert_eq!(text.chars().count(), MAX_QUOTE_CHARS + 1);
        assert!(e.to_string().len() < 1_000);
    }
}
