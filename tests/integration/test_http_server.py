"""lib/ff_http_server end to end: the ff-testd daemon driven by real curl.

ff-testd (tests/integration/bin/ff-testd.c) serves GET /healthz, POST /echo
(buffered), PUT /hash (streamed SHA-256), GET|HEAD /file, GET /slow and GET
/stream over TLS with the fixtures' CA-signed certificate."""

import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import free_port, run

# Size of the streamed upload: far above what the daemon may hold in memory.
STREAM_BYTES = 256 * 1024 * 1024
# The daemon's peak RSS must stay under this while it hashes STREAM_BYTES.
STREAM_RSS_MAX = STREAM_BYTES // 4
# How long to wait for a log line written after the response went out.
LOG_WAIT_S = 5.0


def start_testd(daemons, ff_build, tls_cert, *extra, env=None):
    port = free_port()
    exe = ff_build / "tests" / "bin" / "ff-testd"
    argv = [exe, "--port", port, "--cert", tls_cert.cert, "--key", tls_cert.key, *extra]
    return daemons.start("ff-testd", argv, port=port, ca=tls_cert.ca, env=env)


def url(d, path):
    return f"https://127.0.0.1:{d.port}{path}"


def curl(tls_cert, *args):
    """curl with the test CA; returns the CompletedProcess (never raises)."""
    return run(["curl", "-sS", "--max-time", "120", "--cacert", tls_cert.ca, *args],
               check=False)


def status_of(tls_cert, *args):
    """The HTTP status curl saw (0 when none), and curl's exit code."""
    p = curl(tls_cert, "-o", os.devnull, "-w", "%{http_code}", *args)
    return int(p.stdout or "0"), p.returncode


def header(raw, name):
    """The value of header name in curl -D output, or None."""
    for line in raw.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            return v.strip()
    return None


def wait_for_log(d, needle):
    deadline = time.monotonic() + LOG_WAIT_S
    while time.monotonic() < deadline:
        if needle in d.log():
            return True
        time.sleep(0.05)
    return needle in d.log()


