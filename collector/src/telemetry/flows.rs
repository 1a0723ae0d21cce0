//! netflow/dnsflow aggregation (pure): socket and lookup updates folded into per-flow
//! accumulators between two metric exports, and the tags each flow becomes (DESIGN §6).
//!
//! The hot path hashes a small `Copy` key; attribute vectors (strings) are built once per flow
//! and export interval, not per update.

use super::schema;
use super::spans::canonical_ip;
use crate::tracker::{Direction, SocketRecord, Transport};
use opentelemetry::KeyValue;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// `private`, `public`, `loopback`, `link_local`, `multicast` (and `unspecified`).
pub fn ip_type(ip: IpAddr) -> &'static str {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                "loopback"
            } else if v4.is_link_local() {
                "link_local"
            } else if v4.is_multicast() {
                "multicast"
            } else if v4.is_unspecified() {
                "unspecified"
            } else if v4.is_private()
                // 100.64.0.0/10 carrier-grade NAT is private address space too.
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
            {
                "private"
            } else {
                "public"
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                "loopback"
            } else if v6.is_multicast() {
                "multicast"
            } else if v6.is_unspecified() {
                "unspecified"
            } else if (s[0] & 0xffc0) == 0xfe80 {
                "link_local"
            } else if (s[0] & 0xfe00) == 0xfc00 {
                "private" // unique local fc00::/7
            } else {
                "public"
            }
        }
    }
}

/// Interned strings (domain names, process names): flows carry a `u32`.
#[derive(Default)]
pub struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Names {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.names.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }

    /// The name as a shared string, for spans that carry it (no copy).
    pub fn shared(&self, id: u32) -> Option<Arc<str>> {
        self.names.get(id as usize).cloned()
    }
}

/// What a flow datapoint is keyed by. `overflow` marks the one key that takes every flow
/// beyond the cardinality limit (all other fields zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub direction: Direction,
    pub transport: Transport,
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_ip: IpAddr,
    pub dst_port: Option<u16>,
    pub pid: u32,
    pub domain: Option<u32>,
    pub overflow: bool,
}

impl FlowKey {
    fn overflow() -> FlowKey {
        FlowKey {
            direction: Direction::Outgoing,
            transport: Transport::Tcp,
            src_ip: None,
            src_port: None,
            dst_ip: IpAddr::from([0, 0, 0, 0]),
            dst_port: None,
            pid: 0,
            domain: None,
            overflow: true,
        }
    }
}

/// The key of a socket's flow; `None` while its peer is unknown. Outgoing flows carry the
/// peer's port as `dst_port`; incoming ones the local (listening) port as `src_port`. The
/// ephemeral side's port is only kept when `ephemeral_ports` is set.
pub fn socket_key(s: &SocketRecord, domain: Option<u32>, ephemeral_ports: bool) -> Option<FlowKey> {
    let remote = s.remote?;
    let direction = s.direction();
    let local_port = s.local.map(|l| l.port);
    let (src_port, dst_port) = match direction {
        Direction::Outgoing => (local_port.filter(|_| ephemeral_ports), Some(remote.port)),
        Direction::Incoming => (local_port, Some(remote.port).filter(|_| ephemeral_ports)),
    };
    Some(FlowKey {
        direction,
        transport: s.transport,
        src_ip: s
            .local
            .map(|l| canonical_ip(l.ip))
            .filter(|ip| !ip.is_unspecified()),
        src_port,
        dst_ip: canonical_ip(remote.ip),
        dst_port,
        pid: s.pid,
        domain: if direction == Direction::Outgoing {
            domain
        } else {
            None
        },
        overflow: false,
    })
}

/// What happened on one flow since the last export.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowAcc {
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub established: u64,
    pub closed: u64,
    pub retransmits: u64,
    pub rtt_sum: f64,
    pub rtt_var_sum: f64,
    pub rtt_n: u64,
    /// Failed attempts by errno.
    pub failed: Vec<(i32, u64)>,
}

impl FlowAcc {
    pub fn fail(&mut self, errno: i32) {
        match self.failed.iter_mut().find(|(e, _)| *e == errno) {
            Some((_, n)) => *n += 1,
            None => self.failed.push((errno, 1)),
        }
    }
}

