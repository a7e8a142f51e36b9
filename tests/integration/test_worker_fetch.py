"""ADD <url> --checksum (workers/fetch.c and copy.c) through the test driver
worker-context, against a small HTTPS server (Python, the farm's test
certificate) that serves files, errors, redirects and oversized bodies.
Also the context digest and its memo across processes, as the engine uses
them between builds."""

import hashlib
import http.server
import os
import ssl
import stat
import threading
from pathlib import Path

import pytest

from conftest import bin_path, run

PAYLOAD = b"#!/bin/sh\necho fetched\n" * 50


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FileServer:
    """HTTPS on 127.0.0.1: routes maps a path to (status, body, headers)."""

    def __init__(self, tls_cert, routes):
        self.routes = routes
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                status, body, headers = outer.routes.get(self.path, (404, b"no\n", {}))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v.replace("PORT", str(outer.port)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls_cert.cert), str(tls_cert.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(tls_cert):
    s = FileServer(tls_cert, {
        "/dl/tool.sh": (200, PAYLOAD, {}),
        "/dl/big.bin": (200, b"x" * 100000, {}),
        "/redir": (302, b"", {"Location": "https://127.0.0.1:PORT/dl/tool.sh"}),
        "/broken": (500, b"oops", {}),
    })
    yield s
    s.stop()


@pytest.fixture
def dirs(tmp_path):
    ctx = tmp_path / "ctx"
    root = tmp_path / "root"
    tmp = tmp_path / "tmp"
    for d in (ctx, root, tmp):
        d.mkdir()
    (ctx / "local.txt").write_text("local\n")
    return ctx, root, tmp


def add(dirs, tls_cert, dest, *srcs, checksum=None, extra=(), check=True):
    ctx, root, tmp = dirs
    argv = [bin_path("worker-context"), "copy", ctx, root, dest, *srcs, "--add",
            "--ca", tls_cert.ca, "--tmp", tmp, *extra]
    if checksum:
        argv += ["--checksum", checksum]
    return run(argv, check=check)


def tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def test_add_url_into_directory(server, dirs, tls_cert):
    r = add(dirs, tls_cert, "/opt/", server.url("/dl/tool.sh"), checksum=sha(PAYLOAD))
    assert r.stdout.strip() == "ok"
    f = dirs[1] / "opt" / "tool.sh"
    assert f.read_bytes() == PAYLOAD
    st = f.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (0, 0)
    # Nothing is left behind in the temporary directory.
    assert list(dirs[2].iterdir()) == []


def test_add_url_to_file_with_chmod_chown(server, dirs, tls_cert):
    add(dirs, tls_cert, "/usr/local/bin/tool", server.url("/dl/tool.sh"),
        checksum=sha(PAYLOAD), extra=("--chmod", "755", "--chown", "10:20"))
    f = dirs[1] / "usr" / "local" / "bin" / "tool"
    st = f.stat()
    assert stat.S_IMODE(st.st_mode) == 0o755
    assert (st.st_uid, st.st_gid) == (10, 20)
    assert f.read_bytes() == PAYLOAD


def test_add_url_not_mixed_with_other_sources(server, dirs, tls_cert):
    """As in BuildKit, --checksum takes exactly one source: a URL is never
    mixed with local files or other URLs."""
    for srcs in (("local.txt", server.url("/dl/tool.sh")),
                 (server.url("/dl/tool.sh"), server.url("/redir"))):
        r = add(dirs, tls_cert, "/both/", *srcs, checksum=sha(PAYLOAD), check=False)
        assert r.returncode == 1
        assert "ADD: --checksum takes a single source, got 2" in r.stderr
    r = add(dirs, tls_cert, "/both/", "local.txt", checksum=sha(PAYLOAD), check=False)
    assert "--checksum is only for a URL source" in r.stderr
    assert tree(dirs[1]) == []
    assert server.requests == []


def test_add_url_follows_redirect(server, dirs, tls_cert):
    add(dirs, tls_cert, "/r/", server.url("/redir"), checksum=sha(PAYLOAD))
    # Named after the URL in the recipe, as Docker names it.
    assert (dirs[1] / "r" / "redir").read_bytes() == PAYLOAD
    assert server.requests == ["/redir", "/dl/tool.sh"]


def test_add_url_checksum_mismatch(server, dirs, tls_cert):
    wrong = sha(b"something else")
    r = add(dirs, tls_cert, "/opt/", server.url("/dl/tool.sh"), checksum=wrong, check=False)
    assert r.returncode == 1
    assert (f'ADD: "{server.url("/dl/tool.sh")}": checksum mismatch '
            f"(expected {wrong}, got {sha(PAYLOAD)})") in r.stderr
    assert tree(dirs[1]) == []
    assert list(dirs[2].iterdir()) == []


def test_add_url_http_errors(server, dirs, tls_cert):
    r = add(dirs, tls_cert, "/opt/", server.url("/missing"), checksum=sha(PAYLOAD),
            check=False)
    assert r.returncode == 1
    assert "the server answered 404" in r.stderr
    r = add(dirs, tls_cert, "/opt/", server.url("/broken"), checksum=sha(b"oops"),
            check=False)
    assert r.returncode == 1
    assert "the server answered 500" in r.stderr
    assert tree(dirs[1]) == []


def test_add_url_size_cap(server, dirs, tls_cert):
    r = add(dirs, tls_cert, "/opt/", server.url("/dl/big.bin"), checksum=sha(b"x" * 100000),
            extra=("--max-bytes", "1000"), check=False)
    assert r.returncode == 1
    assert "larger than 1000 bytes" in r.stderr
    assert tree(dirs[1]) == []


def test_add_url_refused_without_checksum_or_https(server, dirs, tls_cert):
    r = add(dirs, tls_cert, "/opt/", server.url("/dl/tool.sh"), check=False)
    assert r.returncode == 1
    assert "ADD from a URL needs --checksum" in r.stderr
    r = add(dirs, tls_cert, "/opt/", f"http://127.0.0.1:{server.port}/dl/tool.sh",
            checksum=sha(PAYLOAD), check=False)
    assert r.returncode == 1
    assert "only https URLs are fetched" in r.stderr
    assert server.requests == []


def test_add_url_untrusted_server(server, dirs, tmp_path):
    """Without the farm CA the server's certificate is not trusted."""
    ctx, root, tmp = dirs
    r = run([bin_path("worker-context"), "copy", ctx, root, "/opt/",
             server.url("/dl/tool.sh"), "--add", "--tmp", tmp, "--checksum", sha(PAYLOAD)],
            check=False)
    assert r.returncode == 1
    assert server.url("/dl/tool.sh") in r.stderr
    assert tree(root) == []


def test_url_digest_needs_no_network(server, dirs, tls_cert):
    """The input digest of a URL source is its checksum: no fetch."""
    ctx = dirs[0]
    url = server.url("/dl/tool.sh")
    out = [run([bin_path("worker-context"), "digest", ctx, url, "--add", "--checksum", c])
           .stdout.split()[1] for c in (sha(PAYLOAD), sha(b"other"))]
    assert out[0] != out[1]
    assert server.requests == []


def digest(ctx, *args):
    r = run([bin_path("worker-context"), "digest", ctx, *args])
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def test_digest_memo_across_runs(tmp_path):
    """The memo persists between processes (builds), answers for settled
    files, and a changed file is read again."""
    ctx = tmp_path / "ctx"
    for d in range(10):
        (ctx / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (ctx / f"d{d}" / f"f{f}.txt").write_bytes(os.urandom(100 + f))
    memo = tmp_path / "memo"
    first = digest(ctx, ".", "--memo", memo, "--settle-ns", "0")
    assert first["files"] == "200" and first["memo_hits"] == "0"
    # Files written in this test are younger than any settle time but 0:
    # with --settle-ns 0 they were remembered.
    second = digest(ctx, ".", "--memo", memo)
    assert second["digest"] == first["digest"]
    assert second["memo_hits"] == "200" and second["bytes_read"] == "0"
    p = ctx / "d3" / "f7.txt"
    st = p.stat()
    p.write_bytes(b"y" * st.st_size)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = digest(ctx, ".", "--memo", memo)
    assert third["memo_hits"] == "199"
    assert third["digest"] != first["digest"]
    # Without the memo the same answer.
    assert digest(ctx, ".")["digest"] == third["digest"]
