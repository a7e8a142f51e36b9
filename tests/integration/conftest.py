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


# ---- ff-registry -------------------------------------------------------------

REGISTRY_USERS = {
    # user: (password, what the test token server grants: kind, name, wanted -> granted)
    "alice": ("alice-password",
              lambda kind, name, want: [a for a in want if a in ("pull", "push", "delete")]
              if kind == "repository" and name.startswith("alice/") else
              [a for a in want if a == "pull"]
              if kind == "repository" and name.startswith("library/") else []),
    "bob": ("bob-password",
            lambda kind, name, want: [a for a in want if a == "pull"]
            if kind == "repository" and name == "alice/shared" else []),
    "admin": ("admin-password",
              lambda kind, name, want: list(want)),
}


class Registry:
    """A running ff-registry with a test token realm in front of it."""

    def __init__(self, daemon, port, root, config, tls, minter, tokens, bin_path_):
        self.daemon = daemon
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.root = root
        self.config = config
        self.tls = tls
        self.minter = minter
        self.tokens = tokens
        self.bin = bin_path_

    def token(self, sub, repo, *actions, **kw):
        from tokenserver import access
        return self.minter.mint(sub, access(repo, *actions), **kw)

    def request(self, method, path, token=None, body=None, headers=None, timeout=60):
        """One HTTPS request; returns (status, headers dict lower-cased, body bytes)."""
        import http.client
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx,
                                           timeout=timeout)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def push_blob(self, repo, data, token):
        """Monolithic upload; returns the digest."""
        import hashlib
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        st, _, body = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}",
                                   token, body=data,
                                   headers={"Content-Type": "application/octet-stream"})
        assert st == 201, (st, body)
        return digest

    def push_image(self, repo, tag, layers, token, config=b'{"architecture":"amd64","os":"linux"}'):
        """Pushes config and layers, then an OCI manifest; returns its digest."""
        import hashlib
        import json as _json
        cfg = self.push_blob(repo, config, token)
        descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "digest": self.push_blob(repo, layer, token), "size": len(layer)}
                 for layer in layers]
        manifest = _json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cfg, "size": len(config)},
            "layers": descs}).encode()
        st, h, body = self.request("PUT", f"/v2/{repo}/manifests/{tag}", token, body=manifest,
                                   headers={"Content-Type":
                                            "application/vnd.oci.image.manifest.v1+json"})
        assert st == 201, (st, body)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        assert h["docker-content-digest"] == digest
        return digest

    def blob_files(self):
        """Digests of every committed blob file in the store."""
        base = Path(self.root) / "blobs" / "sha256"
        return sorted("sha256:" + p.name for p in base.glob("*/*") if p.is_file())


@pytest.fixture
def registry_factory(daemons, tls_cert, tmp_path):
    """Starts ff-registry (and a test token realm) with extra config lines."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from tokenserver import Minter, TokenServer
    minter = Minter(tls_cert.token_key)
    tokens = TokenServer(minter, tls_cert.cert, tls_cert.key, REGISTRY_USERS)
    started = []

    def start(extra="", root=None, port=None, name="ff-registry"):
        port = port or free_port()
        root = root or tmp_path / f"store-{port}"
        config = tmp_path / f"registry-{port}.ini"
        config.write_text(
            f"[server]\nport = {port}\ncert = {tls_cert.cert}\nkey = {tls_cert.key}\n"
            f"shutdown_grace = 10\n"
            f"[storage]\nroot = {root}\n"
            f"[auth]\nrealm = {tokens.realm}\npublic_key = {tls_cert.token_pub}\n" + extra)
        d = daemons.start(name, [bin_path("ff-registry"), "-f", config], port=port,
                          ca=tls_cert.ca)
        reg = Registry(d, port, root, config, tls_cert, minter, tokens, bin_path("ff-registry"))
        started.append(reg)
        return reg

    yield start
    tokens.stop()


@pytest.fixture
def registry(registry_factory):
    return registry_factory()


@pytest.fixture
def cert_dir(tls_cert, tmp_path):
    """A directory skopeo's --cert-dir accepts: the farm CA as ca.crt."""
    d = tmp_path / "certs"
    d.mkdir()
    shutil.copy(tls_cert.ca, d / "ca.crt")
    return d


@pytest.fixture
def builder(daemons, tls_cert, tmp_path):
    """A started ff-builder (builderlib.Builder) with its admin credentials."""
    from builderlib import start_builder
    return start_builder(daemons, tls_cert, tmp_path)


@pytest.fixture
def registry_behind_builder(builder, daemons, tls_cert, tmp_path):
    """An ff-registry whose token realm is the builder under test."""
    port = free_port()
    config = tmp_path / "registry.ini"
    config.write_text(
        f"[server]\nport = {port}\ncert = {tls_cert.cert}\nkey = {tls_cert.key}\n"
        f"shutdown_grace = 5\n[storage]\nroot = {tmp_path / 'store'}\n"
        f"[auth]\nrealm = {builder.realm}\npublic_key = {tls_cert.token_pub}\n")
    daemons.start("ff-registry", [bin_path("ff-registry"), "-f", config], port=port,
                  ca=tls_cert.ca)
    return f"127.0.0.1:{port}"
