//! Every reader against fixture files: real captures (valid), and malformed, truncated, huge,
//! missing-field and unknown-column variants. Malformed input is skipped and counted.

use netmon_procnet::sockets::{self, state};
use netmon_procnet::{
    Family, InterfaceCounters, ParseStats, ProtocolCounters, Sampler, SocketsInUse, Transport,
    UdpCounters, dev, fd, process, snmp, sockstat,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn stats(parsed: u64, skipped: u64) -> ParseStats {
    ParseStats {
        parsed,
        skipped,
        unknown_format: false,
    }
}

fn tcp(text: &[u8]) -> (Vec<sockets::SocketEntry>, ParseStats) {
    let mut out = Vec::new();
    let s = sockets::parse(text, Transport::Tcp, Family::V4, &mut out);
    (out, s)
}

// ------------------------------------------------------------------ /proc/net/dev

#[test]
fn dev_valid() {
    let mut out = Vec::new();
    assert_eq!(dev::parse(&fixture("root/net/dev"), &mut out), stats(1, 0));
    assert_eq!(out[0].name.as_str(), "lo");
    assert_eq!(
        (out[0].counters.rx_bytes, out[0].counters.tx_packets),
        (1033, 16)
    );
}

#[test]
fn dev_unknown_columns_are_found_by_name() {
    let mut out = Vec::new();
    assert_eq!(
        dev::parse(&fixture("dev/unknown_columns"), &mut out),
        stats(2, 0)
    );
    assert_eq!(
        out[1].counters,
        InterfaceCounters {
            rx_bytes: 1215645,
            rx_packets: 2751,
            rx_errors: 1,
            rx_dropped: 2,
            tx_bytes: 1787013,
            tx_packets: 3233,
            tx_errors: 3,
            tx_dropped: 4,
        }
    );
}

#[test]
fn dev_malformed_lines_are_skipped_and_counted() {
    let mut out = Vec::new();
    assert_eq!(dev::parse(&fixture("dev/malformed"), &mut out), stats(2, 7));
    let names: Vec<&str> = out.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["lo", "veth0"]);
    assert_eq!(out[1].counters.tx_bytes, 4096);
}

#[test]
fn dev_truncated() {
    let mut out = Vec::new();
    assert_eq!(dev::parse(&fixture("dev/truncated"), &mut out), stats(1, 1));
    let mut out = Vec::new();
    let s = dev::parse(b"Inter-|   Receive  |  Transmit\n", &mut out);
    assert!(s.unknown_format && out.is_empty());
    assert!(dev::parse(b"", &mut out).unknown_format);
}

#[test]
fn dev_missing_columns_is_an_unknown_format() {
    let mut out = Vec::new();
    let s = dev::parse(&fixture("dev/missing_fields"), &mut out);
    assert!(s.unknown_format);
    assert!(out.is_empty());
}

#[test]
fn dev_huge() {
    let mut text = fixture("root/net/dev");
    for i in 0..70_000 {
        text.extend_from_slice(format!("  v{i}: 1 2 3 4 0 0 0 0 5 6 7 8 0 0 0 0\n").as_bytes());
    }
    text.extend_from_slice(b"  big: ");
    text.extend(std::iter::repeat_n(b'7', 16 << 20));
    text.push(b'\n');
    let mut out = Vec::new();
    let s = dev::parse(&text, &mut out);
    assert_eq!(out.len(), dev::MAX_INTERFACES);
    assert_eq!(s.parsed + s.skipped, 70_002);
}

// ------------------------------------------------------------------ socket tables

