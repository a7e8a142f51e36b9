"""ff-worker's registry client (workers/regclient.c) through its test driver
worker-reg, against a real ff-registry whose token realm is a real
ff-builder, and against small fake registries (Python, TLS) that send wrong
bytes, ask for Basic credentials or break an upload.

Images are built here as OCI layouts from tiny tar layers, so every digest
is known before the client sees anything."""

import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import ssl
import tarfile
import threading
from pathlib import Path

import pytest

from builderlib import skopeo
from conftest import bin_path, run

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_layer(files):
    """A gzip'd tar of {path: bytes}, byte-for-byte reproducible; returns
    (compressed, uncompressed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), plain


class Layout:
    """An OCI image layout written by hand."""

    def __init__(self, path):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.entries = []

    def blob(self, data):
        d = sha(data)
        (self.path / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    def read(self, digest):
        return (self.path / "blobs" / "sha256" / digest[7:]).read_bytes()

    def image(self, arch, variant=None, layers=({"hello": b"hi\n"},)):
        """Writes config, layers and manifest; returns the manifest descriptor."""
        descs, diff_ids = [], []
        for files in layers:
            gz, plain = tar_layer(files)
            descs.append({"mediaType": OCI_LAYER_GZIP, **self.blob(gz)})
            diff_ids.append(sha(plain))
        config = {"architecture": arch, "os": "linux",
                  "config": {"Env": ["PATH=/bin"], "Cmd": ["/hello"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        if variant:
            config["variant"] = variant
        cfg = self.blob(json.dumps(config).encode())
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, **cfg}, "layers": descs}
        desc = {"mediaType": OCI_MANIFEST, **self.blob(json.dumps(manifest).encode())}
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        return {**desc, "platform": platform}

    def index(self, manifests):
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return {"mediaType": OCI_INDEX, **self.blob(json.dumps(body).encode())}

    def tag(self, tag, desc):
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.entries.append(entry)
        (self.path / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}))

    def blobs_of(self, manifest_digest):
        m = json.loads(self.read(manifest_digest))
        return [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]


def worker_reg(env, *args, check=True):
    res = run([bin_path("worker-reg")] + list(args), check=False, env={**os.environ, **env})
    if check and res.returncode != 0:
        raise AssertionError(f"worker-reg {args} failed: {res.stderr}")
    return res


def facts(out, key):
    return [line.split()[1:] for line in out.splitlines() if line.split()[:1] == [key]]


def stats(out):
    line = [ln for ln in out.splitlines() if ln.startswith("stats ")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def metrics(host, ca):
    """ff-registry's request counters: {(route, method, status): count}."""
    port = int(host.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=ssl.create_default_context(cafile=str(ca)))
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for m in re.finditer(r'^ff_registry_requests_total\{route="([^"]*)",method="([^"]*)",'
                         r'status="(\d+)"\} (\d+)$', text, re.M):
        out[(m[1], m[2], int(m[3]))] = int(m[4])
    return out


def delta(before, after, route, method, status):
    key = (route, method, status)
    return after.get(key, 0) - before.get(key, 0)


UPLOADS = "/v2/{name+}/blobs/uploads/"
UPLOAD_ID = "/v2/{name+}/blobs/uploads/{id}"


@pytest.fixture
def reg(builder, registry_behind_builder, tls_cert):
    """Environment for worker-reg as the builder's admin."""
    return {"FF_REGISTRY": registry_behind_builder, "FF_CA": str(tls_cert.ca),
            "FF_CREDS": f"{builder.admin}:{builder.admin_token}"}


def check_pulled(dest, layout, manifest_digest):
    assert (dest / "manifest.json").read_bytes() == layout.read(manifest_digest)
    for d in layout.blobs_of(manifest_digest):
        assert (dest / d[7:]).read_bytes() == layout.read(d), d
    assert not [p for p in dest.iterdir() if ".part." in p.name]


# ---- against ff-registry behind ff-builder ------------------------------------------------


