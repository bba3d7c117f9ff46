//! Feed handlers: each turns a source of market data into ticks published on its ring.
