//! One sampling pass over a network namespace's `/proc` files, into buffers that are reused
//! from pass to pass: once the buffers have grown to the largest table seen, a pass allocates
//! nothing.

use crate::ParseStats;
use crate::dev::{self, Interface};
use crate::snmp::{self, ProtocolCounters};
use crate::sockdiag::SockDiag;
use crate::sockets::{self, Family, SocketEntry, Transport, state};
use crate::sockstat::{self, SocketsInUse};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Sockets by transport and state code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    counts: [[u64; state::COUNT]; 2],
}

impl ConnectionCounts {
    pub fn add(&mut self, transport: Transport, state: u8) {
        if let Some(c) = self.counts[transport.index()].get_mut(usize::from(state)) {
            *c += 1;
        }
    }

    pub fn get(&self, transport: Transport, state: u8) -> u64 {
        self.counts[transport.index()]
            .get(usize::from(state))
            .copied()
            .unwrap_or(0)
    }

    /// `(transport, state code, count)` for every non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (Transport, u8, u64)> + '_ {
        Transport::ALL.into_iter().flat_map(move |t| {
            self.counts[t.index()]
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(s, n)| (t, s as u8, *n))
        })
    }
}

/// Input the readers could not use, summed over all passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleHealth {
    /// Malformed lines (or snmp sections) skipped.
    pub lines_skipped: u64,
    /// Files that could not be read (missing in this kernel or container, no permission).
    pub files_unreadable: u64,
    /// Files whose header was not a layout netmon knows: read as empty.
    pub formats_unknown: u64,
    /// Socket tables netlink `sock_diag` could not dump, read from `/proc/net` text instead
    /// from then on (one per table at most).
    pub netlink_fallbacks: u64,
}

impl SampleHealth {
    fn note(&mut self, s: ParseStats) {
        self.lines_skipped += s.skipped;
        self.formats_unknown += u64::from(s.unknown_format);
    }
}

/// What the last pass read.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub interfaces: Vec<Interface>,
    pub protocols: ProtocolCounters,
    /// Every socket of the socket tables read.
    pub sockets: Vec<SocketEntry>,
    /// The sockets by transport and state (the network namespace's, not only netmon's).
    pub connections: ConnectionCounts,
    pub in_use: SocketsInUse,
    /// How many of the four socket tables were read; a table with no socket in use (per
    /// `sockstat`) is not.
    pub tables_read: u8,
    /// How many of those came over netlink `sock_diag` rather than `/proc/net` text.
    pub tables_via_netlink: u8,
    /// Every table was asked for (a full pass, or [`Sampler::sample_sockets`]).
    pub complete: bool,
    /// What reading and parsing each table took (zero if it was not read), in [`TABLES`]
    /// order.
    pub table_cost: [Duration; 4],
}

/// The socket tables, in the order [`Sampler::sample_tables`] and
/// [`Snapshot::table_cost`] index them.
pub const TABLES: [&str; 4] = ["tcp", "tcp6", "udp", "udp6"];

struct Paths {
    dev: PathBuf,
    snmp: PathBuf,
    netstat: PathBuf,
    snmp6: PathBuf,
    sockstat: PathBuf,
    sockstat6: PathBuf,
    tables: [(PathBuf, Transport, Family); 4],
}

/// Reads `/proc/net/*` under a root directory (`/proc`, or a fixture directory in tests).
pub struct Sampler {
    paths: Paths,
    buf: Vec<u8>,
    snapshot: Snapshot,
    health: SampleHealth,
    /// Set by [`Sampler::use_sock_diag`]; per table, `None` once its dump failed.
    diag: Option<SockDiag>,
    diag_tables: [bool; 4],
    /// Both TCP tables in one dump (`SockDiag::dump_tcp_both_families`); `false` once it failed.
    diag_tcp_both: bool,
}

