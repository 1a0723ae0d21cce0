//! The Telemetry API listener: Lambda POSTs batches of platform events (`platform.start`,
//! `platform.runtimeDone`, `platform.report`, ...) here. It is the fallback that tells the
//! extension the runtime has finished when the interceptor is not loaded (a static binary),
//! and the source of Lambda's own durations.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

/// A platform event netmon uses.
#[derive(Clone, Debug, PartialEq)]
pub enum PlatformEvent {
    /// A batch arrived: the API delivers (some emulators accept a subscription and never
    /// deliver anything, and waiting on them would hold every invocation to its deadline).
    Delivered,
    Start {
        request_id: String,
    },
    RuntimeDone {
        request_id: String,
        status: String,
    },
    Report {
        request_id: String,
        duration_ms: f64,
        billed_duration_ms: f64,
        init_duration_ms: Option<f64>,
    },
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    record: serde_json::Value,
}

/// Parses one POSTed batch (a JSON array of records); unknown types and fields are ignored,
/// malformed batches yield nothing.
pub fn parse_batch(body: &str) -> Vec<PlatformEvent> {
    let Ok(records) = serde_json::from_str::<Vec<Record>>(body) else {
        return Vec::new();
    };
    records
        .into_iter()
        .filter_map(|r| {
            let id = r.record.get("requestId")?.as_str()?.to_string();
            let metric = |name: &str| r.record.get("metrics")?.get(name)?.as_f64();
            match r.kind.as_str() {
                "platform.start" => Some(PlatformEvent::Start { request_id: id }),
                "platform.runtimeDone" => Some(PlatformEvent::RuntimeDone {
                    request_id: id,
                    status: r
                        .record
                        .get("status")
                        .and_then(|s| s.as_str())
                        .unwrap_or("")
                        .to_string(),
                }),
                "platform.report" => Some(PlatformEvent::Report {
                    request_id: id,
                    duration_ms: metric("durationMs").unwrap_or(0.0),
                    billed_duration_ms: metric("billedDurationMs").unwrap_or(0.0),
                    init_duration_ms: metric("initDurationMs"),
                }),
                _ => None,
            }
        })
        .collect()
}

/// The largest batch body read; the rest of a larger one is ignored (and the batch, cut short,
/// no longer parses). Four times the `maxBytes` netmon subscribes with.
const MAX_BATCH_BYTES: u64 = 1 << 20;

/// The address to listen on: what `sandbox.localdomain` resolves to inside Lambda, else
/// loopback. Never a wildcard address.
fn listen_host() -> (IpAddr, String) {
    if let Ok(mut addrs) = ("sandbox.localdomain", 0).to_socket_addrs()
        && let Some(a) = addrs.find(|a| a.is_ipv4())
    {
        return (a.ip(), "sandbox.localdomain".to_string());
    }
    (IpAddr::V4(Ipv4Addr::LOCALHOST), "127.0.0.1".to_string())
}

/// A running listener.
pub struct Listener {
    pub destination: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts listening; every parsed event is sent to `events`.
    pub fn start(events: Sender<PlatformEvent>) -> Result<Listener> {
        let (ip, host) = listen_host();
        let server = tiny_http::Server::http(SocketAddr::new(ip, 0))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("cannot start the Telemetry API listener")?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .context("the Telemetry API listener has no port")?;
        let server = std::sync::Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("telemetry-api".into())
            .spawn(move || {
                for mut req in s.incoming_requests() {
                    // Any process in the sandbox can post here: bounded, whatever it sends
                    // (Lambda's batches are at most the subscription's 256 KiB).
                    let mut body = String::new();
                    let _ = req
                        .as_reader()
                        .take(MAX_BATCH_BYTES)
                        .read_to_string(&mut body);
                    let _ = req.respond(tiny_http::Response::empty(200));
                    if events.send(PlatformEvent::Delivered).is_err() {
                        return;
                    }
                    for e in parse_batch(&body) {
                        if events.send(e).is_err() {
                            return;
                        }
                    }
                }
            })
            .context("cannot start the Telemetry API thread")?;
        Ok(Listener {
            destination: format!("http://{host}:{port}/telemetry"),
            server,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platform_records_and_ignores_the_rest() {
        let body = r#"[
          {"time":"2022-10-12T00:00:15.064Z","type":"platform.start","record":{"requestId":"a","version":"$LATEST"}},
          {"time":"x","type":"platform.runtimeDone","record":{"requestId":"a","status":"success","metrics":{"durationMs":10.5}}},
          {"time":"x","type":"platform.report","record":{"requestId":"a","status":"success",
             "metrics":{"durationMs":12.0,"billedDurationMs":13,"memorySizeMB":128,"maxMemoryUsedMB":60,"initDurationMs":200.5}}},
          {"time":"x","type":"function","record":"hello"},
          {"time":"x","type":"platform.runtimeDone","record":{"status":"success"}}
        ]"#;
        let events = parse_batch(body);
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[1],
            PlatformEvent::RuntimeDone {
                request_id: "a".into(),
                status: "success".into()
            }
        );
        assert!(
            matches!(events[2], PlatformEvent::Report { init_duration_ms: Some(d), .. } if d == 200.5)
        );
        assert!(parse_batch("not json").is_empty());
        assert!(parse_batch("{}").is_empty());
    }

    #[test]
    fn listener_receives_batches_on_loopback() {
        let (tx, rx) = std::sync::mpsc::channel();
        let l = Listener::start(tx).unwrap();
        assert!(l.destination.starts_with("http://"));
        let body =
            r#"[{"type":"platform.runtimeDone","record":{"requestId":"z","status":"success"}}]"#;
        let status = ureq::post(&l.destination)
            .send(body)
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200);
        let e = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(e, PlatformEvent::Delivered);
        let e = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(matches!(e, PlatformEvent::RuntimeDone { request_id, .. } if request_id == "z"));
        // A body beyond the bound is read no further: the batch, cut short, yields nothing.
        let pad = " ".repeat(MAX_BATCH_BYTES as usize);
        let big =
            format!(r#"[{{"type":"platform.runtimeDone","record":{{"requestId":"big"}}}}{pad}]"#);
        let status = ureq::post(&l.destination)
            .send(&big)
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, 200);
        let e = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(e, PlatformEvent::Delivered);
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
    }
}
