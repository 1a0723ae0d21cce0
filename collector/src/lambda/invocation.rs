//! What one invocation (or the init phase) did on the network, from the tracker's per-epoch
//! data, and the forms it is reported in: a log line (CloudWatch Logs) and CloudWatch Embedded
//! Metric Format.

use crate::tracker::{DNS_PORT, Direction, Outcome, Tracker};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write as _;

/// One invocation's network activity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvocationReport {
    /// The request id, or `None` for the init phase.
    pub request_id: Option<String>,
    pub epoch: u32,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub connections: u64,
    pub failed: u64,
    pub dns: u64,
    pub dns_failed: u64,
    /// The destination with the most bytes, as `name:port` (or `ip:port`).
    pub top: Option<String>,
    /// Interface-level bytes from `/proc/net/dev` over the same interval (rx, tx), when read.
    pub dev_bytes: Option<(u64, u64)>,
    /// Events lost so far (all time).
    pub dropped: u64,
    /// False when the runtime ran without the interceptor: socket-level numbers are unknown.
    pub socket_level: bool,
}

/// Builds the report of epoch `epoch` (0 = init).
pub fn report(t: &Tracker, epoch: u32, request_id: Option<&str>) -> InvocationReport {
    let names = t.name_index();
    let mut r = InvocationReport {
        request_id: request_id.map(str::to_string),
        epoch,
        socket_level: true,
        ..Default::default()
    };
    let mut by_dest: HashMap<String, u64> = HashMap::new();
    for s in t.sockets.values().filter(|s| !s.platform) {
        let (tx, rx) = s.epoch_bytes.get(&epoch).copied().unwrap_or((0, 0));
        // Saturating: shared-memory counters are bounded one by one, not their sums.
        r.tx_bytes = r.tx_bytes.saturating_add(tx);
        r.rx_bytes = r.rx_bytes.saturating_add(rx);
        for a in s.attempts.iter().filter(|a| a.epoch == epoch) {
            let failed = match a.errno {
                0 => false,
                // A non-blocking connect: the socket knows how it ended.
                EINPROGRESS => matches!(s.outcome, Outcome::Failed(_)),
                _ => true,
            };
            if failed {
                r.failed += 1;
            } else {
                r.connections += 1;
            }
        }
        if tx.saturating_add(rx) > 0
            && let Some(remote) = s.remote
        {
            let dest = if s.direction() == Direction::Incoming {
                format!("{}:{}", remote.ip, s.local.map_or(0, |l| l.port))
            } else {
                let host = (remote.port != DNS_PORT)
                    .then(|| {
                        names
                            .get(&(Some(s.pid), remote.ip))
                            .or_else(|| names.get(&(None, remote.ip)))
                    })
                    .flatten()
                    .cloned()
                    .unwrap_or_else(|| remote.ip.to_string());
                format!("{host}:{}", remote.port)
            };
            let total = by_dest.entry(dest).or_default();
            *total = total.saturating_add(tx).saturating_add(rx);
        }
    }
    for d in t.datagrams.values().filter(|d| d.epoch == epoch) {
        r.tx_bytes = r.tx_bytes.saturating_add(d.bytes_sent);
        r.rx_bytes = r.rx_bytes.saturating_add(d.bytes_received);
    }
    for l in t.lookups.iter().filter(|l| l.epoch == epoch) {
        r.dns += 1;
        if l.error.is_some() {
            r.dns_failed += 1;
        }
    }
    r.top = by_dest
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(d, _)| d);
    r
}

/// Bytes (rx, tx) of the function's interfaces in a `/proc/net/dev` text: the ones Lambda
/// names `vinternal*` when there are any, else every interface but loopback.
pub fn interface_bytes(proc_net_dev: &[u8]) -> Option<(u64, u64)> {
    let mut ifs = Vec::new();
    let stats = netmon_procnet::dev::parse(proc_net_dev, &mut ifs);
    if stats.unknown_format {
        return None;
    }
    let lambda = ifs.iter().any(|i| i.name.as_str().starts_with("vinternal"));
    let chosen = ifs.iter().filter(|i| {
        let n = i.name.as_str();
        if lambda {
            n.starts_with("vinternal")
        } else {
            n != "lo"
        }
    });
    Some(chosen.fold((0u64, 0u64), |(rx, tx), i| {
        (
            rx.saturating_add(i.counters.rx_bytes),
            tx.saturating_add(i.counters.tx_bytes),
        )
    }))
}

/// `EINPROGRESS` on Linux (all architectures Lambda runs on).
const EINPROGRESS: i32 = 115;

