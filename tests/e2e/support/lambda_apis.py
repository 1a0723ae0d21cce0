"""The three Lambda APIs of the local Lambda: Runtime API, Extensions API, Telemetry API.

Each class implements one API as AWS documents it (paths, headers, status codes, JSON shapes),
checked against the AWS Lambda Developer Guide ("Using the Lambda runtime API", "Lambda
Extensions API", "Lambda Telemetry API" and its Event schema reference), the runtime API's
OpenAPI file (runtime-api.zip), and where the guide is silent, AWS's own Runtime Interface
Emulator (the RAPID code: error types, header names, the Telemetry stub's answer).

They hold state only; the lifecycle in `lambda_local.py` decides what happens when. All state is
guarded by one `threading.Condition` shared with the lifecycle: handlers notify it on every
change and long polls (`next`) wait on it. Every reset of the environment bumps `generation`, so a
long poll left over from a killed process never consumes an event meant for its successor.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from support.lambda_http import Request, Response, error_response, json_response

# Poll interval of long polls while they check for a vanished client or a reset.
_WAIT_SLICE = 0.1


def iso_time(epoch: float | None = None) -> str:
    """Telemetry API timestamps: ISO 8601, milliseconds, UTC (`2022-10-12T00:00:15.064Z`)."""
    dt = datetime.fromtimestamp(time.time() if epoch is None else epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def accepted() -> Response:
    """202 with the runtime API's StatusResponse body."""
    return json_response(202, {"status": "OK"})


# --------------------------------------------------------------------------- invocations


@dataclass
class Invocation:
    """One invoke as the platform sees it, with the timestamps the measurements come from."""

    request_id: str
    payload: bytes
    trace: str  # X-Amzn-Trace-Id value: Root=1-…;Parent=…;Sampled=…
    invoked_function_arn: str
    deadline_ms: int  # epoch ms, Lambda-Runtime-Deadline-Ms / INVOKE deadlineMs
    deadline_mono: float
    started_mono: float
    started_epoch: float
    client_context: str | None = None
    cognito_identity: str | None = None
    delivered_mono: float | None = None  # the runtime's next was answered with it
    response_arrived_mono: float | None = None  # the runtime's /response or /error arrived
    response_done_mono: float | None = None  # ... and its body was read
    response_body: bytes | None = None
    response_content_type: str | None = None
    error_body: bytes | None = None
    error_type: str | None = None  # Lambda-Runtime-Function-Error-Type
    runtime_next_mono: float | None = None  # the runtime's next after responding
    runtime_next_calls_at_start: int = 0

    @property
    def responded(self) -> bool:
        return self.response_done_mono is not None


# --------------------------------------------------------------------------- Runtime API


