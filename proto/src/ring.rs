//! The single-producer / single-consumer ring protocol.
//!
//! `head` and `tail` count slots ever published / consumed and never wrap in practice (u64).
//! The producer owns `head`, the consumer owns `tail`:
//!
//! - producer: load `tail` (Acquire) → check space → copy the event into slots → store `head`
//!   (Release);
//! - consumer: load `head` (Acquire) → copy events out → store `tail` (Release).
//!
//! A full ring drops the event and counts it; nothing ever waits.

use crate::event::{EventHeader, slots_for_kind};
use crate::layout::{MAX_EVENT_SLOTS, RingControl, SLOT_SIZE};
use core::mem::size_of;
use core::sync::atomic::Ordering;

/// A view of one ring inside a mapped region.
#[derive(Clone, Copy)]
pub struct RingRef<'a> {
    pub control: &'a RingControl,
    slots: *mut u8,
    capacity: u32,
}

/// Outcome of one [`RingRef::consume`] pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumeStats {
    pub events: u64,
    /// Records that failed validation (unknown kind, wrong size, torn) and were skipped.
    pub rejected: u64,
}

impl<'a> RingRef<'a> {
    /// # Safety
    /// `slots` must point to `capacity * SLOT_SIZE` bytes that live as long as `'a`, and
    /// `capacity` must be a power of two.
    pub(crate) unsafe fn new(control: &'a RingControl, slots: *mut u8, capacity: u32) -> Self {
        RingRef {
            control,
            slots,
            capacity,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    fn slot_ptr(&self, position: u64) -> *mut u8 {
        let index = (position & (self.capacity as u64 - 1)) as usize;
        // SAFETY: index < capacity, so the slot lies inside this ring's slot memory.
        unsafe { self.slots.add(index * SLOT_SIZE) }
    }

    /// Appends one event (`bytes`, at most `MAX_EVENT_SLOTS * SLOT_SIZE` long) occupying `slots`
    /// slots. Returns false, and counts a drop, when the ring is full. Never blocks, never
    /// allocates. Must only be called by the ring's owner thread.
    #[inline]
    pub fn push(&self, bytes: &[u8], slots: usize) -> bool {
        let c = self.control;
        let head = c.head.load(Ordering::Relaxed); // we are the only writer of head
        // Acquire: pairs with the consumer's Release store of tail in `consume`, so the slots
        // it has finished copying out are free to overwrite.
        let tail = c.tail.load(Ordering::Acquire);
        let used = head.wrapping_sub(tail);
        if slots == 0
            || slots > MAX_EVENT_SLOTS
            || bytes.len() > slots * SLOT_SIZE
            || used > self.capacity as u64
            || used + slots as u64 > self.capacity as u64
        {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        for (i, chunk) in bytes.chunks(SLOT_SIZE).enumerate() {
            let dst = self.slot_ptr(head.wrapping_add(i as u64));
            // SAFETY: dst is a slot of SLOT_SIZE bytes in this ring; chunk.len() <= SLOT_SIZE;
            // the consumer does not read it until head is published below.
            unsafe { core::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, chunk.len()) };
        }
        // Release: pairs with the consumer's Acquire load of head; the copies above are visible
        // before the new head.
        c.head
            .store(head.wrapping_add(slots as u64), Ordering::Release);
        true
    }

    /// Number of slots published but not yet consumed (0 if the counters are inconsistent).
    pub fn pending(&self) -> u64 {
        let head = self.control.head.load(Ordering::Acquire);
        let tail = self.control.tail.load(Ordering::Relaxed);
        let used = head.wrapping_sub(tail);
        if used > self.capacity as u64 { 0 } else { used }
    }

    /// Consumes every published event, calling `f` with each event's bytes (a copy, so the
    /// producer may reuse the slots). Must only be called by the single consumer. Invalid
    /// records are skipped and counted; inconsistent counters discard the ring's backlog.
    pub fn consume(&self, mut f: impl FnMut(&[u8])) -> ConsumeStats {
        let mut stats = ConsumeStats::default();
        let c = self.control;
        // Acquire: pairs with the producer's Release store of head in `push`.
        let head = c.head.load(Ordering::Acquire);
        let mut tail = c.tail.load(Ordering::Relaxed); // we are the only writer of tail
        if head.wrapping_sub(tail) > self.capacity as u64 {
            // Counters make no sense (torn or hostile writer): skip everything published.
            stats.rejected += 1;
            c.tail.store(head, Ordering::Release);
            return stats;
        }
        let mut buf = [0u8; MAX_EVENT_SLOTS * SLOT_SIZE];
        while tail != head {
            self.copy_slot(tail, &mut buf[..SLOT_SIZE]);
            let kind = u16::from_ne_bytes([buf[0], buf[1]]);
            let slots = buf[2] as usize;
            let available = head.wrapping_sub(tail);
            match slots_for_kind(kind) {
                Some(expected) if expected == slots && slots as u64 <= available => {
                    for i in 1..slots {
                        let start = i * SLOT_SIZE;
                        self.copy_slot(
                            tail.wrapping_add(i as u64),
                            &mut buf[start..start + SLOT_SIZE],
                        );
                    }
                    f(&buf[..slots * SLOT_SIZE]);
                    stats.events += 1;
                    tail = tail.wrapping_add(slots as u64);
                }
                _ => {
                    stats.rejected += 1;
                    tail = tail.wrapping_add(1);
                }
            }
        }
        // Release: pairs with the producer's Acquire load of tail; our copies are done.
        c.tail.store(tail, Ordering::Release);
        stats
    }

    fn copy_slot(&self, position: u64, out: &mut [u8]) {
        let src = self.slot_ptr(position);
        let n = out.len().min(SLOT_SIZE);
        // SAFETY: src is a SLOT_SIZE-byte slot inside the ring; out has at least n bytes. The
        // bytes are plain data; a hostile writer can only make them wrong, which the caller
        // validates.
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), n) };
    }
}

