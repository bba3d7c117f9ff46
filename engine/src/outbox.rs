//! A client's outbox: the frames waiting to be written to its socket, by reference.
//!
//! Owned by the client's worker thread. It holds [`FrameId`]s into the worker's
//! [`FrameSlab`] and counts the bytes still unwritten against the client's byte budget;
//! the fan-out consults [`Outbox::has_room`] before queueing and conflates instead when
//! there is none (see `docs/flow-control.md`), so an outbox never grows past its budget
//! (a single frame larger than the whole budget is let through when the outbox is empty,
//! or it could never be sent). Writing gathers up to [`MAX_IOVECS`] frames into one
//! vectored write. The queue's capacity grows to its working size and is then reused;
//! an outbox that never queued anything holds no heap memory.
//!
//! Besides the queue, one *pong slot* holds at most one pong frame outside the budget:
//! it is written at the next frame boundary, ahead of the queue, and a newer pong
//! replaces one not yet started (RFC 6455 §5.5.3 allows answering only the most recent
//! ping). So a client that floods pings without reading costs one pong, never a queue.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::frames::{FrameId, FrameKind, FrameSlab, FrameTag};

/// Frames gathered into one `sendmsg`.
pub const MAX_IOVECS: usize = 64;

/// Frames waiting for one client's socket.
#[derive(Debug)]
pub struct Outbox {
    /// Frames and when they were queued (ns since the epoch).
    queue: VecDeque<(FrameId, u64)>,
    /// When the front frame was queued, kept beside the queue (meaningful while it is
    /// not empty): the fan-out checks it for every client on every frame, and reading
    /// it from the queue's own buffer was a cache miss per client (half of the offer's
    /// cost at 1000 clients, docs/decisions/0003-outbox-oldest-time-inline.md).
    oldest_ns: u64,
    /// Bytes of the front frame already written (a frame is far under 4 GiB; `u32`
    /// with `budget_bytes` keeps the client's slot within its size, conn_size.rs).
    head_written: u32,
    /// Bytes queued and not yet written.
    pending_bytes: usize,
    budget_bytes: u32,
    peak_bytes: usize,
    frames_written: u64,
    /// The pending pong, and how much of it is written.
    pong: Option<FrameId>,
    pong_written: usize,
    /// Vectored write calls made.
    writes: u64,
}

/// What a [`Outbox::write_to`] call achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Everything queued was written.
    Drained,
    /// The socket took what it could; wait until it is writable again.
    Blocked,
}

