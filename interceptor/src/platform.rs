//! The Lambda Runtime API connection (`AWS_LAMBDA_RUNTIME_API`): the platform's traffic, never
//! the function's, and the exact marker of invocation boundaries.
//!
//! The runtime fetches an invocation with `GET .../runtime/invocation/next` (the response
//! carries `Lambda-Runtime-Aws-Request-Id`) and reports it done with
//! `POST .../runtime/invocation/{id}/response` (or `/error`). Seeing the first starts a new
//! epoch (so bytes on kept-alive connections split exactly between invocations); seeing the
//! second wakes the collector, which then knows the runtime has finished without waiting for the
//! Telemetry API.

use crate::events::emit;
use crate::runtime_api::{Boundary, classify, parse_address};
use crate::shared::region;
use crate::thread::Guard;
use core::sync::atomic::{AtomicU32, Ordering};
use netmon_proto::{
    Addr, Event, EventHeader, InvocationEvent, REQUEST_ID_MAX, invocation_phase, kind,
};

/// IPv4 address (network order bytes as a native u32) and port of the Runtime API; port 0 when
/// not running under Lambda.
static API_IP: AtomicU32 = AtomicU32::new(0);
static API_PORT: AtomicU32 = AtomicU32::new(0);

/// Takes the Runtime API's address from `AWS_LAMBDA_RUNTIME_API` (`host:port[/prefix]`).
pub fn configure(value: &[u8]) {
    if let Some((ip, port)) = parse_address(value) {
        API_IP.store(u32::from_ne_bytes(ip), Ordering::Relaxed);
        API_PORT.store(port as u32, Ordering::Relaxed);
    }
}

/// True if `remote` is the Runtime API.
pub fn is_runtime_api(remote: &Addr) -> bool {
    let port = API_PORT.load(Ordering::Relaxed);
    port != 0
        && remote.family == netmon_proto::family::IPV4
        && remote.port as u32 == port
        && remote.bytes[..4] == API_IP.load(Ordering::Relaxed).to_ne_bytes()
}

/// Acts on bytes seen on the Runtime API connection.
pub fn on_platform_data(g: &Guard, data: &[u8], outgoing: bool) {
    let Some(region) = region() else { return };
    let Some(b) = classify(data, outgoing) else {
        return;
    };
    let (phase, id, deadline) = match b {
        Boundary::Start(id, deadline) => {
            // The new epoch starts before the handler runs: every byte from here on is the new
            // invocation's.
            region.header().epoch.fetch_add(1, Ordering::AcqRel);
            (invocation_phase::START, id, deadline)
        }
        Boundary::Done(id, phase) => (phase, id, 0),
    };
    let mut ev = InvocationEvent {
        header: EventHeader::new(kind::INVOCATION, InvocationEvent::SLOTS, 0, 0, 0),
        phase,
        request_id_len: 0,
        _pad: [0; 6],
        deadline_ms: deadline,
        request_id: [0; REQUEST_ID_MAX],
    };
    let n = id.len().min(REQUEST_ID_MAX);
    ev.request_id[..n].copy_from_slice(&id[..n]);
    ev.request_id_len = n as u8;
    emit(g, &mut ev);
    if phase != invocation_phase::START {
        region.signal_invocation_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_configured_api_address() {
        configure(b"127.0.0.1:9001");
        assert!(is_runtime_api(&Addr::from_ipv4([127, 0, 0, 1], 9001)));
        assert!(!is_runtime_api(&Addr::from_ipv4([127, 0, 0, 1], 9002)));
        configure(b"localhost:7000/prefix/path");
        assert!(is_runtime_api(&Addr::from_ipv4([127, 0, 0, 1], 7000)));
    }
}
