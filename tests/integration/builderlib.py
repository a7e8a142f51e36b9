"""What every ff-builder integration test uses: a started ff-builder with
the admin credentials its init printed, and helpers to call its API."""

import base64
import hashlib
import http.client
import json
import sqlite3
import ssl

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from conftest import bin_path, free_port, run

USER_PASSWORD = "bob-password-long-enough"


class Builder:
    """A running ff-builder with the admin credentials init printed."""

    def __init__(self, daemon, port, config, db, tls, creds):
        self.daemon = daemon
        self.port = port
        self.config = config
        self.db = db
        self.tls = tls
        self.admin = creds["FF_ADMIN_USER"]
        self.admin_password = creds["FF_ADMIN_PASSWORD"]
        self.admin_token = creds["FF_ADMIN_TOKEN"]
        self.realm = f"https://127.0.0.1:{port}/v2/token"

    def request(self, method, path, token=None, body=None, basic=None, headers=None):
        """One request; returns (status, headers lower-cased, parsed JSON or None)."""
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if basic is not None:
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{basic[0]}:{basic[1]}".encode()).decode()
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            parsed = json.loads(data) if data and "json" in hdrs.get("content-type", "") \
                else None
            return resp.status, hdrs, parsed
        finally:
            conn.close()

    def query(self, sql, *args):
        with sqlite3.connect(self.db) as c:
            return c.execute(sql, args).fetchall()

    def audit(self, event, actor=None):
        if actor is None:
            return self.query("SELECT actor, detail FROM audit WHERE event = ?", event)
        return self.query("SELECT actor, detail FROM audit WHERE event = ? AND actor = ?",
                          event, actor)

    def add_user(self, name, role="user"):
        """Creates a user and returns an API token of theirs."""
        st, _, body = self.request("POST", "/v1/users", self.admin_token,
                                   {"name": name, "password": USER_PASSWORD, "role": role})
        assert st == 201, body
        st, _, body = self.request("POST", "/v1/login",
                                   body={"username": name, "password": USER_PASSWORD})
        assert st == 201, body
        st, _, body = self.request("POST", "/v1/tokens", body["token"], {"name": "ci"})
        assert st == 201, body
        return body["token"]

    def ok(self, method, path, token=None, body=None, status=None, **kw):
        """A request that must succeed (2xx, or exactly status); returns the JSON."""
        st, _, resp = self.request(method, path, token, body, **kw)
        assert (st == status) if status else (200 <= st < 300), (method, path, st, resp)
        return resp

    def add_app(self, token, name, archs=("amd64",)):
        return self.ok("POST", "/v1/apps", token, {"name": name, "archs": list(archs)})

    def add_member(self, token, app, user, role):
        self.ok("PUT", f"/v1/apps/{app}/members/{user}", token, {"role": role})

    def provisioning_key(self, token, app, **fields):
        body = {"name": "fleet", **fields}
        return self.ok("POST", f"/v1/apps/{app}/provisioning-keys", token, body, status=201)

    def register_device(self, pkey, arch="amd64", **fields):
        """Registers a device; returns (status, JSON)."""
        body = {"name": "dev", "device_type": "generic-x86", "arch": arch, **fields}
        st, _, resp = self.request("POST", "/v1/devices", pkey, body)
        return st, resp

    def add_device(self, token, app, arch="amd64"):
        """A new device of app; returns its JSON, with "key"."""
        pkey = self.provisioning_key(token, app)["key"]
        st, dev = self.register_device(pkey, arch)
        assert st == 201, dev
        return dev

    def service_key(self):
        """Issues ff-gitd's service key with the operator command."""
        out = run([bin_path("ff-builder"), "-f", self.config, "service-key", "gitd"]).stdout
        name, key = out.strip().split("=", 1)
        assert name == "FF_GITD_KEY"
        return key

    def add_worker(self, archs=("amd64",)):
        """Joins a worker with a fresh join token; returns its JSON, with "key"."""
        join = self.ok("POST", "/v1/workers/join-tokens", self.admin_token, {}, status=201)
        return self.ok("POST", "/v1/workers/join", join["token"],
                       {"name": "worker", "archs": list(archs)}, status=201)

    def registry_token(self, user, secret, *scopes, service="ff-registry"):
        q = f"service={service}" + "".join(f"&scope={s}" for s in scopes)
        return self.request("GET", f"/v2/token?{q}", basic=(user, secret))


def start_builder(daemons, tls_cert, tmp_path, extra=""):
    """Writes a config in tmp_path, runs init, starts the server."""
    port = free_port()
    db = tmp_path / "builder.db"
    config = tmp_path / "builder.ini"
    config.write_text(
        f"[server]\nport = {port}\ncert = {tls_cert.cert}\nkey = {tls_cert.key}\n"
        f"shutdown_grace = 5\n[storage]\ndb = {db}\n[tokens]\nkey = {tls_cert.token_key}\n"
        + extra)
    out = run([bin_path("ff-builder"), "-f", config, "init"]).stdout
    creds = dict(line.split("=", 1) for line in out.splitlines())
    assert set(creds) == {"FF_ADMIN_USER", "FF_ADMIN_PASSWORD", "FF_ADMIN_TOKEN"}
    d = daemons.start("ff-builder", [bin_path("ff-builder"), "-f", config], port=port,
                      ca=tls_cert.ca)
    return Builder(d, port, config, db, tls_cert, creds)


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_jwt(token, pub_path):
    """Checks the ES256 signature with the public key; returns (header, claims)."""
    pub = serialization.load_pem_public_key(pub_path.read_bytes())
    head, payload, sig = token.split(".")
    raw = b64d(sig)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    spki = pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    header = json.loads(b64d(head))
    assert header == {"alg": "ES256", "typ": "JWT",
                      "kid": hashlib.sha256(spki).digest()[:16].hex()}
    return header, json.loads(b64d(payload))


def make_image(layout, tag):
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:{tag}"])
    src = layout.parent / "src"
    src.mkdir()
    (src / "hello").write_bytes(b"hello from the builder test\n")
    run(["umoci", "insert", "--image", f"{layout}:{tag}", src / "hello", "/hello"])


def skopeo(*args, check=True):
    return run(["skopeo", "--command-timeout", "120s"] + list(args), check=check)