def test_push_then_pull_by_tag_and_digest(reg, tmp_path, cert_dir):
    layout = Layout(tmp_path / "layout")
    img = layout.image("amd64", layers=({"a": b"one\n"}, {"b": b"two\n" * 1000}))
    layout.tag("1", img)
    out = worker_reg(reg, "push-layout", layout.path, "library/base:1").stdout
    assert facts(out, "pushed-manifest") == [[img["digest"]]]
    assert sorted(d for d, how in facts(out, "blob")) == sorted(layout.blobs_of(img["digest"]))
    assert {how for _, how in facts(out, "blob")} == {"pushed"}
    # One token covers the whole push.
    assert stats(out)["token_fetches"] == 1
    # An independent client sees exactly the bytes we pushed.
    raw = skopeo("inspect", "--raw", "--cert-dir", cert_dir, "--creds", reg["FF_CREDS"],
                 f"docker://{reg['FF_REGISTRY']}/library/base:1").stdout
    assert raw.encode() == layout.read(img["digest"])

    for ref in ("library/base:1", f"library/base@{img['digest']}"):
        dest = tmp_path / ref.replace("/", "_").replace(":", "_").replace("@", "_")
        dest.mkdir()
        out = worker_reg(reg, "pull", ref, "--arch", "amd64", "--dest", dest).stdout
        assert facts(out, "manifest") == [[img["digest"]]]
        assert facts(out, "platform") == [["linux/amd64"]]
        assert len(facts(out, "layer")) == 2
        check_pulled(dest, layout, img["digest"])
        s = stats(out)
        assert s["token_fetches"] == 1 and s["requests"] >= 4, s

    # A single-platform image is not taken for another architecture.
    dest = tmp_path / "wrong-arch"
    dest.mkdir()
    res = worker_reg(reg, "pull", "library/base:1", "--arch", "arm64", "--dest", dest,
                     check=False)
    assert res.returncode == 1
    assert "image is for linux/amd64, expected linux/arm64/v8" in res.stderr


def test_multi_arch_index(reg, tmp_path):
    layout = Layout(tmp_path / "layout")
    imgs = {"amd64": layout.image("amd64", layers=({"arch": b"x86_64\n"},)),
            "arm64": layout.image("arm64", "v8", layers=({"arch": b"aarch64\n"},)),
            "armv7": layout.image("arm", "v7", layers=({"arch": b"armv7l\n"},))}
    index = layout.index(list(imgs.values()))
    layout.tag("multi", index)
    two = layout.index([imgs["amd64"], imgs["arm64"]])
    layout.tag("two", two)
    out = worker_reg(reg, "push-layout", layout.path, "library/multi:1",
                     "--layout-tag", "multi").stdout
    assert facts(out, "pushed-index") == [[index["digest"]]]
    assert len(facts(out, "pushed-manifest")) == 3

    for arch, platform in (("arm64", "linux/arm64/v8"), ("armv7", "linux/arm/v7"),
                           ("amd64", "linux/amd64")):
        dest = tmp_path / f"pull-{arch}"
        dest.mkdir()
        out = worker_reg(reg, "pull", "library/multi:1", "--arch", arch, "--dest", dest).stdout
        assert facts(out, "index") == [[index["digest"]]]
        assert facts(out, "manifest") == [[imgs[arch]["digest"]]]
        assert facts(out, "platform") == [[platform]]
        check_pulled(dest, layout, imgs[arch]["digest"])

    # A platform the index lacks: a clear error naming what it has, nothing fetched.
    worker_reg(reg, "push-layout", layout.path, "library/two:1", "--layout-tag", "two")
    dest = tmp_path / "missing"
    dest.mkdir()
    res = worker_reg(reg, "pull", "library/two:1", "--arch", "armv7", "--dest", dest,
                     check=False)
    assert res.returncode == 1
    assert ('image "library/two:1": no image for platform linux/arm/v7; the index has: '
            "linux/amd64, linux/arm64/v8") in res.stderr
    assert list(dest.iterdir()) == []


