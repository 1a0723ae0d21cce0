#!/usr/bin/env python3
"""One raw-protocol exchange per byte path, so each libc entry point is exercised alone.

usage: py_bytepaths.py --port P --method M [--send L] [--recv R] [--host H]
methods (send side / receive side):
  send-recv        send()            / recv()
  sendall-recvinto sendall()         / recv_into()
  sendmsg-recvmsg  sendmsg(3 bufs)   / recvmsg()
  write-read       os.write()        / os.read()
  writev-readv     os.writev()       / os.readv()
  sendfile         os.sendfile()     / recvmsg_into()
  dup              everything through os.dup() of the socket, original closed first
  dup2             everything through os.dup2() onto a high fd number
  nonblocking      non-blocking connect (EINPROGRESS, SO_ERROR), then send/recv with select
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--method", required=True)
ap.add_argument("--send", type=int, default=300_000)
ap.add_argument("--recv", type=int, default=500_000)
args = ap.parse_args()

header = struct.pack("!II", args.send, args.recv)
payload = b"b" * args.send
request = header + payload
CH = 65536


def connect() -> socket.socket:
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    # Blocking fd (os.read/os.write need it) with kernel-side timeouts instead of settimeout().
    tv = struct.pack("ll", 30, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    s.connect((args.host, args.port))
    return s


def fd_write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:CH]) :]


def fd_read_all(fd: int) -> int:
    got = 0
    while data := os.read(fd, CH):
        got += len(data)
    return got


def run(method: str) -> int:
    if method == "nonblocking":
        fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        assert err in (0, 115), err  # EINPROGRESS
        select.select([], [s], [], 10)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        view = memoryview(request)
        while view:
            select.select([], [s], [], 10)
            try:
                view = view[s.send(view[:CH]) :]
            except BlockingIOError:
                pass
        got = 0
        while True:
            select.select([s], [], [], 10)
            try:
                data = s.recv(CH)
            except BlockingIOError:
                continue
            if not data:
                break
            got += len(data)
        s.close()
        return got

    s = connect()
    if method in ("dup", "dup2"):
        fd = os.dup(s.fileno()) if method == "dup" else os.dup2(s.fileno(), 900)
        s.close()  # the connection lives on through the duplicate
        fd_write_all(fd, request)
        got = fd_read_all(fd)
        os.close(fd)
        return got
    with s:
        if method == "send-recv":
            view = memoryview(request)
            while view:
                view = view[s.send(view[:CH]) :]
            got = 0
            while data := s.recv(CH):
                got += len(data)
        elif method == "sendall-recvinto":
            s.sendall(request)
            buf = bytearray(CH)
            got = 0
            while n := s.recv_into(buf):
                got += n
        elif method == "sendmsg-recvmsg":
            view = memoryview(request)
            while view:  # two buffers per call; a call may take only part of them
                view = view[s.sendmsg([view[:8], view[8:CH]]) :]
            got = 0
            while data := s.recvmsg(CH)[0]:
                got += len(data)
        elif method == "write-read":
            fd_write_all(s.fileno(), request)
            got = fd_read_all(s.fileno())
        elif method == "writev-readv":
            view = memoryview(request)
            while view:
                n = os.writev(s.fileno(), [view[:CH // 2], view[CH // 2 : CH]])
                view = view[n:]
            got = 0
            bufs = [bytearray(CH // 2), bytearray(CH // 2)]
            while n := os.readv(s.fileno(), bufs):
                got += n
        elif method == "sendfile":
            with tempfile.TemporaryFile() as f:
                f.write(payload)
                f.flush()
                s.sendall(header)
                offset = 0
                while offset < len(payload):
                    offset += os.sendfile(s.fileno(), f.fileno(), offset, len(payload) - offset)
            buf = bytearray(CH)
            got = 0
            while n := s.recvmsg_into([buf])[0]:
                got += n
        else:
            sys.exit(f"unknown method {method}")
    return got


got = run(args.method)
if got != args.recv:
    sys.exit(f"{args.method}: received {got}, expected {args.recv}")
print(json.dumps({"method": args.method, "sent": len(request), "received": got}))
