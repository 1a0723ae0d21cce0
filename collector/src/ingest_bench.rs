//! Collector ingest benchmark (run explicitly; `bench/suite.py` runs it and BENCHMARKS.md has the
//! result):
//!
//! ```sh
//! cargo test --release -p netmon ingest_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Events are written into a real region's ring the way the interceptor writes them (three
//! 1-slot connect events to one 4-slot DNS event, the ring bench's mix), and [`Tracker::poll`]
//! drains them: validation, decoding and the tracker's bookkeeping, on one core.

use crate::tracker::Tracker;
use netmon_proto::region::{Geometry, Region};
use netmon_proto::{
    Addr, ConnectEvent, DnsEvent, Event, EventHeader, dns_source, kind, ring_state, transport,
};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
#[ignore = "benchmark"]
fn ingest_events_per_second() {
    let capacity: u32 = 1 << 16;
    let region = Region::create(
        Geometry {
            rings: 1,
            ring_capacity: capacity,
            sockets: 1024,
        },
        std::process::id(),
    )
    .expect("region");
    let ring = region.ring(0).expect("ring 0");
    ring.control
        .state
        .store(ring_state::OWNED, Ordering::Relaxed);
    let mut dns = DnsEvent::empty(dns_source::GETADDRINFO);
    dns.header = EventHeader::new(kind::DNS, 4, 7, 7, 1);
    dns.set_name(b"api.example.internal");
    // Rounds of one ring's worth of events, each round into a fresh tracker so the tracker's
    // size stays that of a typical poll interval's work, not of millions of connections.
    let rounds = 40;
    let mut spent = Duration::ZERO;
    let mut events = 0u64;
    for round in 0..rounds {
        let mut written = 0u64;
        let mut slots = 0u32;
        let mut i = 0u32;
        while slots + 4 <= capacity {
            if i % 4 == 3 {
                assert!(ring.push(dns.as_bytes(), 4));
                slots += 4;
            } else {
                let ev = ConnectEvent {
                    header: EventHeader::new(kind::CONNECT, 1, 7, 7, u64::from(i) + 1),
                    socket: i % 1024,
                    socket_generation: round + 1,
                    fd: 3,
                    errno: 0,
                    duration_ns: 50_000,
                    remote: Addr::from_ipv4([10, 0, (i >> 8) as u8, i as u8], 443),
                    local: Addr::NONE,
                    transport: transport::TCP,
                    _pad: [0; 7],
                };
                assert!(ring.push(ev.as_bytes(), 1));
                slots += 1;
            }
            written += 1;
            i += 1;
        }
        let mut t = Tracker::new();
        let start = Instant::now();
        t.poll(&region);
        spent += start.elapsed();
        assert_eq!(ring.pending(), 0);
        assert_eq!(t.health(&region).records_rejected, 0);
        events += written;
    }
    println!(
        "collector ingest: {events} events ({} per poll, 3 connect : 1 DNS) drained from a ring into the tracker in {:.3} s = {:.0} events/s on one core",
        events / u64::from(rounds),
        spent.as_secs_f64(),
        events as f64 / spent.as_secs_f64()
    );
}
