//! The socket tables over netlink `sock_diag` (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`
//! dumps), what `ss` reads: the same sockets as `/proc/net/{tcp,tcp6,udp,udp6}`, in binary.
//!
//! Why not only the text files: with 10,000 sockets the kernel spends about 32 ms a pass
//! *generating* `/proc/net/tcp*` text (formatting every field of every socket with
//! `seq_printf`), before netmon parses a byte of it; a dump of the same sockets costs a few
//! milliseconds (BENCHMARKS.md, "/proc sampling"). The text files stay the fallback, per table:
//! a kernel built without `inet_diag`/`udp_diag`, a sandbox that refuses netlink sockets, and
//! the fixture directories of the tests.
//!
//! Messages are built and decoded with netlink-packet-core and netlink-packet-sock-diag; only
//! the fixed `inet_diag_msg` header of each answer is decoded (no attributes are asked for), so
//! a dump allocates nothing once the receive buffer exists.

use crate::sockets::{Family, SocketEntry, Transport, state};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};
use std::io;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The original TCP dump request (`struct inet_diag_req`, before `SOCK_DIAG_BY_FAMILY`): the
/// kernel answers it for both address families in one walk of the connection hash, where
/// per-family requests walk it once each (`inet_diag_dump_compat` sets `AF_UNSPEC`).
const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_req`: family, src_len, dst_len, ext (1 byte each), `inet_diag_sockid`
/// (48), states (4), dbs (4).
const INET_DIAG_REQ_LEN: usize = 60;
/// A dump answer is a series of datagrams of at most 32 KiB each (the kernel sizes them from
/// the largest read buffer it has seen, up to this); a smaller buffer would truncate them.
const RECV_BUFFER: usize = 32 * 1024;
/// Every state bit, so TIME_WAIT, NEW_SYN_RECV and states newer than the crate's flag list
/// are dumped too, as `/proc/net/tcp` lists them.
const ALL_STATES: u32 = u32::MAX;

/// A `NETLINK_SOCK_DIAG` socket with its buffers, reused from dump to dump.
pub struct SockDiag {
    socket: Socket,
    request: Vec<u8>,
    recv: Vec<u8>,
    sequence: u32,
}

/// What one dump returned besides the sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Sockets appended.
    pub sockets: u64,
    /// Answers that could not be decoded, skipped.
    pub skipped: u64,
    /// The kernel flagged the dump as interrupted by concurrent changes (`NLM_F_DUMP_INTR`):
    /// a socket may be missing or listed twice, as in a `/proc` read racing the same changes.
    pub interrupted: bool,
}

impl SockDiag {
    /// A socket in the calling thread's network namespace (the one `/proc/self/net` shows).
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            request: Vec::new(),
            recv: vec![0; RECV_BUFFER],
            sequence: 0,
        })
    }

    /// Appends every socket of one table to `out`. An error (the kernel has no diag module
    /// for this protocol, the socket failed) leaves `out` as it was.
    pub fn dump(
        &mut self,
        transport: Transport,
        family: Family,
        out: &mut Vec<SocketEntry>,
    ) -> io::Result<DumpStats> {
        let first = out.len();
        let result = self.dump_into(transport, family, out);
        if result.is_err() {
            out.truncate(first);
        }
        result
    }

    /// Appends every TCP socket of both address families to `out`, in one walk of the
    /// kernel's connection hash (about half the cost of a dump per family). An error (a kernel
    /// without the legacy request) leaves `out` as it was.
    pub fn dump_tcp_both_families(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<DumpStats> {
        let first = out.len();
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        // Hand-built: netlink-packet-sock-diag has no type for this request. Zero addresses
        // and ports: no filter.
        self.request.clear();
        self.request.resize(16 + INET_DIAG_REQ_LEN, 0);
        let mut header = NetlinkBuffer::new(&mut self.request[..]);
        header.set_length((16 + INET_DIAG_REQ_LEN) as u32);
        header.set_message_type(TCPDIAG_GETSOCK);
        header.set_flags(NLM_F_REQUEST | NLM_F_DUMP);
        header.set_sequence_number(sequence);
        self.request[16 + 52..16 + 56].copy_from_slice(&ALL_STATES.to_ne_bytes());
        let result = self
            .socket
            .send(&self.request, 0)
            .and_then(|_| self.receive(sequence, TCPDIAG_GETSOCK, Transport::Tcp, out));
        if result.is_err() {
            out.truncate(first);
        }
        result
    }

    fn dump_into(
        &mut self,
        transport: Transport,
        family: Family,
        out: &mut Vec<SocketEntry>,
    ) -> io::Result<DumpStats> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        self.send_request(transport, family, sequence)?;
        self.receive(sequence, SOCK_DIAG_BY_FAMILY, transport, out)
    }

    /// Reads the answers to request `sequence` up to its `NLMSG_DONE`.
    fn receive(
        &mut self,
        sequence: u32,
        answer_type: u16,
        transport: Transport,
        out: &mut Vec<SocketEntry>,
    ) -> io::Result<DumpStats> {
        let mut stats = DumpStats::default();
        loop {
            let n = self.socket.recv(&mut &mut self.recv[..], 0)?;
            let mut rest = self.recv.get(..n).unwrap_or(&self.recv);
            while !rest.is_empty() {
                let msg = NetlinkBuffer::new_checked(rest).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {e}"))
                })?;
                let len = msg.length() as usize;
                // Messages are 4-byte aligned within a datagram.
                let advance = len.next_multiple_of(4).min(rest.len());
                if msg.sequence_number() != sequence {
                    // Left from an earlier dump that failed half-way.
                    rest = &rest[advance..];
                    continue;
                }
                if msg.flags() & netlink_packet_core::NLM_F_DUMP_INTR != 0 {
                    stats.interrupted = true;
                }
                match msg.message_type() {
                    NLMSG_DONE => return Ok(stats),
                    NLMSG_ERROR => return Err(error_of(msg.payload())),
                    t if t == answer_type => match entry(msg.payload(), transport) {
                        Some(e) => {
                            out.push(e);
                            stats.sockets += 1;
                        }
                        None => stats.skipped += 1,
                    },
                    _ => stats.skipped += 1,
                }
                rest = &rest[advance..];
            }
        }
    }

    fn send_request(
        &mut self,
        transport: Transport,
        family: Family,
        sequence: u32,
    ) -> io::Result<()> {
        let (af, socket_id) = match family {
            Family::V4 => (AF_INET, SocketId::new_v4()),
            Family::V6 => (AF_INET6, SocketId::new_v6()),
        };
        let protocol = match transport {
            Transport::Tcp => IPPROTO_TCP,
            Transport::Udp => IPPROTO_UDP,
        };
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(SockDiagMessage::InetRequest(InetRequest {
                family: af,
                protocol,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::from_bits_retain(ALL_STATES),
                socket_id,
            })),
        );
        packet.finalize();
        self.request.resize(packet.buffer_len(), 0);
        packet.serialize(&mut self.request);
        self.socket.send(&self.request, 0)?;
        Ok(())
    }
}

/// The errno of an `NLMSG_ERROR` answer (a negative `int` first in its payload).
fn error_of(payload: &[u8]) -> io::Error {
    let code = payload
        .first_chunk::<4>()
        .map(|b| i32::from_ne_bytes(*b))
        .unwrap_or(0);
    match code.checked_neg() {
        Some(errno) if errno > 0 => io::Error::from_raw_os_error(errno),
        _ => io::Error::new(
            io::ErrorKind::InvalidData,
            "sock_diag: malformed error answer",
        ),
    }
}

/// One `inet_diag_msg` as a socket-table entry; `None` if it is too short or its state code
/// is out of range.
fn entry(payload: &[u8], transport: Transport) -> Option<SocketEntry> {
    use netlink_packet_core::Parseable;
    let h = InetResponseHeader::parse(payload).ok()?;
    if usize::from(h.state) >= state::COUNT {
        return None;
    }
    let id = &h.socket_id;
    Some(SocketEntry {
        transport,
        local: std::net::SocketAddr::new(id.source_address, id.source_port),
        remote: std::net::SocketAddr::new(id.destination_address, id.destination_port),
        state: h.state,
        tx_queue: h.send_queue,
        rx_queue: h.recv_queue,
        uid: h.uid,
        inode: u64::from(h.inode),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets;
    use std::collections::BTreeSet;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    fn key(e: &SocketEntry) -> (String, String, u8, u64) {
        (e.local.to_string(), e.remote.to_string(), e.state, e.inode)
    }

    fn text_table(name: &str, transport: Transport, family: Family) -> Vec<SocketEntry> {
        let text = std::fs::read(format!("/proc/net/{name}")).unwrap();
        let mut out = Vec::new();
        sockets::parse(&text, transport, family, &mut out);
        out
    }

    #[test]
    fn dump_lists_the_sockets_proc_lists() {
        let Ok(mut diag) = SockDiag::open() else {
            eprintln!("no NETLINK_SOCK_DIAG here: nothing to compare");
            return;
        };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let any = "0.0.0.0:0".parse().unwrap();
        // (local, remote) of this test's own sockets: ephemeral ports may be reused by
        // TIME_WAIT leftovers of other tests.
        let ours = [
            (l.local_addr().unwrap(), any),
            (c.local_addr().unwrap(), c.peer_addr().unwrap()),
            (s.local_addr().unwrap(), s.peer_addr().unwrap()),
            (u.local_addr().unwrap(), any),
        ];
        for (name, transport, family) in [
            ("tcp", Transport::Tcp, Family::V4),
            ("udp", Transport::Udp, Family::V4),
        ] {
            let mut dumped = Vec::new();
            let stats = diag.dump(transport, family, &mut dumped).unwrap();
            assert_eq!(stats.sockets as usize, dumped.len());
            let text = text_table(name, transport, family);
            // Other tests open sockets concurrently: compare only this test's own.
            let mine = |v: &[SocketEntry]| -> BTreeSet<_> {
                v.iter()
                    .filter(|e| ours.contains(&(e.local, e.remote)))
                    .map(key)
                    .collect()
            };
            let (a, b) = (mine(&dumped), mine(&text));
            assert!(!a.is_empty(), "{name}: none of our sockets dumped");
            assert_eq!(a, b, "{name}");
        }
        let tcp = |v: &[SocketEntry]| {
            v.iter()
                .any(|e| (e.local, e.remote) == ours[1] && e.state == state::ESTABLISHED)
        };
        let mut dumped = Vec::new();
        diag.dump(Transport::Tcp, Family::V4, &mut dumped).unwrap();
        assert!(tcp(&dumped), "the connected client is ESTABLISHED");
        drop((c, s));
    }

    #[test]
    fn ipv6_dump_has_ipv6_addresses() {
        let Ok(mut diag) = SockDiag::open() else {
            return;
        };
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            return;
        };
        let mut dumped = Vec::new();
        diag.dump(Transport::Tcp, Family::V6, &mut dumped).unwrap();
        let e = dumped
            .iter()
            .find(|e| e.local == l.local_addr().unwrap())
            .expect("the listener");
        assert_eq!(e.state, state::LISTEN);
        assert_eq!(e.remote.ip(), std::net::IpAddr::from([0u16; 8]));
    }

    #[test]
    fn one_tcp_dump_lists_both_families() {
        let Ok(mut diag) = SockDiag::open() else {
            return;
        };
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c4 = TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let Ok(l6) = TcpListener::bind("[::1]:0") else {
            return;
        };
        let unspecified = |a: std::net::SocketAddr| match a {
            std::net::SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
            std::net::SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
        };
        // (local, remote) of this test's own sockets: ephemeral ports may be reused by
        // TIME_WAIT leftovers of other tests.
        let ours = [
            (
                l4.local_addr().unwrap(),
                unspecified(l4.local_addr().unwrap()),
            ),
            (c4.local_addr().unwrap(), l4.local_addr().unwrap()),
            (
                l6.local_addr().unwrap(),
                unspecified(l6.local_addr().unwrap()),
            ),
        ];
        let mut both = Vec::new();
        let stats = diag.dump_tcp_both_families(&mut both).unwrap();
        assert_eq!(stats.sockets as usize, both.len());
        let mut separate = Vec::new();
        diag.dump(Transport::Tcp, Family::V4, &mut separate)
            .unwrap();
        diag.dump(Transport::Tcp, Family::V6, &mut separate)
            .unwrap();
        let mine = |v: &[SocketEntry]| -> BTreeSet<_> {
            v.iter()
                .filter(|e| ours.contains(&(e.local, e.remote)))
                .map(key)
                .collect()
        };
        assert_eq!(mine(&both).len(), 3, "{both:?}");
        assert_eq!(mine(&both), mine(&separate));
        assert!(both.iter().all(|e| e.transport == Transport::Tcp));
    }

    #[test]
    fn many_datagrams_and_repeated_dumps() {
        let Ok(mut diag) = SockDiag::open() else {
            return;
        };
        // More sockets than one 32 KiB datagram holds (about 100 bytes each).
        let udp: Vec<UdpSocket> = (0..1000)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for _ in 0..3 {
            let mut dumped = Vec::new();
            diag.dump(Transport::Udp, Family::V4, &mut dumped).unwrap();
            let found = udp
                .iter()
                .filter(|u| dumped.iter().any(|e| e.local == u.local_addr().unwrap()))
                .count();
            assert_eq!(found, udp.len());
        }
    }

    #[test]
    fn error_answers_become_errnos() {
        let e = error_of(&(-2i32).to_ne_bytes());
        assert_eq!(e.raw_os_error(), Some(2));
        assert_eq!(error_of(&[1]).kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            error_of(&0i32.to_ne_bytes()).kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn short_or_odd_answers_are_skipped() {
        assert_eq!(entry(&[0; 10], Transport::Tcp), None);
        let mut msg = [0u8; 72];
        msg[0] = AF_INET;
        msg[1] = 200; // no such state
        assert_eq!(entry(&msg, Transport::Tcp), None);
        msg[1] = state::LISTEN;
        let e = entry(&msg, Transport::Tcp).unwrap();
        assert_eq!(e.state, state::LISTEN);
    }
}