const _: () = assert!(size_of::<EventHeader>() <= SLOT_SIZE);

/// Wall-clock time, ns since the Unix epoch (vDSO, no syscall on common platforms).
#[inline]
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Monotonic time in ns, for durations.
#[inline]
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; clock_gettime does not fail for these clocks.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod tests {
    extern crate std;
    use crate::event::*;
    use crate::layout::*;
    use crate::region::{Geometry, Region};
    use std::vec::Vec;

    fn region(capacity: u32) -> Region {
        Region::create(
            Geometry {
                rings: 2,
                ring_capacity: capacity,
                sockets: 4,
            },
            1,
        )
        .unwrap()
    }

    fn connect_event(fd: i32) -> ConnectEvent {
        ConnectEvent {
            header: EventHeader::new(kind::CONNECT, 1, 10, 11, 12),
            socket: 0,
            socket_generation: 1,
            fd,
            errno: 0,
            duration_ns: 5,
            remote: Addr::from_ipv4([127, 0, 0, 1], 80),
            local: Addr::NONE,
            transport: transport::TCP,
            _pad: [0; 7],
        }
    }

    #[test]
    fn push_consume_wraps_and_drops_when_full() {
        let r = region(8);
        let ring = r.ring(0).unwrap();
        let mut dns = DnsEvent::empty(dns_source::GETADDRINFO);
        dns.set_name(b"example.org");
        for round in 0..5 {
            assert!(ring.push(dns.as_bytes(), DnsEvent::SLOTS));
            assert!(ring.push(connect_event(round).as_bytes(), 1));
            let mut seen = Vec::new();
            let stats = ring.consume(|b| seen.push(b.len()));
            assert_eq!(stats.events, 2);
            assert_eq!(seen, [DnsEvent::SLOTS * SLOT_SIZE, SLOT_SIZE]);
        }
        for i in 0..8 {
            assert!(ring.push(connect_event(i).as_bytes(), 1));
        }
        assert!(!ring.push(connect_event(9).as_bytes(), 1));
        assert_eq!(
            ring.control
                .dropped
                .load(core::sync::atomic::Ordering::Relaxed),
            1
        );
        let mut fds = Vec::new();
        ring.consume(|b| fds.push(ConnectEvent::read_from(b).unwrap().fd));
        assert_eq!(fds, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn consume_rejects_garbage_and_inconsistent_counters() {
        let r = region(8);
        let ring = r.ring(1).unwrap();
        let junk = [0xFFu8; SLOT_SIZE];
        assert!(ring.push(&junk, 1));
        assert!(ring.push(connect_event(3).as_bytes(), 1));
        let mut n = 0;
        let stats = ring.consume(|_| n += 1);
        assert_eq!((stats.events, stats.rejected, n), (1, 1, 1));
        // A header claiming more slots than were published is rejected, not over-read.
        let mut lying = connect_event(4);
        lying.header.kind = kind::DNS;
        lying.header.slots = DnsEvent::SLOTS as u8;
        assert!(ring.push(lying.as_bytes(), 1));
        let stats = ring.consume(|_| panic!("must not deliver"));
        assert_eq!(stats.rejected, 1);
        // head far ahead of tail: the backlog is discarded, once.
        ring.control
            .head
            .store(1_000_000, core::sync::atomic::Ordering::Relaxed);
        let stats = ring.consume(|_| panic!("must not deliver"));
        assert_eq!(stats.rejected, 1);
        assert_eq!(ring.pending(), 0);
    }
}
