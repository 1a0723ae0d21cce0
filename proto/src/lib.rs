//! The shared-memory ABI between `libnetmon.so` (the producer) and the `netmon` collector
//! (the consumer).
//!
//! One file, mapped `MAP_SHARED` by every monitored process and by the collector, holds:
//!
//! ```text
//! +--------------------+  offset 0
//! | Header             |  magic, ABI version, sizes, global loss counters
//! +--------------------+  header.rings_offset
//! | Ring 0             |  RingControl + ring_capacity event slots (one producer thread each)
//! | Ring 1 ...         |
//! +--------------------+  header.sockets_offset
//! | SocketSlot 0 ...   |  live per-socket counters (bytes, TCP quality, addresses)
//! +--------------------+  header.total_size
//! ```
//!
//! Events (DNS lookups, connection attempts, accepts, process starts) go through single-producer
//! rings: a thread claims a free ring from the pool the first time it records something, so the
//! producer path is a few atomics and a copy, and a writer that dies mid-record never stalls
//! anyone else. Byte counters do not go through the rings: they live in [`SocketSlot`]s that the
//! collector reads at any moment, which is what makes per-invocation deltas of long-lived
//! (keep-alive) connections possible.
//!
//! Every type here is `#[repr(C)]`, made only of integers (any bit pattern is a valid value), and
//! its size is fixed by a compile-time assertion. Any layout change bumps [`ABI_VERSION`].
//!
//! The collector treats the mapping as hostile: [`ring::RingRef::consume`] and the collector validate every index, length and
//! enum before use.

#![no_std]

pub mod event;
pub mod layout;
pub mod region;
pub mod ring;

pub use event::*;
pub use layout::*;
