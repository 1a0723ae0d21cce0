//! Fuzz target: the Lambda Runtime API classifier and address parser the interceptor runs on
//! the runtime's HTTP traffic and on `AWS_LAMBDA_RUNTIME_API` (`interceptor/src/runtime_api.rs`,
//! compiled in here as is). Any bytes: no panic, and what it returns lies inside the input.
#![no_main]

#[allow(dead_code)]
#[path = "../../interceptor/src/runtime_api.rs"]
mod runtime_api;

use runtime_api::Boundary;

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for outgoing in [true, false] {
        match runtime_api::classify(data, outgoing) {
            Some(Boundary::Start(id, _)) | Some(Boundary::Done(id, _)) => {
                assert!(!id.is_empty() && inside(data, id));
            }
            None => {}
        }
    }
    if let Some((_, port)) = runtime_api::parse_address(data) {
        assert!(port > 0);
    }
});
