"""A small program that does a little of everything on the network, for `netmon run`.

It serves HTTP on 127.0.0.1 from a thread, resolves `localhost`, downloads 1 MiB and uploads
256 KiB over one keep-alive connection to that server, and tries a port where nothing listens.
Both ends of the connection are in this process, so netmon shows the outgoing flow and the
incoming one. Everything stays on 127.0.0.1; no network access is needed.
"""

import http.client
import http.server
import socket
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"x" * int(self.path.rsplit("=", 1)[-1])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = len(self.rfile.read(int(self.headers["Content-Length"])))
        body = str(n).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    host = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    conn = http.client.HTTPConnection(host, port)
    conn.request("GET", "/download?size=1048576")
    got = len(conn.getresponse().read())
    conn.request("POST", "/upload", body=b"y" * 262144)
    sent = conn.getresponse().read().decode()
    conn.close()
    print(f"downloaded {got} bytes, uploaded {sent} bytes")
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    except OSError as e:
        print(f"port 9: {e.strerror}")
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