#[test]
fn sockets_valid_all_four_tables() {
    let mut out = Vec::new();
    for (file, t, f, n) in [
        ("root/net/tcp", Transport::Tcp, Family::V4, 6),
        ("root/net/tcp6", Transport::Tcp, Family::V6, 4),
        ("root/net/udp", Transport::Udp, Family::V4, 2),
        ("root/net/udp6", Transport::Udp, Family::V6, 1),
    ] {
        let s = sockets::parse(&fixture(file), t, f, &mut out);
        assert_eq!(s, stats(n, 0), "{file}");
    }
    assert_eq!(out.len(), 13);
    let listen = out
        .iter()
        .find(|e| e.transport == Transport::Tcp && e.state == state::LISTEN)
        .unwrap();
    assert_eq!(listen.local, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(listen.inode, 493406);
    let mapped = out.iter().find(|e| e.inode == 493412).unwrap();
    assert_eq!(mapped.remote, "[::ffff:127.0.0.1]:8080".parse().unwrap());
    let orphan = out.iter().find(|e| e.state == state::FIN_WAIT1).unwrap();
    assert_eq!((orphan.inode, orphan.tx_queue), (0, 1));
    let udp = out.iter().find(|e| e.inode == 493414).unwrap();
    assert_eq!((udp.local.port(), udp.rx_queue), (5353, 0x340));
}

#[test]
fn sockets_malformed_lines_are_skipped_and_counted() {
    let (out, s) = tcp(&fixture("sockets/malformed"));
    assert_eq!(s, stats(2, 10));
    assert_eq!(
        (out[0].inode, out[1].inode, out[1].uid),
        (493406, 777, 1000)
    );
}

#[test]
fn sockets_truncated() {
    let (out, s) = tcp(&fixture("sockets/truncated"));
    assert_eq!(s, stats(1, 1));
    assert_eq!(out[0].state, state::LISTEN);
    let (out, s) = tcp(b"  sl  local_addr");
    assert!(s.unknown_format && out.is_empty());
    assert!(tcp(b"").1.unknown_format);
}

#[test]
fn sockets_unknown_trailing_columns_are_ignored() {
    let (out, s) = tcp(&fixture("sockets/unknown_columns"));
    assert_eq!(s, stats(2, 0));
    assert_eq!(out[1].inode, 493413);
}

#[test]
fn sockets_missing_fields() {
    let (out, s) = tcp(&fixture("sockets/missing_fields"));
    assert_eq!(s, stats(1, 4));
    assert_eq!(out[0].inode, 42);
}

#[test]
fn sockets_unknown_header_reads_nothing() {
    let (out, s) = tcp(&fixture("sockets/unknown_header"));
    assert!(s.unknown_format);
    assert!(out.is_empty());
}

#[test]
fn sockets_huge() {
    let mut text = fixture("root/net/tcp");
    for i in 0..100_000u32 {
        text.extend_from_slice(
            format!(
                "{i:>6}: 0100007F:{:04X} 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 {} 1 0000000000000000 20 0 0 10 -1\n",
                i % 65536,
                i + 1
            )
            .as_bytes(),
        );
    }
    text.extend_from_slice(b"   7: ");
    text.extend(std::iter::repeat_n(b'A', 16 << 20));
    text.push(b'\n');
    let (out, s) = tcp(&text);
    assert_eq!(s, stats(100_006, 1));
    assert_eq!(out.last().unwrap().inode, 100_000);
}

// ------------------------------------------------------------------ snmp and netstat

#[test]
fn snmp_valid_and_netstat_fill_one_struct() {
    let mut c = ProtocolCounters::default();
    assert_eq!(snmp::parse(&fixture("root/net/snmp"), &mut c), stats(5, 0));
    assert_eq!(
        snmp::parse(&fixture("root/net/netstat"), &mut c),
        stats(3, 0)
    );
    let t = c.tcp;
    assert_eq!(
        (
            t.active_opens,
            t.passive_opens,
            t.attempt_fails,
            t.estab_resets
        ),
        (Some(4), Some(4), Some(0), Some(0))
    );
    assert_eq!(
        (t.in_segs, t.out_segs, t.retrans_segs),
        (Some(16), Some(16), Some(0))
    );
    assert_eq!((t.listen_overflows, t.listen_drops), (Some(0), Some(0)));
    assert_eq!(c.udp.out_datagrams, Some(1));
}

#[test]
fn snmp_missing_fields_stay_unknown() {
    let mut c = ProtocolCounters::default();
    assert_eq!(
        snmp::parse(&fixture("snmp/missing_fields"), &mut c),
        stats(2, 0)
    );
    assert_eq!((c.tcp.active_opens, c.tcp.attempt_fails), (Some(10), None));
    assert_eq!((c.udp.out_datagrams, c.udp.rcvbuf_errors), (Some(6), None));
}

#[test]
fn snmp_unknown_columns_are_ignored() {
    let mut c = ProtocolCounters::default();
    assert_eq!(
        snmp::parse(&fixture("snmp/unknown_columns"), &mut c),
        stats(2, 0)
    );
    assert_eq!(
        (c.tcp.active_opens, c.tcp.retrans_segs, c.tcp.out_rsts),
        (Some(10), Some(9), Some(4))
    );
}

#[test]
fn snmp_malformed_sections_are_skipped_whole() {
    let mut c = ProtocolCounters::default();
    assert_eq!(snmp::parse(&fixture("snmp/malformed"), &mut c), stats(1, 6));
    assert_eq!(c.tcp.active_opens, None);
    assert_eq!(c.udp.in_datagrams, None);
    assert_eq!(c.tcp.retrans_segs, None);
    assert_eq!(
        (c.tcp.listen_overflows, c.tcp.listen_drops),
        (Some(4), Some(5))
    );
}

#[test]
fn snmp_truncated() {
    let mut c = ProtocolCounters::default();
    assert_eq!(snmp::parse(&fixture("snmp/truncated"), &mut c), stats(1, 1));
    assert_eq!(c.tcp.active_opens, Some(4));
    assert_eq!(c.udp.out_datagrams, None);
    assert!(snmp::parse(b"", &mut c).unknown_format);
}

#[test]
fn snmp_huge() {
    let mut names = b"TcpExt:".to_vec();
    let mut values = b"TcpExt:".to_vec();
    for i in 0..200_000 {
        names.extend_from_slice(format!(" X{i}").as_bytes());
        values.extend_from_slice(b" 1");
    }
    names.extend_from_slice(b" ListenDrops\n");
    values.extend_from_slice(b" 42\n");
    names.extend_from_slice(&values);
    let mut c = ProtocolCounters::default();
    assert_eq!(snmp::parse(&names, &mut c), stats(1, 0));
    assert_eq!(c.tcp.listen_drops, Some(42));
}

#[test]
fn snmp6_valid() {
    let mut u = UdpCounters::default();
    assert_eq!(
        snmp::parse_snmp6(&fixture("root/net/snmp6"), &mut u),
        stats(39, 0)
    );
    assert_eq!(
        (u.in_datagrams, u.out_datagrams, u.no_ports, u.in_errors),
        (Some(41), Some(43), Some(2), Some(0))
    );
}

#[test]
fn snmp6_malformed_lines_are_skipped_alone() {
    let mut u = UdpCounters::default();
    assert_eq!(
        snmp::parse_snmp6(&fixture("snmp6/malformed"), &mut u),
        stats(3, 4)
    );
    assert_eq!((u.in_datagrams, u.rcvbuf_errors), (Some(12), Some(2)));
    assert_eq!(
        (u.out_datagrams, u.no_ports, u.in_errors, u.sndbuf_errors),
        (None, None, None, None)
    );
}

#[test]
fn snmp6_truncated() {
    let mut u = UdpCounters::default();
    assert_eq!(
        snmp::parse_snmp6(&fixture("snmp6/truncated"), &mut u),
        stats(1, 1)
    );
    assert_eq!((u.in_datagrams, u.out_datagrams), (Some(12), None));
}

#[test]
fn counter_deltas() {
    let mut before = ProtocolCounters::default();
    snmp::parse(&fixture("root/net/snmp"), &mut before);
    let mut after = before;
    after.tcp.active_opens = after.tcp.active_opens.map(|n| n + 3);
    after.tcp.listen_drops = Some(5);
    let d = after.since(&before);
    assert_eq!(d.tcp.active_opens, Some(3));
    assert_eq!(d.tcp.passive_opens, Some(0));
    assert_eq!(d.tcp.listen_drops, None, "unknown at the start");
}

// ------------------------------------------------------------------ sockstat

#[test]
fn sockstat_valid_and_malformed() {
    let mut u = SocketsInUse::default();
    sockstat::parse(&fixture("root/net/sockstat"), &mut u);
    sockstat::parse(&fixture("root/net/sockstat6"), &mut u);
    assert_eq!(
        u,
        SocketsInUse {
            tcp: Some(5),
            tcp_time_wait: Some(1),
            udp: Some(2),
            tcp6: Some(4),
            udp6: Some(1),
        }
    );
    let mut u = SocketsInUse::default();
    assert_eq!(
        sockstat::parse(&fixture("sockstat/malformed"), &mut u),
        stats(2, 5)
    );
    assert_eq!(
        (u.tcp, u.udp, u.tcp6, u.udp6),
        (None, Some(3), None, Some(7))
    );
}

// ------------------------------------------------------------------ the sampler

fn copy_root(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/root/net");
    let net = dir.join("net");
    std::fs::create_dir_all(&net).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), net.join(e.file_name())).unwrap();
    }
    net
}

