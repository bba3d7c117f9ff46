//! Benchmarks and load tools for tickwire.
