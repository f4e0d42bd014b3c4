//! A small measuring harness shared by the benchmarks.
