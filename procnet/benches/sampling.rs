//! One `/proc` sampling pass (dev + sockstat + tcp + tcp6 + udp + udp6 + snmp + netstat) with
//! 10,000 open sockets, with the socket tables over netlink `sock_diag` (what netmon does) and
//! from `/proc/net` text (the fallback): time per pass, allocations per pass and heap growth
//! across passes; the kernel's own cost (reading the files without parsing); procfs-core's parsers on the same
//! bytes; and a scan of one process's 10,000 socket fds.
//!
//! Run it in a fresh network namespace so only its own sockets are in the tables
//! (BENCHMARKS.md, "/proc sampling"):
//!   unshare -n sh -c 'ip link set lo up && cargo bench -p netmon-procnet --bench sampling'

use netmon_procnet::sockdiag::SockDiag;
use netmon_procnet::{Family, Sampler, Transport, fd, sockets};
use procfs_core::{ExplicitSystemInfo, FromBufRead, FromBufReadSI};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TCP4_PAIRS: usize = 4000;
const TCP6_PAIRS: usize = 500;
const UDP4: usize = 500;
const UDP6: usize = 500;
const PASSES: usize = 200;

struct Sockets {
    _listeners: Vec<TcpListener>,
    _tcp: Vec<TcpStream>,
    _udp: Vec<UdpSocket>,
}

fn open_sockets() -> Sockets {
    let mut listeners = Vec::new();
    let mut tcp = Vec::new();
    for (addr, pairs) in [("127.0.0.1:0", TCP4_PAIRS), ("[::1]:0", TCP6_PAIRS)] {
        let l = TcpListener::bind(addr).expect("listen (is lo up?)");
        let a = l.local_addr().unwrap();
        for _ in 0..pairs {
            let c = TcpStream::connect(a).expect("connect (ulimit -n 65536?)");
            let (s, _) = l.accept().unwrap();
            tcp.push(c);
            tcp.push(s);
        }
        listeners.push(l);
    }
    let mut udp = Vec::new();
    for (addr, n) in [("127.0.0.1:0", UDP4), ("[::1]:0", UDP6)] {
        for _ in 0..n {
            udp.push(UdpSocket::bind(addr).unwrap());
        }
    }
    Sockets {
        _listeners: listeners,
        _tcp: tcp,
        _udp: udp,
    }
}

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new() -> Self {
        Self {
            samples: Vec::with_capacity(PASSES),
        }
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.samples.sort();
        let i = ((self.samples.len() - 1) as f64 * p).round() as usize;
        self.samples[i].as_secs_f64() * 1e3
    }
    fn line(&mut self, what: &str) {
        println!(
            "{what:<44} median {:6.2} ms   p95 {:6.2} ms   min {:6.2} ms   max {:6.2} ms",
            self.pct(0.5),
            self.pct(0.95),
            self.pct(0.0),
            self.pct(1.0)
        );
    }
}

fn time(mut f: impl FnMut()) -> Stats {
    let mut s = Stats::new();
    for _ in 0..PASSES {
        let t = Instant::now();
        f();
        s.samples.push(t.elapsed());
    }
    s
}

/// A full pass of `sampler`, timed; then its allocations per pass and heap growth.
fn measure(sampler: &mut Sampler, what: &str) {
    for _ in 0..3 {
        sampler.sample();
    }
    let snap = sampler.snapshot();
    println!(
        "{what}: {} sockets in the tables ({} tables read, {} over netlink), {} interfaces",
        snap.sockets.len(),
        snap.tables_read,
        snap.tables_via_netlink,
        snap.interfaces.len()
    );
    time(|| {
        sampler.sample();
    })
    .line(&format!("full pass, {what}"));
    let region = Region::new(GLOBAL);
    for _ in 0..PASSES {
        sampler.sample();
    }
    let c = region.change();
    println!(
        "  allocations per pass: {:.1} ({} bytes); heap growth over {PASSES} passes: {} bytes",
        c.allocations as f64 / PASSES as f64,
        c.bytes_allocated / PASSES,
        c.bytes_allocated as i64 - c.bytes_deallocated as i64 + c.bytes_reallocated as i64
    );
}