#[test]
fn sampler_reads_a_whole_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/root");
    let mut s = Sampler::new(&root);
    let snap = s.sample();
    assert_eq!(snap.tables_read, 4);
    assert_eq!(snap.sockets.len(), 13);
    assert_eq!(snap.interfaces.len(), 1);
    assert_eq!(snap.protocols.tcp.active_opens, Some(4));
    let c = snap.connections;
    assert_eq!(c.get(Transport::Tcp, state::ESTABLISHED), 6);
    assert_eq!(c.get(Transport::Tcp, state::LISTEN), 2);
    assert_eq!(c.get(Transport::Tcp, state::FIN_WAIT1), 1);
    assert_eq!(c.get(Transport::Tcp, state::CLOSE_WAIT), 1);
    assert_eq!(c.get(Transport::Udp, state::CLOSE), 2);
    assert_eq!(c.get(Transport::Udp, state::ESTABLISHED), 1);
    assert_eq!(c.iter().map(|(_, _, n)| n).sum::<u64>(), 13);
    assert_eq!(s.health(), Default::default());
}

#[test]
fn sampler_skips_tables_with_no_socket_in_use_and_counts_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let net = copy_root(dir.path());
    std::fs::write(net.join("sockstat6"), "TCP6: inuse 0\nUDP6: inuse 0\n").unwrap();
    // If tcp6 were read, this line would be counted as malformed.
    std::fs::write(net.join("tcp6"), "garbage").unwrap();
    std::fs::remove_file(net.join("netstat")).unwrap();
    let mut s = Sampler::new(dir.path());
    let snap = s.sample();
    assert_eq!(snap.tables_read, 2);
    assert_eq!(snap.sockets.len(), 8);
    assert_eq!(snap.protocols.tcp.listen_drops, None);
    let h = s.health();
    assert_eq!(
        (h.files_unreadable, h.lines_skipped, h.formats_unknown),
        (1, 0, 0)
    );
}

