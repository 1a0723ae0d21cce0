"""Misbehaving OTLP receivers for the export fault tests: an OTLP/HTTP one and an OTLP/gRPC one
(grpcio, generic handlers: no generated code) that answer what a test scripts — error statuses,
`Retry-After`, gRPC `RetryInfo`, partial success, late answers or none — and record every
request: when it came, what it carried (spans and metric data points, read with a small
protobuf wire reader) and what it was answered.

Both run on threads of the test process and listen on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import http.server
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

# --------------------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def fields(buf: bytes):
    """(field number, wire type, value) of each field of a message: ints for varints, bytes
    otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _sub(buf: bytes, *path: int):
    """The embedded messages at `path` (field numbers, each repeated or not)."""
    if not path:
        yield buf
        return
    for number, wire, value in fields(buf):
        if number == path[0] and wire == 2:
            yield from _sub(value, *path[1:])


def _key(n: int, wire: int) -> bytes:
    return _enc_varint(n << 3 | wire)


def _enc_varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 values are ten-byte varints
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes_field(n: int, b: bytes) -> bytes:
    return _key(n, 2) + _enc_varint(len(b)) + b


def _int_field(n: int, v: int) -> bytes:
    return _key(n, 0) + _enc_varint(v)


@dataclass
class SpanSeen:
    name: str
    span_id: bytes


def spans_of(body: bytes) -> list[SpanSeen]:
    """ExportTraceServiceRequest: resource_spans(1) / scope_spans(2) / spans(2); Span: span_id(2),
    name(5)."""
    out = []
    for span in _sub(body, 1, 2, 2):
        name, span_id = "", b""
        for number, _, value in fields(span):
            if number == 5:
                name = value.decode()
            elif number == 2:
                span_id = value
        out.append(SpanSeen(name, span_id))
    return out


# Metric: gauge(5), sum(7), histogram(9), exponential_histogram(10), summary(11); each holds
# data_points(1).
_METRIC_DATA = (5, 7, 9, 10, 11)


def points_of(body: bytes) -> dict[str, int]:
    """Data points per metric name of an ExportMetricsServiceRequest: resource_metrics(1) /
    scope_metrics(2) / metrics(2)."""
    out: dict[str, int] = {}
    for metric in _sub(body, 1, 2, 2):
        name, n = "", 0
        for number, wire, value in fields(metric):
            if number == 1:
                name = value.decode()
            elif number in _METRIC_DATA and wire == 2:
                n += sum(1 for number2, _, _ in fields(value) if number2 == 1)
        out[name] = out.get(name, 0) + n
    return out


def rpc_status(code: int, message: str, retry_delay_s: float | None = None) -> bytes:
    """google.rpc.Status{code(1), message(2), details(3): Any}, with a google.rpc.RetryInfo
    {retry_delay(1): Duration{seconds(1), nanos(2)}} when `retry_delay_s` is given."""
    out = _int_field(1, code) + _bytes_field(2, message.encode())
    if retry_delay_s is not None:
        seconds = int(retry_delay_s)
        nanos = int(round((retry_delay_s - seconds) * 1e9))
        duration = _int_field(1, seconds) + (_int_field(2, nanos) if nanos else b"")
        retry_info = _bytes_field(1, duration)
        any_ = _bytes_field(1, b"type.googleapis.com/google.rpc.RetryInfo") + _bytes_field(2, retry_info)
        out += _bytes_field(3, any_)
    return out


def partial_success(signal: str, rejected: int, message: str) -> bytes:
    """Export{Trace,Metrics}ServiceResponse{partial_success(1): {rejected_*(1), error_message(2)}}."""
    del signal  # both signals' messages have the same shape
    return _bytes_field(1, _int_field(1, rejected) + _bytes_field(2, message.encode()))


# --------------------------------------------------------------------------- what happened


@dataclass
class Request:
    """One export request as the receiver saw it."""

    index: int
    signal: str  # "traces" or "metrics"
    received: float  # time.monotonic()
    digest: str  # of the body: a retry carries the same bytes
    spans: list[SpanSeen]
    points: dict[str, int]
    answered: float | None = None
    answer: object = None  # the HTTP status or gRPC code name it got (None: no answer)

    @property
    def point_count(self) -> int:
        return sum(self.points.values())

    @property
    def accepted(self) -> bool:
        return self.answer in (200, "OK")


