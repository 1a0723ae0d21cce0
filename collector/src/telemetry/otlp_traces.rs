//! The `otlp` exporter's trace requests: batches of the spans `spans` built, as
//! `opentelemetry-proto` messages that `otlp_client` sends.
//!
//! Why not the SDK's span exporter: it takes SDK `SpanData`, clones the batch for each attempt
//! and converts it to these same proto messages, so each span was built three times. Here the
//! worker writes a batch's messages once, from the queued drafts (`spans::SpanDraft`), over
//! those of its previous request ([`TraceRequest`]); a request that fails is written again
//! from its drafts for the retry.

use super::spans::SpanDraft;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use std::sync::Arc;

/// What every trace export request carries besides its spans: the resource and netmon's
/// instrumentation scope (the spans themselves carry neither).
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    resource: Resource,
    schema_url: String,
    scope: InstrumentationScope,
}

impl Envelope {
    pub fn new(resource: &opentelemetry_sdk::Resource) -> Envelope {
        let r = ResourceAttributesWithSchema::from(resource);
        Envelope {
            resource: Resource {
                attributes: r.attributes.0,
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            },
            schema_url: r.schema_url.unwrap_or_default(),
            scope: (&super::spans::scope(), None).into(),
        }
    }

    /// One request with `spans`.
    pub fn request(&self, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: self.schema_url.clone(),
            }],
        }
    }
}

/// The export request of one worker, written batch after batch over the previous batch's
/// messages (see `spans`). It keeps up to a batch of spans' allocations between requests.
pub struct TraceRequest {
    envelope: Envelope,
    request: Arc<ExportTraceServiceRequest>,
}

impl TraceRequest {
    pub fn new(envelope: Envelope) -> TraceRequest {
        TraceRequest {
            request: Arc::new(envelope.request(Vec::new())),
            envelope,
        }
    }

    /// The request with the spans of `drafts`.
    pub fn fill(&mut self, drafts: &[SpanDraft]) -> &Arc<ExportTraceServiceRequest> {
        if Arc::get_mut(&mut self.request).is_none() {
            // The last request is still held by a send that was abandoned: start afresh.
            self.request = Arc::new(self.envelope.request(Vec::new()));
        }
        // Unique now, so this never clones.
        let request = Arc::make_mut(&mut self.request);
        // `Envelope::request` makes exactly one resource with one scope.
        let spans = &mut request.resource_spans[0].scope_spans[0].spans;
        spans.truncate(drafts.len());
        for (i, draft) in drafts.iter().enumerate() {
            match spans.get_mut(i) {
                Some(span) => draft.write_to(span),
                None => spans.push(draft.build()),
            }
        }
        &self.request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

    #[test]
    fn requests_carry_resource_and_scope() {
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_attribute(opentelemetry::KeyValue::new("service.name", "svc"))
            .build();
        let envelope = Envelope::new(&resource);
        let spans = vec![
            Span {
                name: "a".into(),
                ..Span::default()
            },
            Span {
                name: "b".into(),
                ..Span::default()
            },
        ];
        let request = envelope.request(spans.clone());
        let rs = &request.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "netmon");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(rs.scope_spans[0].spans, spans);
    }

    #[test]
    fn a_filled_request_drops_the_spans_of_a_larger_batch_before_it() {
        let mut request = TraceRequest::new(Envelope::default());
        let trace = super::super::spans::ProcessTrace {
            trace_id: opentelemetry::trace::TraceId::from(1_u128),
            root_span_id: opentelemetry::trace::SpanId::from(2_u64),
            parent: None,
        };
        let process = |pid| super::super::spans::ProcessInfo {
            pid,
            ppid: 1,
            executable: "x".into(),
            start_ns: 1,
            end_ns: 2,
            parent_process: None,
        };
        let drafts: Vec<SpanDraft> = (0..3)
            .map(|pid| SpanDraft::process(process(pid), &trace))
            .collect();
        let spans =
            |r: &ExportTraceServiceRequest| r.resource_spans[0].scope_spans[0].spans.clone();
        assert_eq!(spans(request.fill(&drafts)).len(), 3);
        let last = spans(request.fill(&drafts[2..]));
        assert_eq!(last, vec![drafts[2].build()]);
    }
}
