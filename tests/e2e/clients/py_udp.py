#!/usr/bin/env python3
"""UDP datagrams to an echo server: unconnected (sendto/recvfrom) and connected (send/recv).

usage: py_udp.py --port P [--host H] [--count N] [--size S]
Each mode sends N datagrams of S bytes and reads each echo; prints totals as JSON.
"""
import argparse
import json
import socket
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--count", type=int, default=10)
ap.add_argument("--size", type=int, default=1000)
args = ap.parse_args()

fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
dest = (args.host, args.port)
sent = received = 0
msg = b"u" * args.size

with socket.socket(fam, socket.SOCK_DGRAM) as s:
    s.settimeout(10)
    for _ in range(args.count):
        sent += s.sendto(msg, dest)
        data, _ = s.recvfrom(65536)
        received += len(data)

with socket.socket(fam, socket.SOCK_DGRAM) as s:
    s.settimeout(10)
    s.connect(dest)
    for _ in range(args.count):
        sent += s.send(msg)
        received += len(s.recv(65536))

expected = 2 * args.count * args.size
if (sent, received) != (expected, expected):
    sys.exit(f"sent {sent}, received {received}, expected {expected} each way")
print(json.dumps({"datagrams": 2 * args.count, "bytes_sent": sent, "bytes_received": received}))
