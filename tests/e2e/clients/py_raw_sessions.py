#!/usr/bin/env python3
"""Several raw-protocol exchanges spread over time, then one refused connect.

    py_raw_sessions.py --port P [--host H] [--sessions N] [--pause S] [--send L] [--recv R]
                       [--refused PORT]

Session i sends L*(i+1) bytes and asks for R*(i+1) (support/servers.py raw protocol), then
sleeps S seconds. Prints {"sent": total, "received": total} as JSON.
"""
import argparse
import json
import socket
import struct
import time

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--sessions", type=int, default=3)
ap.add_argument("--pause", type=float, default=1.0)
ap.add_argument("--send", type=int, default=1000)
ap.add_argument("--recv", type=int, default=5000)
ap.add_argument("--refused", type=int)
args = ap.parse_args()

sent = received = 0
for i in range(args.sessions):
    req, resp = args.send * (i + 1), args.recv * (i + 1)
    with socket.create_connection((args.host, args.port)) as s:
        s.sendall(struct.pack("!II", req, resp) + b"q" * req)
        sent += 8 + req
        got = 0
        while got < resp:
            data = s.recv(65536)
            if not data:
                raise SystemExit("short response")
            got += len(data)
        received += got
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    time.sleep(args.pause)

if args.refused:
    try:
        socket.create_connection((args.host, args.refused), timeout=5).close()
        raise SystemExit("connect to the refused port succeeded")
    except ConnectionRefusedError:
        pass

print(json.dumps({"sent": sent, "received": received}))
