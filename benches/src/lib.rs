//! Benchmarks live in `benches/`; see docs/benchmarks.md. This library holds
//! the parts of `xrelay-bench` (the driver `cargo xtask bench` runs) that
//! need more than one file: the NG control-plane benchmark, the soak and
//! the netns throughput benchmark.

pub mod interrupt;
pub mod latency;
pub mod ng;
pub mod ng_flood;
pub mod soak;
pub mod throughput;
pub mod traffic;
