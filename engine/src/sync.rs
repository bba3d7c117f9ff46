//! The one seam for the synchronization primitives of [`crate::ring`] and
//! [`crate::wake`], so that loom can model them.
//!
//! Built normally, these are `std`'s atomics and `Arc`; built with `--cfg tickwire_loom` they are
//! loom's, which explore every interleaving and every value a relaxed load may return.
//! Only the ring and the parker import from here: the rest of the engine keeps `std`.
//! `Ordering` is `std`'s in both builds (loom uses it too).

#[cfg(tickwire_loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU64},
    Arc, Notify,
};
#[cfg(not(tickwire_loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU64},
    Arc,
};

pub(crate) use std::sync::atomic::Ordering;
