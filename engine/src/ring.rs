//! INTERIM stand-in for the lock-free ring (being written on branch `ring`); same API.
#![allow(missing_docs)]
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub trait RingItem: Copy + Send + 'static {}
impl RingItem for crate::tick::Tick {}

struct Shared<T> {
    q: Mutex<(u64, VecDeque<T>)>,
    cap: usize,
}

pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    pending: Vec<T>,
}
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    next: u64,
}
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    Empty,
    Lagged(u64),
}

pub fn ring<T: RingItem>(cap: usize) -> Producer<T> {
    Producer {
        shared: Arc::new(Shared {
            q: Mutex::new((0, VecDeque::new())),
            cap,
        }),
        pending: Vec::new(),
    }
}
impl<T: RingItem> Producer<T> {
    pub fn push(&mut self, t: T) {
        self.pending.push(t)
    }
    pub fn publish(&mut self) {
        let mut q = self.shared.q.lock().unwrap();
        for t in self.pending.drain(..) {
            q.0 += 1;
            q.1.push_back(t);
            if q.1.len() > self.shared.cap {
                q.1.pop_front();
            }
        }
    }
    pub fn cursor(&self) -> u64 {
        self.shared.q.lock().unwrap().0
    }
    pub fn subscribe(&self) -> Consumer<T> {
        Consumer {
            shared: self.shared.clone(),
            next: self.cursor(),
        }
    }
}
impl<T: RingItem> Consumer<T> {
    pub fn try_recv(&mut self) -> Result<T, RecvError> {
        let q = self.shared.q.lock().unwrap();
        let first = q.0 - q.1.len() as u64;
        if self.next < first {
            let missed = first - self.next;
            self.next = first;
            return Err(RecvError::Lagged(missed));
        }
        if self.next >= q.0 {
            return Err(RecvError::Empty);
        }
        let t = q.1[(self.next - first) as usize];
        self.next += 1;
        Ok(t)
    }
    pub fn position(&self) -> u64 {
        self.next
    }
    pub fn skip_to(&mut self, pos: u64) {
        self.next = pos
    }
}
