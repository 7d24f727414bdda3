//! Codec benchmarks (filled in with the codecs).
fn main() {}
