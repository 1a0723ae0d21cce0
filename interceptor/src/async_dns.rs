//! `getaddrinfo_a` requests in flight: their start times, until the program learns the outcome
//! through `gai_error` (or `GAI_WAIT` returns). A fixed lock-free table; requests beyond its
//! capacity are simply not recorded.

use crate::dns::Gaicb;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const CAPACITY: usize = 64;

struct Pending {
    req: AtomicUsize,
    wall: AtomicU64,
    start: AtomicU64,
}

static PENDING: [Pending; CAPACITY] = [const {
    Pending {
        req: AtomicUsize::new(0),
        wall: AtomicU64::new(0),
        start: AtomicU64::new(0),
    }
}; CAPACITY];

/// Marks a reserved entry: its times are being written.
const WRITING: usize = 1;

pub fn started(req: *mut Gaicb, wall: u64, start: u64) {
    if req.is_null() {
        return;
    }
    for p in PENDING.iter() {
        if p.req
            .compare_exchange(0, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            p.wall.store(wall, Ordering::Relaxed);
            p.start.store(start, Ordering::Relaxed);
            // Release: pairs with the Acquire in `maybe_finished`; times are visible first.
            p.req.store(req as usize, Ordering::Release);
            return;
        }
    }
}

/// If `req` is in flight, records its lookup with `status` (or asks `gai_error`).
pub fn maybe_finished(req: *mut Gaicb, status: Option<i32>) {
    if req.is_null() {
        return;
    }
    for p in PENDING.iter() {
        if p.req
            .compare_exchange(req as usize, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let (wall, start) = (
                p.wall.load(Ordering::Relaxed),
                p.start.load(Ordering::Relaxed),
            );
            p.req.store(0, Ordering::Release);
            let status = match status {
                Some(s) => s,
                None => match crate::real::gai_error() {
                    // SAFETY: req is the program's request, completed under GAI_WAIT.
                    Some(f) => unsafe { f(req) },
                    None => return,
                },
            };
            crate::hooks::record_async_lookup(req, status, wall, start);
            return;
        }
    }
}
