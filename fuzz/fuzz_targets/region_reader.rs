//! Fuzz target: the collector's reader of the shared-memory region (`collector/src/tracker.rs`
//! and `names.rs`, compiled in here as is) on whatever a hostile monitored process can write:
//! header counters, ring control blocks, ring slots and socket slots.
//!
//! The input is laid over those fields in order (the header, socket slots, then rings), and the
//! region is read twice — once half-written — as the collector would while processes write.
//! Checks: no panic (run with overflow checks, `-a`), nothing trusted beyond its bounds.
#![no_main]

#[allow(dead_code)]
#[path = "../../collector/src/names.rs"]
mod names;
#[allow(dead_code)]
#[path = "../../collector/src/tracker.rs"]
mod tracker;

use netmon_proto::region::{Geometry, Region};
use netmon_proto::{AtomicAddr, SLOT_SIZE};
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

const SOCKETS: u32 = 4;
const RINGS: u32 = 2;
const CAPACITY: u32 = 8;

fn region() -> &'static Region {
    static R: OnceLock<Region> = OnceLock::new();
    R.get_or_init(|| {
        Region::create(
            Geometry {
                rings: RINGS,
                ring_capacity: CAPACITY,
                sockets: SOCKETS,
            },
            1,
        )
        .expect("memfd region")
    })
}

/// Hands out the input in little-endian pieces; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u32(&mut self, a: &AtomicU32) {
        a.store(u32::from_le_bytes(self.take()), Relaxed);
    }
    fn i32(&mut self, a: &AtomicI32) {
        a.store(i32::from_le_bytes(self.take()), Relaxed);
    }
    fn u64(&mut self, a: &AtomicU64) {
        a.store(u64::from_le_bytes(self.take()), Relaxed);
    }
    fn addr(&mut self, a: &AtomicAddr) {
        self.u32(&a.family_port);
        self.u64(&a.hi);
        self.u64(&a.lo);
    }
}

fn write(r: &Region, input: &mut Input) {
    let h = r.header();
    for a in [&h.socket_hint, &h.socket_high_water, &h.epoch, &h.invocations_done] {
        input.u32(a);
    }
    for a in [&h.dropped_no_ring, &h.sockets_untracked, &h.fds_untracked, &h.attached_processes] {
        input.u64(a);
    }
    for i in 0..SOCKETS {
        let s = r.socket(i).expect("slot");
        for a in [&s.generation, &s.pid, &s.kind, &s.flags, &s.connect_state] {
            input.u32(a);
        }
        for a in [&s.bytes_sent, &s.bytes_received, &s.sends, &s.receives] {
            input.u64(a);
        }
        input.u32(&s.epoch);
        input.i32(&s.fd);
        input.i32(&s.connect_errno);
        input.addr(&s.remote);
        input.addr(&s.local);
        for a in [&s.open_ns, &s.close_ns] {
            input.u64(a);
        }
        for a in [&s.rtt_us, &s.rtt_var_us, &s.total_retrans, &s.tcp_state, &s.segs_out, &s.segs_in] {
            input.u32(a);
        }
        input.u64(&s.dns_query_ns);
        input.u32(&s.fd_refs);
        input.u32(&s.open_epoch);
        input.u64(&s.base_sent);
        input.u64(&s.base_received);
        input.u32(&s.state);
    }
    for i in 0..RINGS {
        let ring = r.ring(i).expect("ring");
        let c = ring.control;
        c.head.store(0, Relaxed);
        c.tail.store(0, Relaxed);
        let count = input.take::<1>()[0] as u32 % (CAPACITY + 1);
        for _ in 0..count {
            let slot: [u8; SLOT_SIZE] = input.take();
            ring.push(&slot, 1);
        }
        input.u32(&c.state);
        input.u32(&c.owner_pid);
        // Counters last: consistent (as pushed) unless the input says otherwise.
        let [skew] = input.take::<1>();
        if skew & 1 != 0 {
            input.u64(&c.head);
        }
        if skew & 2 != 0 {
            input.u64(&c.tail);
        }
        input.u64(&c.dropped);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let r = region();
    let (first, second) = data.split_at(data.len() / 2);
    let mut t = tracker::Tracker::new();
    write(r, &mut Input(first));
    t.poll(r);
    write(r, &mut Input(second));
    t.finish(r);
    let _ = t.health(r);
    for s in t.sockets.values() {
        assert!(s.bytes_sent <= 1 << 56 && s.bytes_received <= 1 << 56);
        let (tx, rx) = s
            .epoch_bytes
            .values()
            .fold((0u64, 0u64), |a, b| (a.0.saturating_add(b.0), a.1.saturating_add(b.1)));
        assert!(tx <= s.bytes_sent && rx <= s.bytes_received);
    }
    t.prune(1);
});
