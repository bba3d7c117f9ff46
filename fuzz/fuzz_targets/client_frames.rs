//! `cargo +nightly fuzz run client_frames`: the WebSocket client-frame reader.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tickwire_engine::fuzz::client_frames(data));
