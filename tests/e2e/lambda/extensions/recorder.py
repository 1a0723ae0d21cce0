"""A tiny external Lambda extension for testing the local Lambda: it registers, loops on
`event/next`, and records what it sees (one JSON object per line in $TEST_EXT_OUT, and a log
line on stdout per event).

Installed by `lambda_local.install_python_extension(opt, NAME, env={...})`. Settings:
  TEST_EXT_NAME       the Lambda-Extension-Name (the file name under /opt/extensions)
  TEST_EXT_OUT        where to append the records
  TEST_EXT_EVENTS     events to register for (default "INVOKE,SHUTDOWN")
  TEST_EXT_SLEEP_MS   sleep this long after each INVOKE before calling next again
  TEST_EXT_TELEMETRY  "1": subscribe to the Telemetry API (platform records) and record batches
  TEST_EXT_MODE       "" | "crash_on_invoke" | "init_error" | "ignore_shutdown" | "no_register"
"""

import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, _, PREFIX = API.partition("/")
PREFIX = "/" + PREFIX if PREFIX else ""
NAME = os.environ.get("TEST_EXT_NAME") or os.path.basename(sys.argv[0])
OUT = os.environ.get("TEST_EXT_OUT")
EVENTS = [e for e in os.environ.get("TEST_EXT_EVENTS", "INVOKE,SHUTDOWN").split(",") if e]
SLEEP_MS = int(os.environ.get("TEST_EXT_SLEEP_MS") or 0)
MODE = os.environ.get("TEST_EXT_MODE", "")
_lock = threading.Lock()


def record(kind, **fields):
    if OUT:
        line = json.dumps({"kind": kind, "ext": NAME, "pid": os.getpid(), "at": time.time(), **fields})
        with _lock, open(OUT, "a") as f:
            f.write(line + "\n")


class Api:
    """One keep-alive connection to the Extensions API, like a real extension client."""

    def __init__(self):
        self.conn = http.client.HTTPConnection(HOST)

    def call(self, method, path, body=None, headers=None):
        self.conn.request(method, PREFIX + path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()


def start_telemetry_listener():
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record("telemetry", content_type=self.headers.get("Content-Type"), batch=json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def main():
    if MODE == "no_register":
        time.sleep(3600)
    api = Api()
    status, headers, body = api.call(
        "POST",
        "/2020-01-01/extension/register",
        json.dumps({"events": EVENTS}),
        {"Lambda-Extension-Name": NAME, "Lambda-Extension-Accept-Feature": "accountId"},
    )
    ext_id = headers.get("Lambda-Extension-Identifier")
    record("register", status=status, identifier=ext_id, body=json.loads(body), env=dict(os.environ))
    print(f"[{NAME}] registered: {status}", flush=True)
    if status != 200:
        sys.exit(1)
    if MODE == "init_error":
        status, _, body = api.call(
            "POST",
            "/2020-01-01/extension/init/error",
            json.dumps({"errorMessage": "bad config", "errorType": "Extension.ConfigInvalid"}),
            {"Lambda-Extension-Identifier": ext_id, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"},
        )
        record("init_error", status=status, body=body.decode())
        print(f"[{NAME}] init error reported: {status}", flush=True)
        sys.exit(1)
    if os.environ.get("TEST_EXT_TELEMETRY") == "1":
        port = start_telemetry_listener()
        status, _, body = api.call(
            "PUT",
            "/2022-07-01/telemetry",
            json.dumps(
                {
                    "schemaVersion": "2022-12-13",
                    "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{port}/telemetry"},
                    "types": ["platform"],
                    "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
                }
            ),
            {"Lambda-Extension-Identifier": ext_id, "Content-Type": "application/json"},
        )
        record("subscribe", status=status, body=body.decode())
    while True:
        status, headers, body = api.call(
            "GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id}
        )
        if status != 200:
            record("next_failed", status=status, body=body.decode())
            sys.exit(1)
        event = json.loads(body)
        record("event", event=event, headers=headers)
        print(f"[{NAME}] {event['eventType']} {event.get('requestId', event.get('shutdownReason', ''))}", flush=True)
        if event["eventType"] == "INVOKE":
            if MODE == "crash_on_invoke":
                os._exit(7)
            if SLEEP_MS:
                time.sleep(SLEEP_MS / 1000)
        elif event["eventType"] == "SHUTDOWN":
            if MODE == "ignore_shutdown":
                time.sleep(3600)
            print(f"[{NAME}] shutting down, {event['deadlineMs'] - time.time() * 1000:.0f} ms left", flush=True)
            sys.exit(0)


if __name__ == "__main__":
    main()
