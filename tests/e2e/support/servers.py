#!/usr/bin/env python3
"""Test backends, each run as its own process (never under netmon).

    servers.py http  [--cert CERT --key KEY]   HTTP/1.1 (or HTTPS) server
        GET  /download?size=N  -> N bytes (application/octet-stream)
        POST /upload           -> reads the body (Content-Length or chunked),
                                  answers {"received": N}
    servers.py raw                              raw TCP request/response server
        the client sends an 8-byte header: request length L and response length R
        (both unsigned 32-bit big-endian), then L bytes; the server reads them all,
        sends R bytes, then shuts down its write side and waits for the client's EOF.
    servers.py udp-echo                         UDP server sending each datagram back
    servers.py dns-servfail                     UDP DNS server answering SERVFAIL to all

All listen on 127.0.0.1 (or --host, e.g. ::1; port 0 unless --port) and print the port on
stdout (and write it to --port-file).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import urllib.parse

CHUNK = 64 * 1024
PAYLOAD = bytes(range(256)) * (CHUNK // 256)
RAW_HEADER = struct.Struct("!II")
SOCKET_TIMEOUT = 30.0


def announce(port: int, port_file: str | None) -> None:
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, port_file)
    print(port, flush=True)


def send_pattern(write, n: int) -> None:
    while n > 0:
        k = min(n, CHUNK)
        write(PAYLOAD[:k])
        n -= k


# --------------------------------------------------------------------------- HTTP


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "netmon-test"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def _reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/download":
            self._reply(404, b'{"error":"not found"}')
            return
        qs = urllib.parse.parse_qs(url.query)
        try:
            size = int(qs.get("size", ["0"])[0])
        except ValueError:
            self._reply(400, b'{"error":"bad size"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        send_pattern(self.wfile.write, size)
        self.wfile.flush()

    def _read_body(self) -> int:
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, CHUNK))
                    if not data:
                        raise ConnectionError("short chunk")
                    remaining -= len(data)
                    total += len(data)
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length", "0"))
        remaining = length
        while remaining:
            data = self.rfile.read(min(remaining, CHUNK))
            if not data:
                raise ConnectionError("short body")
            remaining -= len(data)
            total += len(data)
        return total

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/upload":
            self._read_body()
            self._reply(404, b'{"error":"not found"}')
            return
        n = self._read_body()
        self._reply(200, json.dumps({"received": n}).encode())

    do_PUT = do_POST


class HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    ssl_context: ssl.SSLContext | None = None

    def server_bind(self):
        # http.server.HTTPServer.server_bind would call getfqdn(): a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def process_request_thread(self, request, client_address):
        # The TLS handshake runs here, in the connection's own thread, so one slow
        # client can't stall the accept loop.
        try:
            request.settimeout(SOCKET_TIMEOUT)
            if self.ssl_context is not None:
                request = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def handle_error(self, request, client_address):  # quiet: clients may vanish
        pass


def serve_http(args) -> None:
    server = HTTPServer(("127.0.0.1", args.port), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        # A client that closes a keep-alive connection without close_notify (most do) is
        # normal. Without this option OpenSSL 3 answers that EOF with a fatal alert record
        # (24 bytes) written after the client closed: bytes on the wire the client never read.
        ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        ctx.set_alpn_protocols(["http/1.1"])
        server.ssl_context = ctx
    announce(server.server_address[1], args.port_file)
    server.serve_forever(poll_interval=0.2)


# --------------------------------------------------------------------------- raw TCP


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(min(n - len(buf), CHUNK))
        if not data:
            raise ConnectionError(f"eof after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def handle_raw(conn: socket.socket) -> None:
    with conn:
        try:
            conn.settimeout(SOCKET_TIMEOUT)
            req_len, resp_len = RAW_HEADER.unpack(recv_exact(conn, RAW_HEADER.size))
            remaining = req_len
            while remaining:
                data = conn.recv(min(remaining, CHUNK))
                if not data:
                    return
                remaining -= len(data)
            send_pattern(conn.sendall, resp_len)
            conn.shutdown(socket.SHUT_WR)
            # Wait for the client to finish so the close is clean (no RST).
            while conn.recv(CHUNK):
                pass
        except OSError:
            pass


def serve_raw(args) -> None:
    lsock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.host, args.port))
    lsock.listen(4096)
    announce(lsock.getsockname()[1], args.port_file)
    while True:
        try:
            conn, _ = lsock.accept()
        except InterruptedError:
            continue
        threading.Thread(target=handle_raw, args=(conn,), daemon=True).start()


# --------------------------------------------------------------------------- UDP echo


def serve_udp_echo(args) -> None:
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    announce(sock.getsockname()[1], args.port_file)
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(data, peer)


# --------------------------------------------------------------------------- DNS


def serve_dns_servfail(args) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    announce(sock.getsockname()[1], args.port_file)
    while True:
        data, peer = sock.recvfrom(4096)
        if len(data) < 12:
            continue
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        # Copy the question section (walk the labels of each question).
        pos = 12
        try:
            for _ in range(qdcount):
                while data[pos] != 0:
                    pos += 1 + data[pos]
                pos += 1 + 4
        except IndexError:
            continue
        rflags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | 2  # QR, opcode, RD, RA, SERVFAIL
        reply = struct.pack("!HHHHHH", qid, rflags, qdcount, 0, 0, 0) + data[12:pos]
        sock.sendto(reply, peer)


def main() -> int:
    ap = argparse.ArgumentParser(description="netmon e2e test servers")
    ap.add_argument("kind", choices=["http", "raw", "udp-echo", "dns-servfail"])
    ap.add_argument("--host", default="127.0.0.1", help="raw and udp-echo only")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    servers = {"http": serve_http, "raw": serve_raw, "udp-echo": serve_udp_echo, "dns-servfail": serve_dns_servfail}
    servers[args.kind](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
