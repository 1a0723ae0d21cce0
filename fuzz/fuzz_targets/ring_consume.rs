//! Fuzz target: the ring consumer (`netmon_proto::ring::RingRef::consume`) on arbitrary slot
//! contents and arbitrary head/tail counters, as a hostile process could leave them.
//!
//! Input: 8 bytes of head offset, 8 of tail offset, then slot contents (128 bytes a slot).
//! Checks: every event handed out has a known kind and exactly that kind's size, nothing is
//! read past what was published, and the ring is empty afterwards.
#![no_main]

use netmon_proto::region::{Geometry, Region};
use netmon_proto::{SLOT_SIZE, slots_for_kind};
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;

const CAPACITY: u32 = 16;

fn region() -> &'static Region {
    static R: OnceLock<Region> = OnceLock::new();
    R.get_or_init(|| {
        Region::create(
            Geometry {
                rings: 1,
                ring_capacity: CAPACITY,
                sockets: 1,
            },
            1,
        )
        .expect("memfd region")
    })
}

fn word(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = data.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ring = region().ring(0).expect("ring 0");
    let c = ring.control;
    // Fill every slot through the producer path, from a clean state.
    c.head.store(0, Relaxed);
    c.tail.store(0, Relaxed);
    let contents = data.get(16..).unwrap_or(&[]);
    for i in 0..CAPACITY as usize {
        let mut slot = [0u8; SLOT_SIZE];
        if let Some(chunk) = contents.chunks(SLOT_SIZE).nth(i) {
            slot[..chunk.len()].copy_from_slice(chunk);
        }
        assert!(ring.push(&slot, 1));
    }
    // Then counters as the input says: anything from consistent to absurd.
    let base = word(data, 8);
    let published = word(data, 0);
    c.tail.store(base, Relaxed);
    c.head.store(base.wrapping_add(published), Relaxed);
    let mut delivered = 0u64;
    let stats = ring.consume(|bytes| {
        let kind = u16::from_ne_bytes([bytes[0], bytes[1]]);
        let slots = slots_for_kind(kind).expect("a delivered event has a known kind");
        assert_eq!(bytes.len(), slots * SLOT_SIZE);
        assert_eq!(bytes[2] as usize, slots);
        delivered += slots as u64;
    });
    assert_eq!(stats.events as usize <= CAPACITY as usize, true);
    if published <= CAPACITY as u64 {
        assert!(delivered + stats.rejected <= published);
    }
    assert_eq!(ring.pending(), 0);
    assert_eq!(c.tail.load(Relaxed), c.head.load(Relaxed));
});