/// A dnsflow datapoint key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsKey {
    pub domain: u32,
    pub rcode: i32,
    pub pid: u32,
    pub overflow: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsAcc {
    pub count: u64,
    /// Latencies in seconds, recorded into the histogram at export.
    pub latencies: Vec<f64>,
    pub max: f64,
}

/// Flow and lookup accumulators between two exports, bounded by the cardinality limit.
pub struct Aggregates {
    pub flows: HashMap<FlowKey, FlowAcc>,
    pub dns: HashMap<DnsKey, DnsAcc>,
    limit: usize,
    /// Updates folded into the overflow key since the last export.
    pub overflowed: u64,
}

impl Aggregates {
    pub fn new(limit: usize) -> Self {
        Aggregates {
            flows: HashMap::new(),
            dns: HashMap::new(),
            limit: limit.max(1),
            overflowed: 0,
        }
    }

    /// The accumulator of `key`, or the overflow one when the limit is reached.
    pub fn flow(&mut self, key: FlowKey) -> &mut FlowAcc {
        // One slot stays free for the overflow key.
        if !self.flows.contains_key(&key) && self.flows.len() + 1 >= self.limit {
            self.overflowed += 1;
            return self.flows.entry(FlowKey::overflow()).or_default();
        }
        self.flows.entry(key).or_default()
    }

    pub fn lookup(&mut self, mut key: DnsKey, latency_s: f64) {
        if !self.dns.contains_key(&key) && self.dns.len() + 1 >= self.limit {
            self.overflowed += 1;
            key = DnsKey {
                domain: 0,
                rcode: 0,
                pid: 0,
                overflow: true,
            };
        }
        let acc = self.dns.entry(key).or_default();
        acc.count += 1;
        acc.latencies.push(latency_s);
        if latency_s > acc.max {
            acc.max = latency_s;
        }
    }
}

fn overflow_attrs() -> Vec<KeyValue> {
    vec![KeyValue::new(schema::OVERFLOW_ATTRIBUTE, true)]
}

/// The netflow tags of a flow.
pub fn flow_attributes(k: &FlowKey, names: &Names, process_name: Option<&str>) -> Vec<KeyValue> {
    if k.overflow {
        return overflow_attrs();
    }
    let mut a = Vec::with_capacity(13);
    if let Some(ip) = k.src_ip {
        a.push(KeyValue::new(schema::TAG_SRC_IP, ip.to_string()));
        a.push(KeyValue::new(schema::TAG_SRC_IP_TYPE, ip_type(ip)));
    }
    if let Some(p) = k.src_port {
        a.push(KeyValue::new(schema::TAG_SRC_PORT, i64::from(p)));
    }
    a.push(KeyValue::new(schema::TAG_DST_IP, k.dst_ip.to_string()));
    a.push(KeyValue::new(schema::TAG_DST_IP_TYPE, ip_type(k.dst_ip)));
    if let Some(p) = k.dst_port {
        a.push(KeyValue::new(schema::TAG_DST_PORT, i64::from(p)));
    }
    a.push(KeyValue::new(schema::TAG_TRANSPORT, k.transport.as_str()));
    a.push(KeyValue::new(
        schema::TAG_FAMILY,
        if k.dst_ip.is_ipv4() { "IPv4" } else { "IPv6" },
    ));
    a.push(KeyValue::new(schema::TAG_DIRECTION, k.direction.as_str()));
    if let Some(d) = k.domain {
        a.push(KeyValue::new(
            schema::TAG_DST_DOMAIN,
            names.get(d).to_string(),
        ));
    }
    a.push(KeyValue::new(schema::TAG_PID, i64::from(k.pid)));
    if let Some(p) = process_name {
        a.push(KeyValue::new(schema::TAG_PROCESS_NAME, p.to_string()));
    }
    a
}