def test_chunked_push_exists_skip_and_mount(reg, tls_cert, tmp_path, cert_dir):
    host = reg["FF_REGISTRY"]
    big = os.urandom(300 * 1024 + 17)
    layout = Layout(tmp_path / "layout")
    img = layout.image("amd64", layers=({"big": big}, {"small": b"s\n"}))
    layout.tag("1", img)
    big_layer = layout.blobs_of(img["digest"])[1]
    n_chunks = -(-layout.blob(layout.read(big_layer))["size"] // 65536)

    m0 = metrics(host, tls_cert.ca)
    out = worker_reg({**reg, "FF_CHUNK_SIZE": "65536"}, "push-layout", layout.path,
                     "library/base:1").stdout
    m1 = metrics(host, tls_cert.ca)
    # The big layer went up in 64 KiB chunks; the small blobs as one PUT each.
    assert stats(out)["chunks"] == n_chunks and n_chunks >= 5
    assert delta(m0, m1, UPLOAD_ID, "PATCH", 202) == n_chunks
    assert delta(m0, m1, UPLOAD_ID, "PUT", 201) == 3
    back = tmp_path / "back"
    skopeo("copy", "--src-cert-dir", cert_dir, "--src-creds", reg["FF_CREDS"],
           f"docker://{host}/library/base:1", f"oci:{back}:1")
    assert (back / "blobs" / "sha256" / big_layer[7:]).read_bytes() == layout.read(big_layer)

    # Again: every blob is found by HEAD, nothing is uploaded.
    out = worker_reg(reg, "push-layout", layout.path, "library/base:1").stdout
    m2 = metrics(host, tls_cert.ca)
    assert {how for _, how in facts(out, "blob")} == {"existed"}
    assert stats(out)["skipped"] == 3 and stats(out)["pushed"] == 0
    assert delta(m1, m2, UPLOADS, "POST", 202) == 0
    assert delta(m1, m2, UPLOAD_ID, "PATCH", 202) == 0

    # Into another repository: mounted from library/base, no bytes sent.
    out = worker_reg(reg, "push-layout", layout.path, "library/other:1",
                     "--mount-from", "library/base").stdout
    m3 = metrics(host, tls_cert.ca)
    assert {how for _, how in facts(out, "blob")} == {"mounted"}
    assert delta(m2, m3, UPLOADS, "POST", 201) == 3
    assert delta(m2, m3, UPLOAD_ID, "PATCH", 202) == 0
    assert delta(m2, m3, UPLOAD_ID, "PUT", 201) == 0

    # From a repository the admin may not read: the registry opens an upload
    # instead, and that session carries the push (no second POST, no cancel).
    out = worker_reg(reg, "push-layout", layout.path, "library/third:1",
                     "--mount-from", "nobody/secret").stdout
    m4 = metrics(host, tls_cert.ca)
    assert {how for _, how in facts(out, "blob")} == {"pushed"}
    assert delta(m3, m4, UPLOADS, "POST", 202) == 3
    assert delta(m3, m4, UPLOADS, "POST", 201) == 0
    assert delta(m3, m4, UPLOAD_ID, "DELETE", 204) == 0
    assert facts(out, "pushed-manifest") == [[img["digest"]]]

    # The mount primitive alone: a refused mount cancels the session it got.
    cfg = layout.blobs_of(img["digest"])[0]
    out = worker_reg(reg, "mount", "library/four", cfg, "library/base").stdout
    assert facts(out, "mounted") == [["yes"]]
    out = worker_reg(reg, "mount", "library/five", cfg, "nobody/secret").stdout
    assert facts(out, "mounted") == [["no"]]
    assert delta(m4, metrics(host, tls_cert.ca), UPLOAD_ID, "DELETE", 204) == 1
    assert facts(worker_reg(reg, "exists", "library/four", cfg).stdout, "exists") == [["yes"]]
    assert facts(worker_reg(reg, "exists", "library/five", cfg).stdout, "exists") == [["no"]]

    # copy: the manifest keeps its digest; its blobs are mounted.
    out = worker_reg(reg, "copy", "library/base:1", "library/copy:2").stdout
    assert facts(out, "pushed-manifest") == [[img["digest"]]]
    assert {how for _, how in facts(out, "blob")} == {"mounted"}


def test_credentials_refused(builder, reg, tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    bad = {**reg, "FF_CREDS": f"{builder.admin}:ffu_wrongwrongwrongwrongwrongwrongwrongwrong"}
    res = worker_reg(bad, "pull", "library/base:1", "--arch", "amd64", "--dest", dest,
                     check=False)
    assert res.returncode == 1
    assert f'refused the credentials of "{builder.admin}" (HTTP 401: unauthorized "' \
        in res.stderr
    assert "wrongwrong" not in res.stderr + res.stdout
    assert list(dest.iterdir()) == []
    # A user who may not push library/ gets a token without push: denied.
    layout = Layout(tmp_path / "layout")
    layout.tag("1", layout.image("amd64"))
    bob = builder.add_user("bob")
    res = worker_reg({**reg, "FF_CREDS": f"bob:{bob}"}, "push-layout", layout.path,
                     "library/evil:1", check=False)
    assert res.returncode == 1
    assert 'registry "' in res.stderr and "denies" in res.stderr and "EDENIED" in res.stderr


# ---- against fake registries ------------------------------------------------------------


class Fake:
    """A small TLS registry that does what a test tells it to."""

    def __init__(self, tls):
        self.manifests = {}  # (repo, ref) -> (bytes, media type, Docker-Content-Digest or None)
        self.blobs = {}  # digest -> bytes served
        self.basic = None  # "user:password" required, or None
        self.bearer_realm = None  # answer every request with this Bearer realm
        self.uploads = {}
        self.pushed = {}
        self.fail_patches = set()  # PATCH numbers (from 1) that break after half the body
        self.patches = 0
        self.break_once = set()  # blob digests whose next GET breaks after half the body
        self.honour_range = True
        self.slow = {}  # blob digest -> seconds to wait before answering
        self.token_creds = None  # Bearer mode: "user:password" the token endpoint wants
        self.token_ttl = None  # expires_in of issued tokens (None: left out)
        self.token_requests = []
        self.tokens = set()
        self.log = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def token_endpoint(self, query):
                import base64
                from urllib.parse import parse_qs
                want = "Basic " + base64.b64encode(fake.token_creds.encode()).decode()
                if self.headers.get("Authorization") != want:
                    return self.send(401, b'{"details":"bad credentials"}')
                fake.token_requests.append(parse_qs(query))
                tok = f"tok-{len(fake.token_requests)}"
                fake.tokens.add(tok)
                answer = {"access_token": tok}
                if fake.token_ttl is not None:
                    answer["expires_in"] = fake.token_ttl
                self.send(200, json.dumps(answer).encode(),
                          [("Content-Type", "application/json")])

            def authorised(self):
                if fake.token_creds is not None:
                    auth = self.headers.get("Authorization", "")
                    if auth.startswith("Bearer ") and auth[7:] in fake.tokens:
                        return True
                    repo = self.path.split("/")[2] + "/" + self.path.split("/")[3]
                    self.send(401, b"{}", [("WWW-Authenticate",
                                            f'Bearer realm="https://{fake.host}/token",'
                                            f'service="fake",scope="repository:{repo}:pull"')])
                    return False
                if fake.bearer_realm:
                    self.send(401, b"{}", [("WWW-Authenticate",
                                            f'Bearer realm="{fake.bearer_realm}"')])
                    return False
                if fake.basic is None:
                    return True
                import base64
                want = "Basic " + base64.b64encode(fake.basic.encode()).decode()
                if self.headers.get("Authorization") == want:
                    return True
                self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}',
                          [("WWW-Authenticate", 'Basic realm="fake"')])
                return False

            def route(self):
                fake.log.append((self.command, self.path))
                path, _, query = self.path.partition("?")
                if path == "/token":
                    return self.token_endpoint(query)
                if not self.authorised():
                    return
                m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", path)
                if m and self.command in ("GET", "HEAD"):
                    if (m[1], m[2]) not in fake.manifests:
                        return self.send(404)
                    data, mt, dcd = fake.manifests[(m[1], m[2])]
                    hdrs = [("Content-Type", mt)] + ([("Docker-Content-Digest", dcd)]
                                                     if dcd else [])
                    return self.send(200, data, hdrs)
                m = re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})", path)
                if m and self.command in ("GET", "HEAD"):
                    if m[2] in fake.blobs:
                        return self.blob(m[2], fake.blobs[m[2]])
                    if m[2] in fake.pushed:
                        return self.send(200, fake.pushed[m[2]])
                    return self.send(404)
                m = re.fullmatch(r"/v2/(.+)/blobs/uploads/", path)
                if m and self.command == "POST":
                    uid = str(len(fake.uploads) + 1)
                    fake.uploads[uid] = bytearray()
                    return self.send(202, headers=[("Location", f"/v2/{m[1]}/blobs/uploads/{uid}"),
                                                   ("Range", "0-0")])
                m = re.fullmatch(r"/v2/(.+)/blobs/uploads/(\d+)", path)
                if m:
                    return self.upload(m[1], m[2], query)
                self.send(404)

            def blob(self, digest, data):
                import socket
                import time
                time.sleep(fake.slow.get(digest, 0))
                rng = self.headers.get("Range")
                if rng and fake.honour_range and self.command == "GET":
                    first = int(rng.removeprefix("bytes=").split("-")[0])
                    return self.send(206, data[first:], [
                        ("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")])
                if digest in fake.break_once and self.command == "GET":
                    fake.break_once.discard(digest)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self.send(200, data)

            def held(self, uid):
                n = len(fake.uploads[uid])
                return [("Range", f"0-{max(n - 1, 0)}")]

            def upload(self, repo, uid, query):
                loc = [("Location", f"/v2/{repo}/blobs/uploads/{uid}")]
                data = fake.uploads[uid]
                if self.command == "GET":
                    return self.send(204, headers=loc + self.held(uid))
                if self.command == "PATCH":
                    fake.patches += 1
                    chunk = self.body()
                    first = int(self.headers["Content-Range"].split("-")[0])
                    if first != len(data):
                        return self.send(416, headers=self.held(uid))
                    if fake.patches in fake.fail_patches:
                        data.extend(chunk[:len(chunk) // 2])
                        return self.send(500, b'{"errors":[{"code":"UNKNOWN","message":"x"}]}')
                    data.extend(chunk)
                    return self.send(202, headers=loc + self.held(uid))
                if self.command == "PUT":
                    data.extend(self.body())
                    digest = dict(p.split("=", 1) for p in query.split("&"))["digest"]
                    if sha(bytes(data)) != digest:
                        return self.send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
                    fake.pushed[digest] = bytes(data)
                    return self.send(201, headers=[("Docker-Content-Digest", digest)])
                if self.command == "DELETE":
                    return self.send(204)
                self.send(405)

            do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = route

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_image(self, repo, tag, layout, desc):
        data = layout.read(desc["digest"])
        self.manifests[(repo, tag)] = (data, OCI_MANIFEST, desc["digest"])
        self.manifests[(repo, desc["digest"])] = (data, OCI_MANIFEST, desc["digest"])
        for d in layout.blobs_of(desc["digest"]):
            self.blobs[d] = layout.read(d)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake(tls_cert):
    f = Fake(tls_cert)
    yield f
    f.stop()


def test_fake_registry_wrong_bytes(fake, tls_cert, tmp_path):
    env = {"FF_REGISTRY": fake.host, "FF_CA": str(tls_cert.ca), "FF_CREDS": ""}
    layout = Layout(tmp_path / "layout")
    img = layout.image("amd64", layers=({"x": b"x" * 5000},))
    fake.add_image("ok/img", "1", layout, img)
    cfg, layer = layout.blobs_of(img["digest"])

    # The control case: an honest registry without authentication.
    dest = tmp_path / "ok"
    dest.mkdir()
    worker_reg(env, "pull", "ok/img:1", "--arch", "amd64", "--dest", dest)
    check_pulled(dest, layout, img["digest"])

    # A layer whose bytes do not match its digest (same size).
    good = fake.blobs[layer]
    fake.blobs[layer] = bytes([good[0] ^ 1]) + good[1:]
    dest = tmp_path / "tampered"
    dest.mkdir()
    res = worker_reg(env, "pull", "ok/img:1", "--arch", "amd64", "--dest", dest, check=False)
    assert res.returncode == 1
    assert (f'blob {layer} of "ok/img": digest mismatch (expected {layer}, '
            f"got {sha(fake.blobs[layer])})") in res.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(["manifest.json", cfg[7:]])

    # A layer longer than its descriptor says: cut off, nothing kept.
    fake.blobs[layer] = good + b"more"
    dest = tmp_path / "long"
    dest.mkdir()
    res = worker_reg(env, "pull", "ok/img:1", "--arch", "amd64", "--dest", dest, check=False)
    assert res.returncode == 1 and f"larger than the {len(good)} bytes expected" in res.stderr
    assert not (dest / layer[7:]).exists()
    assert not [p for p in dest.iterdir() if ".part." in p.name]
    fake.blobs[layer] = good

    # A manifest whose Docker-Content-Digest disagrees with its bytes.
    data, mt, _ = fake.manifests[("ok/img", "1")]
    fake.manifests[("ok/img", "2")] = (data, mt, sha(b"other"))
    res = worker_reg(env, "pull", "ok/img:2", "--arch", "amd64", "--dest", dest, check=False)
    assert res.returncode == 1
    assert (f'manifest "ok/img:2": registry "{fake.host}" says Docker-Content-Digest '
            f'{sha(b"other")} but the bytes hash to {img["digest"]}') in res.stderr

    # Asked by digest, answered with other bytes (and no header to compare).
    other = data.replace(b"amd64", b"amd64", 1) + b" "
    fake.manifests[("ok/img", img["digest"])] = (other, mt, None)
    res = worker_reg(env, "pull", f"ok/img@{img['digest']}", "--arch", "amd64", "--dest", dest,
                     check=False)
    assert res.returncode == 1
    assert (f'manifest "ok/img@{img["digest"]}": digest mismatch (expected {img["digest"]}, '
            f"got {sha(other)})") in res.stderr

    # 404 is reported as such.
    res = worker_reg(env, "pull", "ok/none:1", "--arch", "amd64", "--dest", dest, check=False)
    assert res.returncode == 1 and "answered 404" in res.stderr and "ENOTFOUND" in res.stderr


def test_fake_registry_basic_and_bad_realm(fake, tls_cert, tmp_path):
    layout = Layout(tmp_path / "layout")
    img = layout.image("amd64")
    fake.add_image("b/img", "1", layout, img)
    fake.basic = "carol:carol-secret"
    env = {"FF_REGISTRY": fake.host, "FF_CA": str(tls_cert.ca)}
    dest = tmp_path / "d"
    dest.mkdir()
    out = worker_reg({**env, "FF_CREDS": fake.basic}, "pull", "b/img:1", "--arch", "amd64",
                     "--dest", dest).stdout
    check_pulled(dest, layout, img["digest"])
    # One challenge, then Basic on every request: no token endpoint involved.
    assert stats(out)["token_fetches"] == 0
    assert sum(1 for method, _ in fake.log if method == "GET") == stats(out)["requests"]
    res = worker_reg({**env, "FF_CREDS": "carol:wrong"}, "pull", "b/img:1", "--arch", "amd64",
                     "--dest", dest, check=False)
    assert res.returncode == 1
    assert f'registry "{fake.host}" refused the credentials of "carol"' in res.stderr
    res = worker_reg({**env, "FF_CREDS": ""}, "pull", "b/img:1", "--arch", "amd64",
                     "--dest", dest, check=False)
    assert res.returncode == 1 and "asks for credentials and none were given" in res.stderr
    # A realm that is not https never gets the secret.
    fake.bearer_realm = "http://127.0.0.1:1/token"
    res = worker_reg({**env, "FF_CREDS": fake.basic}, "pull", "b/img:1", "--arch", "amd64",
                     "--dest", dest, check=False)
    assert res.returncode == 1 and "expected an https url" in res.stderr


def test_fake_registry_chunk_resume(fake, tls_cert, tmp_path):
    env = {"FF_REGISTRY": fake.host, "FF_CA": str(tls_cert.ca), "FF_CREDS": "",
           "FF_CHUNK_SIZE": "4096"}
    blob = tmp_path / "blob"
    data = os.urandom(4096 * 5 + 100)
    blob.write_bytes(data)
    # The second chunk breaks after the registry kept half of it: the client
    # asks where the upload stands and goes on from there.
    fake.fail_patches = {2}
    out = worker_reg(env, "push-blob", "r/blob", blob).stdout
    assert facts(out, "pushed-blob") == [[sha(data)]]
    assert fake.pushed[sha(data)] == data
    s = stats(out)
    assert s["chunk_retries"] == 1 and s["chunks"] == 5, s
    assert ("GET", "/v2/r/blob/blobs/uploads/1") in fake.log
    # Every chunk failing: bounded retries, then a clear error.
    fake.patches = 0
    fake.fail_patches = set(range(1, 100))
    res = worker_reg(env, "push-blob", "r/blob2", blob, check=False)
    assert res.returncode == 1 and 'answered 500: UNKNOWN "x"' in res.stderr
    assert fake.patches == 5  # the first try and four retries


def test_fake_registry_token_flow(fake, tls_cert, tmp_path):
    layout = Layout(tmp_path / "layout")
    img = layout.image("amd64")
    fake.add_image("t/img", "1", layout, img)
    fake.token_creds = "dave:dave-secret"
    env = {"FF_REGISTRY": fake.host, "FF_CA": str(tls_cert.ca), "FF_CREDS": fake.token_creds}
    dest = tmp_path / "d"
    dest.mkdir()
    out = worker_reg(env, "pull", "t/img:1", "--arch", "amd64", "--dest", dest).stdout
    check_pulled(dest, layout, img["digest"])
    # One token ("access_token", no expires_in: 60 s) for manifest, config and layer;
    # the realm got the service and the scope with Basic credentials.
    assert stats(out)["token_fetches"] == 1
    assert fake.token_requests == [{"service": ["fake"], "scope": ["repository:t/img:pull"]}]
    # Tokens that live one second are not used past their life.
    cfg = layout.blobs_of(img["digest"])[0]
    fake.token_ttl = 1
    fake.slow[cfg] = 1.3
    dest2 = tmp_path / "d2"
    dest2.mkdir()
    out = worker_reg(env, "pull", "t/img:1", "--arch", "amd64", "--dest", dest2).stdout
    assert stats(out)["token_fetches"] == 2
    # Wrong secret: the realm's refusal is the error.
    res = worker_reg({**env, "FF_CREDS": "dave:nope"}, "pull", "t/img:1", "--arch", "amd64",
                     "--dest", dest2, check=False)
    assert res.returncode == 1
    assert (f'token realm "https://{fake.host}/token" refused the credentials of "dave" '
            '(HTTP 401') in res.stderr


def test_fake_registry_fetch_resume(fake, tls_cert, tmp_path):
    env = {"FF_REGISTRY": fake.host, "FF_CA": str(tls_cert.ca), "FF_CREDS": ""}
    layout = Layout(tmp_path / "layout")
    img = layout.image("amd64", layers=({"big": os.urandom(200 * 1024)},))
    fake.add_image("r/img", "1", layout, img)
    layer = layout.blobs_of(img["digest"])[1]
    # The connection breaks half-way: the rest is asked for with Range.
    fake.break_once = {layer}
    dest = tmp_path / "d"
    dest.mkdir()
    out = worker_reg(env, "pull", "r/img:1", "--arch", "amd64", "--dest", dest).stdout
    check_pulled(dest, layout, img["digest"])
    assert stats(out)["fetch_resumes"] == 1
    assert any(m == "GET" and p.endswith(layer) for m, p in fake.log)
    # A registry that ignores Range sends the whole blob again: the client
    # starts over instead of appending it.
    fake.break_once = {layer}
    fake.honour_range = False
    dest2 = tmp_path / "d2"
    dest2.mkdir()
    out = worker_reg(env, "pull", "r/img:1", "--arch", "amd64", "--dest", dest2).stdout
    check_pulled(dest2, layout, img["digest"])
    assert stats(out)["fetch_resumes"] == 2
