//! `netmon run --html FILE`: one self-contained HTML page of a run — the topology graph
//! (processes → domains → IP:port, edge width by bytes, failed edges marked) and the DNS and
//! flow tables — built from the run summary, the same one `--json` writes.
//!
//! The page loads nothing: the graph library (cytoscape from the npm registry, vendored in
//! `assets/` by `scripts/vendor-js.sh`, see `assets/vendor.json`), the page's script and the
//! data are inline, and its Content-Security-Policy forbids every fetch. The script draws
//! [`graph`]'s nodes and edges and publishes what it drew (`window.netmonGraph` and the
//! `#netmon-drawn` element) for tests and scripts.

use crate::summary::{FlowSummary, RunSummary, human_bytes};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// cytoscape.min.js, as `scripts/vendor-js.sh` wrote it (its license header included).
const CYTOSCAPE: &str = include_str!("../assets/cytoscape.min.js");
/// The page's own script: draws the graph.
const SCRIPT: &str = include_str!("../assets/report.js");
const STYLE: &str = include_str!("../assets/report.css");

/// What the page draws.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// A process (`p:PID`), a domain (`d:NAME`), a destination address (`e:IP:PORT`) or a client
/// that connected to a process (`c:IP`).
#[derive(Debug, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    /// `process`, `domain`, `endpoint` or `client`.
    pub kind: &'static str,
    pub label: String,
    /// Domains: lookups that failed (the name is drawn as failed when none succeeded).
    pub lookup_failures: u64,
    /// Drawn as failed: a name that never resolved, an address never connected to.
    pub failed: bool,
}

/// Traffic between two nodes, summed over the flows it stands for.
#[derive(Debug, PartialEq, Serialize)]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
    /// `None` when only `/proc` saw the flows (bytes unknown).
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub connections: u64,
    pub failed: u64,
    /// Failed attempts by errno name.
    pub errors: BTreeMap<String, u64>,
    /// `ok`, `partial` (some attempts failed), `failed` (every attempt failed) or `unknown`
    /// (seen in `/proc` only).
    pub status: &'static str,
    /// Bytes both ways on a log scale, 0..=1 of the largest edge: the drawn width.
    pub weight: f64,
    pub label: String,
}

fn endpoint(f: &FlowSummary) -> String {
    let ip = if f.family == "IPv6" {
        format!("[{}]", f.dst_ip)
    } else {
        f.dst_ip.clone()
    };
    match f.dst_port {
        Some(p) => format!("{ip}:{p}"),
        None => ip,
    }
}

#[derive(Default)]
struct Acc {
    sent: Option<u64>,
    received: Option<u64>,
    connections: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
}

impl Acc {
    fn add(&mut self, f: &FlowSummary) {
        if let Some(b) = f.bytes_sent {
            *self.sent.get_or_insert(0) += b;
        }
        if let Some(b) = f.bytes_received {
            *self.received.get_or_insert(0) += b;
        }
        self.connections += f.connections;
        self.failed += f.failed;
        for (e, n) in &f.errors {
            *self.errors.entry(e.clone()).or_default() += n;
        }
    }
}

