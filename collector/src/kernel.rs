//! What the kernel says about the monitored program's network, from `/proc` (readers in the
//! `netmon-procnet` crate): interface and protocol counters of the network namespace, as
//! per-run deltas and as `system.network.*` data points; the sockets the monitored processes
//! hold, found through `/proc/<pid>/fd`, and among them those the interceptor never saw
//! (statically linked programs, raw syscalls, setuid programs), reported as flows whose bytes
//! are unknown at this level.
//!
//! Sampling has two speeds. Every poll of the run loop may scan the monitored processes' fds
//! (readdir + readlink each: cheap for a program with a few sockets), and reads the socket
//! tables only when an fd names a socket not yet looked up, so a connection that lives a few
//! tens of milliseconds is still caught. Each kind of work backs off to keep its cost under
//! 1/[`WORK_BUDGET`] of the time. Every `interval` (1 s by default) and at start and end a full
//! pass reads everything (`/proc/net/dev`, `snmp`, `netstat` and the socket tables).

use crate::flowlog::FlowLog;
use crate::summary::{FlowSummary, RunSummary};
use crate::telemetry::schema::MetricName;
use crate::tracker::{DNS_PORT, Tracker};
use netmon_procnet::sockets::state;
use netmon_procnet::{
    ConnectionCounts, Interface, InterfaceCounters, ProtocolCounters, SampleHealth, Sampler,
    SocketFd, TcpCounters, Transport, UdpCounters, fd, process,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Background `/proc` work may take at most 1/`WORK_BUDGET` of the wall-clock time (5% of one
/// core): after a scan that took `d`, the next waits at least `d * WORK_BUDGET`.
pub const WORK_BUDGET: u32 = 20;

/// The default time between full passes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Where and how often to sample.
#[derive(Clone, Debug)]
pub struct KernelOptions {
    /// `/proc`, or a directory laid out like it.
    pub root: PathBuf,
    /// Time between full passes.
    pub interval: Duration,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc"),
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// Wall-clock time in ns since the Unix epoch (the clock the interceptor stamps with).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A socket of a monitored process, as the socket tables showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedSocket {
    pub pid: u32,
    pub fd: i32,
    pub inode: u64,
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// A `procnet::sockets::state` code, the last one seen.
    pub state: u8,
    /// Seen in a state that means the connection was made (established or closing down).
    pub connected: bool,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// A socket record of the interceptor's matched it (same process and peer, or same local
    /// and remote address) before the tracker let go of the record.
    pub interceptor_saw: bool,
}

impl ObservedSocket {
    /// A socket with a peer: a connected or connecting TCP socket, or a connected UDP one.
    pub fn has_peer(&self) -> bool {
        self.remote.port() != 0 && !self.remote.ip().is_unspecified() && self.state != state::LISTEN
    }
}

fn is_connected_state(st: u8) -> bool {
    matches!(
        st,
        state::ESTABLISHED
            | state::FIN_WAIT1
            | state::FIN_WAIT2
            | state::CLOSE_WAIT
            | state::LAST_ACK
            | state::CLOSING
            | state::TIME_WAIT
    )
}

type ObservedKey = (u64, Transport, SocketAddr, SocketAddr);

/// Every socket table's bit in [`KernelMonitor::looked_up`].
const ALL_TABLES: u8 = 0b1111;

/// The interceptor's socket records, keyed the two ways a socket seen in `/proc` can match one:
/// same process and peer, or same local and remote address.
struct InterceptorSockets {
    by_pid: HashSet<(u32, Transport, SocketAddr)>,
    by_tuple: HashSet<(Transport, SocketAddr, SocketAddr)>,
}

impl InterceptorSockets {
    fn of<'a>(records: impl IntoIterator<Item = &'a crate::tracker::SocketRecord>) -> Self {
        let mut keys = Self {
            by_pid: HashSet::new(),
            by_tuple: HashSet::new(),
        };
        for s in records {
            let Some(r) = s.remote else { continue };
            let t = match s.transport {
                crate::tracker::Transport::Tcp => Transport::Tcp,
                crate::tracker::Transport::Udp => Transport::Udp,
            };
            let remote = canonical(SocketAddr::new(r.ip, r.port));
            keys.by_pid.insert((s.pid, t, remote));
            if let Some(l) = s.local {
                let local = canonical(SocketAddr::new(l.ip, l.port));
                keys.by_tuple.insert((t, local, remote));
            }
        }
        keys
    }

    fn matches(&self, o: &ObservedSocket) -> bool {
        let remote = canonical(o.remote);
        self.by_pid.contains(&(o.pid, o.transport, remote))
            || self
                .by_tuple
                .contains(&(o.transport, canonical(o.local), remote))
    }
}

/// Samples `/proc` for one run.
pub struct KernelMonitor {
    root: PathBuf,
    interval: Duration,
    socket_tables: SocketTables,
    sampler: Sampler,
    baseline_interfaces: Vec<Interface>,
    baseline_protocols: ProtocolCounters,
    started_ns: u64,
    /// Monitored processes: the started program, every process the interceptor reported, and
    /// their descendants.
    pids: BTreeSet<u32>,
    /// Processes that exited: no longer scanned, so a pid the kernel gives to an unrelated
    /// process later is not taken for the program (unless a monitored process starts it).
    gone: HashSet<u32>,
    /// Socket inode → (pid, fd), from the last fd scan.
    owners: HashMap<u64, (u32, i32)>,
    fds: Vec<SocketFd>,
    /// Inodes looked up in the socket tables: a bit per table checked ([`ALL_TABLES`] when
    /// found, or when every table was checked; unix sockets are in none).
    looked_up: HashMap<u64, u8>,
    observed: HashMap<ObservedKey, ObservedSocket>,
    /// Sockets let go of from `observed` (closed, and the interceptor's): by transport and the
    /// last state seen, for the summary's counts.
    forgotten: BTreeMap<(Transport, u8), u64>,
    /// The network namespace's sockets by transport and state, from the last full pass.
    connections: ConnectionCounts,
    next_fd_scan: Instant,
    /// When each socket table may next be read between full passes.
    next_table_read: [Instant; 4],
    next_full: Instant,
    full_passes: u64,
    /// `full_passes` when the metric points were last taken.
    points_taken: u64,
    table_reads: u64,
    fd_scans: u64,
}

impl KernelMonitor {
    /// Starts monitoring: reads the counters the run's deltas start from.
    pub fn new(opts: &KernelOptions) -> Self {
        let mut sampler = Sampler::new(&opts.root);
        // The live /proc: the socket tables over netlink, which costs the kernel a fraction of
        // generating their text (procnet::sockdiag). A fixture root is read as files.
        let socket_tables = if opts.root == Path::new("/proc") && sampler.use_sock_diag() {
            SocketTables::SockDiag
        } else {
            SocketTables::ProcNet
        };
        let snap = sampler.sample();
        let (baseline_interfaces, baseline_protocols, connections) =
            (snap.interfaces.clone(), snap.protocols, snap.connections);
        let now = Instant::now();
        Self {
            root: opts.root.clone(),
            interval: opts.interval,
            socket_tables,
            baseline_interfaces,
            baseline_protocols,
            sampler,
            started_ns: unix_ns(),
            pids: BTreeSet::new(),
            gone: HashSet::new(),
            owners: HashMap::new(),
            fds: Vec::new(),
            looked_up: HashMap::new(),
            observed: HashMap::new(),
            forgotten: BTreeMap::new(),
            connections,
            next_fd_scan: now,
            next_table_read: [now; 4],
            next_full: now + opts.interval,
            full_passes: 1,
            points_taken: 0,
            table_reads: 0,
            fd_scans: 0,
        }
    }

    /// Adds a process to watch (its descendants are found by themselves).
    pub fn watch(&mut self, pid: u32) {
        if pid != 0 && pid != std::process::id() && !self.gone.contains(&pid) {
            self.pids.insert(pid);
        }
    }

    /// One step of the run loop: scans fds and reads tables when their time has come.
    pub fn poll(&mut self, tracker: &Tracker, now: Instant) {
        for pid in tracker.processes.keys() {
            self.watch(*pid);
        }
        let mut new_socket = false;
        if now >= self.next_fd_scan {
            let t = Instant::now();
            new_socket = self.scan_fds();
            self.next_fd_scan = now + t.elapsed() * WORK_BUDGET;
        }
        let wanted: [bool; 4] = if now >= self.next_full {
            self.full_pass();
            self.next_full = now + self.interval;
            [true; 4]
        } else if new_socket {
            // Cheap tables (UDP, usually) are read again sooner than expensive ones.
            let wanted = std::array::from_fn(|i| now >= self.next_table_read[i]);
            if wanted.contains(&true) {
                self.sampler.sample_tables(wanted);
                self.attribute(wanted);
                self.table_reads += 1;
            }
            wanted
        } else {
            [false; 4]
        };
        let cost = self.sampler.snapshot().table_cost;
        for (i, w) in wanted.iter().enumerate() {
            if *w {
                self.next_table_read[i] = now + cost[i] * WORK_BUDGET;
            }
        }
    }

    /// The last step, after the program exited: a full pass for the end-of-run counters.
    pub fn finish(&mut self, tracker: &Tracker) {
        for pid in tracker.processes.keys() {
            self.watch(*pid);
        }
        self.full_pass();
    }

    fn full_pass(&mut self) {
        self.scan_fds();
        self.sampler.sample();
        self.connections = self.sampler.snapshot().connections;
        self.attribute([true; 4]);
        self.full_passes += 1;
    }

    /// Reads the fds of every monitored process; `true` if one names a socket not looked up
    /// in the tables yet.
    fn scan_fds(&mut self) -> bool {
        let before = self.pids.len();
        process::add_descendants(&self.root, &mut self.pids);
        if self.pids.len() != before {
            // A monitored process started them: theirs now, whatever the pid was before.
            let pids = &self.pids;
            self.gone.retain(|p| !pids.contains(p));
        }
        self.owners.clear();
        let mut exited = Vec::new();
        for &pid in &self.pids {
            self.fds.clear();
            match fd::read_socket_fds(&self.root, pid, &mut self.fds) {
                Ok(_) => {
                    for s in &self.fds {
                        self.owners.insert(s.inode, (pid, s.fd));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => exited.push(pid),
                // Not ours to read (another user's process): nothing to add.
                Err(_) => {}
            }
        }
        for pid in exited {
            self.pids.remove(&pid);
            self.gone.insert(pid);
        }
        // An inode no monitored process holds any more needs no lookup.
        let owners = &self.owners;
        self.looked_up.retain(|inode, _| owners.contains_key(inode));
        self.fd_scans += 1;
        self.owners
            .keys()
            .any(|i| self.looked_up.get(i).is_none_or(|m| *m != ALL_TABLES))
    }

    /// Ties the socket table lines to the monitored processes' fds; `read` says which tables
    /// the snapshot holds.
    fn attribute(&mut self, read: [bool; 4]) {
        let now = unix_ns();
        for e in &self.sampler.snapshot().sockets {
            if e.inode == 0 {
                continue;
            }
            let Some(&(pid, fd)) = self.owners.get(&e.inode) else {
                continue;
            };
            self.looked_up.insert(e.inode, ALL_TABLES);
            let key = (e.inode, e.transport, e.local, e.remote);
            let o = self.observed.entry(key).or_insert_with(|| ObservedSocket {
                pid,
                fd,
                inode: e.inode,
                transport: e.transport,
                local: e.local,
                remote: e.remote,
                state: e.state,
                connected: false,
                first_seen_ns: now,
                last_seen_ns: now,
                interceptor_saw: false,
            });
            o.state = e.state;
            o.connected |= is_connected_state(e.state)
                || (e.transport == Transport::Udp && e.state == state::ESTABLISHED);
            o.last_seen_ns = now;
        }
        let mask = read
            .iter()
            .enumerate()
            .fold(0u8, |m, (i, r)| if *r { m | 1 << i } else { m });
        for inode in self.owners.keys() {
            *self.looked_up.entry(*inode).or_default() |= mask;
        }
    }

    /// The sockets with a peer that the interceptor never saw, sorted by first sighting.
    pub fn unseen(&self, tracker: &Tracker) -> Vec<&ObservedSocket> {
        let seen = InterceptorSockets::of(tracker.sockets.values());
        let mut out: Vec<&ObservedSocket> = self
            .observed
            .values()
            .filter(|o| o.has_peer() && !o.interceptor_saw && !seen.matches(o))
            .collect();
        out.sort_by_key(|o| (o.first_seen_ns, o.inode));
        out
    }

    /// The tracker let go of these socket records (`retired`): marks the sockets seen in
    /// `/proc` that they match, so they never count as unseen, and forgets those of them that
    /// are closed (no longer any monitored process's fd), keeping only their state counts. So
    /// `observed` holds what is open, and what only `/proc` saw.
    pub fn note_retired(&mut self, retired: &[crate::tracker::SocketRecord]) {
        if retired.is_empty() || self.observed.is_empty() {
            return;
        }
        let seen = InterceptorSockets::of(retired);
        let (owners, forgotten) = (&self.owners, &mut self.forgotten);
        self.observed.retain(|_, o| {
            if !o.interceptor_saw && o.has_peer() {
                o.interceptor_saw = seen.matches(o);
            }
            // Without a peer (an unconnected UDP socket) it never counts as unseen; a closed
            // listener is kept, it tells `/proc` flows that were accepted on it.
            let settled = o.interceptor_saw || (!o.has_peer() && o.state != state::LISTEN);
            let keep = !settled || owners.contains_key(&o.inode);
            if !keep {
                *forgotten.entry((o.transport, o.state)).or_default() += 1;
            }
            keep
        });
    }

    /// Sockets a monitored process listens on (TCP), as `(pid, port)`.
    fn listening(&self) -> HashSet<(u32, u16)> {
        self.observed
            .values()
            .filter(|o| o.transport == Transport::Tcp && o.state == state::LISTEN)
            .map(|o| (o.pid, o.local.port()))
            .collect()
    }

    /// Flows for the sockets the interceptor never saw: one per direction, transport and
    /// destination, like the interceptor's, with bytes and packets unknown.
    pub fn proc_flows(&self, tracker: &Tracker) -> Vec<FlowSummary> {
        let names = tracker.name_index();
        let listening = self.listening();
        #[derive(Default)]
        struct Acc {
            src_ip: Option<IpAddr>,
            connections: u64,
            states: BTreeMap<String, u64>,
            pids: BTreeSet<u32>,
        }
        let mut flows: BTreeMap<(bool, Transport, IpAddr, u16), Acc> = BTreeMap::new();
        for o in self.unseen(tracker) {
            let incoming =
                o.transport == Transport::Tcp && listening.contains(&(o.pid, o.local.port()));
            let remote = canonical(o.remote);
            let port = if incoming {
                o.local.port()
            } else {
                remote.port()
            };
            let acc = flows
                .entry((incoming, o.transport, remote.ip(), port))
                .or_default();
            acc.src_ip = Some(canonical(o.local).ip());
            if o.connected {
                acc.connections += 1;
            }
            *acc.states
                .entry(state::name(o.state).to_string())
                .or_default() += 1;
            acc.pids.insert(o.pid);
        }
        flows
            .into_iter()
            .map(|((incoming, transport, peer, port), a)| {
                let dst_domain = (!incoming && port != DNS_PORT)
                    .then(|| {
                        a.pids
                            .iter()
                            .find_map(|p| names.get(&(Some(*p), peer)))
                            .or_else(|| names.get(&(None, peer)))
                            .cloned()
                    })
                    .flatten();
                FlowSummary {
                    direction: if incoming { "incoming" } else { "outgoing" }.into(),
                    transport: transport.as_str().into(),
                    family: if peer.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
                    dst_domain,
                    dst_ip: peer.to_string(),
                    dst_port: (!incoming).then_some(port),
                    src_ip: a.src_ip.map(|ip| ip.to_string()),
                    src_port: incoming.then_some(port),
                    connections: a.connections,
                    failed: 0,
                    errors: BTreeMap::new(),
                    bytes_sent: None,
                    bytes_received: None,
                    packets_sent: None,
                    packets_received: None,
                    rtt_us: None,
                    rtt_var_us: None,
                    retransmits: None,
                    pids: a.pids.into_iter().collect(),
                    source: crate::summary::SOURCE_PROC,
                    states: Some(a.states),
                }
            })
            .collect()
    }

    /// The kernel metrics' data points after a full pass that was not taken yet; `None` when
    /// no full pass ran since the last call.
    pub fn take_metric_points(&mut self) -> Option<Vec<MetricPoint>> {
        if self.points_taken == self.full_passes {
            return None;
        }
        self.points_taken = self.full_passes;
        Some(metric_points(
            self.sampler.snapshot(),
            &self.connections,
            &self.baseline_interfaces,
            &self.baseline_protocols,
        ))
    }

    /// The run's `kernel` section: deltas since the monitor started, and the monitored
    /// processes' sockets by the last state each was seen in.
    pub fn summary(&self) -> KernelSummary {
        let snap = self.sampler.snapshot();
        let interfaces = snap
            .interfaces
            .iter()
            .map(|i| {
                let before = self
                    .baseline_interfaces
                    .iter()
                    .find(|b| b.name == i.name)
                    .map(|b| b.counters)
                    .unwrap_or_default();
                InterfaceDelta {
                    name: i.name.to_string(),
                    counters: i.counters.since(&before),
                }
            })
            .collect();
        let delta = snap.protocols.since(&self.baseline_protocols);
        let mut sockets: BTreeMap<&'static str, BTreeMap<&'static str, u64>> = BTreeMap::new();
        let counts = self
            .observed
            .values()
            .map(|o| ((o.transport, o.state), 1))
            .chain(self.forgotten.iter().map(|(k, n)| (*k, *n)));
        for ((transport, st), n) in counts {
            *sockets
                .entry(transport.as_str())
                .or_default()
                .entry(state::name(st))
                .or_default() += n;
        }
        let h = self.sampler.health();
        KernelSummary {
            interval_ms: self.interval.as_millis() as u64,
            samples: self.full_passes,
            interfaces,
            tcp: delta.tcp,
            udp: delta.udp,
            udp6: delta.udp6,
            sockets,
            // A table whose dump failed went back to text (counted in the health).
            socket_tables: if h.netlink_fallbacks > 0 {
                SocketTables::ProcNet
            } else {
                self.socket_tables
            },
            health: h.into(),
        }
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// One interface's counters over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceDelta {
    pub name: String,
    #[serde(flatten)]
    pub counters: InterfaceCounters,
}

/// The `kernel` section of the run summary. Interface and protocol counters are the network
/// namespace's (every process in it counts), as deltas over the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelSummary {
    /// Time between full passes.
    pub interval_ms: u64,
    /// Full passes made (one at start, one at the end, one per interval between).
    pub samples: u64,
    pub interfaces: Vec<InterfaceDelta>,
    pub tcp: TcpCounters,
    /// UDP over IPv4 (`/proc/net/snmp`) and over IPv6 (`/proc/net/snmp6`).
    pub udp: UdpCounters,
    pub udp6: UdpCounters,
    /// Sockets of the monitored processes seen in the socket tables, by transport and the
    /// last state each was seen in.
    pub sockets: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Where the socket tables were read from.
    pub socket_tables: SocketTables,
    #[serde(flatten)]
    pub health: SampleHealthJson,
}

/// How the socket tables are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketTables {
    /// Netlink `sock_diag` dumps.
    SockDiag,
    /// `/proc/net/{tcp,tcp6,udp,udp6}` text: a fixture root, or a kernel or sandbox without
    /// `sock_diag`.
    ProcNet,
}

/// [`SampleHealth`] in the JSON summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SampleHealthJson {
    /// Malformed lines skipped.
    pub lines_skipped: u64,
    /// `/proc` files that could not be read.
    pub files_unreadable: u64,
    /// `/proc` files in a layout netmon does not know (read as empty).
    pub formats_unknown: u64,
    /// Socket tables `sock_diag` could not dump, read from `/proc/net` text instead.
    pub netlink_fallbacks: u64,
}

impl From<SampleHealth> for SampleHealthJson {
    fn from(h: SampleHealth) -> Self {
        Self {
            lines_skipped: h.lines_skipped,
            files_unreadable: h.files_unreadable,
            formats_unknown: h.formats_unknown,
            netlink_fallbacks: h.netlink_fallbacks,
        }
    }
}

/// How a kernel metric aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic: the value counts since the monitor started.
    Counter,
    /// Goes up and down: the value is the current one.
    UpDownCounter,
}

