"""The local Lambda's HTTP endpoint: one HTTP/1.1 keep-alive server on 127.0.0.1 for all APIs.

In Lambda the Runtime API, the Extensions API and the Telemetry API share one endpoint,
`AWS_LAMBDA_RUNTIME_API` (127.0.0.1:9001), told apart by their version prefix
(`/2018-06-01/runtime`, `/2020-01-01/extension`, `/2022-07-01/telemetry`). Clients keep their
connections open (the runtime clients use libcurl with keep-alive) and `next` calls are long
polls, so every connection gets a thread and handlers may block.

Responses are written with a single send and TCP_NODELAY: a header segment followed by a body
segment would otherwise meet the client's delayed ACK and add ~40 ms to every call.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Request:
    method: str
    path: str  # without the optional path prefix and query
    headers: dict[str, str]  # lower-case names
    body: bytes
    arrived_at: float  # monotonic, when the request line was read
    body_read_at: float  # monotonic, when the body was complete
    _handler: _Handler

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body or b"null")

    def client_gone(self) -> bool:
        """True once the client closed its connection (a long poll need not be answered)."""
        return self._handler.client_gone()


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj, headers: dict[str, str] | None = None) -> Response:
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return Response(status, json.dumps(obj).encode(), hdrs)


def error_response(status: int, error_type: str, message: str) -> Response:
    """Lambda's ErrorResponse shape: {"errorMessage": ..., "errorType": ...}."""
    return json_response(status, {"errorMessage": message, "errorType": error_type})


# A handler returns a Response, or None when the client went away and nothing is to be sent.
Router = Callable[[Request], "Response | None"]


class ApiServer:
    """HTTP/1.1 server on 127.0.0.1:<ephemeral>, optionally under a path prefix."""

    def __init__(self, router: Router, path_prefix: str = "") -> None:
        prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
        self.path_prefix = prefix
        self._router = router
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self.port = self._server.server_address[1]
        self.closing = threading.Event()
        self.connections = 0  # accepted so far (clients are expected to keep theirs alive)
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        """The value of AWS_LAMBDA_RUNTIME_API."""
        return f"127.0.0.1:{self.port}{self.path_prefix}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def route(self, request: Request) -> Response | None:
        return self._router(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: ApiServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        api = self.server.api
        with api._count_lock:
            api.connections += 1

    def log_message(self, format, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        arrived = time.monotonic()
        api = self.server.api
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(error_response(400, "InvalidRequestFormat", "unreadable request body"))
            return
        path = urlsplit(self.path).path
        if api.path_prefix:
            if not (path == api.path_prefix or path.startswith(api.path_prefix + "/")):
                self._write(error_response(404, "NotFound", f"no such path {path}"))
                return
            path = path[len(api.path_prefix) :] or "/"
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, path, headers, body, arrived, time.monotonic(), self)
        try:
            response = api.route(request)
        except Exception as e:  # a bug in the emulator: answer like Lambda's container error
            response = error_response(500, "InternalServerError", f"local lambda: {type(e).__name__}: {e}")
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _write(self, response: Response) -> None:
        reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        headers = dict(response.headers)
        headers["Content-Length"] = str(len(response.body))
        headers.setdefault("Date", self.date_time_string())
        if self.close_connection:
            headers["Connection"] = "close"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
