#!/usr/bin/env python3
"""HTTPS client that counts its own wire bytes: TLS runs on ssl.MemoryBIO, and every byte
it sends or receives goes through one plain socket whose send/recv results are summed.

usage: py_tls_wire.py --port P --cafile CA [--upload N] [--download M]
Over one keep-alive connection: POST /upload N bytes, GET /download?size=M; then the socket
is closed without close_notify, as most clients do. Prints {"bytes_sent", "bytes_received"}.
Used to check that the forwarder's counts equal what the client really read and wrote.
"""
import argparse
import json
import socket
import ssl
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--cafile", required=True)
ap.add_argument("--upload", type=int, default=200_000)
ap.add_argument("--download", type=int, default=300_000)
args = ap.parse_args()

sock = socket.create_connection(("127.0.0.1", args.port), timeout=30)
ctx = ssl.create_default_context(cafile=args.cafile)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
wire = {"bytes_sent": 0, "bytes_received": 0}


def flush() -> None:
    data = outgoing.read()
    if data:
        sock.sendall(data)
        wire["bytes_sent"] += len(data)


def fill() -> None:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("server closed")
    wire["bytes_received"] += len(data)
    incoming.write(data)


def call(fn, *a):
    while True:
        try:
            result = fn(*a)
            flush()
            return result
        except ssl.SSLWantReadError:
            flush()
            fill()


call(tls.do_handshake)


def write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[call(tls.write, view) :]


def read_response() -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += call(tls.read, 65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += call(tls.read, 65536)
    return body


write_all(
    b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
    + f"Content-Length: {args.upload}\r\n\r\n".encode()
    + b"w" * args.upload
)
if json.loads(read_response())["received"] != args.upload:
    sys.exit("upload size mismatch")
write_all(f"GET /download?size={args.download} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
if len(read_response()) != args.download:
    sys.exit("download size mismatch")
sock.close()  # no close_notify
print(json.dumps(wire))
