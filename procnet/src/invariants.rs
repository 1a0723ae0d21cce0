//! The properties every parser keeps on any input whatsoever: no panic, and its counts add up
//! to the lines it was given. Run on random and mutated input by the fuzz targets (`fuzz/`)
//! and by the property tests (`tests/robustness.rs`); each function panics if a property
//! fails.

use crate::fields::lines;
use crate::sockets::{Family, Transport, state};
use crate::{
    ProtocolCounters, SocketsInUse, UdpCounters, dev, fd, process, snmp, sockets, sockstat,
};

fn line_count(text: &[u8]) -> u64 {
    lines(text).count() as u64
}

pub fn dev(text: &[u8]) {
    let mut out = Vec::new();
    let s = dev::parse(text, &mut out);
    assert_eq!(s.parsed, out.len() as u64);
    if s.unknown_format {
        assert!(out.is_empty());
    } else {
        assert_eq!(s.parsed + s.skipped, line_count(text) - 2);
    }
    for i in &out {
        assert!(dev::InterfaceName::new(i.name.as_str().as_bytes()).is_some());
    }
}

pub fn sockets(text: &[u8]) {
    for (transport, family) in [(Transport::Tcp, Family::V4), (Transport::Udp, Family::V6)] {
        let mut out = Vec::new();
        let s = sockets::parse(text, transport, family, &mut out);
        assert_eq!(s.parsed, out.len() as u64);
        if s.unknown_format {
            assert!(out.is_empty());
        } else {
            assert_eq!(s.parsed + s.skipped, line_count(text) - 1);
        }
        for e in &out {
            assert_eq!(e.transport, transport);
            assert!(usize::from(e.state) < state::COUNT);
            assert_eq!(e.local.is_ipv4(), family == Family::V4);
            assert_eq!(e.remote.is_ipv4(), family == Family::V4);
        }
    }
}

pub fn snmp(text: &[u8]) {
    let mut c = ProtocolCounters::default();
    let s = snmp::parse(text, &mut c);
    assert!(s.parsed + s.skipped <= line_count(text));
    assert_eq!(s.unknown_format, s.parsed == 0);
    // Parsing the same text again changes nothing.
    let mut again = c;
    snmp::parse(text, &mut again);
    assert_eq!(again, c);
}

pub fn snmp6(text: &[u8]) {
    let mut u = UdpCounters::default();
    let s = snmp::parse_snmp6(text, &mut u);
    assert_eq!(s.parsed + s.skipped, line_count(text));
    assert_eq!(s.unknown_format, s.parsed == 0);
    let mut again = u;
    snmp::parse_snmp6(text, &mut again);
    assert_eq!(again, u);
}

pub fn sockstat(text: &[u8]) {
    let mut u = SocketsInUse::default();
    let s = sockstat::parse(text, &mut u);
    assert_eq!(s.parsed + s.skipped, line_count(text));
}

pub fn fd_and_process(text: &[u8]) {
    if let Some(inode) = fd::parse_socket_link(text) {
        let inner = &text[b"socket:[".len()..text.len() - 1];
        assert!(inner.iter().all(u8::is_ascii_digit));
        assert!(inode.to_string().len() <= inner.len());
    }
    if let Some(n) = fd::parse_fd_name(text) {
        assert_eq!(n.to_string().as_bytes(), text);
    }
    let mut pids = Vec::new();
    let s = process::parse_children(text, &mut pids);
    assert_eq!(s.parsed, pids.len() as u64);
    assert!(pids.iter().all(|p| *p > 0));
    let _ = process::parse_stat_ppid(text);
}

/// Every parser on the same input.
pub fn all(text: &[u8]) {
    dev(text);
    sockets(text);
    snmp(text);
    snmp6(text);
    sockstat(text);
    fd_and_process(text);
}
