//! `cargo +nightly fuzz run kraken`: the Kraken decoder, one message per line of a session
//! (see `tickwire_feeds::fuzz`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tickwire_feeds::fuzz::kraken(data));