/// One data point of a kernel metric (names in `telemetry::schema`).
#[derive(Clone, Debug)]
pub struct MetricPoint {
    pub metric: MetricName,
    pub kind: MetricKind,
    pub attributes: Vec<(&'static str, String)>,
    pub value: u64,
}

/// A change of one kernel data point since the last export.
#[derive(Clone, Debug)]
pub struct MetricDelta {
    pub metric: MetricName,
    pub kind: MetricKind,
    pub attributes: Vec<(&'static str, String)>,
    pub delta: i64,
}

/// The data points of a snapshot: counters since the baseline (the monitor's start), and the
/// network namespace's connections by transport and state (current values, the namespace's
/// as the convention asks for `system.network.connection.count`).
pub fn metric_points(
    snap: &netmon_procnet::Snapshot,
    connections: &ConnectionCounts,
    baseline_interfaces: &[Interface],
    baseline_protocols: &ProtocolCounters,
) -> Vec<MetricPoint> {
    use crate::telemetry::schema as s;
    let mut out = Vec::new();
    let mut push = |metric, kind, attributes: Vec<(&'static str, String)>, value| {
        out.push(MetricPoint {
            metric,
            kind,
            attributes,
            value,
        })
    };
    for i in &snap.interfaces {
        let before = baseline_interfaces
            .iter()
            .find(|b| b.name == i.name)
            .map(|b| b.counters)
            .unwrap_or_default();
        let d = i.counters.since(&before);
        let name = i.name.to_string();
        for (metric, device_key, rx, tx) in [
            (
                s::SYSTEM_NETWORK_IO,
                s::NETWORK_INTERFACE_NAME,
                d.rx_bytes,
                d.tx_bytes,
            ),
            (
                s::SYSTEM_NETWORK_PACKET_COUNT,
                s::SYSTEM_DEVICE,
                d.rx_packets,
                d.tx_packets,
            ),
            (
                s::SYSTEM_NETWORK_ERRORS,
                s::NETWORK_INTERFACE_NAME,
                d.rx_errors,
                d.tx_errors,
            ),
            (
                s::SYSTEM_NETWORK_PACKET_DROPPED,
                s::NETWORK_INTERFACE_NAME,
                d.rx_dropped,
                d.tx_dropped,
            ),
        ] {
            for (direction, v) in [("receive", rx), ("transmit", tx)] {
                push(
                    metric,
                    MetricKind::Counter,
                    vec![
                        (device_key, name.clone()),
                        (s::NETWORK_IO_DIRECTION, direction.into()),
                    ],
                    v,
                );
            }
        }
    }
    for (t, st, n) in connections.iter() {
        push(
            s::SYSTEM_NETWORK_CONNECTION_COUNT,
            MetricKind::UpDownCounter,
            vec![
                (s::NETWORK_TRANSPORT, t.as_str().into()),
                (s::NETWORK_CONNECTION_STATE, state::name(st).into()),
            ],
            n,
        );
    }
    let d = snap.protocols.since(baseline_protocols);
    let t = d.tcp;
    let direction = |v: &'static str| Some((s::NETWORK_IO_DIRECTION, v));
    let counters = [
        (s::NETMON_TCP_ACTIVE_OPENS, None, t.active_opens),
        (s::NETMON_TCP_PASSIVE_OPENS, None, t.passive_opens),
        (s::NETMON_TCP_ATTEMPT_FAILS, None, t.attempt_fails),
        (s::NETMON_TCP_ESTAB_RESETS, None, t.estab_resets),
        (s::NETMON_TCP_SEGMENTS, direction("receive"), t.in_segs),
        (s::NETMON_TCP_SEGMENTS, direction("transmit"), t.out_segs),
        (s::NETMON_TCP_RETRANS_SEGS, None, t.retrans_segs),
        (s::NETMON_TCP_IN_ERRORS, None, t.in_errs),
        (s::NETMON_TCP_RESETS_SENT, None, t.out_rsts),
        (s::NETMON_TCP_LISTEN_OVERFLOWS, None, t.listen_overflows),
        (s::NETMON_TCP_LISTEN_DROPS, None, t.listen_drops),
    ];
    for (metric, attr, value) in counters {
        if let Some(v) = value {
            let attributes = attr
                .map(|(k, v)| vec![(k, v.to_string())])
                .unwrap_or_default();
            push(metric, MetricKind::Counter, attributes, v);
        }
    }
    for (version, u) in [("ipv4", d.udp), ("ipv6", d.udp6)] {
        let counters = [
            (
                s::NETMON_UDP_DATAGRAMS,
                s::NETWORK_IO_DIRECTION,
                "receive",
                u.in_datagrams,
            ),
            (
                s::NETMON_UDP_DATAGRAMS,
                s::NETWORK_IO_DIRECTION,
                "transmit",
                u.out_datagrams,
            ),
            (s::NETMON_UDP_ERRORS, s::ERROR_TYPE, "receive", u.in_errors),
            (
                s::NETMON_UDP_ERRORS,
                s::ERROR_TYPE,
                "rcvbuf",
                u.rcvbuf_errors,
            ),
            (
                s::NETMON_UDP_ERRORS,
                s::ERROR_TYPE,
                "sndbuf",
                u.sndbuf_errors,
            ),
        ];
        for (metric, key, value, n) in counters {
            if let Some(n) = n {
                let attributes = vec![(s::NETWORK_TYPE, version.into()), (key, value.into())];
                push(metric, MetricKind::Counter, attributes, n);
            }
        }
        if let Some(n) = u.no_ports {
            let attributes = vec![(s::NETWORK_TYPE, version.into())];
            push(s::NETMON_UDP_NO_PORTS, MetricKind::Counter, attributes, n);
        }
    }
    out
}

/// A data point's identity: metric name and attributes.
type PointKey = (&'static str, Vec<(&'static str, String)>);

/// What was last exported of each kernel data point, so each export carries the change.
#[derive(Default)]
pub struct MetricCursor {
    /// The newest points, until the next export takes them.
    latest: Option<Vec<MetricPoint>>,
    published: HashMap<PointKey, (MetricPoint, u64)>,
}

impl MetricCursor {
    /// Keeps the newest points (from the last full pass).
    pub fn update(&mut self, points: Vec<MetricPoint>) {
        self.latest = Some(points);
    }

