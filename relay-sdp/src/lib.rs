//! SDP parsing and rewriting (work in progress).
