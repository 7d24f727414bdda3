//! Core benchmarks (filled in with the core).
fn main() {}