    /// The changes since the last call (none if no points came in since). A counter that
    /// went back (an interface recreated) counts from zero; a connection state no longer
    /// present goes back to zero.
    pub fn deltas(&mut self) -> Vec<MetricDelta> {
        let mut out = Vec::new();
        let Some(latest) = self.latest.take() else {
            return out;
        };
        let mut seen = HashSet::new();
        for p in latest {
            let key = (p.metric.name, p.attributes.clone());
            let before = self.published.get(&key).map_or(0, |(_, v)| *v);
            let delta = match p.kind {
                MetricKind::Counter if p.value >= before => (p.value - before) as i64,
                MetricKind::Counter => p.value as i64,
                MetricKind::UpDownCounter => p.value as i64 - before as i64,
            };
            if delta != 0 {
                out.push(MetricDelta {
                    metric: p.metric,
                    kind: p.kind,
                    attributes: p.attributes.clone(),
                    delta,
                });
            }
            seen.insert(key.clone());
            let value = p.value;
            self.published.insert(key, (p, value));
        }
        let gone: Vec<_> = self
            .published
            .iter()
            .filter(|(k, (p, v))| {
                p.kind == MetricKind::UpDownCounter && *v > 0 && !seen.contains(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some((p, v)) = self.published.get_mut(&k) {
                out.push(MetricDelta {
                    metric: p.metric,
                    kind: p.kind,
                    attributes: p.attributes.clone(),
                    delta: -(*v as i64),
                });
                *v = 0;
            }
        }
        out
    }
}

/// Flags of `netmon run` for `/proc` sampling and the flow log.
#[derive(clap::Args, Clone, Debug)]
pub struct KernelArgs {
    /// Also write the traffic as AWS VPC Flow Logs records (default version 2 format) to FILE
    #[arg(long, value_name = "FILE", env = "NETMON_FLOW_LOG")]
    pub flow_log: Option<PathBuf>,
    /// Aggregation interval of the flow log, in seconds
    #[arg(long, value_name = "SECONDS", env = "NETMON_FLOW_LOG_INTERVAL",
          default_value_t = crate::flowlog::DEFAULT_INTERVAL.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub flow_log_interval: u64,
    /// How often /proc is read in full (interfaces, TCP/UDP counters, socket tables), in
    /// milliseconds
    #[arg(long, value_name = "MS", env = "NETMON_PROC_INTERVAL_MS",
          default_value_t = DEFAULT_INTERVAL.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub proc_interval_ms: u64,
}

impl KernelArgs {
    pub fn options(&self) -> ObserverOptions {
        ObserverOptions {
            kernel: KernelOptions {
                interval: Duration::from_millis(self.proc_interval_ms),
                ..KernelOptions::default()
            },
            flow_log: self.flow_log.clone(),
            flow_log_interval: Duration::from_secs(self.flow_log_interval),
        }
    }
}

/// What [`Observer`] does.
#[derive(Clone, Debug)]
pub struct ObserverOptions {
    pub kernel: KernelOptions,
    pub flow_log: Option<PathBuf>,
    pub flow_log_interval: Duration,
}

/// `netmon run`'s view from outside the program: the `/proc` monitor and, when asked for, the
/// flow log. Polled by the run loop right after the tracker.
pub struct Observer {
    pub monitor: KernelMonitor,
    flow_log: Option<FlowLog>,
    /// The first flow-log write error; reported when the run ends.
    error: Option<std::io::Error>,
}

impl Observer {
    /// Reads the starting counters and creates the flow log (before the program starts, so a
    /// bad path stops netmon before anything runs).
    pub fn start(opts: &ObserverOptions) -> anyhow::Result<Self> {
        let monitor = KernelMonitor::new(&opts.kernel);
        let flow_log = match &opts.flow_log {
            Some(path) => Some(
                FlowLog::create(path, opts.flow_log_interval, monitor.started_ns).map_err(|e| {
                    anyhow::anyhow!("cannot create flow log {}: {e}", path.display())
                })?,
            ),
            None => None,
        };
        Ok(Self {
            monitor,
            flow_log,
            error: None,
        })
    }

    pub fn watch(&mut self, pid: u32) {
        self.monitor.watch(pid);
    }

    /// One step of the run loop.
    pub fn poll(&mut self, tracker: &Tracker) {
        self.monitor.poll(tracker, Instant::now());
        let now = unix_ns();
        if let Some(log) = &mut self.flow_log
            && self.error.is_none()
            && log.due(now)
        {
            let unseen = self.monitor.unseen(tracker);
            if let Err(e) = log.poll(tracker, &unseen, now) {
                self.error = Some(e);
            }
        }
    }

    /// The end of the run: the last pass, and the flow log's last interval.
    pub fn finish(&mut self, tracker: &Tracker) -> anyhow::Result<()> {
        self.monitor.finish(tracker);
        if let Some(log) = &mut self.flow_log {
            if self.error.is_none() {
                let unseen = self.monitor.unseen(tracker);
                if let Err(e) = log.finish(tracker, &unseen, unix_ns()) {
                    self.error = Some(e);
                }
            }
            if let Some(e) = self.error.take() {
                anyhow::bail!("cannot write flow log {}: {e}", log.path().display());
            }
        }
        Ok(())
    }

    /// Whether the flow log has written every record of this closed socket (always, without a
    /// flow log): see [`crate::tracker::Tracker::retire`].
    pub fn done_with(&mut self, key: &(u32, u32), s: &crate::tracker::SocketRecord) -> bool {
        self.flow_log
            .as_mut()
            .is_none_or(|log| log.done_with(key, s))
    }

    /// Adds the `/proc` flows and the `kernel` section to a run summary.
    pub fn complete(&self, summary: &mut RunSummary, tracker: &Tracker) {
        summary.flows.extend(self.monitor.proc_flows(tracker));
        summary.kernel = Some(self.monitor.summary());
    }
}

/// The `kernel` section as text: what moved on each interface and the TCP counters that tell
/// of trouble.
pub fn render_text(k: &KernelSummary) -> String {
    use crate::summary::human_bytes;
    let mut parts: Vec<String> = k
        .interfaces
        .iter()
        .filter(|i| !i.counters.is_zero())
        .map(|i| {
            format!(
                "{} {} in, {} out",
                i.name,
                human_bytes(i.counters.rx_bytes),
                human_bytes(i.counters.tx_bytes)
            )
        })
        .collect();
    let t = &k.tcp;
    let tcp: Vec<String> = [
        ("opened", t.active_opens),
        ("accepted", t.passive_opens),
        ("failed", t.attempt_fails),
        ("reset", t.estab_resets),
        ("retransmitted segments", t.retrans_segs),
        ("listen drops", t.listen_drops),
    ]
    .iter()
    .filter_map(|(name, v)| v.filter(|n| *n > 0).map(|n| format!("{n} {name}")))
    .collect();
    if !tcp.is_empty() {
        parts.push(format!("tcp {}", tcp.join(", ")));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("  kernel (network namespace) {}\n", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Endpoint, SocketRecord};
    use netmon_proto::role;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};

    /// A python3 child running `code`, once it printed its first line.
    fn child(code: &str) -> (Child, String) {
        let mut c = Command::new("python3")
            .args(["-c", code])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        (c, line.trim().to_string())
    }

    fn monitor_of(pid: u32) -> KernelMonitor {
        let mut m = KernelMonitor::new(&KernelOptions::default());
        m.watch(pid);
        m.poll(&Tracker::new(), Instant::now());
        m
    }

    #[test]
    fn finds_a_connection_the_interceptor_never_saw() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (mut c, _) = child(&format!(
            "import socket,time; s=socket.create_connection(('127.0.0.1',{port})); print('ok',flush=True); time.sleep(30)"
        ));
        let m = monitor_of(c.id());
        let tracker = Tracker::new();
        let flows = m.proc_flows(&tracker);
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(flows.len(), 1, "{flows:?}");
        let f = &flows[0];
        assert_eq!(
            (f.direction.as_str(), f.transport.as_str(), f.dst_port),
            ("outgoing", "tcp", Some(port))
        );
        assert_eq!((f.dst_ip.as_str(), f.connections), ("127.0.0.1", 1));
        assert_eq!((f.bytes_sent, f.packets_received), (None, None));
        assert_eq!(f.source, crate::summary::SOURCE_PROC);
        assert_eq!(f.pids, [c.id()]);
        assert_eq!(
            f.states.as_ref().unwrap().get("established"),
            Some(&1),
            "{f:?}"
        );
    }

    #[test]
    fn sockets_the_interceptor_saw_are_left_to_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (mut c, _) = child(&format!(
            "import socket,time; s=socket.create_connection(('127.0.0.1',{})); print('ok',flush=True); time.sleep(30)",
            addr.port()
        ));
        let m = monitor_of(c.id());
        let mut tracker = Tracker::new();
        let mut s = SocketRecord::new(
            c.id(),
            crate::tracker::Transport::Tcp,
            false,
            role::OUTGOING,
        );
        s.remote = Some(Endpoint {
            ip: addr.ip(),
            port: addr.port(),
        });
        tracker.sockets.insert((0, 1), s);
        let unseen = m.unseen(&tracker).len();
        let all = m.unseen(&Tracker::new()).len();
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!((unseen, all), (0, 1));
    }