impl InvocationReport {
    /// `netmon requestId=… tx_bytes=… rx_bytes=… connections=… failed=… dns=… top=…`.
    pub fn log_line(&self) -> String {
        let mut s = String::from("netmon");
        match &self.request_id {
            Some(id) => {
                let _ = write!(s, " requestId={id}");
            }
            None => s.push_str(" phase=init"),
        }
        if self.socket_level {
            let _ = write!(
                s,
                " tx_bytes={} rx_bytes={} connections={} failed={} dns={} dns_failed={}",
                self.tx_bytes,
                self.rx_bytes,
                self.connections,
                self.failed,
                self.dns,
                self.dns_failed
            );
        } else {
            s.push_str(" socket_level=unavailable");
        }
        if let Some((rx, tx)) = self.dev_bytes {
            let _ = write!(s, " dev_rx_bytes={rx} dev_tx_bytes={tx}");
        }
        if self.socket_level {
            let _ = write!(s, " top={}", self.top.as_deref().unwrap_or("-"));
        }
        if self.dropped > 0 {
            let _ = write!(s, " dropped_events={}", self.dropped);
        }
        s
    }

    /// The same numbers in CloudWatch Embedded Metric Format (one JSON line).
    pub fn emf(&self, function_name: &str, timestamp_ms: u64) -> String {
        let mut metrics = vec![
            json!({"Name": "TxBytes", "Unit": "Bytes"}),
            json!({"Name": "RxBytes", "Unit": "Bytes"}),
            json!({"Name": "Connections", "Unit": "Count"}),
            json!({"Name": "FailedConnections", "Unit": "Count"}),
            json!({"Name": "DnsLookups", "Unit": "Count"}),
            json!({"Name": "DnsFailures", "Unit": "Count"}),
        ];
        let mut doc = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": "netmon",
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [],
                }],
            },
            "FunctionName": function_name,
            "TxBytes": self.tx_bytes,
            "RxBytes": self.rx_bytes,
            "Connections": self.connections,
            "FailedConnections": self.failed,
            "DnsLookups": self.dns,
            "DnsFailures": self.dns_failed,
        });
        if let Some((rx, tx)) = self.dev_bytes {
            metrics.push(json!({"Name": "InterfaceRxBytes", "Unit": "Bytes"}));
            metrics.push(json!({"Name": "InterfaceTxBytes", "Unit": "Bytes"}));
            doc["InterfaceRxBytes"] = json!(rx);
            doc["InterfaceTxBytes"] = json!(tx);
        }
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!(metrics);
        match &self.request_id {
            Some(id) => doc["requestId"] = json!(id),
            None => doc["phase"] = json!("init"),
        }
        if let Some(top) = &self.top {
            doc["top"] = json!(top);
        }
        doc.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_bytes_prefer_lambda_interfaces() {
        let head = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";
        let lambda = format!(
            "{head}    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\nvinternal_1: 5000 4 0 0 0 0 0 0 700 3 0 0 0 0 0 0\nvint_runtime: 900 4 0 0 0 0 0 0 800 3 0 0 0 0 0 0\n"
        );
        assert_eq!(interface_bytes(lambda.as_bytes()), Some((5000, 700)));
        let host = format!(
            "{head}    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 10 1 0 0 0 0 0 0 20 1 0 0 0 0 0 0\n  eth1: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n"
        );
        assert_eq!(interface_bytes(host.as_bytes()), Some((11, 22)));
        assert_eq!(interface_bytes(b"garbage"), None);
    }

    #[test]
    fn log_line_and_emf() {
        let r = InvocationReport {
            request_id: Some("r-1".into()),
            epoch: 1,
            tx_bytes: 10,
            rx_bytes: 20,
            connections: 2,
            failed: 1,
            dns: 3,
            dns_failed: 0,
            top: Some("api.x:443".into()),
            dev_bytes: Some((100, 50)),
            dropped: 0,
            socket_level: true,
        };
        assert_eq!(
            r.log_line(),
            "netmon requestId=r-1 tx_bytes=10 rx_bytes=20 connections=2 failed=1 dns=3 dns_failed=0 dev_rx_bytes=100 dev_tx_bytes=50 top=api.x:443"
        );
        let v: serde_json::Value = serde_json::from_str(&r.emf("fn", 5)).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "netmon");
        assert_eq!(v["TxBytes"], 10);
        assert_eq!(v["InterfaceRxBytes"], 100);
        assert_eq!(v["requestId"], "r-1");
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for n in &names {
            assert!(v.get(*n).is_some(), "metric {n} has no value");
        }
        let init = InvocationReport {
            socket_level: true,
            ..Default::default()
        };
        assert!(init.log_line().starts_with("netmon phase=init "));
        let blind = InvocationReport {
            request_id: Some("r".into()),
            ..Default::default()
        };
        assert_eq!(
            blind.log_line(),
            "netmon requestId=r socket_level=unavailable"
        );
    }
}
