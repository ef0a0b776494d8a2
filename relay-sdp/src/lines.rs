//! Splitting an SDP body into lines without losing a byte.
//!
//! A line ends at `\n`; a `\r` right before it belongs to the line ending, so CRLF and
//! bare-LF bodies (both seen from real phones) split the same way and each line remembers
//! its own ending for the rewriter to reproduce. A lone `\r` is ordinary content: old
//! CR-only bodies are not supported and fail validation on their first line. The last
//! line may lack an ending altogether.

/// One line of the input, as byte offsets into the whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset just past the content (before `\r\n` / `\n`).
    pub content_end: usize,
    /// Offset just past the line ending (equals `content_end` if there is none).
    pub end: usize,
}

impl Line {
    /// The content bytes, without line ending.
    pub fn content<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.start..self.content_end).unwrap_or_default()
    }

    /// The line ending bytes: `b"\r\n"`, `b"\n"` or empty.
    pub fn eol<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        body.get(self.content_end..self.end).unwrap_or_default()
    }
}

/// Splits `body` into lines. An empty body yields no lines.
pub(crate) fn split(body: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let rest = body.get(start..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let newline = start + nl;
                let content_end = if nl > 0 && rest.get(nl - 1) == Some(&b'\r') {
                    newline - 1
                } else {
                    newline
                };
                lines.push(Line {
                    start,
                    content_end,
                    end: newline + 1,
                });
                start = newline + 1;
            }
            None => {
                lines.push(Line {
                    start,
                    content_end: body.len(),
                    end: body.len(),
                });
                start = body.len();
            }
        }
    }
    lines
}

/// Strips trailing spaces and tabs, which sloppy endpoints leave behind.
pub(crate) fn trim_end(bytes: &[u8]) -> &[u8] {
    let keep = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    bytes.get(..keep).unwrap_or_default()
}

/// Whether a line holds nothing but spaces and tabs.
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    trim_end(bytes).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &[u8]) -> Vec<(&[u8], &[u8])> {
        split(body)
            .iter()
            .map(|l| (l.content(body), l.eol(body)))
            .collect()
    }

    #[test]
    fn mixed_endings_and_missing_last() {
        let body = b"v=0\r\no=x\ns=\r\r\nt=0 0";
        assert_eq!(
            parts(body),
            vec![
                (&b"v=0"[..], &b"\r\n"[..]),
                (b"o=x", b"\n"),
                (b"s=\r", b"\r\n"),
                (b"t=0 0", b""),
            ]
        );
    }

    #[test]
    fn empty_and_lone_newlines() {
        assert!(split(b"").is_empty());
        assert_eq!(
            parts(b"\n\r\n"),
            vec![(&b""[..], &b"\n"[..]), (b"", b"\r\n")]
        );
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_end(b"a=sendrecv \t"), b"a=sendrecv");
        assert_eq!(trim_end(b" \t"), b"");
        assert!(is_blank(b"  "));
        assert!(!is_blank(b" x"));
    }
}
