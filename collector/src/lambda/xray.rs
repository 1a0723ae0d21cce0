//! The X-Ray trace header Lambda hands every invocation
//! (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`) and its W3C
//! equivalent, so netmon's spans join the function's own trace in any OTel backend.

/// A W3C trace context taken from an X-Ray header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The parent span id, if the header had one.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Parses an X-Ray trace header. `Root=1-{8 hex time}-{24 hex id}` becomes the 32-hex-digit
/// W3C trace id `{time}{id}`; `Parent` the parent span id; `Sampled=1` the sampled flag.
pub fn parse(header: &str) -> Option<TraceContext> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = false;
    for part in header.split(';') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Root" => {
                let mut it = v.split('-');
                let (version, time, id) = (it.next()?, it.next()?, it.next()?);
                if version != "1" || it.next().is_some() || time.len() != 8 || id.len() != 24 {
                    return None;
                }
                root = Some(hex_bytes::<16>(&format!("{time}{id}"))?);
            }
            "Parent" => parent = hex_bytes::<8>(v),
            "Sampled" => sampled = v == "1",
            _ => {}
        }
    }
    let trace_id = root?;
    if trace_id == [0; 16] {
        return None;
    }
    Some(TraceContext {
        trace_id,
        parent_span_id: parent.filter(|p| *p != [0; 8]),
        sampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xray_to_w3c() {
        let c = parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
            .unwrap();
        let hex: String = c.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5759e988bd862e3fe1be46a994272793");
        assert_eq!(
            c.parent_span_id,
            Some([0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8])
        );
        assert!(c.sampled);
        let u = parse("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=a:1").unwrap();
        assert!(!u.sampled && u.parent_span_id.is_none());
    }

    #[test]
    fn rejects_malformed_headers() {
        for h in [
            "",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279z",
            "Parent=53995c3f42cd8ad8",
            "Root=1-00000000-000000000000000000000000",
            "garbage",
        ] {
            assert_eq!(parse(h), None, "{h}");
        }
    }
}
