//! Property tests that run with `cargo test` on the stable toolchain: every parser on random
//! bytes and on mutated real captures keeps its invariants (`netmon_procnet::invariants`);
//! generated well-formed tables round-trip; and on well-formed input our parsers agree with
//! procfs-core's. The coverage-guided fuzz targets in `fuzz/` check the same invariants.
//!
//! The seed is printed on failure; `NETMON_PROPTEST_SEED=N` replays a run and
//! `NETMON_PROPTEST_CASES=N` changes how many inputs each test tries.

use netmon_procnet::sockets::{self, SocketEntry};
use netmon_procnet::{Family, Transport, dev, invariants, snmp};
use procfs_core::{ExplicitSystemInfo, FromBufRead, FromBufReadSI};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// splitmix64: small, fast, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        // Bias towards the bytes /proc text is made of, so mutations reach deep paths.
        const INTERESTING: &[u8] = b"0123456789ABCDEFabcdef :|[]()\n\t-x";
        if self.below(4) == 0 {
            self.next() as u8
        } else {
            INTERESTING[self.below(INTERESTING.len())]
        }
    }
}

fn seed() -> u64 {
    std::env::var("NETMON_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn cases(default: usize) -> usize {
    std::env::var("NETMON_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn check(seed: u64, case: usize, input: &[u8], f: impl Fn(&[u8])) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let shown = String::from_utf8_lossy(&input[..input.len().min(2000)]);
        panic!(
            "property failed: NETMON_PROPTEST_SEED={seed}, case {case}, input ({} bytes):\n{shown:?}",
            input.len()
        );
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(8) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.byte();
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                input.drain(a..b);
            }
            3 => {
                let at = rng.below(len + 1);
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(200)).min(len);
                let chunk = input[a..b].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, chunk);
            }
            5 => input.truncate(rng.below(len + 1)),
            _ => {
                // Splice in part of another capture.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + rng.below(300)).min(other.len());
                    let at = rng.below(input.len() + 1);
                    input.splice(at..at, other[a..b].iter().copied());
                }
            }
        }
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut dirs = vec![base];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(std::fs::read(p).unwrap());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn random_bytes_keep_every_invariant() {
    let seed = seed();
    let mut rng = Rng(seed);
    for case in 0..cases(20_000) {
        let len = rng.below(300);
        let input: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        check(seed, case, &input, invariants::all);
    }
}

#[test]
fn mutated_captures_keep_every_invariant() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0x5555);
    let corpus = corpus();
    for case in 0..cases(20_000) {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        check(seed, case, &input, invariants::all);
    }
}

// ------------------------------------------------------------------ well-formed input

fn random_entry(rng: &mut Rng, transport: Transport, family: Family) -> SocketEntry {
    let ip = |rng: &mut Rng| match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(
            u128::from(rng.next()) << 64 | u128::from(rng.next()),
        )),
    };
    let states: &[u8] = match transport {
        Transport::Tcp => &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        Transport::Udp => &[1, 7],
    };
    SocketEntry {
        transport,
        local: SocketAddr::new(ip(rng), rng.next() as u16),
        remote: SocketAddr::new(ip(rng), rng.next() as u16),
        state: states[rng.below(states.len())],
        tx_queue: rng.next() as u32,
        rx_queue: rng.next() as u32,
        uid: rng.next() as u32,
        inode: rng.next() >> rng.below(64),
    }
}

/// The line the kernel would print for `e` (`net/ipv4/tcp_ipv4.c`, `net/ipv6/tcp_ipv6.c`).
fn kernel_line(sl: usize, e: &SocketEntry) -> String {
    let addr = |a: &SocketAddr| match a.ip() {
        IpAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.octets()), a.port()),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let words: String = o
                .chunks(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            format!("{words}:{:04X}", a.port())
        }
    };
    format!(
        "{sl:4}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5} {:8} {} 1 0000000000000000 20 4 30 10 -1",
        addr(&e.local),
        addr(&e.remote),
        e.state,
        e.tx_queue,
        e.rx_queue,
        e.uid,
        0,
        e.inode
    )
}

const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