@dataclass
class Answer:
    """What to answer one request. `status` is an HTTP status, or a gRPC code name ("OK",
    "UNAVAILABLE", ...). `delay` is how long to wait first; `hang` answers nothing until the
    receiver stops."""

    status: object = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    hang: bool = False
    retry_delay: float | None = None  # gRPC: RetryInfo in the status details
    message: str = "scripted failure"


Script = Callable[[Request], Answer]


def always(status, **kw) -> Script:
    return lambda req: Answer(status, **kw)


def first_failing(n: int, status, ok=200, **kw) -> Script:
    """The first `n` requests get `status`, the others `ok`."""
    return lambda req: Answer(status, **kw) if req.index < n else Answer(ok)


class _Recorder:
    def __init__(self, script: Script):
        self.script = script
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.stopping = threading.Event()

    def record(self, signal: str, body: bytes) -> Request:
        with self.lock:
            req = Request(
                index=len(self.requests),
                signal=signal,
                received=time.monotonic(),
                digest=hashlib.sha256(body).hexdigest(),
                spans=spans_of(body) if signal == "traces" else [],
                points=points_of(body) if signal == "metrics" else {},
            )
            self.requests.append(req)
        return req

    def answered(self, req: Request, answer) -> None:
        with self.lock:
            req.answered = time.monotonic()
            req.answer = answer

    def wait(self, answer: Answer) -> bool:
        """Waits as scripted; False if the request is never to be answered."""
        if answer.hang:
            self.stopping.wait()
            return False
        if answer.delay:
            self.stopping.wait(answer.delay)
        return not self.stopping.is_set()

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def describe(self) -> str:
        t0 = self.requests[0].received if self.requests else 0.0
        lines = [
            f"  #{r.index} +{r.received - t0:.3f}s {r.signal} {len(r.spans)} spans {r.point_count} points "
            f"{r.digest[:8]} -> {r.answer}"
            + (f" after {r.answered - r.received:.3f}s" if r.answered is not None else "")
            for r in self.snapshot()
        ]
        return "receiver saw:\n" + "\n".join(lines)


# --------------------------------------------------------------------------- OTLP/HTTP


class _HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class BadOtlpHttp(_Recorder):
    """OTLP/HTTP (protobuf) on /v1/traces and /v1/metrics, answering as `script` says."""

    def __init__(self, script: Script):
        super().__init__(script)
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as OTLP clients expect

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signal = {"/v1/traces": "traces", "/v1/metrics": "metrics"}.get(self.path)
                if signal is None:
                    self.send_error(404)
                    return
                req = recorder.record(signal, body)
                answer = recorder.script(req)
                if not recorder.wait(answer):
                    self.close_connection = True
                    return
                status = int(answer.status)
                payload = answer.body
                if status >= 400 and not payload:
                    payload = rpc_status(0, answer.message)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in answer.headers.items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(payload)
                recorder.answered(req, status)

        self.server = _HttpServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BadOtlpHttp":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- OTLP/gRPC

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


class BadOtlpGrpc(_Recorder):
    """OTLP/gRPC: the two Export methods, with identity (de)serializers, answering as `script`
    says (a gRPC code name in `Answer.status`)."""

    def __init__(self, script: Script):
        super().__init__(script)
        import grpc  # noqa: PLC0415 - only the gRPC tests need it
        from concurrent import futures  # noqa: PLC0415

        self._grpc = grpc

        def handler(signal: str):
            def export(body: bytes, context):
                req = self.record(signal, body)
                answer = self.script(req)
                if not self.wait(answer):
                    context.abort(grpc.StatusCode.CANCELLED, "receiver stopped")
                code = getattr(grpc.StatusCode, str(answer.status))
                if code == grpc.StatusCode.OK:
                    self.answered(req, "OK")
                    return answer.body
                self.answered(req, code.name)
                if answer.retry_delay is not None:
                    details = rpc_status(code.value[0], answer.message, answer.retry_delay)
                    context.set_trailing_metadata((("grpc-status-details-bin", details),))
                context.abort(code, answer.message)

            return grpc.unary_unary_rpc_method_handler(export)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler("traces")}),
                grpc.method_handlers_generic_handler(METRICS_SERVICE, {"Export": handler("metrics")}),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BadOtlpGrpc":
        self.server.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.stop(grace=None)
