"""What the end-to-end tests of `ff-worker build` use: a multi-arch busybox
base image as an OCI layout, a farm (ff-builder + ff-registry) with a user,
an app, a worker holding a job for it, and that base image pushed as
library/busybox:1; running ff-worker; pulling results back with skopeo and
unpacking them with umoci; and crafted images for the negative tests."""

import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import shutil
import ssl
import subprocess
import tarfile
import threading
import time
from pathlib import Path

from busybox import ARCHES, make_oci_layout
from builderlib import skopeo
from conftest import bin_path, run

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

ALL_ARCHES = ("amd64", "arm64", "armv7")
BASE_REPO = "library/busybox"
BASE_TAG = "1"
# Longest a build in these tests may take (three architectures under qemu
# on a loaded 2-core machine stay far below).
BUILD_TIMEOUT = 300


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def qemu_possible(arch):
    """Why arch cannot run here (a string), or None when it can: binfmt_misc
    registration needs root, the kernel's binfmt_misc and qemu-user-static."""
    if arch == "amd64":
        return None
    cpu = "aarch64" if arch == "arm64" else "arm"
    if os.geteuid() != 0:
        return "registering qemu in binfmt_misc needs root"
    if not Path(f"/usr/bin/qemu-{cpu}-static").exists():
        return f"qemu-user-static has no /usr/bin/qemu-{cpu}-static"
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        return "the kernel has no binfmt_misc"
    return None


# ---- OCI layouts written by hand -------------------------------------------------


class Layout:
    """An OCI image layout; blobs are added by content."""

    def __init__(self, path):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.entries = []

    def blob(self, data):
        d = sha(data)
        (self.path / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    def read(self, digest):
        return (self.path / "blobs" / "sha256" / digest[7:]).read_bytes()

    def image(self, layers, arch="amd64", variant=None, config=None):
        """config + gzip'd layers (each uncompressed tar bytes) + manifest;
        returns the manifest descriptor with its platform."""
        descs, diff_ids = [], []
        for tar in layers:
            descs.append({"mediaType": OCI_LAYER_GZIP,
                          **self.blob(gzip.compress(tar, mtime=0))})
            diff_ids.append(sha(tar))
        cfg = {"architecture": arch, "os": "linux",
               "config": {"Env": ["PATH=/bin"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids}, **(config or {})}
        if variant:
            cfg["variant"] = variant
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, **self.blob(json.dumps(cfg).encode())},
                    "layers": descs}
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        return {"mediaType": OCI_MANIFEST, **self.blob(json.dumps(manifest).encode()),
                "platform": platform}

    def tag(self, tag, desc):
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {REF_NAME: tag}
        self.entries.append(entry)
        (self.path / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}))