impl Outbox {
    /// An empty outbox with a byte budget.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            oldest_ns: 0,
            head_written: 0,
            pending_bytes: 0,
            budget_bytes: u32::try_from(budget_bytes).unwrap_or(u32::MAX),
            peak_bytes: 0,
            frames_written: 0,
            pong: None,
            pong_written: 0,
            writes: 0,
        }
    }

    /// Whether a frame of `len` bytes fits the budget now.
    pub fn has_room(&self, len: usize) -> bool {
        self.pending_bytes + len <= self.budget_bytes as usize || self.queue.is_empty()
    }

    /// Queues a frame at time `now_ns`, taking a reference to it.
    pub fn push(&mut self, frames: &mut FrameSlab, id: FrameId, now_ns: u64) {
        frames.retain(id);
        self.pending_bytes += frames.len(id);
        self.peak_bytes = self.peak_bytes.max(self.pending_bytes);
        if self.queue.is_empty() {
            self.oldest_ns = now_ns;
        }
        self.queue.push_back((id, now_ns));
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Largest `pending_bytes` seen.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// Frames fully written since the outbox was made.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// The byte budget.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes as usize
    }

    /// Whether nothing is queued (pong slot included).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.pong.is_none()
    }

    /// When the oldest frame still queued was queued (ns since the epoch).
    pub fn oldest_queued_ns(&self) -> Option<u64> {
        (!self.queue.is_empty()).then_some(self.oldest_ns)
    }

    /// Takes the front frame's queueing time after the front changed.
    fn front_changed(&mut self) {
        if let Some(&(_, t)) = self.queue.front() {
            self.oldest_ns = t;
        }
    }

    /// Vectored write calls made so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Heap bytes held by the queue (memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.queue.capacity() * std::mem::size_of::<(FrameId, u64)>()
    }

    /// Puts a pong frame in the pong slot, taking a reference to it. A pong already
    /// there and not yet started is replaced; one partly written stays, and the new one
    /// is dropped (returns false).
    pub fn set_pong(&mut self, frames: &mut FrameSlab, id: FrameId) -> bool {
        if let Some(old) = self.pong {
            if self.pong_written > 0 {
                return false;
            }
            frames.release(old);
        }
        frames.retain(id);
        self.pong = Some(id);
        true
    }

    /// Writes as much as `write` takes, in vectored writes of up to [`MAX_IOVECS`] frames,
    /// and releases the frames that were fully written, telling `written` each one's
    /// ingest time and queueing time.
    pub fn write_to(
        &mut self,
        frames: &mut FrameSlab,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
        mut on_written: impl FnMut(u64, u64),
    ) -> io::Result<WriteOutcome> {
        while !self.is_empty() {
            // Where the pong goes in this write: first when the queue is at a frame
            // boundary (or the pong was started), else right after the started frame.
            let pong_at = match self.pong {
                None => None,
                Some(_) if self.head_written == 0 || self.pong_written > 0 => Some(0),
                Some(_) => Some(1),
            };
            let written = {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                if let (Some(0), Some(p)) = (pong_at, self.pong) {
                    iov[0] = IoSlice::new(&frames.bytes(p)[self.pong_written..]);
                    n = 1;
                }
                let take = if pong_at == Some(1) {
                    1
                } else {
                    MAX_IOVECS - n
                };
                for (i, &(id, _)) in self.queue.iter().take(take).enumerate() {
                    let bytes = frames.bytes(id);
                    iov[n] = IoSlice::new(if i == 0 {
                        &bytes[self.head_written as usize..]
                    } else {
                        bytes
                    });
                    n += 1;
                }
                if let (Some(1), Some(p)) = (pong_at, self.pong) {
                    iov[n] = IoSlice::new(frames.bytes(p));
                    n += 1;
                }
                self.writes += 1;
                match write(&iov[..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(w) => w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(WriteOutcome::Blocked)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            let mut written = written;
            if pong_at == Some(1) {
                let head_left = self
                    .queue
                    .front()
                    .map_or(0, |&(id, _)| frames.len(id) - self.head_written as usize);
                let q = written.min(head_left);
                self.consume(frames, q, &mut on_written);
                written -= q;
            }
            if pong_at.is_some() && (pong_at == Some(0) || written > 0) {
                written = self.consume_pong(frames, written);
            }
            if pong_at != Some(1) {
                self.consume(frames, written, &mut on_written);
            }
        }
        Ok(WriteOutcome::Drained)
    }

    /// Counts `written` bytes against the pong; returns what is left over.
    fn consume_pong(&mut self, frames: &mut FrameSlab, written: usize) -> usize {
        let Some(p) = self.pong else {
            return written;
        };
        let left = frames.len(p) - self.pong_written;
        if written < left {
            self.pong_written += written;
            return 0;
        }
        self.pong_written = 0;
        self.pong = None;
        frames.release(p);
        written - left
    }

    fn consume(
        &mut self,
        frames: &mut FrameSlab,
        mut written: usize,
        on_written: &mut impl FnMut(u64, u64),
    ) {
        self.pending_bytes -= written;
        while written > 0 {
            let Some(&(front, queued_ns)) = self.queue.front() else {
                break;
            };
            let left = frames.len(front) - self.head_written as usize;
            if written < left {
                // Less than the rest of one frame: fits, as the frame's length does.
                self.head_written += written as u32;
                return;
            }
            written -= left;
            self.head_written = 0;
            self.queue.pop_front();
            self.front_changed();
            on_written(frames.ingest_ts(front), queued_ns);
            frames.release(front);
            self.frames_written += 1;
        }
    }

    /// Drops every data frame not yet started (replies, control frames and a partly
    /// written front frame stay, in order), telling `dropped` what each carried, so the
    /// caller can mark the subscriptions for catch-up.
    pub fn discard_data(&mut self, frames: &mut FrameSlab, mut dropped: impl FnMut(FrameTag)) {
        let keep_head = self.head_written > 0;
        let mut index = 0usize;
        let mut freed = 0usize;
        self.queue.retain(|&(id, _)| {
            let i = index;
            index += 1;
            let tag = frames.tag(id);
            if (i == 0 && keep_head) || tag.kind == FrameKind::Reply {
                return true;
            }
            freed += frames.len(id);
            dropped(tag);
            frames.release(id);
            false
        });
        self.front_changed();
        self.pending_bytes -= freed;
    }

    /// Releases every frame not yet started, keeping a partly written front frame so
    /// the stream stays well-formed for what follows (a close frame).
    pub fn discard_unsent(&mut self, frames: &mut FrameSlab) {
        let keep = usize::from(self.head_written > 0);
        for (id, _) in self.queue.drain(keep..) {
            self.pending_bytes -= frames.len(id);
            frames.release(id);
        }
        if self.pong_written == 0 {
            if let Some(p) = self.pong.take() {
                frames.release(p);
            }
        }
    }

    /// Releases every queued frame (the client is gone).
    pub fn clear(&mut self, frames: &mut FrameSlab) {
        for (id, _) in self.queue.drain(..) {
            frames.release(id);
        }
        if let Some(p) = self.pong.take() {
            frames.release(p);
        }
        self.queue = VecDeque::new();
        self.head_written = 0;
        self.pong_written = 0;
        self.pending_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(slab: &mut FrameSlab, text: &[u8]) -> FrameId {
        let (id, buf) = slab.alloc();
        buf.extend_from_slice(text);
        slab.seal(id, 0);
        id
    }

    #[test]
    fn partial_writes_resume_where_they_stopped_and_release_frames() {
        let mut slab = FrameSlab::new();
        let mut out = Outbox::new(100);
        let a = frame(&mut slab, b"abc");
        let b = frame(&mut slab, b"defg");
        out.push(&mut slab, a, 0);
        out.push(&mut slab, b, 0);
        slab.release(a);
        slab.release(b);
        assert_eq!(out.pending_bytes(), 7);
        let mut wire = Vec::new();
        let mut budget = [2usize, 3, 100];
        let mut call = 0;
        loop {
            let outcome = out
                .write_to(
                    &mut slab,
                    |iov| {
                        let allowed = budget.get(call).copied().unwrap_or(0);
                        call += 1;
                        if allowed == 0 {
                            return Err(io::ErrorKind::WouldBlock.into());
                        }
                        let mut n = 0;
                        for s in iov {
                            let take = s.len().min(allowed - n);
                            wire.extend_from_slice(&s[..take]);
                            n += take;
                        }
                        Ok(n)
                    },
                    |_, _| {},
                )
                .unwrap();
            if outcome == WriteOutcome::Drained {
                break;
            }
            budget[0] = 0;
        }
        assert_eq!(wire, b"abcdefg");
        assert!(out.is_empty());
        assert_eq!(slab.live(), 0, "written frames are released");
    }

    #[test]
    fn discarding_keeps_a_partly_written_frame_whole() {
        let mut slab = FrameSlab::new();
        let mut out = Outbox::new(100);
        for text in [&b"abc"[..], b"def", b"ghi"] {
            let id = frame(&mut slab, text);
            out.push(&mut slab, id, 0);
            slab.release(id);
        }
        let mut wire = Vec::new();
        let mut first = true;
        out.write_to(
            &mut slab,
            |iov| {
                if !std::mem::take(&mut first) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                wire.extend_from_slice(&iov[0][..2]);
                Ok(2)
            },
            |_, _| {},
        )
        .unwrap();
        out.discard_unsent(&mut slab);
        assert_eq!(out.pending_bytes(), 1, "the rest of the started frame");
        out.write_to(
            &mut slab,
            |iov| {
                wire.extend_from_slice(&iov[0]);
                Ok(iov[0].len())
            },
            |_, _| {},
        )
        .unwrap();
        assert_eq!(wire, b"abc");
        assert_eq!(slab.live(), 0);
    }

    #[test]
    fn budget_is_enforced_but_never_starves_an_empty_outbox() {
        let mut slab = FrameSlab::new();
        let mut out = Outbox::new(5);
        assert!(out.has_room(50), "an oversized frame may go alone");
        let a = frame(&mut slab, b"abcd");
        out.push(&mut slab, a, 0);
        assert!(out.has_room(1));
        assert!(!out.has_room(2));
        out.clear(&mut slab);
        slab.release(a);
        assert_eq!(slab.live(), 0);
    }

    #[test]
    fn the_oldest_queued_time_follows_the_front_frame() {
        let mut slab = FrameSlab::new();
        let mut out = Outbox::new(100);
        assert_eq!(out.oldest_queued_ns(), None);
        let reply = frame(&mut slab, b"re"); // untagged: a reply
        let mut data = Vec::new();
        for (text, at) in [(&b"abc"[..], 10u64), (b"def", 20), (b"ghi", 30)] {
            let id = frame(&mut slab, text);
            slab.set_tag(
                id,
                FrameTag::data(FrameKind::Trade, crate::symbol::SymbolId(0)),
            );
            out.push(&mut slab, id, at);
            data.push(id);
        }
        out.push(&mut slab, reply, 40);
        assert_eq!(out.oldest_queued_ns(), Some(10), "the first push sets it");
        let mut wire = Vec::new();
        write_at_most(&mut out, &mut slab, 3, &mut wire);
        assert_eq!(out.oldest_queued_ns(), Some(20), "the written frame left");
        write_at_most(&mut out, &mut slab, 1, &mut wire);
        assert_eq!(
            out.oldest_queued_ns(),
            Some(20),
            "a started frame is still queued"
        );
        out.discard_data(&mut slab, |_| {});
        assert_eq!(
            out.oldest_queued_ns(),
            Some(20),
            "the started frame stays at the front"
        );
        write_at_most(&mut out, &mut slab, 2, &mut wire);
        assert_eq!(out.oldest_queued_ns(), Some(40), "only the reply is left");
        write_at_most(&mut out, &mut slab, 100, &mut wire);
        assert_eq!(out.oldest_queued_ns(), None);
        assert_eq!(wire, b"abcdefre");
        let late = frame(&mut slab, b"jk");
        out.push(&mut slab, late, 50);
        assert_eq!(
            out.oldest_queued_ns(),
            Some(50),
            "an empty outbox starts anew"
        );
        out.clear(&mut slab);
        for id in data.into_iter().chain([reply, late]) {
            slab.release(id);
        }
        assert_eq!(slab.live(), 0);
    }

    /// One `write_to` whose socket takes at most `limit` bytes, then blocks.
    fn write_at_most(out: &mut Outbox, slab: &mut FrameSlab, limit: usize, wire: &mut Vec<u8>) {
        let mut left = limit;
        let _ = out.write_to(
            slab,
            |iov| {
                if left == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let mut n = 0;
                for s in iov {
                    let take = s.len().min(left);
                    wire.extend_from_slice(&s[..take]);
                    n += take;
                    left -= take;
                }
                Ok(n)
            },
            |_, _| {},
        );
    }

    #[test]
    fn pong_flood_keeps_one_pong_which_jumps_the_queue_at_a_frame_boundary() {
        let mut slab = FrameSlab::new();
        let mut out = Outbox::new(100);
        for text in [&b"DATA"[..], b"MORE"] {
            let id = frame(&mut slab, text);
            out.push(&mut slab, id, 0);
            slab.release(id);
        }
        let mut wire = Vec::new();
        write_at_most(&mut out, &mut slab, 2, &mut wire);
        for i in 0..1000u32 {
            let p = frame(&mut slab, &i.to_be_bytes());
            assert!(out.set_pong(&mut slab, p), "an unstarted pong is replaced");
            slab.release(p);
        }
        assert_eq!(
            slab.live(),
            3,
            "two data frames and one pong, however many pings"
        );
        // The started frame finishes first; the pong goes at the boundary, before MORE.
        write_at_most(&mut out, &mut slab, 4, &mut wire);
        let p = frame(&mut slab, b"new");
        assert!(
            !out.set_pong(&mut slab, p),
            "a started pong is not replaced"
        );
        slab.release(p);
        write_at_most(&mut out, &mut slab, 100, &mut wire);
        let mut expect = b"DATA".to_vec();
        expect.extend_from_slice(&999u32.to_be_bytes());
        expect.extend_from_slice(b"MORE");
        assert_eq!(wire, expect);
        assert!(out.is_empty());
        assert_eq!(slab.live(), 0);
    }
}