class RuntimeAPI:
    """Runtime API, version 2018-06-01.

    - `GET /runtime/invocation/next` blocks until an invocation is due, then answers 200 with the
      event as body, `Content-Type` (application/json unless the invoke said otherwise; awslambdaric
      fails without it) and `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`, `-Invoked-Function-Arn`,
      `-Trace-Id`, and `-Client-Context` / `-Cognito-Identity` only when set (RAPID omits empty ones).
      Calling it again before answering the current invocation is 403 InvalidStateTransition.
    - `POST /runtime/invocation/{id}/response` → 202 {"status":"OK"}; an unknown or already answered
      id → 400 InvalidRequestID; a body over 6 MiB → 413 RequestEntityTooLarge.
    - `POST /runtime/invocation/{id}/error` (`Lambda-Runtime-Function-Error-Type` header, ErrorRequest
      body) → 202, same 400 rule.
    - `POST /runtime/init/error` → 202 during init ("Error will be served in response to the first
      invoke"), 403 afterwards.
    """

    MAX_PAYLOAD = 6 * 1024 * 1024

    def __init__(
        self,
        cond: threading.Condition,
        *,
        closing: Callable[[], bool],
        on_first_next: Callable[[], None],
        on_response: Callable[[Invocation], None],
    ) -> None:
        self.cond = cond
        self._closing = closing
        self._on_first_next = on_first_next
        self._on_response = on_response
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything of the previous runtime process (caller holds cond)."""
        self.generation += 1
        self.pending: Invocation | None = None  # due, not yet handed to a next
        self.current: Invocation | None = None  # handed out, not yet answered
        self.last_answered: Invocation | None = None
        self.next_calls = 0
        self.next_mono: float | None = None
        self.init_error: tuple[str, bytes] | None = None
        self.initialized = False  # the runtime finished init by calling next once

    # ----------------------------------------------------------------- lifecycle side

    def deliver(self, inv: Invocation) -> None:
        with self.cond:
            inv.runtime_next_calls_at_start = self.next_calls
            self.pending = inv
            self.cond.notify_all()

    # ----------------------------------------------------------------- HTTP side

    def handle(self, req: Request, path: str) -> Response | None:
        if path == "/runtime/invocation/next":
            return self._next(req) if req.method == "GET" else _method_not_allowed()
        if path == "/runtime/init/error":
            return self._init_error(req) if req.method == "POST" else _method_not_allowed()
        parts = path.split("/")  # ['', 'runtime', 'invocation', ID, 'response'|'error']
        if len(parts) == 5 and parts[1:3] == ["runtime", "invocation"] and parts[4] in ("response", "error"):
            if req.method != "POST":
                return _method_not_allowed()
            return self._answer(req, parts[3], parts[4])
        return error_response(404, "NotFound", f"no such runtime API path {path}")

    def _next(self, req: Request) -> Response | None:
        with self.cond:
            generation = self.generation
            if self.current is not None:
                return error_response(
                    403,
                    "InvalidStateTransition",
                    f"State transition from RuntimeInvoke to RuntimeReady failed for runtime. "
                    f"Error: invocation {self.current.request_id} has not been answered",
                )
            self.next_calls += 1
            self.next_mono = time.monotonic()
            if self.last_answered is not None and self.last_answered.runtime_next_mono is None:
                self.last_answered.runtime_next_mono = self.next_mono
            first = not self.initialized
            self.initialized = True
            self.cond.notify_all()
        if first:
            self._on_first_next()
        with self.cond:
            while self.pending is None:
                if self.generation != generation or self._closing() or req.client_gone():
                    return None
                self.cond.wait(_WAIT_SLICE)
            inv, self.pending = self.pending, None
            self.current = inv
            inv.delivered_mono = time.monotonic()
            self.cond.notify_all()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": inv.invoked_function_arn,
            "Lambda-Runtime-Trace-Id": inv.trace,
            "Content-Type": "application/json",
        }
        if inv.client_context:
            headers["Lambda-Runtime-Client-Context"] = inv.client_context
        if inv.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = inv.cognito_identity
        return Response(200, inv.payload, headers)

    def _answer(self, req: Request, request_id: str, kind: str) -> Response:
        with self.cond:
            inv = self.current
            if inv is None or inv.request_id != request_id:
                return error_response(400, "InvalidRequestID", "Invalid request ID")
            if kind == "response" and len(req.body) > self.MAX_PAYLOAD:
                return error_response(
                    413,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({self.MAX_PAYLOAD} bytes).",
                )
            inv.response_arrived_mono = req.arrived_at
            inv.response_done_mono = req.body_read_at
            if kind == "response":
                inv.response_body = req.body
                inv.response_content_type = req.header("Content-Type")
            else:
                inv.error_body = req.body
                inv.error_type = req.header("Lambda-Runtime-Function-Error-Type") or "Unhandled"
            self.current = None
            self.last_answered = inv
            self.cond.notify_all()
        self._on_response(inv)
        return accepted()

    def _init_error(self, req: Request) -> Response:
        with self.cond:
            if self.initialized:
                return error_response(
                    403,
                    "InvalidStateTransition",
                    "State transition from Ready to InitError failed for runtime. Error: init is over",
                )
            self.init_error = (req.header("Lambda-Runtime-Function-Error-Type") or "Runtime.Unknown", req.body)
            self.cond.notify_all()
        return accepted()


# --------------------------------------------------------------------------- Extensions API


@dataclass
class Extension:
    name: str
    id: str
    external: bool
    events: list[str]
    registered_mono: float
    queue: deque = field(default_factory=deque)
    next_calls: int = 0
    next_mono: float | None = None
    init_error: tuple[str, bytes] | None = None
    exit_error: tuple[str, bytes] | None = None

    @property
    def failed(self) -> bool:
        return self.init_error is not None or self.exit_error is not None


class ExtensionsAPI:
    """Extensions API, version 2020-01-01.

    - `POST /extension/register`, header `Lambda-Extension-Name` (the extension's file name for an
      external extension; any other name registers an internal one, allowed only until the runtime
      calls next, and never for SHUTDOWN), body {"events": ["INVOKE", "SHUTDOWN"]} → 200 with header
      `Lambda-Extension-Identifier` and body {functionName, functionVersion, handler} (+ accountId
      when `Lambda-Extension-Accept-Feature: accountId`). Errors are 403 with RAPID's error types
      (Extension.InvalidExtensionName, .InvalidEventType, .InvalidExtensionState,
      .RegistrationClosed, .TooManyExtensions; InvalidRequestFormat). At most 10 extensions.
    - `GET /extension/event/next` (header `Lambda-Extension-Identifier`) blocks until an event:
      INVOKE {eventType, deadlineMs, requestId, invokedFunctionArn, tracing: {type:
      "X-Amzn-Trace-Id", value}} — only to extensions registered for INVOKE — or SHUTDOWN
      {eventType, shutdownReason, deadlineMs}; headers `Lambda-Extension-Event-Identifier`,
      `Lambda-Extension-Identifier`, Content-Type application/json.
    - `POST /extension/init/error`, `/extension/exit/error` (header
      `Lambda-Extension-Function-Error-Type`, required: 403 Extension.MissingHeader) → 202; after
      it no further call of that extension succeeds.
    - Missing / malformed / unknown identifier → 403 Extension.MissingExtensionIdentifier /
      .InvalidExtensionIdentifier / .UnknownExtensionIdentifier.
    """

    MAX_EXTENSIONS = 10
    EVENTS = ("INVOKE", "SHUTDOWN")

    def __init__(
        self,
        cond: threading.Condition,
        *,
        metadata: dict[str, str],
        account_id: str,
        closing: Callable[[], bool],
        on_register: Callable[[Extension], None],
    ) -> None:
        self.cond = cond
        self.metadata = metadata
        self.account_id = account_id
        self._closing = closing
        self._on_register = on_register
        self.generation = 0
        self.reset(set())

    def reset(self, external_names: set[str]) -> None:
        """A new environment with these extension files (caller holds cond)."""
        self.generation += 1
        self.external_names = set(external_names)
        self.by_id: dict[str, Extension] = {}
        self.by_name: dict[str, Extension] = {}
        self.registration_open = True

    # ----------------------------------------------------------------- lifecycle side

    def registered(self) -> list[Extension]:
        return list(self.by_name.values())

    def subscribed(self, event: str) -> list[Extension]:
        return [e for e in self.by_name.values() if event in e.events and not e.failed]

    def queue_event(self, ext: Extension, event: dict) -> None:
        with self.cond:
            ext.queue.append(event)
            self.cond.notify_all()

    def lookup(self, req: Request) -> tuple[Extension | None, Response | None]:
        """The extension named by `Lambda-Extension-Identifier`, or the 403 to answer."""
        ext_id = req.header("Lambda-Extension-Identifier")
        if not ext_id:
            return None, error_response(
                403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header"
            )
        try:
            uuid.UUID(ext_id)
        except ValueError:
            return None, error_response(
                403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier"
            )
        ext = self.by_id.get(ext_id)
        if ext is None:
            return None, error_response(403, "Extension.UnknownExtensionIdentifier", f"Unknown extension {ext_id}")
        return ext, None

    # ----------------------------------------------------------------- HTTP side

    def handle(self, req: Request, path: str) -> Response | None:
        routes = {
            "/extension/register": ("POST", self._register),
            "/extension/event/next": ("GET", self._next),
            "/extension/init/error": ("POST", self._init_error),
            "/extension/exit/error": ("POST", self._exit_error),
        }
        if path not in routes:
            return error_response(404, "NotFound", f"no such extensions API path {path}")
        method, handler = routes[path]
        if req.method != method:
            return _method_not_allowed()
        return handler(req)

    def _register(self, req: Request) -> Response:
        name = req.header("Lambda-Extension-Name") or ""
        if not name:
            return error_response(403, "Extension.InvalidExtensionName", "Empty extension name")
        try:
            body = json.loads(req.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
            if body.get("configurationKeys"):
                raise ValueError("configurationKeys are deprecated; use environment variables instead")
            events = body.get("events") or []
            if not isinstance(events, list):
                raise ValueError("events must be an array")
        except ValueError as e:
            return error_response(403, "InvalidRequestFormat", str(e))
        with self.cond:
            external = name in self.external_names
            for event in events:
                if event not in self.EVENTS:
                    return error_response(403, "Extension.InvalidEventType", f"{event}: invalid event type")
                if event == "SHUTDOWN" and not external:
                    return error_response(
                        403,
                        "Extension.InvalidEventType",
                        "SHUTDOWN: internal extensions cannot register for the SHUTDOWN event",
                    )
            if name in self.by_name:
                return error_response(
                    403,
                    "Extension.InvalidExtensionState",
                    f"State transition from Registered to Registered failed for extension {name}",
                )
            if not external and not self.registration_open:
                return error_response(403, "Extension.RegistrationClosed", "Extension registration closed already")
            if len(self.by_name) >= self.MAX_EXTENSIONS:
                return error_response(
                    403, "Extension.TooManyExtensions", f"Extension limit ({self.MAX_EXTENSIONS}) reached"
                )
            ext = Extension(name, str(uuid.uuid4()), external, list(events), time.monotonic())
            self.by_id[ext.id] = ext
            self.by_name[name] = ext
            self.cond.notify_all()
        self._on_register(ext)
        body = dict(self.metadata)
        if "accountid" in (req.header("Lambda-Extension-Accept-Feature") or "").lower():
            body["accountId"] = self.account_id
        return json_response(200, body, {"Lambda-Extension-Identifier": ext.id})

    def _next(self, req: Request) -> Response | None:
        with self.cond:
            ext, denied = self.lookup(req)
            if denied is not None:
                return denied
            if ext.failed:
                return error_response(
                    403, "Extension.InvalidExtensionState", f"extension {ext.name} reported an error and must exit"
                )
            generation = self.generation
            ext.next_calls += 1
            ext.next_mono = time.monotonic()
            self.cond.notify_all()
            while not ext.queue:
                if self.generation != generation or self._closing() or req.client_gone():
                    return None
                self.cond.wait(_WAIT_SLICE)
            event = ext.queue.popleft()
            self.cond.notify_all()
        headers = {"Lambda-Extension-Event-Identifier": str(uuid.uuid4()), "Lambda-Extension-Identifier": ext.id}
        return json_response(200, event, headers)

    def _report_error(self, req: Request, attr: str) -> Response:
        error_type = req.header("Lambda-Extension-Function-Error-Type")
        with self.cond:
            ext, denied = self.lookup(req)
            if denied is not None:
                return denied
            if not error_type:
                return error_response(403, "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found")
            if ext.failed:
                return error_response(403, "Extension.InvalidExtensionState", f"extension {ext.name} already failed")
            setattr(ext, attr, (error_type, req.body))
            self.cond.notify_all()
        return accepted()

    def _init_error(self, req: Request) -> Response:
        return self._report_error(req, "init_error")

    def _exit_error(self, req: Request) -> Response:
        return self._report_error(req, "exit_error")


# --------------------------------------------------------------------------- Telemetry API


TELEMETRY_MODES = ("normal", "silent", "refuse", "absent")


@dataclass(frozen=True)
class Buffering:
    """Telemetry buffering: defaults and limits from the Lambda Telemetry API guide."""

    max_items: int = 10_000  # 1,000 .. 10,000
    max_bytes: int = 262_144  # 262,144 .. 1,048,576
    timeout_ms: int = 1_000  # 25 .. 30,000

    LIMITS = {"maxItems": (1_000, 10_000), "maxBytes": (262_144, 1_048_576), "timeoutMs": (25, 30_000)}


class TelemetryAPI:
    """Telemetry API, version 2022-07-01: `PUT /2022-07-01/telemetry`.

    Body {schemaVersion ("2022-07-01" | "2022-12-13" | "2025-01-29"), destination {protocol "HTTP",
    URI}, types ⊆ {platform, function, extension}, buffering {maxItems, maxBytes, timeoutMs}} →
    200 `"OK"`; a bad request → 400 {"errorType": "ValidationError", "errorMessage": …}; missing or
    unknown extension identifier → 403 as in the Extensions API. Records are POSTed to the URI as a
    JSON array of {time, type, record}, batched until maxItems / maxBytes / timeoutMs. Lambda only
    delivers inside the sandbox: `sandbox.localdomain` / `sandbox` are mapped to 127.0.0.1, other
    hosts than loopback are refused. A subscriber gets the platform records of the current init
    phase even if it subscribed after they were emitted (it cannot subscribe earlier).

    Modes, for testing an extension against less capable environments:
    - "normal": as above.
    - "silent": the subscription succeeds (200 "OK") but nothing is ever delivered.
    - "refuse": the answer of AWS's Runtime Interface Emulator (SAM local & co.): 202 with
      {"errorType": "Telemetry.NotSupported", "errorMessage": "Telemetry API is not supported"}.
    - "absent": no such API: 404.
    """

    SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
    TYPES = ("platform", "function", "extension")

    def __init__(
        self, mode: str, *, extensions: ExtensionsAPI, on_subscribe: Callable[[Extension, list[str]], None]
    ) -> None:
        if mode not in TELEMETRY_MODES:
            raise ValueError(f"telemetry mode must be one of {TELEMETRY_MODES}, not {mode!r}")
        self.mode = mode
        self._extensions = extensions
        self._on_subscribe = on_subscribe
        self._lock = threading.Lock()
        self._subscriptions: dict[str, Subscription] = {}  # by extension name
        self._init_backlog: list[dict] = []
        self._in_init = True
        self._paused = threading.Event()
        self.delivered_batches = 0

    # ----------------------------------------------------------------- lifecycle side

    def emit(self, type_: str, record, epoch: float | None = None) -> None:
        event = {"time": iso_time(epoch), "type": type_, "record": record}
        category = "platform" if type_.startswith("platform.") else type_
        with self._lock:
            if self._in_init and category == "platform":
                self._init_backlog.append(event)
            subs = list(self._subscriptions.values())
        if self.mode != "normal":
            return
        for sub in subs:
            if category in sub.types:
                sub.enqueue(event)

    def init_started(self) -> None:
        with self._lock:
            self._in_init = True
            self._init_backlog = []

    def init_finished(self) -> None:
        with self._lock:
            self._in_init = False
            self._init_backlog = []

    def pause(self, timeout: float = 1.0) -> None:
        """The environment freezes: finish deliveries in flight, start no new ones."""
        self._paused.set()
        for sub in self._subs():
            sub.wait_idle(timeout)

    def resume(self) -> None:
        self._paused.clear()
        for sub in self._subs():
            sub.wake()

    def flush(self) -> None:
        """Deliver what is buffered now, without waiting for the buffering timeout."""
        for sub in self._subs():
            sub.flush()

    def reset(self) -> None:
        """The environment was torn down: its subscribers are gone."""
        with self._lock:
            subs, self._subscriptions = list(self._subscriptions.values()), {}
        for sub in subs:
            sub.close()

    def close(self) -> None:
        self.reset()

    def _subs(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.values())

    # ----------------------------------------------------------------- HTTP side

    def handle(self, req: Request) -> Response:
        if self.mode == "absent":
            return error_response(404, "NotFound", "no such API: /2022-07-01/telemetry")
        if req.method != "PUT":
            return _method_not_allowed()
        with self._extensions.cond:
            ext, denied = self._extensions.lookup(req)
        if denied is not None:
            return denied
        if self.mode == "refuse":
            return json_response(
                202, {"errorMessage": "Telemetry API is not supported", "errorType": "Telemetry.NotSupported"}
            )
        try:
            types, uri, buffering = self._validate(req.json())
        except (ValueError, TypeError) as e:
            return error_response(400, "ValidationError", str(e))
        sub = Subscription(ext.name, uri, types, buffering, self._paused)
        with self._lock:
            old = self._subscriptions.pop(ext.name, None)
            self._subscriptions[ext.name] = sub
            backlog = [ev for ev in self._init_backlog]
        if old is not None:
            old.close()
        if self.mode == "normal":
            for event in backlog:
                sub.enqueue(event)
            sub.start()
        self._on_subscribe(ext, types)
        return json_response(200, "OK")

    def _validate(self, body) -> tuple[list[str], str, Buffering]:
        if not isinstance(body, dict):
            raise ValueError("request body must be a JSON object")
        problems = []
        if body.get("schemaVersion") not in self.SCHEMA_VERSIONS:
            problems.append(f"schemaVersion must be one of {', '.join(self.SCHEMA_VERSIONS)}")
        dest = body.get("destination") or {}
        protocol, uri = dest.get("protocol"), dest.get("URI") or ""
        if protocol == "TCP":
            problems.append("TCP destinations are not implemented by the local Lambda; use HTTP")
        elif protocol != "HTTP":
            problems.append("destination.protocol must be HTTP or TCP")
        parts = urlsplit(uri)
        if parts.scheme != "http" or not parts.hostname:
            problems.append("destination.URI must be an http:// URI")
        elif parts.port is None:
            problems.append("URI port is not provided")
        elif parts.hostname not in ("sandbox.localdomain", "sandbox", "127.0.0.1", "localhost"):
            problems.append("destination must be inside the execution environment (sandbox.localdomain)")
        types = body.get("types")
        if not isinstance(types, list) or not types:
            problems.append("types should not be empty")
        elif any(t not in self.TYPES for t in types):
            problems.append(f"types must be among {', '.join(self.TYPES)}")
        buffering = body.get("buffering") or {}
        values = {}
        for key, (low, high) in Buffering.LIMITS.items():
            if key in buffering:
                v = buffering[key]
                if not isinstance(v, int) or not low <= v <= high:
                    problems.append(f"buffering.{key} must be an integer in [{low}, {high}]")
                values[key] = v
        if problems:
            raise ValueError("; ".join(problems))
        target = f"http://127.0.0.1:{parts.port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        return (
            list(types),
            target,
            Buffering(
                values.get("maxItems", Buffering.max_items),
                values.get("maxBytes", Buffering.max_bytes),
                values.get("timeoutMs", Buffering.timeout_ms),
            ),
        )


class Subscription(threading.Thread):
    """One subscriber's buffer and its delivery thread (HTTP POST of JSON arrays)."""

    RETRIES = 5

    def __init__(self, name: str, uri: str, types: list[str], buffering: Buffering, paused: threading.Event) -> None:
        super().__init__(name=f"telemetry-{name}", daemon=True)
        self.extension = name
        self.uri = uri
        self.types = set(types)
        self.buffering = buffering
        self._paused = paused
        self._cond = threading.Condition()
        self._items: deque[tuple[dict, int]] = deque()
        self._bytes = 0
        self._first_at: float | None = None
        self._flush = False
        self._closed = False
        self._in_flight = False
        self.delivered: list[dict] = []
        self.failures: list[str] = []

    def enqueue(self, event: dict) -> None:
        size = len(json.dumps(event))
        with self._cond:
            if self._closed:
                return
            if not self._items:
                self._first_at = time.monotonic()
            self._items.append((event, size))
            self._bytes += size
            self._cond.notify_all()

    def flush(self) -> None:
        with self._cond:
            self._flush = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight and time.monotonic() < deadline:
                self._cond.wait(0.01)

    def _due(self) -> bool:
        if not self._items or self._paused.is_set():
            return False
        b = self.buffering
        return (
            self._flush
            or len(self._items) >= b.max_items
            or self._bytes >= b.max_bytes
            or time.monotonic() - (self._first_at or 0) >= b.timeout_ms / 1000
        )

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    wait = None
                    if self._items and not self._paused.is_set():
                        wait = max(0.001, self.buffering.timeout_ms / 1000 - (time.monotonic() - self._first_at))
                    self._cond.wait(wait if wait is not None else 0.2)
                if self._closed:
                    break
                batch, size = [], 0
                while self._items and len(batch) < self.buffering.max_items:
                    event, n = self._items[0]
                    if batch and size + n > self.buffering.max_bytes:
                        break
                    self._items.popleft()
                    batch.append(event)
                    size += n
                self._bytes -= size
                self._first_at = time.monotonic() if self._items else None
                if not self._items:
                    self._flush = False
                self._in_flight = True
            try:
                conn = self._post(conn, batch)
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()
        if conn is not None:
            conn.close()

    def _post(self, conn: http.client.HTTPConnection | None, batch: list[dict]) -> http.client.HTTPConnection | None:
        parts = urlsplit(self.uri)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        body = json.dumps(batch).encode()
        delay = 0.05
        for _ in range(self.RETRIES):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    self.delivered.extend(batch)
                    return conn
                self.failures.append(f"HTTP {resp.status}")
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
            if self._closed:
                break
            time.sleep(delay)  # Lambda retries with backoff
            delay *= 2
        return conn


def _method_not_allowed() -> Response:
    return error_response(405, "MethodNotAllowed", "method not allowed")