def tar_bytes(entries):
    """An uncompressed tar of entries: (name, bytes) for files, or a
    tarfile.TarInfo (with data bytes or None) for anything else; names are
    taken as given, "../evil" included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                info, data = e, None
            else:
                name, data = e
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
            info.mtime = 0
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def busybox_index_layout(dest, arches=ALL_ARCHES, tag=BASE_TAG):
    """One OCI layout holding busybox.py's image for each architecture and
    an image index of them tagged tag; returns {arch: manifest digest}."""
    dest = Path(dest)
    layout = Layout(dest)
    manifests, digests = [], {}
    for arch in arches:
        single = dest.parent / f"{dest.name}-{arch}"
        desc = make_oci_layout(single, arch)
        for blob in (single / "blobs" / "sha256").iterdir():
            shutil.copyfile(blob, dest / "blobs" / "sha256" / blob.name)
        _, oci_arch, variant = ARCHES[arch]
        platform = {"architecture": oci_arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        manifests.append({**desc, "platform": platform})
        digests[arch] = desc["digest"]
        shutil.rmtree(single)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": manifests}).encode()
    layout.tag(tag, {"mediaType": OCI_INDEX, **layout.blob(index)})
    return digests


# ---- the farm ------------------------------------------------------------------------


class Farm:
    """ff-builder + ff-registry with a user "dev" owning the app dev/app (all
    three architectures), a worker holding a running job of it, and
    library/busybox:1 pushed by the admin."""

    def __init__(self, builder, registry, tls_cert, cert_dir, store):
        self.builder = builder
        self.registry = registry
        self.ca = tls_cert.ca
        self.cert_dir = cert_dir
        self.store = Path(store)
        self.admin = f"{builder.admin}:{builder.admin_token}"
        self.dev_token = builder.add_user("dev")
        builder.add_app(self.dev_token, "app", archs=ALL_ARCHES)
        self.dev = f"dev:{self.dev_token}"
        worker = builder.add_worker(archs=ALL_ARCHES)
        app_id = builder.query("SELECT id FROM apps WHERE name = 'app'")[0][0]
        builder.query("INSERT INTO jobs(app_id, arch, commit_id, state, worker_id, created_at) "
                      "VALUES (?, 'amd64', 'c0ffee', 'running', ?, 0)", app_id,
                      int(worker["name"][2:]))
        self.worker = f"{worker['name']}:{worker['key']}"
        self.app_repo = "dev/app"

    def env(self, creds=None):
        """The environment `make up` gives ff-worker (var/farm.env), with
        the worker's credentials instead of the admin's unless told."""
        user, secret = (creds or self.worker).split(":", 1)
        return {"FF_REGISTRY": self.registry, "FF_CA": str(self.ca),
                "FF_ADMIN_USER": user, "FF_ADMIN_TOKEN": secret}

    def push_layout(self, layout, ref, layout_tag):
        """Pushes an OCI layout's tag with the regclient test driver, as the
        admin (who may push library/*)."""
        env = {**os.environ, "FF_REGISTRY": self.registry, "FF_CA": str(self.ca),
               "FF_CREDS": self.admin}
        res = run([bin_path("worker-reg"), "push-layout", layout, ref, "--layout-tag",
                   layout_tag], check=False, env=env)
        assert res.returncode == 0, res.stderr

    def tags(self, repo):
        """The repository's tags ([] when it does not exist)."""
        res = skopeo("list-tags", "--cert-dir", self.cert_dir, "--creds", self.admin,
                     f"docker://{self.registry}/{repo}", check=False)
        if res.returncode != 0:
            assert "NAME_UNKNOWN" in res.stderr or "not found" in res.stderr.lower() \
                or "404" in res.stderr, res.stderr
            return []
        return json.loads(res.stdout)["Tags"]

    def raw(self, ref, creds=None):
        res = skopeo("inspect", "--raw", "--cert-dir", self.cert_dir, "--creds",
                     creds or self.admin, f"docker://{self.registry}/{ref}")
        return res.stdout.encode()

    def uploads(self):
        """How many blob uploads the registry has begun (its metrics)."""
        port = int(self.registry.rsplit(":", 1)[1])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                           context=ssl.create_default_context(
                                               cafile=str(self.ca)))
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return sum(int(m[1]) for m in re.finditer(
            r'^ff_registry_requests_total\{route="/v2/\{name\+\}/blobs/uploads/",'
            r'method="POST",status="\d+"\} (\d+)$', text, re.M))

    def blob_path(self, digest):
        hexd = digest[7:]
        return self.store / "blobs" / "sha256" / hexd[:2] / hexd

    def pull(self, ref, arch, dest, creds=None):
        """skopeo copy of ref's arch image into an OCI layout, then umoci
        unpack. Returns (rootfs Path, image config dict, layer tar members
        per layer)."""
        _, oci_arch, variant = ARCHES[arch]
        layout = Path(dest) / "oci"
        Path(dest).mkdir(parents=True, exist_ok=True)
        args = ["copy", "--src-cert-dir", self.cert_dir, "--src-creds", creds or self.dev,
                "--override-arch", oci_arch, "--override-os", "linux"]
        if variant:
            args += ["--override-variant", variant]
        res = skopeo(*args, f"docker://{self.registry}/{ref}", f"oci:{layout}:pulled",
                     check=False)
        assert res.returncode == 0, res.stderr
        bundle = Path(dest) / "bundle"
        res = run(["umoci", "unpack", "--image", f"{layout}:pulled", bundle], check=False)
        assert res.returncode == 0, res.stderr
        lay = Layout(layout)
        index = json.loads((layout / "index.json").read_text())
        manifest = json.loads(lay.read(index["manifests"][0]["digest"]))
        config = json.loads(lay.read(manifest["config"]["digest"]))
        members = []
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(lay.read(layer["digest"]))) as t:
                members.append(t.getnames())
        return bundle / "rootfs", config, members


def start_farm(builder, registry, tls_cert, cert_dir, store, base_layout):
    farm = Farm(builder, registry, tls_cert, cert_dir, store)
    farm.push_layout(base_layout, f"{BASE_REPO}:{BASE_TAG}", BASE_TAG)
    return farm


# ---- running ff-worker ------------------------------------------------------------


class Build:
    """The outcome of one ff-worker run."""

    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        lines = proc.stdout.splitlines()
        self.digest = lines[-1] if lines else None

    def steps(self, arch):
        """[(n, kind, status)] of the step-result lines for arch, in order."""
        return [(int(m[1]), m[2], m[3]) for m in re.finditer(
            rf"^\[{arch}\] step (\d+)/\d+ ([A-Z]+): (cached|done) in [0-9.]+s$", self.stderr,
            re.M)]

    def output(self, arch):
        """The RUN output lines of arch (progress lines indented by two)."""
        return [ln[len(arch) + 5:] for ln in self.stderr.splitlines()
                if ln.startswith(f"[{arch}]   ")]

    def error(self):
        """The one error line (without "ff-worker: "), or None."""
        errs = [ln for ln in self.stderr.splitlines() if ln.startswith("ff-worker: ")]
        assert len(errs) <= 1, self.stderr
        return errs[0][len("ff-worker: "):] if errs else None


# Where libcurl (and so ADD <url>) finds the system's CAs on Debian.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def trusting(ca, tmp_dir):
    """A command prefix that runs a program in its own mount namespace
    where the system CA bundle also holds ca: ADD <url> trusts only the
    system's CAs, and the host's bundle must not be changed."""
    bundle = Path(tmp_dir) / "ca-bundle.crt"
    bundle.write_bytes(Path(SYSTEM_CA_BUNDLE).read_bytes() + b"\n" + Path(ca).read_bytes())
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" "$1" && shift && exec "$@"', str(bundle), SYSTEM_CA_BUNDLE]


def ff_worker(context, *args, env=None, check=True, cache=None, timeout=BUILD_TIMEOUT,
              prefix=()):
    """Runs `ff-worker build context args...` with env added to the
    environment (FF_* variables of the test's own environment removed),
    after the command prefix when given."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith("FF_") or k == "FF_BUILD" or k == "FF_BUSYBOX_CACHE"}
    full.pop("SOURCE_DATE_EPOCH", None)
    full.update(env or {})
    argv = list(prefix) + [str(bin_path("ff-worker")), "build", str(context)] + \
        [str(a) for a in args]
    if cache is not None:
        argv += ["--cache", str(cache)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=full, timeout=timeout)
    b = Build(proc, time.monotonic() - t0)
    if check and b.rc != 0:
        raise AssertionError(f"ff-worker {args} exited {b.rc}:\n{b.stderr[-6000:]}")
    return b


def write_tree(root, files):
    """Writes {relative path: bytes or str} under root; returns root."""
    root = Path(root)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        p.write_bytes(data)
    return root


# ---- a small HTTP file server -----------------------------------------------------


class FileServer:
    """Serves {path: bytes} over HTTP (or HTTPS with cert and key) on
    127.0.0.1 in a thread; counts requests per path."""

    def __init__(self, files, cert=None, key=None):
        self.files = files
        self.hits = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                body = body if body is not None else b"not found\n"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
