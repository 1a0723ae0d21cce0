"""A Python function (awslambdaric) that talks to a local HTTP server, for netmon's Lambda tests.

One module-level keep-alive connection is reused across invocations (and, if INIT_PORT is set,
opened at init with a first download), the way SDK clients are.
The event: {"port": P, "download": N, "upload": M, "keepalive": bool, "resolve": name,
"sleep_ms": N (after the exchange), "crash": exit code (after the exchange)}.
"""

import http.client
import os
import socket
import time

CONN = None


def _conn(port):
    global CONN
    if CONN is None:
        CONN = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return CONN


def _exchange(port, download, upload):
    c = _conn(port)
    got = 0
    if download:
        c.request("GET", f"/download?size={download}")
        got = len(c.getresponse().read())
    if upload:
        c.request("POST", "/upload", body=b"u" * upload)
        c.getresponse().read()
    return got


if os.environ.get("INIT_PORT"):
    socket.getaddrinfo("localhost", int(os.environ["INIT_PORT"]))
    _exchange(int(os.environ["INIT_PORT"]), int(os.environ.get("INIT_DOWNLOAD", "1000")), 0)


def handler(event, context):
    global CONN
    if event.get("resolve"):
        socket.getaddrinfo(event["resolve"], event["port"])
    if not event.get("keepalive", True) and CONN is not None:
        CONN.close()
        CONN = None
    got = _exchange(event["port"], event.get("download", 0), event.get("upload", 0)) if event.get("port") else 0
    if not event.get("keepalive", True):
        CONN.close()
        CONN = None
    if event.get("sleep_ms"):
        time.sleep(event["sleep_ms"] / 1000)
    if "crash" in event:
        os._exit(event["crash"])
    return {"downloaded": got}