impl Sampler {
    /// A sampler of `root/net/...`. `/proc/net` is the network namespace of the process that
    /// reads it.
    pub fn new(root: &Path) -> Self {
        let net = root.join("net");
        Self {
            paths: Paths {
                dev: net.join("dev"),
                snmp: net.join("snmp"),
                netstat: net.join("netstat"),
                snmp6: net.join("snmp6"),
                sockstat: net.join("sockstat"),
                sockstat6: net.join("sockstat6"),
                tables: [
                    (net.join("tcp"), Transport::Tcp, Family::V4),
                    (net.join("tcp6"), Transport::Tcp, Family::V6),
                    (net.join("udp"), Transport::Udp, Family::V4),
                    (net.join("udp6"), Transport::Udp, Family::V6),
                ],
            },
            buf: Vec::new(),
            snapshot: Snapshot::default(),
            health: SampleHealth::default(),
            diag: None,
            diag_tables: [false; 4],
            diag_tcp_both: false,
        }
    }

    /// Reads the socket tables over netlink `sock_diag` (module [`crate::sockdiag`]) instead
    /// of `/proc/net/{tcp,tcp6,udp,udp6}`: the same sockets at a fraction of the kernel's
    /// cost. Only meaningful when the root is the live `/proc` of this network namespace.
    /// `false` if no such socket can be opened here; the text files are read then, as they are
    /// for any table whose dump fails later.
    pub fn use_sock_diag(&mut self) -> bool {
        match SockDiag::open() {
            Ok(d) => {
                self.diag = Some(d);
                self.diag_tables = [true; 4];
                self.diag_tcp_both = true;
                true
            }
            Err(_) => false,
        }
    }

    /// Reads `path` into the shared buffer; `false` (and counted) if it cannot be read.
    fn load(buf: &mut Vec<u8>, health: &mut SampleHealth, path: &Path) -> bool {
        buf.clear();
        let ok = std::fs::File::open(path).and_then(|mut f| f.read_to_end(buf));
        if ok.is_err() {
            health.files_unreadable += 1;
        }
        ok.is_ok()
    }

    /// A full pass: interfaces, protocol counters (`snmp`, `netstat`, `snmp6`) and socket
    /// tables.
    pub fn sample(&mut self) -> &Snapshot {
        let (buf, health, snap) = (&mut self.buf, &mut self.health, &mut self.snapshot);
        if Self::load(buf, health, &self.paths.dev) {
            health.note(dev::parse(buf, &mut snap.interfaces));
        } else {
            snap.interfaces.clear();
        }
        snap.protocols = ProtocolCounters::default();
        for path in [&self.paths.snmp, &self.paths.netstat] {
            if Self::load(buf, health, path) {
                health.note(snmp::parse(buf, &mut snap.protocols));
            }
        }
        // Absent in a kernel without IPv6 (nothing to count then): not an unreadable file.
        if self.paths.snmp6.exists() && Self::load(buf, health, &self.paths.snmp6) {
            health.note(snmp::parse_snmp6(buf, &mut snap.protocols.udp6));
        }
        self.sample_sockets()
    }

    /// Only the socket tables (and `sockstat`, which says which are worth reading).
    pub fn sample_sockets(&mut self) -> &Snapshot {
        self.sample_tables([true; 4])
    }

