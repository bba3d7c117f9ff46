//! Fuzz targets: the parsers that take untrusted bytes, as plain functions that must
//! never panic whatever the input. `fuzz/` runs them under cargo-fuzz (nightly);
//! `engine/tests/fuzz_targets.rs` runs the same functions on stable in CI, over seeds and
//! bounded deterministic mutations of them. A crash found either way becomes a seed.

use crate::protocol::client_frames::{ClientFrameReader, Flow};
use crate::protocol::command;

/// Client frames: the bytes in one piece and split at a point taken from the input;
/// both must end the same way, and nothing may panic. Run with the protocol's reader
/// and with the echo endpoint's (binary accepted).
pub fn client_frames(data: &[u8]) {
    client_frames_with(data, ClientFrameReader::new);
    client_frames_with(data, ClientFrameReader::accepting_binary);
}

fn client_frames_with(data: &[u8], make: fn() -> ClientFrameReader) {
    let split = data.first().map_or(0, |b| usize::from(*b)) % (data.len() + 1);
    let limit = 64 * 1024;
    let mut whole = data.to_vec();
    let mut reader = make();
    let mut events = 0usize;
    let a = reader.feed(&mut whole, limit, |_| {
        events += 1;
        Flow::Continue
    });
    let mut parts = data.to_vec();
    let (first, second) = parts.split_at_mut(split);
    let mut reader = make();
    let mut split_events = 0usize;
    let b = reader
        .feed(first, limit, |_| {
            split_events += 1;
            Flow::Continue
        })
        .and_then(|()| {
            reader.feed(second, limit, |_| {
                split_events += 1;
                Flow::Continue
            })
        });
    assert_eq!(
        a.is_ok(),
        b.is_ok(),
        "the same bytes, split, end the same way"
    );
    assert_eq!(
        events, split_events,
        "the same bytes, split, give the same events"
    );
    assert!(reader.heap_bytes() <= limit + 125);
}

/// Client commands: any bytes give a command or an error, never a panic.
pub fn command(data: &[u8]) {
    let mut bytes = data.to_vec();
    let _ = command::peek_id(&bytes);
    let _ = command::parse(&mut bytes);
}
