//! Spelling-insensitive names for keys, flags and option values.
//!
//! rtpengine lists several spellings of each name ("strict-source",
//! "strict source", "SIP-source-address", "sip source address", ...). Rather
//! than copy those lists, names are compared after folding ASCII case and
//! treating `-`, `_` and space alike, which accepts every spelling rtpengine
//! accepts (and a few more).

/// The canonical form: ASCII lowercase, with `_` and ` ` turned into `-`.
pub(crate) fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_separators() {
        for spelling in [
            "SIP-source-address",
            "sip source address",
            "SIP_Source_Address",
            "sip-source-address",
        ] {
            assert_eq!(normalize(spelling), "sip-source-address");
        }
        assert_eq!(normalize("RTP/AVP"), "rtp/avp");
        assert_eq!(normalize("übung"), "übung");
    }
}