    #[test]
    fn accepted_connections_are_incoming_flows() {
        let (mut c, port) = child(
            "import socket,time; l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen(); print(l.getsockname()[1],flush=True); a,_=l.accept(); time.sleep(30)",
        );
        let port: u16 = port.parse().unwrap();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The accept happens in the child: wait for it to show in its fds.
        let mut flows = Vec::new();
        for _ in 0..100 {
            flows = monitor_of(c.id()).proc_flows(&Tracker::new());
            if !flows.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        c.kill().unwrap();
        c.wait().unwrap();
        assert_eq!(flows.len(), 1, "{flows:?}");
        let f = &flows[0];
        assert_eq!(
            (f.direction.as_str(), f.src_port, f.dst_port),
            ("incoming", Some(port), None)
        );
    }

    #[test]
    fn metric_cursor_exports_changes() {
        use crate::telemetry::schema as s;
        let point = |metric, kind, state: &str, value| MetricPoint {
            metric,
            kind,
            attributes: vec![(s::NETWORK_CONNECTION_STATE, state.to_string())],
            value,
        };
        let mut c = MetricCursor::default();
        c.update(vec![
            point(s::SYSTEM_NETWORK_IO, MetricKind::Counter, "x", 100),
            point(
                s::SYSTEM_NETWORK_CONNECTION_COUNT,
                MetricKind::UpDownCounter,
                "listen",
                2,
            ),
        ]);
        let d: Vec<i64> = c.deltas().iter().map(|d| d.delta).collect();
        assert_eq!(d, [100, 2]);
        assert!(c.deltas().is_empty(), "nothing new, nothing exported");
        c.update(vec![point(
            s::SYSTEM_NETWORK_IO,
            MetricKind::Counter,
            "x",
            150,
        )]);
        let d: Vec<(&str, i64)> = c
            .deltas()
            .iter()
            .map(|d| (d.metric.name, d.delta))
            .collect();
        assert_eq!(
            d,
            [
                ("system.network.io", 50),
                ("system.network.connection.count", -2)
            ]
        );
    }

    #[test]
    fn metric_points_use_convention_names() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../procnet/tests/fixtures/root");
        let mut m = KernelMonitor::new(&KernelOptions {
            root,
            interval: DEFAULT_INTERVAL,
        });
        m.finish(&Tracker::new());
        let points = m.take_metric_points().unwrap();
        assert!(m.take_metric_points().is_none());
        let conn: u64 = points
            .iter()
            .filter(|p| p.metric.name == "system.network.connection.count")
            .map(|p| p.value)
            .sum();
        assert_eq!(conn, 13);
        let io = points
            .iter()
            .find(|p| p.metric.name == "system.network.io")
            .unwrap();
        assert_eq!(
            io.attributes,
            [
                ("network.interface.name", "lo".to_string()),
                ("network.io.direction", "receive".to_string())
            ]
        );
        assert!(
            points
                .iter()
                .any(|p| p.metric.name == "netmon.tcp.listen_drops")
        );
    }