/// The dnsflow tags of a lookup key.
pub fn dns_attributes(k: &DnsKey, names: &Names, process_name: Option<&str>) -> Vec<KeyValue> {
    if k.overflow {
        return overflow_attrs();
    }
    let mut a = vec![
        KeyValue::new(schema::TAG_DST_DOMAIN, names.get(k.domain).to_string()),
        KeyValue::new(schema::TAG_RCODE, i64::from(k.rcode)),
        KeyValue::new(schema::TAG_PID, i64::from(k.pid)),
    ];
    if let Some(p) = process_name {
        a.push(KeyValue::new(schema::TAG_PROCESS_NAME, p.to_string()));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Endpoint;
    use netmon_proto::role;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_types() {
        for (a, t) in [
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("93.184.216.34", "public"),
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link_local"),
            ("224.0.0.251", "multicast"),
            ("::1", "loopback"),
            ("fe80::1", "link_local"),
            ("fd00::1", "private"),
            ("ff02::fb", "multicast"),
            ("2001:db8::1", "public"),
            ("::ffff:10.0.0.1", "private"),
            ("0.0.0.0", "unspecified"),
        ] {
            assert_eq!(ip_type(ip(a)), t, "{a}");
        }
    }

    fn sock(dir: u8) -> SocketRecord {
        let mut s = SocketRecord::new(7, Transport::Tcp, false, dir);
        s.remote = Some(Endpoint {
            ip: ip("::ffff:93.184.216.34"),
            port: 443,
        });
        s.local = Some(Endpoint {
            ip: ip("10.0.0.5"),
            port: 51234,
        });
        s
    }

    #[test]
    fn keys_keep_service_ports_and_drop_ephemeral_ones() {
        let k = socket_key(&sock(role::OUTGOING), Some(3), false).unwrap();
        assert_eq!(k.dst_ip, ip("93.184.216.34"));
        assert_eq!(
            (k.src_port, k.dst_port, k.domain),
            (None, Some(443), Some(3))
        );
        let k = socket_key(&sock(role::OUTGOING), Some(3), true).unwrap();
        assert_eq!(k.src_port, Some(51234));
        let k = socket_key(&sock(role::INCOMING), Some(3), false).unwrap();
        assert_eq!(
            (k.src_port, k.dst_port, k.domain),
            (Some(51234), None, None)
        );
        let mut unconnected = sock(role::OUTGOING);
        unconnected.remote = None;
        assert!(socket_key(&unconnected, None, false).is_none());
    }

    #[test]
    fn attributes_follow_the_schema() {
        let mut names = Names::default();
        let d = names.intern("example.com");
        let k = socket_key(&sock(role::OUTGOING), Some(d), false).unwrap();
        let a = flow_attributes(&k, &names, Some("python3"));
        let get = |key: &str| {
            a.iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("dst_ip").as_deref(), Some("93.184.216.34"));
        assert_eq!(get("dst_ip_type").as_deref(), Some("public"));
        assert_eq!(get("src_ip_type").as_deref(), Some("private"));
        assert_eq!(get("dst_port").as_deref(), Some("443"));
        assert_eq!(get("src_port"), None);
        assert_eq!(get("family").as_deref(), Some("IPv4"));
        assert_eq!(get("transport").as_deref(), Some("tcp"));
        assert_eq!(get("direction").as_deref(), Some("outgoing"));
        assert_eq!(get("dst_domain").as_deref(), Some("example.com"));
        assert_eq!(get("pid").as_deref(), Some("7"));
        assert_eq!(get("process_name").as_deref(), Some("python3"));
    }

    #[test]
    fn cardinality_limit_folds_into_one_overflow_key() {
        let mut agg = Aggregates::new(4);
        for port in 0..10u16 {
            let mut s = sock(role::OUTGOING);
            s.remote = Some(Endpoint {
                ip: ip("10.0.0.9"),
                port,
            });
            let k = socket_key(&s, None, false).unwrap();
            agg.flow(k).bytes_written += 1;
        }
        assert_eq!(agg.flows.len(), 4);
        let overflow = agg.flows.iter().find(|(k, _)| k.overflow).unwrap().1;
        assert_eq!(overflow.bytes_written, 7);
        assert_eq!(agg.overflowed, 7);
        let total: u64 = agg.flows.values().map(|a| a.bytes_written).sum();
        assert_eq!(total, 10);
        let a = flow_attributes(&FlowKey::overflow(), &Names::default(), None);
        assert_eq!(a, vec![KeyValue::new("otel.metric.overflow", true)]);
    }

    #[test]
    fn dns_accumulates_count_latency_and_max() {
        let mut agg = Aggregates::new(100);
        let k = DnsKey {
            domain: 0,
            rcode: 0,
            pid: 1,
            overflow: false,
        };
        agg.lookup(k, 0.002);
        agg.lookup(k, 0.010);
        let a = &agg.dns[&k];
        assert_eq!(a.count, 2);
        assert_eq!(a.max, 0.010);
        assert_eq!(a.latencies.len(), 2);
    }
}
