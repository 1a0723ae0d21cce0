//! Ring write cost: pushing one connect-sized event (1 slot) and one DNS event (4 slots) into
//! a ring, with the consumer draining in batches as the collector does. Prints ns per push.
//!
//! `cargo bench -p netmon-proto --bench ring`

use netmon_proto::region::{Geometry, Region};
use netmon_proto::*;
use std::hint::black_box;
use std::time::Instant;

fn region() -> Region {
    Region::create(
        Geometry {
            rings: 1,
            ring_capacity: 4096,
            sockets: 1,
        },
        1,
    )
    .unwrap()
}

fn bench<E: Event>(name: &str, ev: &E, rounds: u64) {
    let r = region();
    let ring = r.ring(0).unwrap();
    let batch = ring.capacity() as u64 / E::SLOTS as u64;
    let mut pushed = 0u64;
    let mut spent = std::time::Duration::ZERO;
    let mut consumed = 0u64;
    while pushed < rounds {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(ring.push(black_box(ev.as_bytes()), E::SLOTS));
        }
        spent += t.elapsed();
        pushed += batch;
        consumed += ring
            .consume(|b| {
                black_box(b);
            })
            .events;
    }
    assert_eq!(consumed, pushed);
    println!(
        "ring push {name} ({} slot{}): {:.1} ns",
        E::SLOTS,
        if E::SLOTS == 1 { "" } else { "s" },
        spent.as_nanos() as f64 / pushed as f64
    );
}

fn main() {
    let connect = ConnectEvent {
        header: EventHeader::new(kind::CONNECT, 1, 1, 1, 1),
        socket: 1,
        socket_generation: 1,
        fd: 3,
        errno: 0,
        duration_ns: 10,
        remote: Addr::from_ipv4([10, 0, 0, 1], 443),
        local: Addr::NONE,
        transport: transport::TCP,
        _pad: [0; 7],
    };
    let mut dns = DnsEvent::empty(dns_source::GETADDRINFO);
    dns.set_name(b"api.example.internal");
    for _ in 0..2 {
        bench("connect event", &connect, 20_000_000);
        bench("dns event", &dns, 5_000_000);
    }
}
