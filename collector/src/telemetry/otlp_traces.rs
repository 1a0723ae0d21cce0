//! The `otlp` exporter's trace client: sends batches of the spans `spans` built, as OTLP export
//! requests over gRPC (tonic, `opentelemetry-proto`'s message types) or HTTP/protobuf
//! (reqwest). Metrics still go through `opentelemetry-otlp`'s exporter.
//!
//! Why not the SDK's span exporter: it takes SDK `SpanData`, clones the batch for each attempt
//! and converts it to these same proto messages, so each span was built three times. Here the
//! worker writes a batch's messages once, from the queued drafts (`spans::SpanDraft`), over
//! those of its previous request ([`TraceRequest`]); a request that fails is written again
//! from its drafts for the retry.

use super::config::{OtlpSignal, Protocol};
use super::export::BuildError;
use super::spans::SpanDraft;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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

/// A request that was not delivered.
#[derive(Debug)]
pub struct Failure {
    /// Says what happened, with the HTTP status or gRPC code in the form
    /// [`super::export::is_permanent`] reads.
    pub message: String,
    /// The receiver's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(message: String) -> Failure {
        Failure {
            message,
            retry_after: None,
        }
    }
}

/// The receiver accepted the request but rejected some spans (OTLP partial success).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    pub spans: u64,
    pub message: String,
}

/// Sends trace export requests to one receiver.
pub enum TraceClient {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: http::HeaderMap,
    },
}

fn header_map(sig: &OtlpSignal) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in &sig.headers {
        // Validated when the configuration was read.
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::try_from(k.as_str()),
            http::HeaderValue::try_from(v.as_str()),
        ) {
            h.insert(k, v);
        }
    }
    h
}

/// gRPC metadata from the configured headers.
pub fn metadata(sig: &OtlpSignal) -> MetadataMap {
    MetadataMap::from_headers(header_map(sig))
}

/// TLS settings of a gRPC channel: the configured CA (else the system's roots), the client
/// certificate for mutual TLS.
pub fn tls_config(sig: &OtlpSignal) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new();
    tls = match &sig.tls.ca_pem {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = &sig.tls.client_pem {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    tls
}

impl TraceClient {
    /// A gRPC client; must be called within a tokio runtime (the channel connects lazily, on
    /// that runtime, at the first request).
    pub fn grpc(sig: &OtlpSignal) -> Result<TraceClient, BuildError> {
        debug_assert_eq!(sig.protocol, Protocol::Grpc);
        let invalid = |e: tonic::transport::Error| {
            BuildError(format!(
                "otlp traces exporter: invalid endpoint {:?}: {e}",
                sig.endpoint
            ))
        };
        let mut endpoint = Endpoint::from_shared(sig.endpoint.clone()).map_err(invalid)?;
        if sig.endpoint.starts_with("https://") {
            endpoint = endpoint.tls_config(tls_config(sig)).map_err(invalid)?;
        }
        Ok(TraceClient::Grpc {
            channel: endpoint.timeout(sig.timeout).connect_lazy(),
            metadata: metadata(sig),
        })
    }

    /// An HTTP/protobuf client posting to the signal's full URL.
    pub fn http(sig: &OtlpSignal, client: reqwest::Client) -> TraceClient {
        TraceClient::Http {
            client,
            url: sig.endpoint.clone(),
            headers: header_map(sig),
        }
    }

    /// Sends one request; `Ok` carries what the receiver rejected, if anything.
    pub async fn export(
        &self,
        request: &Arc<ExportTraceServiceRequest>,
    ) -> Result<Option<Rejected>, Failure> {
        let response = match self {
            TraceClient::Grpc { channel, metadata } => {
                // A clone shares the channel (and its connection).
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.map_err(|e| {
                    Failure::new(format!("export failed with gRPC code: Unavailable: {e}"))
                })?;
                let mut req = tonic::Request::new(request.clone());
                *req.metadata_mut() = metadata.clone();
                let path = http::uri::PathAndQuery::from_static(GRPC_EXPORT_PATH);
                grpc.unary(req, path, SharedRequestCodec)
                    .await
                    .map_err(|status| Failure::new(grpc_failure(&status)))?
                    .into_inner()
            }
            TraceClient::Http {
                client,
                url,
                headers,
            } => {
                let body = request.encode_to_vec();
                let response = client
                    .post(url)
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| Failure::new(format!("HTTP export failed: {}", chain(&e))))?;
                let status = response.status();
                if !status.is_success() {
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    return Err(Failure {
                        message: format!(
                            "HTTP export failed with status code: {}",
                            status.as_u16()
                        ),
                        retry_after,
                    });
                }
                let bytes = response.bytes().await.map_err(|e| {
                    Failure::new(format!("HTTP export failed reading the response: {e}"))
                })?;
                // An empty or unreadable body is a full success: only `partial_success`
                // says otherwise.
                ExportTraceServiceResponse::decode(bytes).unwrap_or_default()
            }
        };
        Ok(response
            .partial_success
            .filter(|p| p.rejected_spans > 0 || !p.error_message.is_empty())
            .map(|p| Rejected {
                spans: p.rejected_spans.max(0) as u64,
                message: p.error_message,
            }))
    }
}

