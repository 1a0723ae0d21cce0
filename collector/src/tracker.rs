//! Reads a shared-memory region — rings of events and socket slots — and keeps what the
//! monitored processes did: processes, DNS lookups, sockets with their connection outcome and
//! byte counters.
//!
//! Everything read from the region is untrusted: events and slots that fail validation are
//! skipped and counted in [`Health::records_rejected`], never trusted, never a panic.
//!
//! Also compiled, with `names`, into the fuzz target `fuzz/fuzz_targets/region_reader.rs`: keep
//! its dependencies to those two modules, `netmon_proto` and `std`.

use crate::names;
use netmon_proto::region::Region;
use netmon_proto::{
    Addr, ConnectEvent, DatagramEvent, DnsEvent, Event, InvocationEvent, ProcessEvent,
    connect_state, datagram_direction, dns_source, family, invocation_phase, kind, process_flags,
    ring_state, role, socket_flags, socket_state, transport, unpack_kind,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;

/// A process that attached to the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub executable: String,
    pub forked: bool,
}

/// Where a DNS lookup was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsSource {
    Getaddrinfo,
    Gethostbyname,
    GetaddrinfoA,
    /// DNS datagrams the program exchanged with a server itself.
    Udp,
}

impl DnsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsSource::Getaddrinfo => "getaddrinfo",
            DnsSource::Gethostbyname => "gethostbyname",
            DnsSource::GetaddrinfoA => "getaddrinfo_a",
            DnsSource::Udp => "udp",
        }
    }
}

/// One completed (or timed-out) name lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsLookup {
    pub pid: u32,
    pub tid: u32,
    /// Invocation epoch (0 outside Lambda, or during init).
    pub epoch: u32,
    pub name: String,
    pub source: DnsSource,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub answers: Vec<IpAddr>,
    /// DNS response code: real for datagrams, derived from the libc status otherwise; -1 for
    /// a timeout.
    pub rcode: i32,
    /// None on success, else a short reason ("NXDOMAIN", "EAI_AGAIN", "TIMEOUT", ...).
    pub error: Option<String>,
}

/// An IP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Outgoing,
    Incoming,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }
}

/// How a socket's connection ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No connect was attempted (UDP without connect, a listener, ...).
    None,
    Pending,
    Connected,
    /// Failed with this errno (0 when the reason could not be learned).
    Failed(i32),
}

/// A connection attempt as the program made it (one `connect` call, or one `accept`).
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Invocation epoch of the call.
    pub epoch: u32,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub errno: i32,
}

/// Everything known about one socket (one slot generation).
#[derive(Clone, Debug, PartialEq)]
pub struct SocketRecord {
    pub pid: u32,
    pub fd: i32,
    pub transport: Transport,
    pub is_ipv6: bool,
    pub role: u8,
    pub remote: Option<Endpoint>,
    pub local: Option<Endpoint>,
    pub outcome: Outcome,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub sends: u64,
    pub receives: u64,
    pub open_ns: u64,
    pub close_ns: Option<u64>,
    pub rtt_us: Option<u32>,
    pub rtt_var_us: Option<u32>,
    pub retransmits: Option<u32>,
    pub segs_out: u32,
    pub segs_in: u32,
    pub inherited: bool,
    /// A Runtime API connection: the platform's traffic, not the function's.
    pub platform: bool,
    pub attempts: Vec<Attempt>,
    /// Bytes (sent, received) per invocation epoch; they add up to the totals.
    pub epoch_bytes: BTreeMap<u32, (u64, u64)>,
    /// The newest epoch the slot was seen in.
    last_epoch: u32,
}

impl SocketRecord {
    /// A socket with nothing known yet but its owner and kind (synthetic workloads, tests).
    #[allow(dead_code, reason = "used by tests and the export benchmark")]
    pub fn new(pid: u32, transport: Transport, is_ipv6: bool, role: u8) -> SocketRecord {
        SocketRecord {
            pid,
            fd: -1,
            transport,
            is_ipv6,
            role,
            remote: None,
            local: None,
            outcome: Outcome::None,
            bytes_sent: 0,
            bytes_received: 0,
            sends: 0,
            receives: 0,
            open_ns: 0,
            close_ns: None,
            rtt_us: None,
            rtt_var_us: None,
            retransmits: None,
            segs_out: 0,
            segs_in: 0,
            inherited: false,
            platform: false,
            attempts: Vec::new(),
            epoch_bytes: BTreeMap::new(),
            last_epoch: 0,
        }
    }

