#!/usr/bin/env python3
"""A forking server for the raw protocol: one os.fork() child per accepted connection.

The parent closes its copy of each accepted socket right away; the child reads the
8-byte header (L, R) and L bytes, sends R bytes, shuts down, waits for EOF and exits.
It serves --conns connections, reaps its children, and exits 0 if all succeeded.
"""
import argparse
import os
import socket
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--port-file", required=True)
ap.add_argument("--conns", type=int, required=True)
args = ap.parse_args()

lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", 0))
lsock.listen(128)
lsock.settimeout(60)
tmp = args.port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(lsock.getsockname()[1]))
os.replace(tmp, args.port_file)


def recv_exact(s: socket.socket, n: int) -> int:
    got = 0
    while got < n:
        data = s.recv(min(65536, n - got))
        if not data:
            break
        got += len(data)
    return got


def serve(conn: socket.socket) -> int:
    conn.settimeout(30)
    hdr = b""
    while len(hdr) < 8:
        data = conn.recv(8 - len(hdr))
        if not data:
            return 1
        hdr += data
    req, resp = struct.unpack("!II", hdr)
    if recv_exact(conn, req) != req:
        return 1
    conn.sendall(b"s" * resp)
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(65536):
        pass
    conn.close()
    return 0


children = []
for _ in range(args.conns):
    conn, _ = lsock.accept()
    pid = os.fork()
    if pid == 0:
        lsock.close()
        try:
            code = serve(conn)
        except BaseException as e:  # noqa: BLE001
            print(f"child {os.getpid()}: {e!r}", file=sys.stderr)
            code = 1
        os._exit(code)
    conn.close()
    children.append(pid)

failed = 0
for pid in children:
    _, status = os.waitpid(pid, 0)
    failed += os.waitstatus_to_exitcode(status) != 0
print(f'{{"children": {len(children)}, "failed": {failed}}}')
sys.exit(1 if failed else 0)
