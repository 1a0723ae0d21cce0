//! The `otlp` exporter's client: sends OTLP export requests (`opentelemetry-proto`'s message
//! types) over gRPC (tonic) or HTTP/protobuf (reqwest), one client per signal, and says how a
//! request failed in the OTLP specification's terms ("Failures"): retryable or not, and how
//! long the receiver asked to wait.
//!
//! Hand-written over tonic and reqwest rather than opentelemetry-otlp's exporters: those return
//! an opaque error, so the receiver's `Retry-After` and gRPC `RetryInfo` never reach the retry
//! policy and a refused request cannot be told from a retryable one; and the span path sends
//! `opentelemetry-proto` messages it reuses from batch to batch, which the SDK exporters do not
//! take (BENCHMARKS.md, "OpenTelemetry export").

use super::config::{OtlpSignal, Protocol, Signal};
use super::export::BuildError;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A request that was not delivered.
#[derive(Debug)]
pub struct Failure {
    /// Says what happened, with the HTTP status or gRPC code.
    pub message: String,
    /// How long the receiver asked to wait before the retry (`Retry-After`, gRPC `RetryInfo`).
    pub retry_after: Option<Duration>,
    /// The receiver refused the data for good: the request must not be retried (OTLP
    /// "not-retryable"), its data is dropped.
    pub permanent: bool,
}

impl Failure {
    /// A failure that may pass: the receiver gave no verdict (unreachable, no answer in time,
    /// the connection lost), or gave a retryable one.
    pub fn transient(message: String) -> Failure {
        Failure {
            message,
            retry_after: None,
            permanent: false,
        }
    }

    /// An OTLP/HTTP error status: only 429, 502, 503 and 504 are retried; "all other 4xx or
    /// 5xx response status codes MUST NOT be retried" (OTLP specification, "Failures").
    pub fn http_status(status: u16, retry_after: Option<Duration>) -> Failure {
        Failure {
            message: format!("HTTP export failed with status code: {status}"),
            retry_after,
            permanent: !retryable_http_status(status),
        }
    }

    /// A failed gRPC call. A status the receiver sent is retried as the OTLP specification's
    /// table says (`RESOURCE_EXHAUSTED` only when it carries `RetryInfo`, whose delay is
    /// honoured); a status tonic made from a transport error (the receiver said nothing: it
    /// carries the error as its source) is always retried.
    pub fn grpc(status: &tonic::Status) -> Failure {
        use tonic::Code;
        use tonic_types::StatusExt;
        let retry_info = status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .filter(|d| !d.is_zero());
        let local = std::error::Error::source(status).is_some();
        let retryable = local
            || match status.code() {
                Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::Unavailable
                | Code::DataLoss => true,
                Code::ResourceExhausted => retry_info.is_some(),
                _ => false,
            };
        Failure {
            message: grpc_failure(status),
            retry_after: retry_info,
            permanent: !retryable,
        }
    }
}

/// The OTLP/HTTP statuses a request is retried after.
pub fn retryable_http_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The receiver accepted the request but rejected some of its items, spans or data points
/// (OTLP partial success).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rejected {
    pub items: u64,
    pub message: String,
}