#[test]
fn generated_tables_round_trip_and_agree_with_procfs_core() {
    let seed = seed();
    let mut rng = Rng(seed ^ 0xAAAA);
    let si = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    for case in 0..cases(2_000) / 10 {
        for (transport, family) in [
            (Transport::Tcp, Family::V4),
            (Transport::Tcp, Family::V6),
            (Transport::Udp, Family::V4),
            (Transport::Udp, Family::V6),
        ] {
            let entries: Vec<SocketEntry> = (0..rng.below(40))
                .map(|_| random_entry(&mut rng, transport, family))
                .collect();
            let mut text = format!("{HEADER}\n");
            for (i, e) in entries.iter().enumerate() {
                text.push_str(&kernel_line(i, e));
                text.push('\n');
            }
            let mut ours = Vec::new();
            let s = sockets::parse(text.as_bytes(), transport, family, &mut ours);
            let ctx = format!("NETMON_PROPTEST_SEED={seed} case {case}\n{text}");
            assert_eq!(s.skipped, 0, "{ctx}");
            assert_eq!(ours, entries, "{ctx}");
            // procfs-core, on the same bytes.
            let theirs: Vec<(SocketAddr, SocketAddr, u8, u64, u32)> = match transport {
                Transport::Tcp => {
                    procfs_core::net::TcpNetEntries::from_buf_read(text.as_bytes(), &si)
                        .unwrap()
                        .0
                        .into_iter()
                        .map(|e| {
                            (
                                e.local_address,
                                e.remote_address,
                                e.state.to_u8(),
                                e.inode,
                                e.uid,
                            )
                        })
                        .collect()
                }
                Transport::Udp => {
                    procfs_core::net::UdpNetEntries::from_buf_read(text.as_bytes(), &si)
                        .unwrap()
                        .0
                        .into_iter()
                        .map(|e| {
                            (
                                e.local_address,
                                e.remote_address,
                                e.state.to_u8(),
                                e.inode,
                                e.uid,
                            )
                        })
                        .collect()
                }
            };
            let mine: Vec<_> = ours
                .iter()
                .map(|e| (e.local, e.remote, e.state, e.inode, e.uid))
                .collect();
            assert_eq!(mine, theirs, "{ctx}");
        }
    }
}

/// The live kernel's files, read once and parsed by both.
#[test]
fn live_proc_agrees_with_procfs_core() {
    let si = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    // Make sure every table has something in it.
    let l4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _c4 = std::net::TcpStream::connect(l4.local_addr().unwrap()).unwrap();
    let _u4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let _l6 = std::net::TcpListener::bind("[::1]:0");
    let _u6 = std::net::UdpSocket::bind("[::1]:0");
    for (file, transport, family) in [
        ("tcp", Transport::Tcp, Family::V4),
        ("tcp6", Transport::Tcp, Family::V6),
        ("udp", Transport::Udp, Family::V4),
        ("udp6", Transport::Udp, Family::V6),
    ] {
        let Ok(text) = std::fs::read(format!("/proc/net/{file}")) else {
            continue; // no IPv6 in this kernel
        };
        let mut ours = Vec::new();
        let s = sockets::parse(&text, transport, family, &mut ours);
        assert_eq!((s.skipped, s.unknown_format), (0, false), "{file}");
        let theirs: Vec<(SocketAddr, SocketAddr, u64)> = match transport {
            Transport::Tcp => procfs_core::net::TcpNetEntries::from_buf_read(&text[..], &si)
                .unwrap()
                .0
                .into_iter()
                .map(|e| (e.local_address, e.remote_address, e.inode))
                .collect(),
            Transport::Udp => procfs_core::net::UdpNetEntries::from_buf_read(&text[..], &si)
                .unwrap()
                .0
                .into_iter()
                .map(|e| (e.local_address, e.remote_address, e.inode))
                .collect(),
        };
        let mine: Vec<_> = ours.iter().map(|e| (e.local, e.remote, e.inode)).collect();
        assert_eq!(mine, theirs, "{file}");
    }

    let text = std::fs::read("/proc/net/dev").unwrap();
    let mut ours = Vec::new();
    assert_eq!(dev::parse(&text, &mut ours).skipped, 0);
    let theirs = procfs_core::net::InterfaceDeviceStatus::from_buf_read(&text[..]).unwrap();
    assert_eq!(ours.len(), theirs.0.len());
    for i in &ours {
        let t = &theirs.0[i.name.as_str()];
        let c = i.counters;
        assert_eq!(
            (c.rx_bytes, c.rx_packets, c.rx_errors, c.rx_dropped),
            (t.recv_bytes, t.recv_packets, t.recv_errs, t.recv_drop)
        );
        assert_eq!(
            (c.tx_bytes, c.tx_packets, c.tx_errors, c.tx_dropped),
            (t.sent_bytes, t.sent_packets, t.sent_errs, t.sent_drop)
        );
    }

    let text = std::fs::read("/proc/net/snmp").unwrap();
    let mut ours = netmon_procnet::ProtocolCounters::default();
    assert_eq!(snmp::parse(&text, &mut ours).skipped, 0);
    if let Ok(theirs) = procfs_core::net::Snmp::from_buf_read(&text[..]) {
        let t = ours.tcp;
        assert_eq!(t.active_opens, Some(theirs.tcp_active_opens));
        assert_eq!(t.passive_opens, Some(theirs.tcp_passive_opens));
        assert_eq!(t.attempt_fails, Some(theirs.tcp_attempt_fails));
        assert_eq!(t.estab_resets, Some(theirs.tcp_estab_resets));
        assert_eq!(t.retrans_segs, Some(theirs.tcp_retrans_segs));
        assert_eq!(t.out_rsts, Some(theirs.tcp_out_rsts));
        assert_eq!(ours.udp.no_ports, Some(theirs.udp_no_ports));
    }
}
