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

/// Where a frame's bytes (or a run of consecutive frames' bytes) lie in the slab's
/// arena: a chunk and a byte range in it. Frames encoded one after another into the
/// same chunk are adjacent, so a client's queued frames can be written as one slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    chunk: u32,
    from: u32,
    to: u32,
}

impl Span {
    /// Extends this span by `next` when `next` starts where this one ends in the same
    /// chunk; returns whether it did.
    pub fn join(&mut self, next: Span) -> bool {
        if self.chunk == next.chunk && self.to == next.from {
            self.to = next.to;
            return true;
        }
        false
    }

    /// The span without its first `n` bytes (the part of a frame already written).
    pub fn skip(self, n: usize) -> Span {
        Span {
            from: (self.from as usize + n).min(self.to as usize) as u32,
            ..self
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        (self.to - self.from) as usize
    }

    /// Whether the span holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.to == self.from
    }
}

#[derive(Debug, Default)]
struct Slot {
    chunk: u32,
    start: u32,
    len: u32,
    refs: u32,
    /// Ingest time of the event the frame carries; 0 for replies and control frames.
    ingest_ts: u64,
    tag: FrameTag,
}

/// A block of the arena, and how many live frames it holds.
#[derive(Debug, Default)]
struct Chunk {
    buf: Vec<u8>,
    live: u32,
}

/// Bytes of one arena chunk. Small enough that a frame a stuck client still holds pins
/// little (one chunk), large enough that a client's whole round of frames (a hundred
/// trades) is usually one slice.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// Frames larger than this get a chunk of their own (a book snapshot), so they neither
/// waste the rest of a shared chunk nor pin one.
const OWN_CHUNK_ABOVE: usize = CHUNK_BYTES / 4;

/// Chunk buffers larger than this are dropped when freed, so one huge snapshot does not
/// pin its memory forever.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Pool of encoded frames, owned by one worker.
///
/// Frames are encoded into a scratch buffer (the WebSocket header is written in front
/// of the payload once its length is known), then copied to the end of the current
/// arena chunk. The copy is once per frame, not per client, and buys contiguity: on
/// loopback the kernel's copy into the socket costs about as much per iovec as per
/// 169-byte frame, so a run of adjacent frames is written as one iovec
/// (`docs/benchmarks.md`, "Write path"). A chunk whose last live frame is released is
/// reused (the current one is rewound in place), so in steady state nothing allocates.
#[derive(Debug, Default)]
pub struct FrameSlab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    chunks: Vec<Chunk>,
    free_chunks: Vec<u32>,
    /// The chunk new small frames are appended to.
    current: Option<u32>,
    scratch: Vec<u8>,
}

impl FrameSlab {
    /// An empty slab.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a slot for a new frame (holding the caller's one reference) and returns the
    /// cleared scratch buffer; encode into it, then call [`FrameSlab::seal`] before the
    /// next `alloc`.
    pub fn alloc(&mut self) -> (FrameId, &mut Vec<u8>) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.refs = 1;
        slot.len = 0;
        slot.ingest_ts = 0;
        slot.tag = FrameTag::default();
        self.scratch.clear();
        (FrameId(index), &mut self.scratch)
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

    /// Stores the frame encoded in the scratch buffer since [`FrameSlab::alloc`], from
    /// `start` (as returned by `frame::finish`), in the arena.
    pub fn seal(&mut self, id: FrameId, start: usize) {
        let start = start.min(self.scratch.len());
        let len = self.scratch.len() - start;
        let chunk = if len > OWN_CHUNK_ABOVE {
            let c = self.take_chunk(0);
            self.chunks[c as usize]
                .buf
                .extend_from_slice(&self.scratch[start..]);
            c
        } else {
            let c = match self.current {
                Some(c) if self.chunks[c as usize].buf.len() + len <= CHUNK_BYTES => c,
                _ => {
                    let c = self.take_chunk(CHUNK_BYTES);
                    self.current = Some(c);
                    c
                }
            };
            self.chunks[c as usize]
                .buf
                .extend_from_slice(&self.scratch[start..]);
            c
        };
        let chunk_ref = &mut self.chunks[chunk as usize];
        chunk_ref.live += 1;
        let slot = &mut self.slots[id.0 as usize];
        slot.chunk = chunk;
        slot.start = (chunk_ref.buf.len() - len) as u32;
        slot.len = len as u32;
    }

