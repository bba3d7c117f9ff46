//! `cargo +nightly fuzz run binance`: the Binance decoder, one message per line of a session
//! (see `tickwire_feeds::fuzz`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tickwire_feeds::fuzz::binance(data));