/// Sends one signal's export requests to its receiver.
pub enum OtlpClient {
    Grpc {
        channel: Channel,
        metadata: MetadataMap,
        /// The signal's `Export` method.
        path: &'static str,
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

impl OtlpClient {
    /// A gRPC client; must be called within a tokio runtime (the channel connects lazily, on
    /// that runtime, at the first request).
    pub fn grpc(sig: &OtlpSignal, signal: Signal) -> Result<OtlpClient, BuildError> {
        debug_assert_eq!(sig.protocol, Protocol::Grpc);
        let invalid = |e: tonic::transport::Error| {
            BuildError(format!(
                "otlp {} exporter: invalid endpoint {:?}: {e}",
                signal.as_str(),
                sig.endpoint
            ))
        };
        let mut endpoint = Endpoint::from_shared(sig.endpoint.clone()).map_err(invalid)?;
        if sig.endpoint.starts_with("https://") {
            endpoint = endpoint.tls_config(tls_config(sig)).map_err(invalid)?;
        }
        Ok(OtlpClient::Grpc {
            channel: endpoint.timeout(sig.timeout).connect_lazy(),
            metadata: metadata(sig),
            path: match signal {
                Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                Signal::Metrics => {
                    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
                }
            },
        })
    }

    /// An HTTP/protobuf client posting to the signal's full URL.
    pub fn http(sig: &OtlpSignal, client: reqwest::Client) -> OtlpClient {
        OtlpClient::Http {
            client,
            url: sig.endpoint.clone(),
            headers: header_map(sig),
        }
    }

    /// Sends one trace request; `Ok` carries what the receiver rejected, if anything.
    pub async fn export_spans(
        &self,
        request: &Arc<ExportTraceServiceRequest>,
    ) -> Result<Option<Rejected>, Failure> {
        let response: ExportTraceServiceResponse = self.send(request).await?;
        Ok(response
            .partial_success
            .filter(|p| p.rejected_spans > 0 || !p.error_message.is_empty())
            .map(|p| Rejected {
                items: p.rejected_spans.max(0) as u64,
                message: p.error_message,
            }))
    }

    /// Sends one metrics request; `Ok` carries what the receiver rejected, if anything.
    pub async fn export_metrics(
        &self,
        request: &Arc<ExportMetricsServiceRequest>,
    ) -> Result<Option<Rejected>, Failure> {
        let response: ExportMetricsServiceResponse = self.send(request).await?;
        Ok(response
            .partial_success
            .filter(|p| p.rejected_data_points > 0 || !p.error_message.is_empty())
            .map(|p| Rejected {
                items: p.rejected_data_points.max(0) as u64,
                message: p.error_message,
            }))
    }

    async fn send<Req, Resp>(&self, request: &Arc<Req>) -> Result<Resp, Failure>
    where
        Req: Message + Send + Sync + 'static,
        Resp: Message + Default + Send + Sync + 'static,
    {
        match self {
            OtlpClient::Grpc {
                channel,
                metadata,
                path,
            } => {
                // A clone shares the channel (and its connection).
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.map_err(|e| {
                    Failure::transient(format!("export failed with gRPC code: Unavailable: {e}"))
                })?;
                let mut req = tonic::Request::new(request.clone());
                *req.metadata_mut() = metadata.clone();
                let path = http::uri::PathAndQuery::from_static(path);
                Ok(grpc
                    .unary(req, path, SharedRequestCodec::<Req, Resp>::default())
                    .await
                    .map_err(|status| Failure::grpc(&status))?
                    .into_inner())
            }
            OtlpClient::Http {
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
                    .map_err(|e| {
                        Failure::transient(format!("HTTP export failed: {}", chain(&e)))
                    })?;
                let status = response.status();
                if !status.is_success() {
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    return Err(Failure::http_status(status.as_u16(), retry_after));
                }
                let bytes = response.bytes().await.map_err(|e| {
                    Failure::transient(format!("HTTP export failed reading the response: {e}"))
                })?;
                // An empty or unreadable body is a full success: only `partial_success`
                // says otherwise.
                Ok(Resp::decode(bytes).unwrap_or_default())
            }
        }
    }
}

/// The generated client's codec (prost) for a request the caller keeps: tonic takes
/// ownership of the message it sends, and sending an `Arc` leaves the trace worker the
/// messages, and their allocations, to write the next batch over.
struct SharedRequestCodec<Req, Resp>(PhantomData<fn(Req) -> Resp>);

impl<Req, Resp> Default for SharedRequestCodec<Req, Resp> {
    fn default() -> Self {
        SharedRequestCodec(PhantomData)
    }
}

impl<Req, Resp> Codec for SharedRequestCodec<Req, Resp>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + 'static,
{
    type Encode = Arc<Req>;
    type Decode = Resp;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self::default()
    }

    fn decoder(&mut self) -> Self {
        Self::default()
    }
}

impl<Req: Message, Resp> Encoder for SharedRequestCodec<Req, Resp> {
    type Item = Arc<Req>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Arc<Req>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("cannot encode the request: {e}")))
    }
}

impl<Req, Resp: Message + Default> Decoder for SharedRequestCodec<Req, Resp> {
    type Item = Resp;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Resp>, tonic::Status> {
        Resp::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("invalid export response: {e}")))
    }
}

/// A failed gRPC call in the words of `opentelemetry-otlp`: the code, then what caused it.
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
    use super::super::otlp_traces::Envelope;
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

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
            OtlpClient::grpc(&sig, Signal::Traces).unwrap()
        };
        let request = Arc::new(Envelope::default().request(vec![]));
        let failure = rt.block_on(client.export_spans(&request)).unwrap_err();
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
        assert!(!failure.permanent);
    }

    /// HTTP/protobuf: the body is the encoded request; an error status (with `Retry-After`) is
    /// a retryable failure; a partial success is reported.
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
        let client = OtlpClient::http(&sig, reqwest::Client::builder().build().unwrap());
        let request = Arc::new(Envelope::default().request(vec![Span {
            name: "a".into(),
            ..Span::default()
        }]));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let failure = rt.block_on(client.export_spans(&request)).unwrap_err();
        assert_eq!(failure.message, "HTTP export failed with status code: 503");
        assert!(!failure.permanent);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
        let rejected = rt.block_on(client.export_spans(&request)).unwrap();
        assert_eq!(
            rejected,
            Some(Rejected {
                items: 1,
                message: "too old".into()
            })
        );
        let bodies = receiver.join().unwrap();
        assert_eq!(bodies, vec![(*request).clone(), (*request).clone()]);
    }

    #[test]
    fn http_statuses_are_retried_as_the_otlp_specification_says() {
        for status in 400..600 {
            let f = Failure::http_status(status, None);
            let retried = [429, 502, 503, 504].contains(&status);
            assert_eq!(f.permanent, !retried, "{status}");
            assert!(f.message.ends_with(&format!("status code: {status}")));
        }
    }

    #[test]
    fn grpc_statuses_are_retried_as_the_otlp_specification_says() {
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt};
        let retried = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        let refused = [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
        ];
        for code in retried {
            let f = Failure::grpc(&tonic::Status::new(code, "x"));
            assert!(!f.permanent, "{code:?}");
            assert_eq!(f.retry_after, None);
        }
        for code in refused {
            assert!(
                Failure::grpc(&tonic::Status::new(code, "x")).permanent,
                "{code:?}"
            );
        }
        // RetryInfo: RESOURCE_EXHAUSTED becomes retryable, and its delay is honoured.
        let delay = Duration::from_millis(1500);
        for code in [Code::ResourceExhausted, Code::Unavailable] {
            let status = tonic::Status::with_error_details(
                code,
                "slow down",
                ErrorDetails::with_retry_info(Some(delay)),
            );
            let f = Failure::grpc(&status);
            assert!(!f.permanent, "{code:?}");
            assert_eq!(f.retry_after, Some(delay));
        }
        // A status tonic made from a transport error: the receiver said nothing.
        let lost = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(lost.code(), Code::Unknown);
        let f = Failure::grpc(&lost);
        assert!(!f.permanent, "{}", f.message);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let wait = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
