//! Snapshots of sockets inherited across `fork`, waiting for their first use in the child.
//!
//! A fixed table in `.bss` (no allocation). The fork child copies each tracked socket's identity
//! here instead of claiming slots eagerly: a child that execs or exits at once (the common case
//! after `fork`) then costs nothing, and one that uses the socket gets a slot of its own even if
//! the parent has closed its copy meanwhile.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};
use netmon_proto::Addr;

pub const CAPACITY: usize = 4096;

#[derive(Clone, Copy)]
pub struct Snapshot {
    pub kind: u32,
    pub flags: u32,
    pub connect_state: u32,
    pub remote: Addr,
    pub local: Addr,
}

const FREE: u32 = 0;
const FULL: u32 = 1;
const BUSY: u32 = 2;

struct Entry {
    state: AtomicU32,
    data: UnsafeCell<Snapshot>,
}

// SAFETY: `data` is only accessed by the thread that moved `state` to BUSY.
unsafe impl Sync for Entry {}

static TABLE: [Entry; CAPACITY] = [const {
    Entry {
        state: AtomicU32::new(FREE),
        data: UnsafeCell::new(Snapshot {
            kind: 0,
            flags: 0,
            connect_state: 0,
            remote: Addr::NONE,
            local: Addr::NONE,
        }),
    }
}; CAPACITY];

/// Stores a snapshot; returns its index, or `None` when the table is full.
pub fn put(s: Snapshot) -> Option<u32> {
    for (i, e) in TABLE.iter().enumerate() {
        if e.state
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: we own the entry while it is BUSY.
            unsafe { *e.data.get() = s };
            // Release: pairs with the Acquire in `take`.
            e.state.store(FULL, Ordering::Release);
            return Some(i as u32);
        }
    }
    None
}

/// Removes and returns snapshot `i`.
pub fn take(i: u32) -> Option<Snapshot> {
    let e = TABLE.get(i as usize)?;
    e.state
        .compare_exchange(FULL, BUSY, Ordering::Acquire, Ordering::Relaxed)
        .ok()?;
    // SAFETY: we own the entry while it is BUSY.
    let s = unsafe { *e.data.get() };
    e.state.store(FREE, Ordering::Release);
    Some(s)
}

/// Drops snapshot `i` (the fd was closed before first use).
pub fn forget(i: u32) {
    if let Some(e) = TABLE.get(i as usize) {
        let _ = e
            .state
            .compare_exchange(FULL, FREE, Ordering::Release, Ordering::Relaxed);
    }
}