    /// Splits the counters between invocation epochs, given the slot's current epoch and its
    /// counters at the start of it (`base`). Bytes before `epoch` that no earlier read
    /// attributed belong to the newest epoch the slot was seen in before (the collector reads at
    /// every invocation end, and between invocations the environment is frozen).
    fn split_epochs(&mut self, epoch: u32, base: (u64, u64)) {
        let totals = (self.bytes_sent, self.bytes_received);
        if epoch < self.last_epoch {
            return; // epochs only grow; anything else is not trusted
        }
        let before: (u64, u64) = self
            .epoch_bytes
            .range(..epoch)
            .fold((0u64, 0u64), |a, (_, b)| {
                (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
            });
        // What earlier epochs already hold is not part of this one, whatever the slot says.
        let base = (
            base.0.max(before.0).min(totals.0),
            base.1.max(before.1).min(totals.1),
        );
        let missing = (
            base.0.saturating_sub(before.0),
            base.1.saturating_sub(before.1),
        );
        if epoch > self.last_epoch && (missing.0 > 0 || missing.1 > 0) {
            let e = self.epoch_bytes.entry(self.last_epoch).or_default();
            e.0 = e.0.saturating_add(missing.0);
            e.1 = e.1.saturating_add(missing.1);
        }
        self.epoch_bytes
            .insert(epoch, (totals.0 - base.0, totals.1 - base.1));
        self.last_epoch = epoch;
    }

    pub fn direction(&self) -> Direction {
        if self.role == role::INCOMING {
            Direction::Incoming
        } else {
            Direction::Outgoing
        }
    }
}

/// Bytes exchanged with a peer other than a socket's own (unconnected UDP).
#[derive(Clone, Debug, PartialEq)]
pub struct Datagrams {
    pub pid: u32,
    pub epoch: u32,
    pub peer: Endpoint,
    pub direction: Direction,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub count: u64,
}

/// A Lambda invocation boundary reported by the interceptor in the runtime process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvocationMark {
    pub pid: u32,
    /// For `Start`, the new epoch; otherwise the epoch that ends.
    pub epoch: u32,
    pub phase: InvocationPhase,
    pub request_id: String,
    pub time_ns: u64,
    pub deadline_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationPhase {
    Start,
    Response,
    Error,
}

/// netmon's own health: what was lost or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Events dropped by producers (rings full, or no ring free).
    pub events_dropped: u64,
    /// Records that failed validation.
    pub records_rejected: u64,
    /// Sockets not tracked (socket table full, fd beyond the table).
    pub sockets_untracked: u64,
}

/// The DNS port: flows to it are resolver traffic.
pub const DNS_PORT: u16 = 53;

pub type SocketKey = (u32, u32);
type QueryKey = (u32, u32, u32, u16);

/// The state built from one region.
#[derive(Default)]
pub struct Tracker {
    pub processes: BTreeMap<u32, Process>,
    pub lookups: Vec<DnsLookup>,
    pub sockets: HashMap<SocketKey, SocketRecord>,
    pub datagrams: HashMap<(u32, u32, Endpoint, Direction), Datagrams>,
    pub invocations: Vec<InvocationMark>,
    /// Keys of `sockets` in the order they were first seen (append-only), so a consumer can
    /// find new sockets without scanning them all.
    pub socket_order: Vec<(u32, u32)>,
    /// How many entries [`prune`](Self::prune) removed from the front of `lookups`,
    /// `socket_order` and `invocations`: consumers keep absolute positions.
    pub lookups_pruned: usize,
    pub socket_order_pruned: usize,
    pub invocations_pruned: usize,
    /// The name each address was last resolved from (see [`name_index`](Self::name_index)).
    names: HashMap<(Option<u32>, IpAddr), String>,
    pending_queries: HashMap<QueryKey, DnsLookup>,
    /// Early events for sockets whose slot we have not read yet.
    orphan_attempts: HashMap<SocketKey, Vec<(u16, Attempt)>>,
    rejected: u64,
    ring_dropped: HashMap<u32, u64>,
    /// The highest socket slot count the header ever announced: a writer that lowers the
    /// shared value cannot hide the slots above it.
    socket_high_water: u32,
}

