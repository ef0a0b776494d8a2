//! A compact unified diff of two transcripts (longest common subsequence;
//! transcripts are a few hundred lines at most).

/// One line of the edit script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// The edit script turning `a` into `b`, deletions before additions.
fn script<'a>(a: &'a [String], b: &'a [String]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(&a[i]));
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Del(&a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(&b[j]));
            j += 1;
        }
    }
    ops
}

/// A unified diff (`---`/`+++` headers named `from` and `to`, hunks with
/// `context` lines around changes); empty when the inputs are equal.
pub fn unified(a: &[String], b: &[String], from: &str, to: &str, context: usize) -> String {
    let ops = script(a, b);
    let changed: Vec<usize> = (0..ops.len())
        .filter(|&k| !matches!(ops[k], Op::Same(_)))
        .collect();
    if changed.is_empty() {
        return String::new();
    }
    // Hunks: runs of changes whose context windows touch.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(context);
        let end = (k + context + 1).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {from}\n+++ {to}\n");
    for (start, end) in hunks {
        // 1-based line numbers of the hunk's first line on each side.
        let before = &ops[..start];
        let a_line = before.iter().filter(|o| !matches!(o, Op::Add(_))).count() + 1;
        let b_line = before.iter().filter(|o| !matches!(o, Op::Del(_))).count() + 1;
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let b_len = hunk.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        out.push_str(&format!("@@ -{a_line},{a_len} +{b_line},{b_len} @@\n"));
        for op in hunk {
            let (sign, text) = match op {
                Op::Same(t) => (' ', t),
                Op::Del(t) => ('-', t),
                Op::Add(t) => ('+', t),
            };
            out.push(sign);
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn equal_inputs_have_no_diff() {
        let a = lines("a\nb");
        assert_eq!(unified(&a, &a, "x", "y", 2), "");
    }

    #[test]
    fn a_changed_line_shows_with_context() {
        let a = lines("1\n2\n3\n4\n5\n6\n7");
        let b = lines("1\n2\n3\nfour\n5\n6\n7");
        assert_eq!(
            unified(&a, &b, "rtpengine", "relayd", 1),
            "--- rtpengine\n+++ relayd\n@@ -3,3 +3,3 @@\n 3\n-4\n+four\n 5\n"
        );
    }

    #[test]
    fn distant_changes_make_two_hunks_and_insertions_count() {
        let a = lines("a\nb\nc\nd\ne\nf\ng\nh");
        let b = lines("a\nX\nb\nc\nd\ne\nf\ng");
        let d = unified(&a, &b, "l", "r", 1);
        assert_eq!(
            d,
            "--- l\n+++ r\n@@ -1,2 +1,3 @@\n a\n+X\n b\n@@ -7,2 +8,1 @@\n g\n-h\n"
        );
    }
}