    #[test]
    fn run_deltas_from_a_fixture_root() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../procnet/tests/fixtures/root/net");
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        std::fs::create_dir(&net).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), net.join(e.file_name())).unwrap();
        }
        let opts = KernelOptions {
            root: dir.path().to_path_buf(),
            interval: DEFAULT_INTERVAL,
        };
        let mut m = KernelMonitor::new(&opts);
        let dev = std::fs::read_to_string(net.join("dev")).unwrap().replacen(
            "1033      16",
            "5129      20",
            1,
        );
        std::fs::write(net.join("dev"), dev).unwrap();
        let snmp = std::fs::read_to_string(net.join("snmp")).unwrap().replace(
            "Tcp: 1 200 120000 -1 4 4 0 0",
            "Tcp: 1 200 120000 -1 6 4 1 0",
        );
        std::fs::write(net.join("snmp"), snmp).unwrap();
        let snmp6 = std::fs::read_to_string(net.join("snmp6")).unwrap().replace(
            "Udp6OutDatagrams                \t43",
            "Udp6OutDatagrams 50",
        );
        std::fs::write(net.join("snmp6"), snmp6).unwrap();
        m.finish(&Tracker::new());
        let k = m.summary();
        assert_eq!(
            k.socket_tables,
            SocketTables::ProcNet,
            "a fixture root is read as files"
        );
        assert_eq!(
            (k.udp6.out_datagrams, k.udp6.in_datagrams),
            (Some(7), Some(0))
        );
        let points = m.take_metric_points().unwrap();
        let udp = |version: &str| {
            points
                .iter()
                .find(|p| {
                    p.metric.name == "netmon.udp.datagrams"
                        && p.attributes
                            .contains(&("network.type", version.to_string()))
                        && p.attributes
                            .contains(&("network.io.direction", "transmit".to_string()))
                })
                .map(|p| p.value)
        };
        assert_eq!((udp("ipv4"), udp("ipv6")), (Some(0), Some(7)));
        assert_eq!(k.samples, 2);
        let lo = &k.interfaces[0];
        assert_eq!(
            (
                lo.name.as_str(),
                lo.counters.rx_bytes,
                lo.counters.rx_packets
            ),
            ("lo", 4096, 4)
        );
        assert_eq!(lo.counters.tx_bytes, 0);
        assert_eq!(
            (k.tcp.active_opens, k.tcp.attempt_fails),
            (Some(2), Some(1))
        );
        assert_eq!(k.tcp.passive_opens, Some(0));
        assert_eq!(k.health.lines_skipped, 0);
    }
}
