#!/usr/bin/env python3
"""Failing connections on purpose.

    py_errors.py refused --port P [--attempts N]   connect to a closed port: ECONNREFUSED
    py_errors.py timeout --port P [--attempts N]   create_connection(timeout=1) to a listener
                                                   whose accept queue is full: times out
Exits 0 only if every attempt failed the expected way.
"""
import argparse
import socket
import sys

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["refused", "timeout"])
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--attempts", type=int, default=1)
ap.add_argument("--timeout", type=float, default=1.0)
args = ap.parse_args()

for i in range(args.attempts):
    try:
        if args.mode == "refused":
            s = socket.socket()
            s.connect(("127.0.0.1", args.port))
        else:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    except ConnectionRefusedError:
        if args.mode != "refused":
            sys.exit("got ECONNREFUSED, expected a timeout")
        s.close()
    except TimeoutError:
        if args.mode != "timeout":
            sys.exit("got a timeout, expected ECONNREFUSED")
    else:
        s.close()
        sys.exit(f"attempt {i}: connection unexpectedly succeeded")
print("ok")