    /// An empty chunk with room for `capacity` bytes: a freed one, else a new one.
    fn take_chunk(&mut self, capacity: usize) -> u32 {
        let c = match self.free_chunks.pop() {
            Some(c) => c,
            None => {
                self.chunks.push(Chunk::default());
                (self.chunks.len() - 1) as u32
            }
        };
        let chunk = &mut self.chunks[c as usize];
        chunk.buf.clear();
        chunk.buf.reserve_exact(capacity);
        chunk.live = 0;
        c
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
        self.span_bytes(self.span(id))
    }

    /// Where the frame's bytes lie in the arena.
    pub fn span(&self, id: FrameId) -> Span {
        let slot = &self.slots[id.0 as usize];
        Span {
            chunk: slot.chunk,
            from: slot.start,
            to: slot.start + slot.len,
        }
    }

    /// The bytes of a span of live frames.
    pub fn span_bytes(&self, span: Span) -> &[u8] {
        &self.chunks[span.chunk as usize].buf[span.from as usize..span.to as usize]
    }

    /// Length of the frame in bytes.
    pub fn len(&self, id: FrameId) -> usize {
        self.slots[id.0 as usize].len as usize
    }

    /// Adds a reference (an outbox now holds the frame).
    pub fn retain(&mut self, id: FrameId) {
        self.slots[id.0 as usize].refs += 1;
    }

    /// Drops a reference; the last one frees the slot, and its chunk when it was the
    /// chunk's last live frame.
    pub fn release(&mut self, id: FrameId) {
        let slot = &mut self.slots[id.0 as usize];
        debug_assert!(slot.refs > 0, "frame released more often than retained");
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs != 0 {
            return;
        }
        let c = slot.chunk;
        self.free.push(id.0);
        let Some(chunk) = self.chunks.get_mut(c as usize) else {
            return;
        };
        chunk.live = chunk.live.saturating_sub(1);
        if chunk.live > 0 {
            return;
        }
        if self.current == Some(c) {
            // Nothing refers to it: rewind and keep appending from the start.
            chunk.buf.clear();
            return;
        }
        if chunk.buf.capacity() > KEEP_CAPACITY {
            chunk.buf = Vec::new();
        }
        self.free_chunks.push(c);
    }

    /// Frames currently referenced.
    pub fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Arena chunks in use (holding live frames, or the current one).
    pub fn chunks_in_use(&self) -> usize {
        self.chunks.len() - self.free_chunks.len()
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

    fn push(slab: &mut FrameSlab, len: usize) -> FrameId {
        slab.control(|buf| {
            buf.resize(len, b'x');
            0
        })
    }

    #[test]
    fn consecutive_frames_are_adjacent_until_the_chunk_is_full() {
        let mut slab = FrameSlab::new();
        let per_chunk = CHUNK_BYTES / 169;
        let ids: Vec<FrameId> = (0..per_chunk + 1).map(|_| push(&mut slab, 169)).collect();
        let mut run = slab.span(ids[0]);
        for &id in &ids[1..per_chunk] {
            assert!(run.join(slab.span(id)));
        }
        assert_eq!(run.len(), per_chunk * 169);
        assert!(!run.join(slab.span(ids[per_chunk])), "the next chunk");
        assert_eq!(slab.chunks_in_use(), 2);
        for id in ids {
            slab.release(id);
        }
        assert_eq!(slab.live(), 0);
    }

    #[test]
    fn freed_chunks_are_reused_so_steady_state_stops_growing() {
        let mut slab = FrameSlab::new();
        let mut held = std::collections::VecDeque::new();
        // A window of 500 frames in flight, slid 20,000 times.
        for _ in 0..20_000 {
            held.push_back(push(&mut slab, 169));
            if held.len() > 500 {
                let id = held.pop_front().unwrap();
                slab.release(id);
            }
        }
        let chunks = slab.chunks.len();
        assert!(chunks <= 500 * 169 / CHUNK_BYTES + 2, "{chunks} chunks");
        for id in held {
            slab.release(id);
        }
        assert_eq!(slab.chunks_in_use(), 1, "only the current chunk");
    }

    #[test]
    fn a_large_frame_gets_its_own_chunk_and_leaves_the_run_alone() {
        let mut slab = FrameSlab::new();
        let a = push(&mut slab, 100);
        let big = push(&mut slab, 100_000);
        let b = push(&mut slab, 100);
        let mut run = slab.span(a);
        assert!(run.join(slab.span(b)), "the small frames stay adjacent");
        assert_eq!(slab.bytes(big).len(), 100_000);
        slab.release(big);
        assert!(
            slab.chunks
                .iter()
                .all(|c| c.buf.capacity() <= KEEP_CAPACITY),
            "the large buffer is dropped when freed"
        );
        slab.release(a);
        slab.release(b);
        assert_eq!(slab.live(), 0);
    }
}
