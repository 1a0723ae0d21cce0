//! What the interceptor reads of the Lambda Runtime API: its address (`AWS_LAMBDA_RUNTIME_API`)
//! and the invocation boundaries in the HTTP heads on its connection. Pure functions over bytes
//! the program sends and receives: bounds-checked, allocation-free, never a panic on any input.
//!
//! Also compiled into the fuzz target `fuzz/fuzz_targets/runtime_api.rs`: keep it free of other
//! modules of this crate.

use netmon_proto::invocation_phase;

/// Parses `host:port[/prefix]` (host an IPv4 literal or `localhost`) into the address and port.
pub fn parse_address(value: &[u8]) -> Option<([u8; 4], u16)> {
    let hostport = value.split(|b| *b == b'/').next().unwrap_or(&[]);
    let colon = hostport.iter().rposition(|b| *b == b':')?;
    let (host, port) = (&hostport[..colon], &hostport[colon + 1..]);
    let port = parse_u32(port).filter(|p| *p > 0 && *p < 65536)?;
    let ip = if host == b"localhost" {
        [127, 0, 0, 1]
    } else {
        parse_ipv4(host)?
    };
    Some((ip, port as u16))
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)
    })
}

fn parse_ipv4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split(|b| *b == b'.');
    for o in out.iter_mut() {
        let v = parse_u32(parts.next()?)?;
        *o = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lowercase, with the colon) in an HTTP head: only at the start
/// of a header line, and never past the blank line that ends the head (the body is the
/// function's event: nothing of it is read).
fn header<'a>(data: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head = &data[..find(data, b"\r\n\r\n").unwrap_or(data.len())];
    let mut lines = head.split(|b| *b == b'\n').skip(1);
    let line =
        lines.find(|l| l.len() >= name.len() && l[..name.len()].eq_ignore_ascii_case(name))?;
    let value = &line[name.len()..];
    Some(trim(value.strip_suffix(b"\r").unwrap_or(value)))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| *b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|b| *b != b' ').map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

/// What a request or response on the Runtime API connection means.
#[derive(Debug, PartialEq, Eq)]
pub enum Boundary<'a> {
    /// A new invocation (request id, deadline in ms since the epoch).
    Start(&'a [u8], u64),
    /// The runtime posted the invocation's response or error.
    Done(&'a [u8], u8),
}

/// Classifies bytes the runtime sent (`outgoing`) or received on the Runtime API connection.
pub fn classify(data: &[u8], outgoing: bool) -> Option<Boundary<'_>> {
    if outgoing {
        if !data.starts_with(b"POST ") {
            return None;
        }
        let line_end = data.iter().position(|b| *b == b'\r' || *b == b'\n')?;
        let line = &data[..line_end];
        let marker = b"/runtime/invocation/";
        let at = find(line, marker)? + marker.len();
        let rest = &line[at..];
        let slash = rest.iter().position(|b| *b == b'/')?;
        let id = &rest[..slash];
        let tail = &rest[slash..];
        let phase = if tail.starts_with(b"/response") {
            invocation_phase::RESPONSE
        } else if tail.starts_with(b"/error") {
            invocation_phase::ERROR
        } else {
            return None;
        };
        (!id.is_empty()).then_some(Boundary::Done(id, phase))
    } else {
        if !data.starts_with(b"HTTP/1.") {
            return None;
        }
        let id = header(data, b"lambda-runtime-aws-request-id:")?;
        let deadline = header(data, b"lambda-runtime-deadline-ms:")
            .and_then(|d| {
                d.iter().try_fold(0u64, |acc, c| {
                    c.is_ascii_digit()
                        .then(|| acc.wrapping_mul(10).wrapping_add((c - b'0') as u64))
                })
            })
            .unwrap_or(0);
        (!id.is_empty()).then_some(Boundary::Start(id, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_api_requests_and_responses() {
        let post = b"POST /2018-06-01/runtime/invocation/8476a536-e9f4/response HTTP/1.1\r\nHost: x\r\n\r\n{}";
        assert_eq!(
            classify(post, true),
            Some(Boundary::Done(b"8476a536-e9f4", invocation_phase::RESPONSE))
        );
        let err = b"POST /pfx/2018-06-01/runtime/invocation/abc/error HTTP/1.1\r\n";
        assert_eq!(
            classify(err, true),
            Some(Boundary::Done(b"abc", invocation_phase::ERROR))
        );
        assert_eq!(
            classify(
                b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n",
                true
            ),
            None
        );
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nlambda-runtime-aws-request-id: 1234\r\nLambda-Runtime-Deadline-Ms: 1700000000123\r\n\r\n{}";
        assert_eq!(
            classify(resp, false),
            Some(Boundary::Start(b"1234", 1_700_000_000_123))
        );
        assert_eq!(classify(b"HTTP/1.1 202 Accepted\r\n\r\n", false), None);
        assert_eq!(classify(b"", false), None);
        assert_eq!(classify(b"POST /runtime/invocation/", true), None);
    }

    #[test]
    fn only_header_lines_of_the_head_are_read() {
        // The event (the body) is the function's data: a header-like line in it is not read.
        let body_only = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\nlambda-runtime-aws-request-id: from-the-body\r\n";
        assert_eq!(classify(body_only, false), None);
        // Nor is a longer header that merely ends with the name.
        let other = b"HTTP/1.1 200 OK\r\nX-Lambda-Runtime-Aws-Request-Id: other\r\n\r\n";
        assert_eq!(classify(other, false), None);
        // A head cut short by the read is still read as far as it goes.
        let cut = b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r9";
        assert_eq!(classify(cut, false), Some(Boundary::Start(b"r9", 0)));
    }

    #[test]
    fn parses_the_api_address() {
        assert_eq!(
            parse_address(b"127.0.0.1:9001"),
            Some(([127, 0, 0, 1], 9001))
        );
        assert_eq!(
            parse_address(b"localhost:7000/prefix/path"),
            Some(([127, 0, 0, 1], 7000))
        );
        for bad in [
            &b""[..],
            b"127.0.0.1",
            b"1.2.3:80",
            b"1.2.3.256:80",
            b"h:0",
            b"h:70000",
        ] {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
        assert_eq!(parse_ipv4(b"1.2.3"), None);
        assert_eq!(parse_u32(b"99999999999"), None);
    }
}
