#!/usr/bin/env python3
"""Name resolution through libc, and optionally a connection to a resolved name.

    py_dns.py [--family 0|4|6] [--gethostbyname] NAME...  resolve each name
    py_dns.py --connect NAME:PORT --send L --recv R        resolve, then talk the raw protocol

Prints one JSON object: {NAME: {"addresses": [...]} | {"error": "EAI_NONAME"}, ...}.
"""
import argparse
import json
import socket
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("names", nargs="*")
ap.add_argument("--family", type=int, default=0, choices=[0, 4, 6])
ap.add_argument("--gethostbyname", action="store_true", help="use gethostbyname_ex (gethostbyname_r)")
ap.add_argument("--connect")
ap.add_argument("--send", type=int, default=100)
ap.add_argument("--recv", type=int, default=100)
args = ap.parse_args()

family = {0: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}[args.family]
EAI = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}


def resolve(name: str) -> dict:
    try:
        if args.gethostbyname:
            return {"addresses": socket.gethostbyname_ex(name)[2]}
        infos = socket.getaddrinfo(name, 80, family)  # no type: libc returns one entry per socket type
        return {"addresses": sorted({i[4][0] for i in infos})}
    except socket.herror as e:
        return {"error": f"h_errno {e.errno}"}
    except socket.gaierror as e:
        return {"error": EAI.get(e.errno, str(e.errno))}


out = {name: resolve(name) for name in args.names}

if args.connect:
    host, _, port = args.connect.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack("!II", args.send, args.recv) + b"d" * args.send)
        got = 0
        while data := s.recv(65536):
            got += len(data)
    if got != args.recv:
        sys.exit(f"received {got}, expected {args.recv}")
    out[args.connect] = {"received": got}

print(json.dumps(out))
