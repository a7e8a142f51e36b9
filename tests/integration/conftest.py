"""Shared fixtures for Fleetforge integration tests.

Tests start real daemons on free loopback ports in temporary directories,
wait until they answer, and always stop them. When a test fails, the logs of
every daemon it started are copied to <build>/test-logs/<test name>/ and
their last lines are printed."""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# How long a daemon may take to answer after start (slow under ASan).
START_TIMEOUT = 30.0
# How long a daemon may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


def build_dir():
    return Path(os.environ.get("FF_BUILD", ROOT / "build"))


def bin_path(name):
    """Path of a program: build/bin/<name>, or build/tests/bin/<name>."""
    for sub in ("bin", "tests/bin"):
        p = build_dir() / sub / name
        if p.exists():
            return p
    raise FileNotFoundError(f"{name} is not built in {build_dir()}")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_ready(port, ca, timeout=0.5):
    """True when a TLS handshake with 127.0.0.1:port verifies against ca."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                return True
    except (OSError, ssl.SSLError):
        return False


def tcp_ready(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def ff_build():
    return build_dir()


class TlsCert:
    """The farm's PKI: CA, server certificate for localhost / 127.0.0.1, and
    the token and image-signing key pairs."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.ca = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self.cert = self.dir / "server.crt"
        self.key = self.dir / "server.key"
        self.token_key = self.dir / "token.key"
        self.token_pub = self.dir / "token.pub"
        self.signing_key = self.dir / "signing.key"
        self.signing_pub = self.dir / "signing.pub"


def _make_tls_cert(directory):
    """Bootstraps the PKI exactly as `make up` does (ff-builder pki-init), so
    tests use the same kind of CA, certificate and keys as the farm."""
    run([bin_path("ff-builder"), "pki-init", "--dir", directory])
    return TlsCert(directory)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    return _make_tls_cert(tmp_path_factory.mktemp("pki"))


class Daemon:
    def __init__(self, name, proc, port, log_path):
        self.name = name
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the
        exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        """SIGKILL at once, as a crash would."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.returncode


class Daemons:
    """Starts daemons for one test and stops all of them afterwards."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.started = []

    def start(self, name, argv, port=None, ca=None, ready=None, env=None, cwd=None,
              timeout=START_TIMEOUT):
        """Starts argv (stderr and stdout to <tmp>/<name>.log) and waits until
        it is ready: ready() returns true, or a TLS handshake verifies against
        ca on port, or (no ca) a TCP connect to port succeeds."""
        log_path = self.tmp / f"{name}.log"
        n = 1
        while log_path.exists():
            n += 1
            log_path = self.tmp / f"{name}.{n}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        logf = open(log_path, "ab")
        proc = subprocess.Popen([str(a) for a in argv], stdout=logf, stderr=logf,
                                stdin=subprocess.DEVNULL, env=full_env,
                                cwd=str(cwd or self.tmp))
        logf.close()
        d = Daemon(name, proc, port, log_path)
        self.started.append(d)
        if ready is None and port is not None:
            ready = (lambda: tls_ready(port, ca)) if ca else (lambda: tcp_ready(port))
        if ready is not None:
            deadline = time.monotonic() + timeout
            while not ready():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} "
                                       f"before it was ready:\n{d.log()[-4000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready after {timeout} s:\n"
                                       f"{d.log()[-4000:]}")
                time.sleep(0.05)
        return d

    def stop_all(self):
        for d in reversed(self.started):
            d.stop()


@pytest.fixture
def daemons(request, tmp_path):
    ds = Daemons(tmp_path)
    yield ds
    ds.stop_all()
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    if failed and ds.started:
        keep = build_dir() / "test-logs" / request.node.name
        keep.mkdir(parents=True, exist_ok=True)
        for d in ds.started:
            shutil.copy(d.log_path, keep / Path(d.log_path).name)
            tail = "\n".join(d.log().splitlines()[-30:])
            print(f"\n--- last lines of {d.name} (kept in {keep}) ---\n{tail}")


def run(argv, check=True, **kw):
    """subprocess.run with text output captured, for client commands."""
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          check=check, **kw)