    /// Only the socket tables picked in `wanted` (indexes: [`TABLES`]). The snapshot's
    /// sockets and connection counts then cover those tables only, and
    /// [`Snapshot::table_cost`] says what each read took, so a caller can read cheap tables
    /// more often than expensive ones.
    pub fn sample_tables(&mut self, wanted: [bool; 4]) -> &Snapshot {
        let (buf, health, snap) = (&mut self.buf, &mut self.health, &mut self.snapshot);
        snap.in_use = SocketsInUse::default();
        for path in [&self.paths.sockstat, &self.paths.sockstat6] {
            if Self::load(buf, health, path) {
                health.note(sockstat::parse(buf, &mut snap.in_use));
            }
        }
        let u = snap.in_use;
        // IPv6 TIME_WAIT sockets are not in `TCP6: inuse`; with no live IPv6 TCP socket they
        // are not read (they belong to no process, and only the state counts miss them).
        let worth = [
            u.tcp.is_none_or(|n| n > 0) || u.tcp_time_wait.is_none_or(|n| n > 0),
            u.tcp6.is_none_or(|n| n > 0),
            u.udp.is_none_or(|n| n > 0),
            u.udp6.is_none_or(|n| n > 0),
        ];
        snap.sockets.clear();
        snap.connections = ConnectionCounts::default();
        snap.tables_read = 0;
        snap.tables_via_netlink = 0;
        snap.complete = wanted.iter().all(|w| *w);
        snap.table_cost = [Duration::ZERO; 4];
        // Both TCP tables wanted: one dump walks the kernel's connection hash once for both
        // families, where a dump per family walks it twice.
        let mut done = [false; 4];
        let both = [0, 1]
            .iter()
            .all(|&i| wanted[i] && worth[i] && self.diag_tables[i]);
        if let Some(diag) = self.diag.as_mut().filter(|_| both && self.diag_tcp_both) {
            let started = Instant::now();
            match diag.dump_tcp_both_families(&mut snap.sockets) {
                Ok(s) => {
                    health.lines_skipped += s.skipped;
                    done[0] = true;
                    done[1] = true;
                    snap.tables_read += 2;
                    snap.tables_via_netlink += 2;
                    for e in &snap.sockets {
                        snap.connections.add(e.transport, e.state);
                    }
                    let half = started.elapsed() / 2;
                    snap.table_cost[0] = half;
                    snap.table_cost[1] = half;
                }
                // A kernel without the legacy request: a dump per family from now on.
                Err(_) => self.diag_tcp_both = false,
            }
        }
        for (i, (path, transport, family)) in self.paths.tables.iter().enumerate() {
            if done[i] || !wanted[i] || !worth[i] {
                continue;
            }
            let started = Instant::now();
            let first = snap.sockets.len();
            let dumped = match self.diag.as_mut().filter(|_| self.diag_tables[i]) {
                None => false,
                Some(diag) => match diag.dump(*transport, *family, &mut snap.sockets) {
                    Ok(s) => {
                        health.lines_skipped += s.skipped;
                        true
                    }
                    Err(_) => {
                        self.diag_tables[i] = false;
                        health.netlink_fallbacks += 1;
                        false
                    }
                },
            };
            if dumped {
                snap.tables_via_netlink += 1;
            } else if Self::load(buf, health, path) {
                health.note(sockets::parse(buf, *transport, *family, &mut snap.sockets));
            } else {
                continue;
            }
            snap.tables_read += 1;
            for e in &snap.sockets[first..] {
                snap.connections.add(e.transport, e.state);
            }
            snap.table_cost[i] = started.elapsed();
        }
        &self.snapshot
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn health(&self) -> SampleHealth {
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    #[test]
    fn netlink_and_text_passes_see_the_same_sockets() {
        let mut diag = Sampler::new(Path::new("/proc"));
        if !diag.use_sock_diag() {
            eprintln!("no NETLINK_SOCK_DIAG here: nothing to compare");
            return;
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let u = UdpSocket::bind("[::1]:0").ok();
        let mine = |snap: &Snapshot| {
            let mut v: Vec<_> = snap
                .sockets
                .iter()
                .filter(|e| {
                    e.inode != 0
                        && [Some(l.local_addr().unwrap()), Some(c.local_addr().unwrap())]
                            .into_iter()
                            .chain([u.as_ref().map(|u| u.local_addr().unwrap())])
                            .any(|a| a == Some(e.local))
                })
                .map(|e| (e.transport, e.local, e.remote, e.state, e.inode))
                .collect();
            v.sort();
            v
        };
        let a = mine(diag.sample());
        assert_eq!(
            diag.snapshot().tables_via_netlink,
            diag.snapshot().tables_read
        );
        assert!(diag.snapshot().tables_read >= 1);
        let mut text = Sampler::new(Path::new("/proc"));
        let b = mine(text.sample());
        assert_eq!(text.snapshot().tables_via_netlink, 0);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2 + usize::from(u.is_some()));
        assert_eq!(diag.health().netlink_fallbacks, 0);
    }
}