/// The graph of a run: a node per process on the network (and the started command), per
/// domain and per destination address; edges process → domain → address (process → address
/// when no DNS answer named it), and client → process for accepted connections. A flow that
/// several processes used (an inherited socket) is on an edge from each.
pub fn graph(s: &RunSummary) -> Graph {
    let mut nodes = Nodes::default();
    let process_label = |pid: u32| -> String {
        let exe = s
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.executable.clone())
            .or_else(|| {
                (pid == s.pid)
                    .then(|| s.command.first())
                    .flatten()
                    .map(|c| c.rsplit('/').next().unwrap_or(c).to_string())
            })
            .unwrap_or_else(|| "process".into());
        format!("{exe} ({pid})")
    };
    nodes.add(format!("p:{}", s.pid), "process", process_label(s.pid));
    let mut edges: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut edge_order: Vec<(String, String)> = Vec::new();
    let mut add = |from: String, to: String, f: &FlowSummary| {
        let key = (from, to);
        if !edges.contains_key(&key) {
            edge_order.push(key.clone());
        }
        edges.entry(key).or_default().add(f);
    };
    for f in &s.flows {
        for pid in &f.pids {
            let p = nodes.add(format!("p:{pid}"), "process", process_label(*pid));
            if f.direction == "incoming" {
                let c = nodes.add(format!("c:{}", f.dst_ip), "client", f.dst_ip.clone());
                add(c, p, f);
                continue;
            }
            let addr = endpoint(f);
            let e = nodes.add(format!("e:{addr}"), "endpoint", addr);
            match &f.dst_domain {
                Some(d) => {
                    let d = nodes.add(format!("d:{d}"), "domain", d.clone());
                    add(p, d.clone(), f);
                    add(d, e, f);
                }
                None => add(p, e, f),
            }
        }
    }
    for d in &s.dns {
        let id = nodes.add(format!("d:{}", d.name), "domain", d.name.clone());
        if let Some(n) = nodes.by_id.get_mut(&id) {
            n.lookup_failures = d.failures;
            n.failed = d.answers.is_empty() && d.failures > 0;
        }
    }
    let total = |a: &Acc| a.sent.unwrap_or(0) + a.received.unwrap_or(0);
    let max = edges.values().map(total).max().unwrap_or(0);
    let edges: Vec<Edge> = edge_order
        .into_iter()
        .filter_map(|key| {
            let a = edges.remove(&key)?;
            let status = if a.failed > 0 && a.connections == 0 {
                "failed"
            } else if a.failed > 0 {
                "partial"
            } else if a.sent.is_none() && a.received.is_none() {
                "unknown"
            } else {
                "ok"
            };
            if status == "failed"
                && let Some(n) = nodes.by_id.get_mut(&key.1)
                && n.kind == "endpoint"
            {
                n.failed = true;
            }
            let mut label = match (a.sent, a.received) {
                (None, None) => "bytes unknown".to_string(),
                (s, r) => format!(
                    "{} out, {} in",
                    human_bytes(s.unwrap_or(0)),
                    human_bytes(r.unwrap_or(0))
                ),
            };
            let mut second = Vec::new();
            if a.connections > 0 {
                second.push(format!("{} conn", a.connections));
            }
            if a.failed > 0 {
                let errors: Vec<&str> = a.errors.keys().map(String::as_str).collect();
                second.push(format!("{} failed ({})", a.failed, errors.join(", ")));
            }
            if !second.is_empty() {
                let _ = write!(label, "\n{}", second.join(", "));
            }
            let weight = if max == 0 {
                0.0
            } else {
                ((1 + total(&a)) as f64).ln() / ((1 + max) as f64).ln()
            };
            Some(Edge {
                id: format!("{}>{}", key.0, key.1),
                source: key.0,
                target: key.1,
                bytes_sent: a.sent,
                bytes_received: a.received,
                connections: a.connections,
                failed: a.failed,
                errors: a.errors,
                status,
                weight,
                label,
            })
        })
        .collect();
    Graph {
        nodes: nodes
            .order
            .into_iter()
            .filter_map(|id| nodes.by_id.remove(&id))
            .collect(),
        edges,
    }
}

/// Nodes in the order they were first seen.
#[derive(Default)]
struct Nodes {
    by_id: BTreeMap<String, Node>,
    order: Vec<String>,
}

impl Nodes {
    /// The node `id`, made if new; returns the id.
    fn add(&mut self, id: String, kind: &'static str, label: String) -> String {
        if !self.by_id.contains_key(&id) {
            self.order.push(id.clone());
            self.by_id.insert(
                id.clone(),
                Node {
                    id: id.clone(),
                    kind,
                    label,
                    lookup_failures: 0,
                    failed: false,
                },
            );
        }
        id
    }
}

/// Text for HTML (element content and quoted attribute values).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// JSON that cannot end the `<script>` element it sits in.
fn script_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), human_bytes)
}

fn table(out: &mut String, id: &str, head: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", escape(c));
        }
        out.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(out, "<tr><td colspan=\"{}\">none</td></tr>", head.len());
    }
    out.push_str("</tbody></table>");
}