/// A byte counter above this is not a real socket's (64 PiB: half a year at 100 Gbit/s): the
/// slot holds garbage.
const MAX_PLAUSIBLE_BYTES: u64 = 1 << 56;

/// One call moves at most this many bytes of datagrams.
const MAX_DATAGRAM_BYTES: u64 = u32::MAX as u64;

/// A call that started at `start_ns` (Unix ns) and took `duration_ns` would end after the last
/// nanosecond a `u64` holds (the year 2554): the event is garbage.
fn ends_past_clock(start_ns: u64, duration_ns: u64) -> bool {
    start_ns.checked_add(duration_ns).is_none()
}

fn endpoint(a: &Addr) -> Option<Endpoint> {
    let ip = match a.family {
        family::IPV4 => IpAddr::V4(Ipv4Addr::new(
            a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3],
        )),
        family::IPV6 => IpAddr::V6(Ipv6Addr::from(a.bytes)),
        _ => return None,
    };
    Some(Endpoint { ip, port: a.port })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass: drains every ring, then reads every socket slot (freeing closed ones).
    pub fn poll(&mut self, region: &Region) {
        self.drain_rings(region);
        self.scan_sockets(region, false);
    }

    /// The last pass: like [`poll`](Self::poll), and settles what can no longer change
    /// (unanswered DNS queries become timeouts).
    pub fn finish(&mut self, region: &Region) {
        self.drain_rings(region);
        self.scan_sockets(region, true);
        self.drain_rings(region);
        for (_, mut q) in self.pending_queries.drain() {
            q.rcode = -1;
            q.error = Some("TIMEOUT".into());
            self.lookups.push(q);
        }
    }

    fn drain_rings(&mut self, region: &Region) {
        for i in 0..region.geometry().rings {
            let Some(ring) = region.ring(i) else { break };
            let state = ring.control.state.load(Ordering::Acquire);
            if state == ring_state::FREE && ring.pending() == 0 {
                continue;
            }
            let mut events: Vec<Vec<u8>> = Vec::new();
            let stats = ring.consume(|bytes| events.push(bytes.to_vec()));
            self.rejected += stats.rejected;
            for e in events {
                self.handle_event(&e);
            }
            let dropped = ring.control.dropped.load(Ordering::Relaxed);
            self.ring_dropped.insert(i, dropped);
            if state == ring_state::RETIRED && ring.pending() == 0 {
                // Release: pairs with the producer's Acquire CAS in claim_ring.
                let _ = ring.control.state.compare_exchange(
                    ring_state::RETIRED,
                    ring_state::FREE,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            }
        }
    }

    fn handle_event(&mut self, bytes: &[u8]) {
        let k = u16::from_ne_bytes([bytes[0], bytes[1]]);
        let ok = match k {
            kind::PROCESS => ProcessEvent::read_from(bytes).map(|e| self.on_process(&e)),
            kind::DNS => DnsEvent::read_from(bytes).map(|e| self.on_dns(&e)),
            kind::CONNECT | kind::CONNECT_RESULT | kind::ACCEPT => {
                ConnectEvent::read_from(bytes).map(|e| self.on_connect(k, &e))
            }
            kind::DATAGRAM => DatagramEvent::read_from(bytes).map(|e| self.on_datagram(&e)),
            kind::INVOCATION => InvocationEvent::read_from(bytes).map(|e| self.on_invocation(&e)),
            _ => None,
        };
        if !matches!(ok, Some(true)) {
            self.rejected += 1;
        }
    }

    fn on_invocation(&mut self, e: &InvocationEvent) -> bool {
        let phase = match e.phase {
            invocation_phase::START => InvocationPhase::Start,
            invocation_phase::RESPONSE => InvocationPhase::Response,
            invocation_phase::ERROR => InvocationPhase::Error,
            _ => return false,
        };
        let id = e.request_id_bytes();
        if id.is_empty() || !id.iter().all(|c| c.is_ascii_graphic()) {
            return false;
        }
        self.invocations.push(InvocationMark {
            pid: e.header.pid,
            epoch: e.header.epoch,
            phase,
            request_id: text(id),
            time_ns: e.header.time_ns,
            deadline_ms: e.deadline_ms,
        });
        true
    }

    fn on_process(&mut self, e: &ProcessEvent) -> bool {
        let pid = e.header.pid;
        if pid == 0 {
            return false;
        }
        self.processes.insert(
            pid,
            Process {
                pid,
                ppid: e.ppid,
                executable: text(e.exe_bytes()),
                forked: e.header.flags & process_flags::FORKED != 0,
            },
        );
        true
    }

    fn on_dns(&mut self, e: &DnsEvent) -> bool {
        if ends_past_clock(e.header.time_ns, e.duration_ns) {
            return false;
        }
        let name = text(e.name_bytes())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        let answers = e
            .answer_slice()
            .iter()
            .filter_map(|a| endpoint(a).map(|p| p.ip))
            .collect();
        let mut lookup = DnsLookup {
            pid: e.header.pid,
            tid: e.header.tid,
            epoch: e.header.epoch,
            name,
            source: DnsSource::Udp,
            start_ns: e.header.time_ns,
            duration_ns: e.duration_ns,
            answers,
            rcode: 0,
            error: None,
        };
        let key = (e.header.pid, e.socket, e.socket_generation, e.query_id);
        match e.source {
            dns_source::GETADDRINFO | dns_source::GETADDRINFO_A => {
                lookup.source = if e.source == dns_source::GETADDRINFO {
                    DnsSource::Getaddrinfo
                } else {
                    DnsSource::GetaddrinfoA
                };
                lookup.rcode = names::eai_rcode(e.status);
                lookup.error = (e.status != 0).then(|| names::eai_name(e.status));
            }
            dns_source::GETHOSTBYNAME => {
                lookup.source = DnsSource::Gethostbyname;
                lookup.rcode = names::h_errno_rcode(e.status);
                lookup.error = (e.status != 0).then(|| names::h_errno_name(e.status));
            }
            dns_source::UDP_QUERY => {
                self.pending_queries.insert(key, lookup);
                return true;
            }
            dns_source::UDP_RESPONSE => {
                let rcode = e.rcode.clamp(0, 15) as i32;
                lookup.rcode = rcode;
                lookup.error = (rcode != 0).then(|| names::rcode_name(rcode));
                if let Some(q) = self.pending_queries.remove(&key)
                    && e.duration_ns == 0
                {
                    lookup.start_ns = q.start_ns;
                }
            }
            _ => return false,
        }
        self.remember_names(&lookup);
        self.lookups.push(lookup);
        true
    }

    fn on_connect(&mut self, k: u16, e: &ConnectEvent) -> bool {
        if e.socket == u32::MAX {
            return true; // an untracked socket: nothing to attach it to
        }
        if ends_past_clock(e.header.time_ns, e.duration_ns) {
            return false;
        }
        let attempt = Attempt {
            epoch: e.header.epoch,
            start_ns: e.header.time_ns,
            duration_ns: e.duration_ns,
            errno: e.errno,
        };
        let key = (e.socket, e.socket_generation);
        match self.sockets.get_mut(&key) {
            Some(s) if s.pid == e.header.pid => apply_attempt(s, k, attempt),
            Some(_) => return false,
            None => self
                .orphan_attempts
                .entry(key)
                .or_default()
                .push((k, attempt)),
        }
        true
    }

    fn on_datagram(&mut self, e: &DatagramEvent) -> bool {
        let Some(peer) = endpoint(&e.peer) else {
            return false;
        };
        if e.bytes > MAX_DATAGRAM_BYTES {
            return false;
        }
        let direction = match e.direction {
            datagram_direction::SENT => Direction::Outgoing,
            datagram_direction::RECEIVED => Direction::Incoming,
            _ => return false,
        };
        let d = self
            .datagrams
            .entry((e.header.pid, e.header.epoch, peer, direction))
            .or_insert(Datagrams {
                pid: e.header.pid,
                epoch: e.header.epoch,
                peer,
                direction,
                bytes_sent: 0,
                bytes_received: 0,
                count: 0,
            });
        match direction {
            Direction::Outgoing => d.bytes_sent = d.bytes_sent.saturating_add(e.bytes),
            Direction::Incoming => d.bytes_received = d.bytes_received.saturating_add(e.bytes),
        }
        d.count = d.count.saturating_add(1);
        true
    }

    fn scan_sockets(&mut self, region: &Region, all_final: bool) {
        let h = region.header();
        self.socket_high_water = self.socket_high_water.max(
            h.socket_high_water
                .load(Ordering::Relaxed)
                .min(region.geometry().sockets),
        );
        for idx in 0..self.socket_high_water {
            let Some(slot) = region.socket(idx) else {
                break;
            };
            // Acquire: pairs with the producer's Release stores of state.
            let state = slot.state.load(Ordering::Acquire);
            if state != socket_state::OPEN && state != socket_state::CLOSED {
                continue;
            }
            let gen_ = slot.generation.load(Ordering::Relaxed);
            let (fam, tp, r) = unpack_kind(slot.kind.load(Ordering::Relaxed));
            let transport = match tp {
                transport::TCP => Transport::Tcp,
                transport::UDP => Transport::Udp,
                _ => {
                    self.reject_slot(slot, state);
                    continue;
                }
            };
            if !(fam == family::IPV4 || fam == family::IPV6) || r > role::INCOMING {
                self.reject_slot(slot, state);
                continue;
            }
            let counters = [
                slot.bytes_sent.load(Ordering::Relaxed),
                slot.bytes_received.load(Ordering::Relaxed),
                slot.sends.load(Ordering::Relaxed),
                slot.receives.load(Ordering::Relaxed),
            ];
            // Counters only grow for one slot generation: a decrease is a scribbler's work.
            let went_back = self.sockets.get(&(idx, gen_)).is_some_and(|r| {
                [r.bytes_sent, r.bytes_received, r.sends, r.receives]
                    .iter()
                    .zip(&counters)
                    .any(|(before, now)| now < before)
            });
            if went_back || counters.iter().any(|c| *c > MAX_PLAUSIBLE_BYTES) {
                self.reject_slot(slot, state);
                continue;
            }
            let key = (idx, gen_);
            let flags = slot.flags.load(Ordering::Relaxed);
            let closed = state == socket_state::CLOSED;
            if !self.sockets.contains_key(&key) {
                self.socket_order.push(key);
            }
            let record = self.sockets.entry(key).or_insert_with(|| SocketRecord {
                pid: slot.pid.load(Ordering::Relaxed),
                fd: slot.fd.load(Ordering::Relaxed),
                transport,
                is_ipv6: fam == family::IPV6,
                role: r,
                remote: None,
                local: None,
                outcome: Outcome::None,
                bytes_sent: 0,
                bytes_received: 0,
                sends: 0,
                receives: 0,
                open_ns: slot.open_ns.load(Ordering::Relaxed),
                close_ns: None,
                rtt_us: None,
                rtt_var_us: None,
                retransmits: None,
                segs_out: 0,
                segs_in: 0,
                inherited: flags & socket_flags::INHERITED != 0,
                platform: false,
                attempts: Vec::new(),
                epoch_bytes: BTreeMap::new(),
                last_epoch: slot.open_epoch.load(Ordering::Relaxed),
            });
            record.platform = flags & socket_flags::PLATFORM != 0;
            record.role = r;
            record.remote = endpoint(&slot.remote.load());
            if let Some(l) = endpoint(&slot.local.load()) {
                record.local = Some(l);
            }
            [
                record.bytes_sent,
                record.bytes_received,
                record.sends,
                record.receives,
            ] = counters;
            record.split_epochs(
                slot.epoch.load(Ordering::Relaxed),
                (
                    slot.base_sent.load(Ordering::Relaxed),
                    slot.base_received.load(Ordering::Relaxed),
                ),
            );
            record.outcome = match slot.connect_state.load(Ordering::Relaxed) {
                connect_state::PENDING => Outcome::Pending,
                connect_state::CONNECTED => Outcome::Connected,
                connect_state::FAILED => {
                    Outcome::Failed(slot.connect_errno.load(Ordering::Relaxed))
                }
                _ => Outcome::None,
            };
            if closed {
                record.close_ns = Some(slot.close_ns.load(Ordering::Relaxed));
                if flags & socket_flags::TCP_INFO != 0 {
                    record.rtt_us = Some(slot.rtt_us.load(Ordering::Relaxed));
                    record.rtt_var_us = Some(slot.rtt_var_us.load(Ordering::Relaxed));
                    record.retransmits = Some(slot.total_retrans.load(Ordering::Relaxed));
                    record.segs_out = slot.segs_out.load(Ordering::Relaxed);
                    record.segs_in = slot.segs_in.load(Ordering::Relaxed);
                }
            }
            if let Some(early) = self.orphan_attempts.remove(&key) {
                for (k, a) in early {
                    apply_attempt(record, k, a);
                }
            }
            if closed {
                // Everything is read: hand the slot back. Release: pairs with the producer's
                // Acquire CAS in claim_slot.
                let _ = slot.state.compare_exchange(
                    socket_state::CLOSED,
                    socket_state::FREE,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            } else if all_final && record.outcome == Outcome::Pending {
                // The process is gone or done without settling the connect.
                record.outcome = Outcome::Failed(0);
            }
        }
    }

    fn reject_slot(&mut self, slot: &netmon_proto::SocketSlot, state: u32) {
        self.rejected += 1;
        if state == socket_state::CLOSED {
            let _ = slot.state.compare_exchange(
                socket_state::CLOSED,
                socket_state::FREE,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }

    /// Loss and rejection counters, including those the producers keep in the region.
    pub fn health(&self, region: &Region) -> Health {
        let h = region.header();
        // Saturating: these counters live in the shared mapping and may hold anything.
        Health {
            events_dropped: self
                .ring_dropped
                .values()
                .fold(h.dropped_no_ring.load(Ordering::Relaxed), |a, b| {
                    a.saturating_add(*b)
                }),
            records_rejected: self.rejected,
            sockets_untracked: h
                .sockets_untracked
                .load(Ordering::Relaxed)
                .saturating_add(h.fds_untracked.load(Ordering::Relaxed)),
        }
    }

    /// The name an address was last resolved from: keyed by `(Some(pid), ip)` for the
    /// process that resolved it and `(None, ip)` for any process. Kept across
    /// [`prune`](Self::prune), so a connection opened long ago keeps its name.
    pub fn name_index(&self) -> &HashMap<(Option<u32>, IpAddr), String> {
        &self.names
    }

    /// Upper bound on remembered names (distinct addresses); past it the oldest knowledge is
    /// dropped wholesale, which only costs names for connections to forgotten addresses.
    const MAX_NAMES: usize = 1 << 16;

    fn remember_names(&mut self, l: &DnsLookup) {
        if l.answers.is_empty() {
            return;
        }
        if self.names.len() >= Self::MAX_NAMES {
            self.names.clear();
        }
        for a in &l.answers {
            self.names.insert((Some(l.pid), *a), l.name.clone());
            self.names.insert((None, *a), l.name.clone());
        }
    }

    /// Lets go of what every reader is finished with (`netmon run`, whose memory must not
    /// grow with the number of connections a long run makes): returns the closed sockets that
    /// `done` accepts, hands `on_lookup` the lookups before absolute position `lookups_read`,
    /// and drops the entries of `socket_order` before absolute position `order_read`.
    /// Positions stay absolute (`*_pruned`).
    pub fn retire(
        &mut self,
        mut done: impl FnMut(&SocketKey, &SocketRecord) -> bool,
        lookups_read: usize,
        order_read: usize,
        mut on_lookup: impl FnMut(&DnsLookup),
    ) -> Vec<SocketRecord> {
        let gone: Vec<SocketRecord> = self
            .sockets
            .extract_if(|k, s| s.close_ns.is_some() && done(k, s))
            .map(|(_, s)| s)
            .collect();
        let n = lookups_read
            .saturating_sub(self.lookups_pruned)
            .min(self.lookups.len());
        for l in self.lookups.drain(..n) {
            on_lookup(&l);
        }
        self.lookups_pruned += n;
        let n = order_read
            .saturating_sub(self.socket_order_pruned)
            .min(self.socket_order.len());
        self.socket_order.drain(..n);
        self.socket_order_pruned += n;
        gone
    }

    /// Forgets what long-running modes have already reported: sockets closed and done before
    /// `epoch`, lookups, datagrams and invocation marks of earlier epochs. Consumers that keep
    /// positions in `lookups`, `socket_order` or `invocations` add the `*_pruned` counts.
    pub fn prune(&mut self, epoch: u32) {
        self.sockets.retain(|_, s| {
            s.close_ns.is_none()
                || s.epoch_bytes
                    .keys()
                    .next_back()
                    .is_some_and(|e| *e >= epoch)
        });
        let sockets = &self.sockets;
        let before = self.socket_order.len();
        let keep_from = self
            .socket_order
            .iter()
            .position(|k| sockets.contains_key(k))
            .unwrap_or(before);
        self.socket_order.drain(..keep_from);
        self.socket_order_pruned += keep_from;
        let n = self
            .lookups
            .iter()
            .position(|l| l.epoch >= epoch)
            .unwrap_or(self.lookups.len());
        self.lookups.drain(..n);
        self.lookups_pruned += n;
        let n = self
            .invocations
            .iter()
            .position(|m| m.epoch >= epoch)
            .unwrap_or(self.invocations.len());
        self.invocations.drain(..n);
        self.invocations_pruned += n;
        self.datagrams.retain(|_, d| d.epoch >= epoch);
        self.orphan_attempts.clear();
    }
}

fn apply_attempt(s: &mut SocketRecord, k: u16, a: Attempt) {
    match k {
        kind::CONNECT | kind::ACCEPT => s.attempts.push(a),
        kind::CONNECT_RESULT => {
            // The outcome of the last attempt, learned later.
            if let Some(last) = s.attempts.last_mut() {
                last.errno = a.errno;
                if a.start_ns > last.start_ns {
                    last.duration_ns = a.start_ns - last.start_ns;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmon_proto::region::Geometry;
    use netmon_proto::{EventHeader, pack_kind};

    fn region() -> Region {
        Region::create(
            Geometry {
                rings: 2,
                ring_capacity: 16,
                sockets: 8,
            },
            1,
        )
        .unwrap()
    }

    fn record() -> SocketRecord {
        let mut r = SocketRecord::new(1, Transport::Tcp, false, role::OUTGOING);
        r.outcome = Outcome::Connected;
        r
    }

    #[test]
    fn prune_forgets_old_closed_sockets_and_keeps_positions() {
        let mut t = Tracker::new();
        for (i, (epoch, closed)) in [(0, true), (1, true), (1, false), (3, true)]
            .into_iter()
            .enumerate()
        {
            let mut r = record();
            r.epoch_bytes.insert(epoch, (1, 1));
            r.close_ns = closed.then_some(1);
            t.sockets.insert((i as u32, 1), r);
            t.socket_order.push((i as u32, 1));
        }
        for epoch in [0, 1, 2, 3] {
            let l = DnsLookup {
                pid: 1,
                tid: 1,
                epoch,
                name: format!("e{epoch}.example"),
                source: DnsSource::Getaddrinfo,
                start_ns: epoch as u64,
                duration_ns: 1,
                answers: vec![format!("10.0.0.{epoch}").parse().unwrap()],
                rcode: 0,
                error: None,
            };
            t.remember_names(&l);
            t.lookups.push(l);
        }
        t.prune(2);
        let mut left: Vec<_> = t.sockets.keys().map(|k| k.0).collect();
        left.sort();
        assert_eq!(left, [2, 3], "open sockets and recent ones stay");
        assert_eq!(t.socket_order, [(2, 1), (3, 1)]);
        assert_eq!(t.socket_order_pruned, 2);
        assert_eq!(t.lookups.len(), 2);
        assert_eq!(t.lookups_pruned, 2);
        // Names outlive their lookups.
        let ip: IpAddr = "10.0.0.0".parse().unwrap();
        assert_eq!(t.name_index()[&(None, ip)], "e0.example");
    }

    #[test]
    fn keep_alive_bytes_split_exactly_between_epochs() {
        let mut r = record();
        // Init: 100 out, 1000 in, read while still in epoch 0.
        (r.bytes_sent, r.bytes_received) = (100, 1000);
        r.split_epochs(0, (0, 0));
        // More init traffic after that read (10 out), then invocation 1 moves 5/50 on the same
        // connection: the interceptor rebased at 110/1000.
        (r.bytes_sent, r.bytes_received) = (115, 1050);
        r.split_epochs(1, (110, 1000));
        assert_eq!(r.epoch_bytes[&0], (110, 1000));
        assert_eq!(r.epoch_bytes[&1], (5, 50));
        // Invocation 2 does nothing on it; invocation 3 moves 1/2.
        (r.bytes_sent, r.bytes_received) = (116, 1052);
        r.split_epochs(3, (115, 1050));
        assert_eq!(r.epoch_bytes[&1], (5, 50));
        assert_eq!(r.epoch_bytes[&3], (1, 2));
        assert!(!r.epoch_bytes.contains_key(&2));
        let sum = r
            .epoch_bytes
            .values()
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(sum, (116, 1052));
        // A hostile slot going back in time is ignored.
        r.split_epochs(2, (0, 0));
        assert_eq!(r.epoch_bytes[&3], (1, 2));
    }

    #[test]
    fn garbage_slots_and_events_are_rejected_not_trusted() {
        let r = region();
        let s = r.socket(0).unwrap();
        s.kind.store(0xFFFF_FFFF, Ordering::Relaxed);
        s.state.store(socket_state::CLOSED, Ordering::Release);
        r.header()
            .socket_high_water
            .store(u32::MAX, Ordering::Relaxed);
        let ring = r.ring(0).unwrap();
        ring.control
            .state
            .store(ring_state::OWNED, Ordering::Relaxed);
        let mut junk = [0u8; 128];
        junk[0] = kind::CONNECT as u8;
        junk[2] = 1;
        junk[8..12].copy_from_slice(&7u32.to_ne_bytes());
        junk[24..28].copy_from_slice(&3u32.to_ne_bytes()); // socket 3, never published
        assert!(ring.push(&junk, 1));
        let mut t = Tracker::new();
        t.finish(&r);
        assert!(t.sockets.is_empty());
        assert_eq!(t.health(&r).records_rejected, 1);
        assert_eq!(s.state.load(Ordering::Relaxed), socket_state::FREE);
    }

    /// A call that would end after the last representable nanosecond never happened.
    #[test]
    fn events_ending_past_the_clocks_range_are_rejected() {
        let r = region();
        let ring = r.ring(0).unwrap();
        ring.control
            .state
            .store(ring_state::OWNED, Ordering::Relaxed);
        let mut dns = DnsEvent::empty(dns_source::GETADDRINFO);
        dns.header = EventHeader::new(kind::DNS, DnsEvent::SLOTS, 42, 42, u64::MAX - 5);
        dns.duration_ns = 10;
        dns.set_name(b"example.com");
        assert!(ring.push(dns.as_bytes(), DnsEvent::SLOTS));
        let connect = ConnectEvent {
            header: EventHeader::new(kind::CONNECT, 1, 42, 42, u64::MAX),
            socket: 2,
            socket_generation: 5,
            fd: 3,
            errno: 0,
            duration_ns: 1,
            remote: Addr::from_ipv4([10, 0, 0, 9], 443),
            local: Addr::NONE,
            transport: transport::TCP,
            _pad: [0; 7],
        };
        assert!(ring.push(connect.as_bytes(), 1));
        // At the edge, but representable: kept.
        dns.header.time_ns = u64::MAX - 10;
        assert!(ring.push(dns.as_bytes(), DnsEvent::SLOTS));
        let mut t = Tracker::new();
        t.finish(&r);
        assert_eq!(t.health(&r).records_rejected, 2);
        assert_eq!(t.lookups.len(), 1);
        assert!(t.orphan_attempts.is_empty());
    }

    #[test]
    fn reads_slots_attaches_events_and_frees_closed_slots() {
        let r = region();
        let s = r.socket(2).unwrap();
        s.generation.store(5, Ordering::Relaxed);
        s.pid.store(42, Ordering::Relaxed);
        s.kind.store(
            pack_kind(family::IPV4, transport::TCP, role::OUTGOING),
            Ordering::Relaxed,
        );
        s.remote.store(&Addr::from_ipv4([10, 0, 0, 9], 443));
        s.bytes_sent.store(100, Ordering::Relaxed);
        s.bytes_received.store(2000, Ordering::Relaxed);
        s.connect_state
            .store(connect_state::FAILED, Ordering::Relaxed);
        s.connect_errno.store(111, Ordering::Relaxed);
        s.state.store(socket_state::CLOSED, Ordering::Release);
        r.header().socket_high_water.store(3, Ordering::Relaxed);
        let ev = ConnectEvent {
            header: EventHeader::new(kind::CONNECT, 1, 42, 42, 1000),
            socket: 2,
            socket_generation: 5,
            fd: 3,
            errno: 111,
            duration_ns: 50,
            remote: Addr::from_ipv4([10, 0, 0, 9], 443),
            local: Addr::NONE,
            transport: transport::TCP,
            _pad: [0; 7],
        };
        r.ring(1).unwrap().push(ev.as_bytes(), 1);
        r.ring(1)
            .unwrap()
            .control
            .state
            .store(ring_state::OWNED, Ordering::Relaxed);
        let mut t = Tracker::new();
        t.poll(&r);
        let rec = &t.sockets[&(2, 5)];
        assert_eq!(rec.outcome, Outcome::Failed(111));
        assert_eq!(rec.bytes_received, 2000);
        assert_eq!(rec.attempts.len(), 1);
        assert_eq!(s.state.load(Ordering::Relaxed), socket_state::FREE);
    }
}
