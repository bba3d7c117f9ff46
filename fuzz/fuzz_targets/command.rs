//! `cargo +nightly fuzz run command`: client command parsing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tickwire_engine::fuzz::command(data));
