#!/usr/bin/python3
"""Small HTTPS server for the ff_http_client unit tests.

Usage: https_fixture.py CERT KEY PORT_FILE

Listens on 127.0.0.1 on a free port, writes the port number to PORT_FILE
(atomically, via a rename) and serves until killed. What it does depends on
the path; KEY is any name a test picks so that tests do not share counters:

  /echo                    the method, request headers and body, as text
  /upload                  sha256 hex and length of the request body
  /flaky/KEY               503 for the first two hits of KEY, then 200
  /ratelimit/KEY           429 with Retry-After: 1 on the first hit, then 200
  /status/CODE/KEY         always CODE, with a short JSON body
  /hits/KEY                how many requests KEY has seen
  /slow                    waits 5 s before answering
  /big/N                   N bytes with a Content-Length
  /bigchunked/N            N bytes, chunked (no length announced up front)
  /stream/N                N bytes of the generated pattern (see gen_block)
  /headers                 repeated and mixed-case response headers
  /hugeheaders             more than 64 KiB of response headers
  /redirect                302 to /echo
  /redirect-other          302 to /echo on https://localhost (another host)
  /redirect-http           302 to an http:// URL
  /drop/KEY                closes the connection without an answer for the
                           first two hits of KEY, then 200

Request bodies are read whether sent with a Content-Length or chunked.
"""

import hashlib
import http.server
import os
import socketserver
import ssl
import sys
import threading
import time

BLOCK = 65536

hits = {}
hits_lock = threading.Lock()


def count(key):
    with hits_lock:
        hits[key] = hits.get(key, 0) + 1
        return hits[key]


def gen_block(i):
    """Block i of the stream pattern: sha256 of the decimal block number,
    repeated to fill 64 KiB. The C test computes the same."""
    return hashlib.sha256(str(i).encode()).digest() * (BLOCK // 32)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left > 0:
                    data = self.rfile.read(min(left, 1 << 20))
                    if not data:
                        raise ConnectionError("short chunk")
                    left -= len(data)
                    yield data
                self.rfile.readline(1024)
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    raise ConnectionError("short body")
                left -= len(data)
                yield data

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        route = parts[0]
        if route == "echo":
            body = b"".join(self.read_body())
            text = "METHOD %s\nPATH %s\n" % (self.command, self.path)
            for name, value in self.headers.items():
                text += "%s: %s\n" % (name, value)
            self.reply(200, text.encode() + b"\n" + body,
                       [("Content-Type", "text/plain")])
            return
        if route == "upload":
            h = hashlib.sha256()
            n = 0
            for data in self.read_body():
                h.update(data)
                n += len(data)
            self.reply(200, ("%s %d" % (h.hexdigest(), n)).encode())
            return
        for _ in self.read_body():
            pass
        if route == "flaky":
            k = count(parts[1])
            if k <= 2:
                self.reply(503, b'{"error":"try later"}')
            else:
                self.reply(200, ("attempt %d" % k).encode())
        elif route == "ratelimit":
            k = count(parts[1])
            if k == 1:
                self.reply(429, b"slow down", [("Retry-After", "1")])
            else:
                self.reply(200, ("attempt %d" % k).encode())
        elif route == "status":
            count(parts[2])
            self.reply(int(parts[1]), b'{"errors":[{"code":"X"}]}')
        elif route == "hits":
            with hits_lock:
                n = hits.get(parts[1], 0)
            self.reply(200, str(n).encode())
        elif route == "slow":
            time.sleep(5)
            self.reply(200, b"finally")
        elif route == "big":
            self.reply(200, b"x" * int(parts[1]))
        elif route == "bigchunked":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while n > 0:
                k = min(n, 4096)
                self.wfile.write(b"%x\r\n" % k + b"y" * k + b"\r\n")
                n -= k
            self.wfile.write(b"0\r\n\r\n")
        elif route == "stream":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            i = 0
            while n > 0:
                block = gen_block(i)[:n]
                self.wfile.write(block)
                n -= len(block)
                i += 1
        elif route == "headers":
            self.reply(200, b"ok", [
                ("Docker-Content-Digest", "sha256:" + "ab" * 32),
                ("link", '</v2/_catalog?n=2&last=b>; rel="next"'),
                ("Link", '</v2/other>; rel="other"'),
                ("WWW-Authenticate", 'Bearer realm="https://auth/token",'
                 'service="ff-registry",scope="repository:a/b:pull"'),
                ("X-Spaces", "   padded value   "),
            ])
        elif route == "hugeheaders":
            hs = [("X-Filler-%d" % i, "f" * 1000) for i in range(80)]
            self.reply(200, b"ok", hs)
        elif route == "redirect":
            self.reply(302, b"", [("Location", "/echo")])
        elif route == "redirect-other":
            # Same server under another host name: credentials must not
            # follow the redirect.
            port = self.server.server_address[1]
            self.reply(302, b"", [("Location",
                                   "https://localhost:%d/echo" % port)])
        elif route == "redirect-http":
            self.reply(302, b"", [("Location", "http://127.0.0.1:1/echo")])
        elif route == "drop":
            if count(parts[1]) <= 2:
                self.close_connection = True
                self.connection.close()
                return
            self.reply(200, b"made it")
        else:
            self.reply(404, b"no such route")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ctx):
        super().__init__(addr, handler)
        self.ctx = ctx

    def handle_error(self, request, client_address):
        # Clients in the tests hang up on purpose (timeouts, caps); their
        # broken pipes are expected, not worth a traceback.
        pass

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake runs in the handler thread (on first read), so a
        # client that connects and stalls cannot block the accept loop.
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr


def main():
    cert, key, port_file = sys.argv[1:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = Server(("127.0.0.1", 0), Handler, ctx)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