const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The generated client's codec (prost) for a request the worker keeps: tonic takes
/// ownership of the message it sends, and sending an `Arc` leaves the worker the messages,
/// and their allocations, to write the next batch over.
#[derive(Clone, Copy, Debug, Default)]
struct SharedRequestCodec;

impl Codec for SharedRequestCodec {
    type Encode = Arc<ExportTraceServiceRequest>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = SharedRequestCodec;
    type Decoder = SharedRequestCodec;

    fn encoder(&mut self) -> SharedRequestCodec {
        SharedRequestCodec
    }

    fn decoder(&mut self) -> SharedRequestCodec {
        SharedRequestCodec
    }
}

impl Encoder for SharedRequestCodec {
    type Item = Arc<ExportTraceServiceRequest>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Arc<ExportTraceServiceRequest>,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("cannot encode the request: {e}")))
    }
}

impl Decoder for SharedRequestCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("invalid export response: {e}")))
    }
}

/// A failed gRPC call in the words of `opentelemetry-otlp` (which `is_permanent` reads): the
/// code, then what caused it.
fn grpc_failure(status: &tonic::Status) -> String {
    let cause = match std::error::Error::source(status) {
        Some(source) => chain(source),
        None => status.message().to_string(),
    };
    let code = status.code();
    if cause.is_empty() {
        format!("export failed with gRPC code: {code:?}")
    } else {
        format!("export failed with gRPC code: {code:?}: {cause}")
    }
}

/// An error and its sources on one line (a source that only repeats its error is left out).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut last = s.clone();
    let mut next = e.source();
    while let Some(e) = next {
        let text = e.to_string();
        if text != last {
            s.push_str(": ");
            s.push_str(&text);
        }
        last = text;
        next = e.source();
    }
    s
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

    #[test]
    fn an_unreachable_grpc_receiver_is_a_transient_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sig = OtlpSignal {
            protocol: Protocol::Grpc,
            endpoint: format!("http://127.0.0.1:{port}"),
            headers: vec![],
            timeout: Duration::from_secs(5),
            tls: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = {
            let _guard = rt.enter();
            TraceClient::grpc(&sig).unwrap()
        };
        let request = Arc::new(Envelope::default().request(vec![]));
        let failure = rt.block_on(client.export(&request)).unwrap_err();
        assert!(
            failure
                .message
                .starts_with("export failed with gRPC code: Unavailable: "),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("Connection refused"),
            "{}",
            failure.message
        );
        assert!(!super::super::export::is_permanent(&failure.message));
    }

    /// HTTP/protobuf: the body is the encoded request; an error status (with `Retry-After`) is
    /// a failure `is_permanent` can read; a partial success is reported.
    #[test]
    fn http_failures_and_partial_success() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let receiver = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for answer in 0..2 {
                let mut req = server.recv().unwrap();
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                assert_eq!(
                    header("Content-Type").as_deref(),
                    Some("application/x-protobuf")
                );
                assert_eq!(header("x-tenant").as_deref(), Some("t1"));
                let mut body = Vec::new();
                std::io::Read::read_to_end(req.as_reader(), &mut body).unwrap();
                bodies.push(ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
                let response = if answer == 0 {
                    tiny_http::Response::from_data(Vec::new())
                        .with_status_code(503)
                        .with_header("Retry-After: 2".parse::<tiny_http::Header>().unwrap())
                } else {
                    let partial = ExportTraceServiceResponse {
                        partial_success: Some(ExportTracePartialSuccess {
                            rejected_spans: 1,
                            error_message: "too old".into(),
                        }),
                    };
                    tiny_http::Response::from_data(partial.encode_to_vec())
                };
                req.respond(response).unwrap();
            }
            bodies
        });
        let sig = OtlpSignal {
            protocol: Protocol::HttpProtobuf,
            endpoint: format!("http://127.0.0.1:{port}/v1/traces"),
            headers: vec![("x-tenant".into(), "t1".into())],
            timeout: Duration::from_secs(5),
            tls: Default::default(),
        };
        // reqwest has no crypto provider of its own (see `export::http_client`).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = TraceClient::http(&sig, reqwest::Client::builder().build().unwrap());
        let request = Arc::new(Envelope::default().request(vec![Span {
            name: "a".into(),
            ..Span::default()
        }]));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let failure = rt.block_on(client.export(&request)).unwrap_err();
        assert_eq!(failure.message, "HTTP export failed with status code: 503");
        assert!(!super::super::export::is_permanent(&failure.message));
        assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
        let rejected = rt.block_on(client.export(&request)).unwrap();
        assert_eq!(
            rejected,
            Some(Rejected {
                spans: 1,
                message: "too old".into()
            })
        );
        let bodies = receiver.join().unwrap();
        assert_eq!(bodies, vec![(*request).clone(), (*request).clone()]);
    }
}