def test_healthz_over_tls(daemons, ff_build, tls_cert):
    d = start_testd(daemons, ff_build, tls_cert)
    p = curl(tls_cert, "-D", "-", url(d, "/healthz"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("HTTP/1.1 200")
    assert p.stdout.endswith("\n\nok\n")  # text mode turned CRLF into LF
    assert re.fullmatch(r"[0-9a-f]{16}", header(p.stdout, "X-Request-Id"))


def test_plain_http_is_refused(daemons, ff_build, tls_cert):
    d = start_testd(daemons, ff_build, tls_cert)
    code, rc = status_of(tls_cert, f"http://127.0.0.1:{d.port}/healthz")
    assert rc != 0
    assert code != 200
    # The server is still fine afterwards.
    assert status_of(tls_cert, url(d, "/healthz")) == (200, 0)


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_streamed_put_is_hashed_without_buffering(daemons, ff_build, tls_cert, tmp_path):
    # Keep ASan's quarantine of freed blocks small so that, in sanitizer
    # builds too, peak RSS measures what the server holds, not ASan.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=8"}
    d = start_testd(daemons, ff_build, tls_cert, env=env)
    body = tmp_path / "body"
    h = hashlib.sha256()
    with open(body, "wb") as f:
        for _ in range(STREAM_BYTES // (1 << 20)):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    p = curl(tls_cert, "-T", body, url(d, "/hash"))
    body.unlink()
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == h.hexdigest()
    rss = peak_rss(d.proc.pid)
    assert rss < STREAM_RSS_MAX, f"peak RSS {rss} bytes for a {STREAM_BYTES}-byte body"
    assert wait_for_log(d, f"path=/hash status=200 bytes_in={STREAM_BYTES} ")


def test_body_limit(daemons, ff_build, tls_cert, tmp_path):
    d = start_testd(daemons, ff_build, tls_cert, "--max-body", "1024")
    small = tmp_path / "small"
    small.write_bytes(b"a" * 1024)
    big = tmp_path / "big"
    big.write_bytes(b"b" * 4096)
    p = curl(tls_cert, "--data-binary", f"@{small}", url(d, "/echo"))
    assert p.returncode == 0 and p.stdout == "a" * 1024
    p = curl(tls_cert, "-w", "\n%{http_code}", "--data-binary", f"@{big}", url(d, "/echo"))
    body, _, code = p.stdout.rpartition("\n")
    assert code == "413"
    assert '"code":"TOO_LARGE"' in body
    # Without "Expect: 100-continue" the client sends the body at once; the
    # answer is the same.
    code, _ = status_of(tls_cert, "-H", "Expect:", "--data-binary", f"@{big}", url(d, "/echo"))
    assert code == 413
    # No body at all on a route that takes none.
    code, _ = status_of(tls_cert, "-X", "GET", "--data-binary", "x", url(d, "/healthz"))
    assert code == 413


def test_oversized_headers_are_refused(daemons, ff_build, tls_cert):
    d = start_testd(daemons, ff_build, tls_cert)
    code, _ = status_of(tls_cert, "-H", "X-Big: " + "x" * (100 * 1024), url(d, "/healthz"))
    assert code != 200
    assert code in (0, 431)
    assert status_of(tls_cert, url(d, "/healthz")) == (200, 0)


def test_access_log_has_request_id_and_no_secrets(daemons, ff_build, tls_cert):
    d = start_testd(daemons, ff_build, tls_cert)
    p = curl(tls_cert, "-D", "-", "-o", os.devnull,
             "-H", "Authorization: Bearer hdr-secret-123",
             url(d, "/healthz?token=query-secret-456"))
    assert p.returncode == 0, p.stderr
    reqid = header(p.stdout, "X-Request-Id")
    assert reqid
    want = (f"event=http.request req={reqid} method=GET path=/healthz status=200 "
            "bytes_in=0 bytes_out=3 ")
    assert wait_for_log(d, want), d.log()
    line = next(line for line in d.log().splitlines() if f"req={reqid}" in line)
    assert "ip=127.0.0.1" in line
    assert "hdr-secret-123" not in d.log()
    assert "query-secret-456" not in d.log()


def test_sigterm_lets_the_request_in_flight_finish(daemons, ff_build, tls_cert):
    d = start_testd(daemons, ff_build, tls_cert)
    slow = subprocess.Popen(
        ["curl", "-sS", "--max-time", "30", "--cacert", str(tls_cert.ca), "-w", "\n%{http_code}",
         url(d, "/slow?ms=1500")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_log(d, "event=http.listen")
        time.sleep(0.4)  # the request is now sleeping in its handler
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # No new connections while draining.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        out, err = slow.communicate(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert slow.returncode == 0, err
    assert out == "slow\n\n200"
    assert d.proc.wait(timeout=15) == 0
    assert "event=http.stop in_flight=1 cut=0" in d.log()


def test_concurrent_requests(daemons, ff_build, tls_cert):
    d = start_testd(daemons, ff_build, tls_cert)
    procs = []
    for i in range(16):
        path = "/slow?ms=300" if i % 2 else "/healthz"
        procs.append(subprocess.Popen(
            ["curl", "-sS", "--max-time", "30", "--cacert", str(tls_cert.ca), "-o", os.devnull,
             "-w", "%{http_code}", url(d, path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, results
    assert [out for out, _ in results] == ["200"] * 16


def test_file_range_head_and_stream(daemons, ff_build, tls_cert, tmp_path):
    d = start_testd(daemons, ff_build, tls_cert)
    data = bytes(range(256)) * 40
    f = tmp_path / "blob"
    f.write_bytes(data)
    p = curl(tls_cert, "-I", url(d, f"/file?path={f}"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("HTTP/1.1 200")
    assert header(p.stdout, "Content-Length") == str(len(data))
    p = subprocess.run(["curl", "-sS", "--cacert", str(tls_cert.ca),
                        url(d, f"/file?path={f}&offset=100&length=50")],
                       capture_output=True, check=False)
    assert p.returncode == 0
    assert p.stdout == data[100:150]
    p = curl(tls_cert, "-D", "-", url(d, "/stream?lines=20"))
    assert p.returncode == 0, p.stderr
    assert header(p.stdout, "Transfer-Encoding") == "chunked"
    lines = p.stdout.split("\n\n", 1)[1].splitlines()
    assert lines == [f"line {i}" for i in range(20)]


def raw_exchange(d, tls_cert, data):
    """Sends data over a verified TLS connection; returns what came back."""
    ctx = ssl.create_default_context(cafile=str(tls_cert.ca))
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(data)
            got = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except (ssl.SSLError, ConnectionResetError, socket.timeout):
                pass
            return got


@pytest.mark.parametrize("request_bytes, want", [
    (b"GET /a/../healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b" 400 "),
    (b"GET //healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b" 400 "),
    (b"GET /healthz%00.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b" 400 "),
    (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b" 404 "),
    (b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b" 405 "),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", None),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", None),
    (b"\x00\x01\x02garbage\r\n\r\n", None),
    (b"GET /healthz HTTP/9.9\r\n\r\n", None),
])
def test_malformed_requests(daemons, ff_build, tls_cert, request_bytes, want):
    d = start_testd(daemons, ff_build, tls_cert)
    got = raw_exchange(d, tls_cert, request_bytes)
    first = got.split(b"\r\n", 1)[0]
    if want is not None:
        assert want in first, got
    else:
        assert b" 200 " not in first, got
    assert d.alive()
    assert status_of(tls_cert, url(d, "/healthz")) == (200, 0)
