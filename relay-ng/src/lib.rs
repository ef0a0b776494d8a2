//! rtpengine NG protocol (work in progress).