#[test]
fn sampler_counts_malformed_input_and_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let net = copy_root(dir.path());
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sockets/malformed"),
        net.join("tcp"),
    )
    .unwrap();
    std::fs::write(net.join("dev"), "nonsense\n").unwrap();
    let mut s = Sampler::new(dir.path());
    let snap = s.sample();
    assert!(snap.interfaces.is_empty());
    assert_eq!(snap.sockets.len(), 2 + 4 + 2 + 1);
    let h = s.health();
    assert_eq!((h.lines_skipped, h.formats_unknown), (10, 1));
}

#[test]
fn sampler_on_the_live_system() {
    let mut s = Sampler::new(Path::new("/proc"));
    let snap = s.sample();
    assert!(
        snap.interfaces.iter().any(|i| i.name.as_str() == "lo"),
        "{:?}",
        snap.interfaces
    );
    assert!(snap.protocols.tcp.active_opens.is_some());
    assert_eq!(s.health().lines_skipped, 0);
    assert_eq!(s.health().formats_unknown, 0);
}

// ------------------------------------------------------------------ fds and processes

#[test]
fn fd_fixture_tree() {
    let dir = tempfile::tempdir().unwrap();
    let fds = dir.path().join("4242/fd");
    std::fs::create_dir_all(&fds).unwrap();
    for (name, target) in [
        ("3", "socket:[100]"),
        ("4", "pipe:[5]"),
        ("5", "/dev/null"),
        ("x", "socket:[7]"),
        ("6", "socket:[bad]"),
        ("7", "socket:[200]"),
        ("8", "anon_inode:[eventpoll]"),
    ] {
        std::os::unix::fs::symlink(target, fds.join(name)).unwrap();
    }
    let mut out = Vec::new();
    let scan = fd::read_socket_fds(dir.path(), 4242, &mut out).unwrap();
    out.sort();
    assert_eq!(
        out,
        [
            fd::SocketFd { fd: 3, inode: 100 },
            fd::SocketFd { fd: 7, inode: 200 }
        ]
    );
    assert_eq!((scan.fds, scan.skipped), (7, 1));
    assert!(fd::read_socket_fds(dir.path(), 4343, &mut out).is_err());
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn process_tree_from_children_files() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r.join("10/task/10/children"), "11 12 ");
    write(r.join("10/task/13/children"), "14");
    write(r.join("11/task/11/children"), "");
    write(r.join("12/task/12/children"), "15 x\n");
    write(r.join("14/task/14/children"), "");
    write(r.join("15/task/15/children"), "10");
    write(r.join("99/task/99/children"), "98");
    let mut pids = BTreeSet::from([10]);
    assert_eq!(process::add_descendants(r, &mut pids), 4);
    assert_eq!(pids, BTreeSet::from([10, 11, 12, 14, 15]));
}

#[test]
fn process_tree_without_children_files_uses_stat() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r.join("20/stat"), "20 (sh) S 1 20 20 0 -1");
    write(r.join("21/stat"), "21 (a b) c) S 20 20 20 0 -1");
    write(r.join("22/stat"), "22 (static) R 21 20 20 0 -1");
    write(r.join("23/stat"), "23 (other) R 1 20 20 0 -1");
    write(r.join("24/stat"), "garbage");
    std::fs::create_dir_all(r.join("20/task/20")).unwrap();
    let mut pids = BTreeSet::from([20]);
    process::add_descendants(r, &mut pids);
    assert_eq!(pids, BTreeSet::from([20, 21, 22]));
}