fn main() {
    let _sockets = open_sockets();
    let root = Path::new("/proc");

    // What netmon runs: socket tables over netlink sock_diag, the rest from /proc/net.
    let mut sampler = Sampler::new(root);
    assert!(sampler.use_sock_diag(), "no NETLINK_SOCK_DIAG socket here");
    measure(&mut sampler, "sock_diag + /proc/net (netmon)");
    let mut diag = SockDiag::open().unwrap();
    let mut out = Vec::new();
    for (t, f, name) in [
        (Transport::Tcp, Family::V4, "tcp"),
        (Transport::Tcp, Family::V6, "tcp6"),
    ] {
        time(|| {
            out.clear();
            diag.dump(t, f, &mut out).unwrap();
        })
        .line(&format!("  a {name} dump alone"));
    }
    time(|| {
        out.clear();
        diag.dump_tcp_both_families(&mut out).unwrap();
    })
    .line("  of which the tcp + tcp6 dump (one walk)");

    // The fallback: every table from /proc/net text.
    let mut text = Sampler::new(root);
    measure(&mut text, "/proc/net text only (fallback)");

    // The kernel's share: reading the same files into a reused buffer, no parsing.
    let files: Vec<String> = [
        "dev",
        "sockstat",
        "sockstat6",
        "tcp",
        "tcp6",
        "udp",
        "udp6",
        "snmp",
        "netstat",
    ]
    .iter()
    .map(|f| format!("/proc/net/{f}"))
    .collect();
    let mut buf = Vec::new();
    time(|| {
        for f in &files {
            buf.clear();
            std::fs::File::open(f)
                .and_then(|mut h| h.read_to_end(&mut buf))
                .unwrap();
        }
    })
    .line("read the same files, no parsing (kernel)");
    for f in ["tcp", "tcp6"] {
        let path = format!("/proc/net/{f}");
        time(|| {
            buf.clear();
            std::fs::File::open(&path)
                .and_then(|mut h| h.read_to_end(&mut buf))
                .unwrap();
        })
        .line(&format!("  of which /proc/net/{f}"));
    }

    // Parsing alone, ours and procfs-core's, on the bytes of /proc/net/tcp.
    let tcp = std::fs::read("/proc/net/tcp").unwrap();
    let mut out = Vec::new();
    time(|| {
        out.clear();
        sockets::parse(&tcp, Transport::Tcp, Family::V4, &mut out);
    })
    .line(&format!("parse /proc/net/tcp, {} lines (ours)", out.len()));
    let r = Region::new(GLOBAL);
    out.clear();
    sockets::parse(&tcp, Transport::Tcp, Family::V4, &mut out);
    let ours = r.change().allocations;
    let si = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    time(|| {
        let e = procfs_core::net::TcpNetEntries::from_buf_read(&tcp[..], &si).unwrap();
        std::hint::black_box(e);
    })
    .line("parse /proc/net/tcp (procfs-core)");
    let r = Region::new(GLOBAL);
    let e = procfs_core::net::TcpNetEntries::from_buf_read(&tcp[..], &si).unwrap();
    let theirs = r.change().allocations;
    drop(e);
    println!("allocations parsing /proc/net/tcp: ours {ours}, procfs-core {theirs}");
    let dev = std::fs::read("/proc/net/dev").unwrap();
    let snmp = std::fs::read("/proc/net/snmp").unwrap();
    let r = Region::new(GLOBAL);
    let d = procfs_core::net::InterfaceDeviceStatus::from_buf_read(&dev[..]).unwrap();
    let s = procfs_core::net::Snmp::from_buf_read(&snmp[..]);
    println!(
        "allocations parsing /proc/net/dev + snmp with procfs-core: {} (ours: 0)",
        r.change().allocations
    );
    drop((d, s));

    // fd scan of this process (10,000 socket fds).
    let mut fds = Vec::new();
    let pid = std::process::id();
    time(|| {
        fds.clear();
        fd::read_socket_fds(root, pid, &mut fds).unwrap();
    })
    .line(&format!("fd scan of one process, {} socket fds", fds.len()));
}