/// The page.
pub fn render(s: &RunSummary) -> String {
    let g = graph(s);
    let mut out = String::with_capacity(CYTOSCAPE.len() + 64 * 1024);
    let title = format!("netmon: {}", s.command.join(" "));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    );
    let t = &s.totals;
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let _ = write!(
        out,
        "<header><h1>netmon</h1><p class=\"command\"><code>{}</code></p><p>pid {}, exit {}, {:.2} s · \
{} out, {} in · {}, {} failed · {}, {} failed · {}</p></header>",
        escape(&s.command.join(" ")),
        s.pid,
        s.exit_code,
        s.duration_ms / 1000.0,
        human_bytes(t.bytes_sent),
        human_bytes(t.bytes_received),
        plural(t.connections, "connection", "connections"),
        t.failed_connections,
        plural(t.dns_lookups, "DNS lookup", "DNS lookups"),
        t.dns_failures,
        plural(s.dropped_events, "event dropped", "events dropped"),
    );
    out.push_str(
        "<section><h2>Topology</h2><p class=\"legend\"><span class=\"k process\">process</span>\
<span class=\"k domain\">domain</span><span class=\"k endpoint\">address</span>\
<span class=\"k client\">client</span><span class=\"k failed\">failed</span> \
Edges carry the monitored process's bytes out and in; their width grows with the bytes. Red \
dashed edges failed, orange ones partly; dotted ones were seen in /proc only (bytes unknown).</p><div id=\"graph\"></div></section>",
    );
    let dns: Vec<Vec<String>> = s
        .dns
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.answers.join(", "),
                d.count.to_string(),
                d.failures.to_string(),
                d.error.clone().unwrap_or_default(),
                d.rcode.to_string(),
                d.source.clone(),
                format!("{:.2}", d.latency_ms_avg),
                format!("{:.2}", d.latency_ms_max),
            ]
        })
        .collect();
    out.push_str("<section><h2>DNS</h2>");
    table(
        &mut out,
        "dns",
        &[
            "name", "answers", "lookups", "failed", "error", "rcode", "source", "avg ms", "max ms",
        ],
        &dns,
    );
    out.push_str("</section>");
    let flows: Vec<Vec<String>> = s
        .flows
        .iter()
        .map(|f| {
            let errors: Vec<String> = f.errors.iter().map(|(e, n)| format!("{e} ×{n}")).collect();
            let address = match (f.direction.as_str(), f.src_port) {
                ("incoming", Some(p)) => format!("{} → :{p}", f.dst_ip),
                _ => endpoint(f),
            };
            vec![
                f.direction.clone(),
                f.transport.clone(),
                f.dst_domain.clone().unwrap_or_default(),
                address,
                f.connections.to_string(),
                if f.failed > 0 {
                    format!("{} ({})", f.failed, errors.join(", "))
                } else {
                    "0".into()
                },
                opt_bytes(f.bytes_sent),
                opt_bytes(f.bytes_received),
                f.rtt_us
                    .map_or_else(String::new, |r| format!("{:.2} ms", r / 1000.0)),
                f.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                f.source.to_string(),
            ]
        })
        .collect();
    out.push_str("<section><h2>Flows</h2>");
    table(
        &mut out,
        "flows",
        &[
            "direction",
            "transport",
            "domain",
            "address",
            "connections",
            "failed",
            "sent",
            "received",
            "rtt",
            "pids",
            "seen by",
        ],
        &flows,
    );
    out.push_str("</section>");
    let _ = writeln!(
        out,
        "<footer>netmon {} · graph drawn with cytoscape.js (MIT)</footer>\
<script type=\"application/json\" id=\"netmon-graph\">{}</script>\
<script type=\"application/json\" id=\"netmon-drawn\"></script>\
<script>{CYTOSCAPE}</script><script>{SCRIPT}</script></body></html>",
        env!("CARGO_PKG_VERSION"),
        script_json(&g)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{DnsSummary, ProcessSummary, Totals};

    fn flow(direction: &str, domain: Option<&str>, ip: &str, port: Option<u16>) -> FlowSummary {
        FlowSummary {
            direction: direction.into(),
            transport: "tcp".into(),
            family: if ip.contains(':') { "IPv6" } else { "IPv4" }.into(),
            dst_domain: domain.map(str::to_string),
            dst_ip: ip.into(),
            dst_port: port,
            src_ip: Some("10.0.0.5".into()),
            src_port: if direction == "incoming" {
                Some(8080)
            } else {
                None
            },
            connections: 1,
            failed: 0,
            errors: BTreeMap::new(),
            bytes_sent: Some(100),
            bytes_received: Some(1000),
            packets_sent: None,
            packets_received: None,
            rtt_us: None,
            rtt_var_us: None,
            retransmits: None,
            pids: vec![7],
            source: crate::summary::SOURCE_INTERCEPTOR,
            states: None,
        }
    }

    fn summary(flows: Vec<FlowSummary>, dns: Vec<DnsSummary>) -> RunSummary {
        RunSummary {
            command: vec!["python3".into(), "app.py".into()],
            pid: 7,
            exit_code: 0,
            duration_ms: 10.0,
            processes: vec![ProcessSummary {
                pid: 7,
                ppid: 1,
                executable: "python3".into(),
            }],
            dns,
            flows,
            totals: Totals::default(),
            dropped_events: 0,
            records_rejected: 0,
            sockets_untracked: 0,
            kernel: None,
            export: Vec::new(),
        }
    }

    fn dns(name: &str, answers: &[&str], failures: u64) -> DnsSummary {
        DnsSummary {
            name: name.into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
            count: 1 + failures,
            failures,
            error: (failures > 0).then(|| "EAI_NONAME".to_string()),
            rcode: if failures > 0 { 3 } else { 0 },
            source: "getaddrinfo".into(),
            latency_ms_avg: 0.1,
            latency_ms_max: 0.2,
        }
    }

    #[test]
    fn processes_domains_addresses() {
        let mut refused = flow("outgoing", None, "10.0.0.9", Some(9));
        refused.connections = 0;
        refused.failed = 2;
        refused.errors.insert("ECONNREFUSED".into(), 2);
        refused.bytes_sent = Some(0);
        refused.bytes_received = Some(0);
        let s = summary(
            vec![
                flow(
                    "outgoing",
                    Some("api.example.com"),
                    "93.184.216.34",
                    Some(443),
                ),
                flow(
                    "outgoing",
                    Some("api.example.com"),
                    "2001:db8::1",
                    Some(443),
                ),
                refused,
                flow("incoming", None, "10.0.0.8", None),
            ],
            vec![
                dns("api.example.com", &["93.184.216.34", "2001:db8::1"], 0),
                dns("missing.example", &[], 1),
            ],
        );
        let g = graph(&s);
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "p:7",
                "e:93.184.216.34:443",
                "d:api.example.com",
                "e:[2001:db8::1]:443",
                "e:10.0.0.9:9",
                "c:10.0.0.8",
                "d:missing.example"
            ]
        );
        let edges: Vec<(&str, &str, &str)> = g
            .edges
            .iter()
            .map(|e| (e.source.as_str(), e.target.as_str(), e.status))
            .collect();
        assert_eq!(
            edges,
            [
                ("p:7", "d:api.example.com", "ok"),
                ("d:api.example.com", "e:93.184.216.34:443", "ok"),
                ("d:api.example.com", "e:[2001:db8::1]:443", "ok"),
                ("p:7", "e:10.0.0.9:9", "failed"),
                ("c:10.0.0.8", "p:7", "ok"),
            ]
        );
        // The process → domain edge sums both addresses' flows.
        assert_eq!(g.edges[0].bytes_sent, Some(200));
        assert_eq!(g.edges[0].connections, 2);
        assert_eq!(g.edges[0].weight, 1.0);
        assert!(g.edges[1].weight < 1.0 && g.edges[1].weight > 0.0);
        assert_eq!(g.edges[3].weight, 0.0);
        assert_eq!(g.edges[3].label, "0 B out, 0 B in\n2 failed (ECONNREFUSED)");
        assert!(g.nodes[4].failed, "an address never connected to");
        assert!(g.nodes[6].failed && g.nodes[6].lookup_failures == 1);
        assert!(!g.nodes[2].failed);
    }

    #[test]
    fn nothing_on_the_network_is_one_node() {
        let g = graph(&summary(Vec::new(), Vec::new()));
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].label, "python3 (7)");
        assert!(g.edges.is_empty());
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_what_the_program_chose() {
        let mut f = flow("outgoing", Some("</script><b>x"), "10.0.0.1", Some(80));
        f.pids = vec![7];
        let mut s = summary(vec![f], Vec::new());
        s.command = vec!["sh".into(), "-c".into(), "echo '<b>'".into()];
        let page = render(&s);
        // One closing tag per script element: nothing the program chose ends one early.
        assert_eq!(page.matches("</script>").count(), 4);
        assert!(!page.contains("<b>"));
        assert!(page.contains("echo &#39;&lt;b&gt;&#39;"));
        assert!(page.contains("default-src 'none'"));
        for bad in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!page.contains(bad), "{bad}");
        }
        let data = page
            .split("<script type=\"application/json\" id=\"netmon-graph\">")
            .nth(1)
            .and_then(|r| r.split("</script>").next())
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["nodes"][2]["label"], "</script><b>x");
    }

    #[test]
    fn the_vendored_library_can_sit_in_a_script_element() {
        assert!(CYTOSCAPE.len() > 100_000);
        assert!(!CYTOSCAPE.contains("</script") && !CYTOSCAPE.contains("<!--"));
        assert!(
            CYTOSCAPE.starts_with("/**\n * Copyright (c)"),
            "license header"
        );
        let manifest: serde_json::Value =
            serde_json::from_str(include_str!("../assets/vendor.json")).unwrap();
        assert_eq!(manifest["package"], "cytoscape");
    }
}
