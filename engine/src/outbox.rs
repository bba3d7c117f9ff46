//! A client's outbox: the frames waiting to be written to its socket, by reference.
//!
//! Owned by the client's worker thread. It holds [`FrameId`]s into the worker's
//! [`FrameSlab`] and counts the bytes still unwritten against the client's byte budget;
//! the fan-out consults [`Outbox::has_room`] before queueing and conflates instead when
//! there is none (see `docs/flow-control.md`), so an outbox never grows past its budget
//! (a single frame larger than the whole budget is let through when the outbox is empty,
//! or it could never be sent). Writing gathers up to [`MAX_IOVECS`] frames into one
//! vectored write. The queue's capacity grows to its working size and is then reused.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::frames::{FrameId, FrameSlab};

/// Frames gathered into one `writev`.
pub const MAX_IOVECS: usize = 64;

/// Frames waiting for one client's socket.
#[derive(Debug)]
pub struct Outbox {
    /// Frames and when they were queued (ns since the epoch).
    queue: VecDeque<(FrameId, u64)>,
    /// Bytes of the front frame already written.
    head_written: usize,
    /// Bytes queued and not yet written.
    pending_bytes: usize,
    budget_bytes: usize,
    peak_bytes: usize,
    frames_written: u64,
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
            queue: VecDeque::with_capacity(16),
            head_written: 0,
            pending_bytes: 0,
            budget_bytes,
            peak_bytes: 0,
            frames_written: 0,
        }
    }

    /// Whether a frame of `len` bytes fits the budget now.
    pub fn has_room(&self, len: usize) -> bool {
        self.pending_bytes + len <= self.budget_bytes || self.queue.is_empty()
    }

    /// Queues a frame at time `now_ns`, taking a reference to it.
    pub fn push(&mut self, frames: &mut FrameSlab, id: FrameId, now_ns: u64) {
        frames.retain(id);
        self.pending_bytes += frames.len(id);
        self.peak_bytes = self.peak_bytes.max(self.pending_bytes);
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
        self.budget_bytes
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
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
        while !self.queue.is_empty() {
            let written = {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                for (i, &(id, _)) in self.queue.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = frames.bytes(id);
                    iov[i] = IoSlice::new(if i == 0 {
                        &bytes[self.head_written..]
                    } else {
                        bytes
                    });
                    n += 1;
                }
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
            self.consume(frames, written, &mut on_written);
        }
        Ok(WriteOutcome::Drained)
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
            let left = frames.len(front) - self.head_written;
            if written < left {
                self.head_written += written;
                return;
            }
            written -= left;
            self.head_written = 0;
            self.queue.pop_front();
            on_written(frames.ingest_ts(front), queued_ns);
            frames.release(front);
            self.frames_written += 1;
        }
    }

    /// Releases every frame not yet started, keeping a partly written front frame so
    /// the stream stays well-formed for what follows (a close frame).
    pub fn discard_unsent(&mut self, frames: &mut FrameSlab) {
        let keep = usize::from(self.head_written > 0);
        for (id, _) in self.queue.drain(keep..) {
            self.pending_bytes -= frames.len(id);
            frames.release(id);
        }
    }

    /// Releases every queued frame (the client is gone).
    pub fn clear(&mut self, frames: &mut FrameSlab) {
        for (id, _) in self.queue.drain(..) {
            frames.release(id);
        }
        self.head_written = 0;
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
}
