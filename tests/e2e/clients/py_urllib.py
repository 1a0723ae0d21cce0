#!/usr/bin/env python3
"""urllib client: POST /upload N bytes, then GET /download?size=M (HTTP or HTTPS)."""
import argparse
import json
import ssl
import sys
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
ap.add_argument("--upload", type=int, required=True)
ap.add_argument("--download", type=int, required=True)
ap.add_argument("--cafile")
args = ap.parse_args()

ctx = ssl.create_default_context(cafile=args.cafile) if args.cafile else None

req = urllib.request.Request(
    args.url + "/upload",
    data=b"u" * args.upload,
    method="POST",
    headers={"Content-Type": "application/octet-stream"},
)
with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
    received = json.loads(resp.read())["received"]
if received != args.upload:
    sys.exit(f"server received {received} bytes, sent {args.upload}")

with urllib.request.urlopen(f"{args.url}/download?size={args.download}", timeout=30, context=ctx) as resp:
    got = 0
    while chunk := resp.read(65536):
        got += len(chunk)
if got != args.download:
    sys.exit(f"downloaded {got} bytes, expected {args.download}")
print(json.dumps({"uploaded": args.upload, "downloaded": got}))
