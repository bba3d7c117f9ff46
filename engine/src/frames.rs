//! Shared, pooled WebSocket frames: each event is encoded once into a complete frame that
//! any number of client outboxes reference by [`FrameId`].
//!
//! Owned by one worker thread (no atomics, no locks). A frame holds a reference count:
//! the encoder's own reference plus one per outbox holding it. When it drops to zero the
//! slot, with its buffer's capacity, goes back to a free list, so in steady state
//! encoding allocates nothing: the slab grows only to the number of frames in flight.

use crate::protocol::frame;

/// What a frame carries, for dropping it when it is stale: a data frame can be replaced
/// by a catch-up (latest ticker, snapshot, gap); a reply or control frame cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameKind {
    /// A reply, a control frame, a gap: never dropped.
    #[default]
    Reply,
    /// A ticker of the tagged symbol.
    Ticker,
    /// A trade of the tagged symbol, with its seq.
    Trade,
    /// A book update or snapshot of the tagged symbol.
    Book,
}

/// A frame's [`FrameKind`], symbol and seq.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameTag {
    /// What it carries.
    pub kind: FrameKind,
    /// The symbol (dense id), for data frames.
    pub symbol: u32,
    /// The trade seq, for trades.
    pub seq: u64,
}

impl FrameTag {
    /// A tag for a ticker or book frame of `symbol`.
    pub fn data(kind: FrameKind, symbol: crate::symbol::SymbolId) -> FrameTag {
        FrameTag {
            kind,
            symbol: symbol.0,
            seq: 0,
        }
    }
}

/// Handle of a frame in a [`FrameSlab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameId(u32);

#[derive(Debug, Default)]
struct Slot {
    buf: Vec<u8>,
    start: usize,
    refs: u32,
    /// Ingest time of the event the frame carries; 0 for replies and control frames.
    ingest_ts: u64,
    tag: FrameTag,
}

/// Buffers larger than this are shrunk when freed, so one huge snapshot does not pin its
/// memory in a slot forever.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Pool of encoded frames, owned by one worker.
#[derive(Debug, Default)]
pub struct FrameSlab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl FrameSlab {
    /// An empty slab.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a slot for a new frame (holding the caller's one reference) and returns its
    /// cleared buffer; encode into it, then call [`FrameSlab::seal`].
    pub fn alloc(&mut self) -> (FrameId, &mut Vec<u8>) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.buf.clear();
        slot.start = 0;
        slot.refs = 1;
        slot.ingest_ts = 0;
        slot.tag = FrameTag::default();
        (FrameId(index), &mut slot.buf)
    }

    /// Encodes one text frame: `payload` appends the JSON, this adds the WebSocket header.
    /// The caller holds the one reference.
    pub fn text(&mut self, payload: impl FnOnce(&mut Vec<u8>)) -> FrameId {
        let (id, buf) = self.alloc();
        frame::begin(buf);
        payload(buf);
        let start = frame::finish(buf, frame::OpCode::Text);
        self.seal(id, start);
        id
    }

    /// Encodes one control frame (close, ping, pong) with `write`, which returns where the
    /// frame starts. The caller holds the one reference.
    pub fn control(&mut self, write: impl FnOnce(&mut Vec<u8>) -> usize) -> FrameId {
        let (id, buf) = self.alloc();
        let start = write(buf);
        self.seal(id, start);
        id
    }

    /// Records where the frame starts in its buffer (as returned by `frame::finish`).
    pub fn seal(&mut self, id: FrameId, start: usize) {
        self.slots[id.0 as usize].start = start;
    }

    /// Marks the frame as carrying an event ingested at `ingest_ts` (for latency).
    pub fn set_ingest_ts(&mut self, id: FrameId, ingest_ts: u64) {
        self.slots[id.0 as usize].ingest_ts = ingest_ts;
    }

    /// Tags the frame with what it carries (data frames; replies stay untagged).
    pub fn set_tag(&mut self, id: FrameId, tag: FrameTag) {
        self.slots[id.0 as usize].tag = tag;
    }

    /// What the frame carries.
    pub fn tag(&self, id: FrameId) -> FrameTag {
        self.slots[id.0 as usize].tag
    }

    /// Ingest time of the frame's event (0 for replies and control frames).
    pub fn ingest_ts(&self, id: FrameId) -> u64 {
        self.slots[id.0 as usize].ingest_ts
    }

    /// The frame's bytes.
    pub fn bytes(&self, id: FrameId) -> &[u8] {
        let slot = &self.slots[id.0 as usize];
        &slot.buf[slot.start..]
    }

    /// Length of the frame in bytes.
    pub fn len(&self, id: FrameId) -> usize {
        let slot = &self.slots[id.0 as usize];
        slot.buf.len() - slot.start
    }

    /// Adds a reference (an outbox now holds the frame).
    pub fn retain(&mut self, id: FrameId) {
        self.slots[id.0 as usize].refs += 1;
    }

    /// Drops a reference; the last one frees the slot.
    pub fn release(&mut self, id: FrameId) {
        let slot = &mut self.slots[id.0 as usize];
        debug_assert!(slot.refs > 0, "frame released more often than retained");
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs == 0 {
            if slot.buf.capacity() > KEEP_CAPACITY {
                slot.buf = Vec::new();
            }
            self.free.push(id.0);
        }
    }

    /// Frames currently referenced.
    pub fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frees_on_last_release_and_reuses_the_slot() {
        let mut slab = FrameSlab::new();
        let (a, buf) = slab.alloc();
        buf.extend_from_slice(b"..hello");
        slab.seal(a, 2);
        assert_eq!(slab.bytes(a), b"hello");
        slab.retain(a);
        slab.retain(a);
        slab.release(a);
        slab.release(a);
        assert_eq!(slab.live(), 1);
        slab.release(a);
        assert_eq!(slab.live(), 0);
        let (b, buf) = slab.alloc();
        assert!(
            buf.is_empty() && buf.capacity() >= 7,
            "buffer reused with its capacity"
        );
        assert_eq!(a, b);
    }
}
