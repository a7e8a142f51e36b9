"""ff-registry under faults, load and garbage collection.

1. Parallel pushes of images that share layers.
2. SIGKILL while uploads are in the middle of their bodies, then a restart
   on the same storage; crash debris laid out by hand; clients that vanish
   mid-body; concurrent requests on one upload session.
3. `ff-registry gc` run as a separate process while pushes go on, and the
   grace period for a manifest pushed again.
4. What `ff-registry gc` removes and keeps.
5. The life of an upload session: restart, cancel, expiry.
6. Graceful stop with a chunk still arriving, within and past the grace.

Every test checks the store itself as well as the HTTP answers: each file
in blobs/sha256/ must hash to its name, and tmp/ and uploads/ must hold no
leftovers once the dust has settled."""

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import run

MIB = 1 << 20
# A piece of a request body larger than what ff-registry holds in memory
# before writing (SPOOL_BUF_SIZE in registry/spool.c, 512 KiB): once it is
# sent, some of it is on disk.
OVER_SPOOL = 768 * 1024
# Chunk size of the chunked uploads, as a docker client of modest means uses.
CHUNK = 4 * MIB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# Load tests measure the store, not the rate limiter: lift its limits.
NO_LIMITS = ("[limits]\nsubject_rate = 1000000\nsubject_burst = 1000000\n"
             "ip_rate = 1000000\nip_burst = 1000000\n")
# How long to wait for something another thread or process brings about.
WAIT_S = 30.0
# What `ff-registry gc` prints on success.
GC_LINE = re.compile(r"^gc: (\d+) manifests, (\d+) blob links, (\d+) of (\d+) blobs "
                     r"\((\d+) bytes\) removed$")


# ---- helpers -----------------------------------------------------------------

def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def wait_for(cond, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def entries(reg, sub):
    """Names in <root>/<sub>."""
    return sorted(os.listdir(Path(reg.root) / sub))


def assert_store_sound(reg):
    """Every committed blob file hashes to its name: no partial or foreign
    bytes are ever visible under blobs/."""
    base = Path(reg.root) / "blobs" / "sha256"
    bad = []
    for p in base.glob("*/*"):
        if not p.is_file():
            continue
        got = file_digest(p)
        if got != "sha256:" + p.name or p.parent.name != p.name[:2]:
            bad.append((str(p.relative_to(base)), got))
    assert bad == [], f"blob files whose bytes do not match their name: {bad}"


def gc(reg, *args):
    """Runs `ff-registry -f <config> gc [args]` beside the daemon; returns the
    counts it printed (manifests, links, blobs removed, blobs seen, bytes)."""
    p = run([reg.bin, "-f", reg.config, "gc", *args], check=False, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    m = GC_LINE.match(p.stdout.strip())
    assert m, f"unexpected gc output {p.stdout!r}"
    return tuple(int(x) for x in m.groups())


def error_code(body):
    try:
        return json.loads(body)["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def start_session(reg, repo, tok):
    st, h, body = reg.request("POST", f"/v2/{repo}/blobs/uploads/", tok)
    assert st == 202, (st, body)
    assert h["range"] == "0-0"
    loc = h["location"]
    assert re.fullmatch(rf"/v2/{re.escape(repo)}/blobs/uploads/[0-9a-f]{{32}}", loc), loc
    assert h["docker-upload-uuid"] == loc.rsplit("/", 1)[1]
    return loc


def patch_headers(start, length):
    return {"Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + length - 1}",
            "Content-Length": str(length)}


def patch(reg, loc, tok, data, start):
    return reg.request("PATCH", loc, tok, body=data, headers=patch_headers(start, len(data)))


def upload_chunked(reg, repo, data, tok, chunk=CHUNK):
    """POST, PATCHes, PUT ?digest=; asserts every status. Returns the digest."""
    loc = start_session(reg, repo, tok)
    off = 0
    while off < len(data):
        piece = data[off:off + chunk]
        st, h, body = patch(reg, loc, tok, piece, off)
        assert st == 202, (st, body)
        off += len(piece)
        assert h["range"] == f"0-{off - 1}"
        loc = h["location"]
    return finish_session(reg, repo, loc, data, tok)


def finish_session(reg, repo, loc, data, tok):
    d = digest_of(data)
    st, h, body = reg.request("PUT", f"{loc}?digest={d}", tok)
    assert st == 201, (st, body)
    assert h["docker-content-digest"] == d
    assert h["location"] == f"/v2/{repo}/blobs/{d}"
    return d


def upload_monolithic(reg, repo, data, tok):
    d = digest_of(data)
    st, h, body = reg.request("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", tok,
                              body=data, headers={"Content-Type": "application/octet-stream"})
    assert st == 201, (st, body)
    assert h["docker-content-digest"] == d
    return d


def image_manifest(config, layers, subject=None):
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
         "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)}
                    for x in layers]}
    if subject is not None:
        m["subject"] = {"mediaType": OCI_MANIFEST, "digest": digest_of(subject),
                        "size": len(subject)}
    return json.dumps(m).encode()


def put_manifest(reg, repo, ref, manifest, tok, media_type=OCI_MANIFEST):
    return reg.request("PUT", f"/v2/{repo}/manifests/{ref}", tok, body=manifest,
                       headers={"Content-Type": media_type})


def push_blobs(reg, repo, config, layers, tok, chunked=()):
    """Uploads config and layers; layers whose index is in chunked go up as
    POST + PATCH + PUT, the rest (and the config) monolithically."""
    upload_monolithic(reg, repo, config, tok)
    for i, layer in enumerate(layers):
        if i in chunked:
            upload_chunked(reg, repo, layer, tok, chunk=max(1, len(layer) // 3))
        else:
            upload_monolithic(reg, repo, layer, tok)


def push_image(reg, repo, ref, config, layers, tok, chunked=(), subject=None):
    """Pushes an image and asserts 201; returns (manifest bytes, digest)."""
    push_blobs(reg, repo, config, layers, tok, chunked)
    manifest = image_manifest(config, layers, subject)
    st, h, body = put_manifest(reg, repo, ref, manifest, tok)
    assert st == 201, (st, body)
    d = digest_of(manifest)
    assert h["docker-content-digest"] == d
    assert h["location"] == f"/v2/{repo}/manifests/{d}"
    return manifest, d


def assert_blob_served(reg, repo, digest, tok):
    st, h, body = reg.request("GET", f"/v2/{repo}/blobs/{digest}", tok)
    assert st == 200, (repo, digest, st, body[:300])
    assert h["docker-content-digest"] == digest
    assert digest_of(body) == digest, f"{repo} {digest}: served bytes hash differently"


def assert_blob_absent(reg, repo, digest, tok):
    st, _, body = reg.request("GET", f"/v2/{repo}/blobs/{digest}", tok)
    assert (st, error_code(body)) == (404, "BLOB_UNKNOWN"), (repo, digest, st, body)


def assert_image_served(reg, repo, ref, manifest, tok):
    """GETs the manifest by ref and by digest, then every blob it names."""
    d = digest_of(manifest)
    for r in (ref, d):
        st, h, body = reg.request("GET", f"/v2/{repo}/manifests/{r}", tok,
                                  headers={"Accept": OCI_MANIFEST})
        assert st == 200, (repo, r, st, body)
        assert body == manifest
        assert h["docker-content-digest"] == d
        assert h["content-type"] == OCI_MANIFEST
    m = json.loads(manifest)
    for desc in [m["config"]] + m["layers"]:
        assert_blob_served(reg, repo, desc["digest"], tok)


def assert_manifest_absent(reg, repo, ref, tok):
    st, _, body = reg.request("GET", f"/v2/{repo}/manifests/{ref}", tok)
    assert (st, error_code(body)) == (404, "MANIFEST_UNKNOWN"), (repo, ref, st, body)


def session_path(reg, loc):
    return Path(reg.root) / "uploads" / loc.rsplit("/", 1)[1]


def size_of(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


# ---- 1. parallel pushes ------------------------------------------------------

def test_parallel_overlapping_pushes(registry_factory):
    """32 pushes at once: every image shares a base layer with all others
    and a group layer with seven others; six of eight go to their own
    repository, the rest into one shared repository under different tags.
    The own layers go up chunked, the rest monolithically. All succeed, and
    afterwards every manifest and blob comes back byte for byte."""
    reg = registry_factory(NO_LIMITS)
    n = 32
    base = os.urandom(2 * MIB)
    groups = [os.urandom(512 * 1024 + g) for g in range(4)]
    own = [os.urandom(256 * 1024 + i) for i in range(n)]
    configs = [json.dumps({"architecture": "amd64", "os": "linux", "image": i}).encode()
               for i in range(n)]

    def repo_of(i):
        return "alice/same" if i % 4 == 3 else f"alice/p{i}"

    barrier = threading.Barrier(n)

    def push(i):
        tok = reg.token("alice", repo_of(i), "pull", "push")
        barrier.wait(timeout=WAIT_S)
        return push_image(reg, repo_of(i), f"t{i}", configs[i], [base, groups[i % 4], own[i]],
                          tok, chunked={2})

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(push, i) for i in range(n)]
        pushed = [f.result(timeout=120) for f in futures]

    for i, (manifest, _) in enumerate(pushed):
        tok = reg.token("alice", repo_of(i), "pull")
        assert_image_served(reg, repo_of(i), f"t{i}", manifest, tok)
    tok = reg.token("alice", "alice/same", "pull")
    st, _, body = reg.request("GET", "/v2/alice/same/tags/list", tok)
    assert st == 200, body
    assert sorted(json.loads(body)["tags"]) == sorted(f"t{i}" for i in range(n) if i % 4 == 3)
    # Storage is shared, visibility is not: p1 never pushed p0's own layer.
    assert_blob_absent(reg, "alice/p1", digest_of(own[0]), reg.token("alice", "alice/p1", "pull"))

    # One file per distinct digest, nothing else, nothing left over.
    expected = {digest_of(x) for x in [base, *groups, *own, *configs]}
    expected |= {d for _, d in pushed}
    assert set(reg.blob_files()) == expected
    assert_store_sound(reg)
    assert entries(reg, "tmp") == []
    assert entries(reg, "uploads") == []


# ---- 2. SIGKILL in the middle of uploads -------------------------------------

class Upload:
    """The client's view of one upload: what the registry acknowledged."""

    def __init__(self, name, data):
        self.name = name
        self.data = data
        self.digest = digest_of(data)
        self.loc = None
        self.acked = 0          # bytes acknowledged by 202s
        self.inflight = 0       # length of the chunk being sent, or "put"
        self.created = False    # 201 received
        self.cut = None         # the exception the kill caused, if any
        self.error = None       # an unexpected status


def blocked_body(data, first, sent, release):
    """Yields the first bytes of data, says so, then waits for release
    before yielding the rest (the registry is killed meanwhile)."""
    yield data[:first]
    sent.set()
    release.wait(WAIT_S * 2)
    yield data[first:]


def test_sigkill_mid_upload(registry_factory):
    """Completed, blocked-mid-body and free-running uploads, chunked and
    monolithic, when the registry is SIGKILLed; then a restart on the same
    storage. Acknowledged blobs survive whole, nothing partial is visible,
    tmp/ is swept, and each interrupted session resumes at exactly what it
    acknowledged."""
    reg = registry_factory(NO_LIMITS)
    repo = "alice/crash"
    tok = reg.token("alice", repo, "pull", "push")
    release = threading.Event()

    done_chunked = [Upload(f"done-chunked-{i}", os.urandom(16 * MIB + i)) for i in range(2)]
    done_mono = [Upload(f"done-mono-{i}", os.urandom(8 * MIB + i)) for i in range(2)]
    # Sessions that acknowledge k chunks, then stall 1 MiB into the next.
    stalled_chunked = [(Upload(f"stalled-chunked-{k}", os.urandom(6 * CHUNK + k)), k)
                       for k in (2, 4)]
    # Monolithic bodies that stall 2 MiB in.
    stalled_mono = [Upload(f"stalled-mono-{i}", os.urandom(12 * MIB + i)) for i in range(2)]
    # Sessions still sending 4 MiB chunks as fast as they can.
    running = [Upload(f"running-{i}", os.urandom(64 * MIB + i)) for i in range(2)]
    stalled_sent = {u.name: threading.Event() for u, _ in stalled_chunked}
    stalled_sent.update({u.name: threading.Event() for u in stalled_mono})

    def chunked(u, stall_at=None):
        try:
            u.loc = start_session(reg, repo, tok)
            while u.acked < len(u.data):
                piece = u.data[u.acked:u.acked + CHUNK]
                u.inflight = len(piece)
                if stall_at is not None and u.acked == stall_at * CHUNK:
                    body = blocked_body(piece, MIB, stalled_sent[u.name], release)
                else:
                    body = piece
                st, h, resp = reg.request("PATCH", u.loc, tok, body=body,
                                          headers=patch_headers(u.acked, len(piece)))
                if st != 202 or h.get("range") != f"0-{u.acked + len(piece) - 1}":
                    u.error = (st, h.get("range"), resp)
                    return
                u.acked += len(piece)
                u.inflight = 0
                u.loc = h["location"]
            u.inflight = "put"
            st, h, resp = reg.request("PUT", f"{u.loc}?digest={u.digest}", tok)
            if st == 201 and h.get("docker-content-digest") == u.digest:
                u.created = True
            else:
                u.error = (st, resp)
        except (OSError, http.client.HTTPException) as e:
            u.cut = e

    def monolithic(u, stall=False):
        body = blocked_body(u.data, 2 * MIB, stalled_sent[u.name], release) if stall else u.data
        try:
            st, h, resp = reg.request("POST", f"/v2/{repo}/blobs/uploads/?digest={u.digest}",
                                      tok, body=body,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(len(u.data))})
            if st == 201 and h.get("docker-content-digest") == u.digest:
                u.created = True
            else:
                u.error = (st, resp)
        except (OSError, http.client.HTTPException) as e:
            u.cut = e

    jobs = [(chunked, u) for u in done_chunked] + [(monolithic, u) for u in done_mono]
    jobs += [(lambda u, k=k: chunked(u, k), u) for u, k in stalled_chunked]
    jobs += [(lambda u: monolithic(u, True), u) for u in stalled_mono]
    jobs += [(chunked, u) for u in running]
    threads = [threading.Thread(target=f, args=(u,), name=u.name) for f, u in jobs]
    for t in threads:
        t.start()
    try:
        for t in threads[:len(done_chunked) + len(done_mono)]:
            t.join(120)
        for u in done_chunked + done_mono:
            assert u.created, (u.name, u.error, u.cut)
        for ev in stalled_sent.values():
            assert ev.wait(WAIT_S)
        # The stalled bytes must be on the registry's disk past what it
        # acknowledged, so the restart has a torn tail to cut off.
        for u, k in stalled_chunked:
            assert u.acked == k * CHUNK and u.inflight == CHUNK
            data = session_path(reg, u.loc) / "data"
            wait_for(lambda: size_of(data) >= u.acked + MIB // 2, f"{u.name} mid-chunk")
        tmp = Path(reg.root) / "tmp"
        wait_for(lambda: sum(1 for p in tmp.iterdir() if size_of(p) >= MIB) >= 2,
                 "the stalled monolithic bodies in tmp/")
        for u in running:
            wait_for(lambda: u.acked >= 2 * CHUNK or u.error or u.cut, f"{u.name} progress")
            assert u.error is None and u.cut is None, (u.name, u.error, u.cut)
        reg.daemon.kill()
    finally:
        release.set()
        for t in threads:
            t.join(120)
    assert not any(t.is_alive() for t in threads)

    stalled = [u for u, _ in stalled_chunked] + stalled_mono
    for u in stalled:
        assert not u.created and u.error is None and u.cut is not None, (u.name, u.error)
    for u in running:
        assert u.error is None, (u.name, u.error)

    # The crashed store: torn uploads in tmp/, but every blob is whole.
    assert len(entries(reg, "tmp")) >= 2
    assert_store_sound(reg)
    files = set(reg.blob_files())
    for u in stalled:
        assert u.digest not in files, u.name

    reg2 = registry_factory(NO_LIMITS, root=reg.root, port=reg.port)
    tok = reg2.token("alice", repo, "pull", "push")
    assert entries(reg2, "tmp") == []
    for u in done_chunked + done_mono:
        assert_blob_served(reg2, repo, u.digest, tok)
    for u in stalled_mono:
        assert_blob_absent(reg2, repo, u.digest, tok)

    def resume(u, allowed_sizes):
        st, h, body = reg2.request("GET", u.loc, tok)
        assert st == 204, (u.name, st, body)
        assert h["location"] == u.loc
        size = int(h["range"].split("-")[1]) + 1
        assert size in allowed_sizes, (u.name, h["range"], allowed_sizes)
        if size < len(u.data):
            # A chunk that does not start there is refused, and the answer
            # says where to start.
            st, h, body = patch(reg2, u.loc, tok, u.data[size + 1:size + 2], size + 1)
            assert (st, error_code(body)) == (416, "BLOB_UPLOAD_INVALID"), (u.name, st, body)
            assert h["range"] == f"0-{size - 1}"
            st, h, body = patch(reg2, u.loc, tok, u.data[size:], size)
            assert st == 202, (u.name, st, body)
            assert h["range"] == f"0-{len(u.data) - 1}"
        finish_session(reg2, repo, u.loc, u.data, tok)
        assert_blob_served(reg2, repo, u.digest, tok)

    for u, _ in stalled_chunked:
        resume(u, {u.acked})
    for u in running:
        if u.created:
            assert_blob_served(reg2, repo, u.digest, tok)
            continue
        if u.inflight == "put":
            # Killed during the final PUT: the session may be gone with the
            # blob committed but not linked; the client starts again.
            st, _, _ = reg2.request("GET", u.loc, tok)
            if st == 404:
                upload_monolithic(reg2, repo, u.data, tok)
                assert_blob_served(reg2, repo, u.digest, tok)
                continue
            resume(u, {len(u.data)})
            continue
        # The chunk in flight may have been acknowledged on disk just
        # before the kill without its 202 reaching the client.
        resume(u, {u.acked, u.acked + u.inflight})

    assert entries(reg2, "tmp") == []
    assert entries(reg2, "uploads") == []
    assert_store_sound(reg2)
    expected = {u.digest for u in done_chunked + done_mono + running}
    expected |= {u.digest for u, _ in stalled_chunked}
    assert set(reg2.blob_files()) == expected


def test_restart_repairs_crash_debris(registry_factory):
    """What a crash can leave at each step of the upload protocol, laid out
    by hand on a stopped registry's store: a torn tail past the acknowledged
    size with a half-written info.tmp, a session whose data was already
    linked into blobs/ when the crash hit, a half-created session, and a
    temporary blob. After a restart each is cleaned or resumed."""
    reg = registry_factory()
    repo = "alice/debris"
    tok = reg.token("alice", repo, "pull", "push")
    torn = os.urandom(3 * MIB + 3)
    torn_loc = start_session(reg, repo, tok)
    st, _, body = patch(reg, torn_loc, tok, torn[:MIB], 0)
    assert st == 202, body
    linked = os.urandom(MIB + 7)
    linked_loc = start_session(reg, repo, tok)
    st, _, body = patch(reg, linked_loc, tok, linked, 0)
    assert st == 202, body
    assert reg.daemon.stop() == 0

    root = Path(reg.root)
    with open(session_path(reg, torn_loc) / "data", "ab") as f:
        f.write(os.urandom(300_000))
    (session_path(reg, torn_loc) / "info.tmp").write_bytes(b'{"repo":"alice/deb')
    hexd = digest_of(linked)[7:]
    os.link(session_path(reg, linked_loc) / "data", root / "blobs" / "sha256" / hexd[:2] / hexd)
    staging = root / "uploads" / (".new-" + "ab" * 16)
    staging.mkdir()
    (staging / "data").write_bytes(b"half")
    (root / "tmp" / "blob-0123456789abcdef").write_bytes(os.urandom(5000))

    reg = registry_factory(root=reg.root, port=reg.port)
    assert entries(reg, "tmp") == []
    assert not staging.exists()

    st, h, body = reg.request("GET", torn_loc, tok)
    assert st == 204, body
    assert h["range"] == f"0-{MIB - 1}"
    assert not (session_path(reg, torn_loc) / "info.tmp").exists()
    assert size_of(session_path(reg, torn_loc) / "data") == MIB
    st, h, body = patch(reg, torn_loc, tok, torn[MIB:], MIB)
    assert st == 202, body
    finish_session(reg, repo, h["location"], torn, tok)
    assert_blob_served(reg, repo, digest_of(torn), tok)

    # The finish had committed the bytes but not linked them into the
    # repository: the session is over, and the client pushes again.
    st, _, body = reg.request("GET", linked_loc, tok)
    assert (st, error_code(body)) == (404, "BLOB_UPLOAD_UNKNOWN"), body
    assert not session_path(reg, linked_loc).exists()
    assert digest_of(linked) in reg.blob_files()
    assert_blob_absent(reg, repo, digest_of(linked), tok)
    upload_monolithic(reg, repo, linked, tok)
    assert_blob_served(reg, repo, digest_of(linked), tok)

    assert entries(reg, "uploads") == []
    assert_store_sound(reg)


def send_partial(reg, method, path, tok, length, partial, content_range=None):
    """Sends a request announcing a length-byte body but only the first
    bytes of it; returns the open TLS socket for the caller to drop."""
    ctx = ssl.create_default_context(cafile=str(reg.tls.ca))
    raw = socket.create_connection(("127.0.0.1", reg.port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    head = (f"{method} {path} HTTP/1.1\r\nHost: {reg.host}\r\n"
            f"Authorization: Bearer {tok}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n")
    if content_range:
        head += f"Content-Range: {content_range}\r\n"
    s.sendall(head.encode() + b"\r\n" + partial)
    return s


def test_client_disconnect_mid_body(registry):
    """A client that vanishes in the middle of a body: a monolithic upload
    leaves nothing behind, a chunk is dropped and the session stays at what
    it acknowledged, free for the client to carry on."""
    reg = registry
    repo = "alice/flaky"
    tok = reg.token("alice", repo, "pull", "push")
    data = os.urandom(4 * MIB)
    tmp = Path(reg.root) / "tmp"
    s = send_partial(reg, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest_of(data)}", tok,
                     len(data), data[:MIB])
    wait_for(lambda: any(size_of(p) >= MIB // 2 for p in tmp.iterdir()),
             "the monolithic body in tmp/")
    s.close()
    wait_for(lambda: entries(reg, "tmp") == [], "tmp/ to be cleaned", timeout=5)
    assert_blob_absent(reg, repo, digest_of(data), tok)

    loc = start_session(reg, repo, tok)
    st, _, body = patch(reg, loc, tok, data[:MIB], 0)
    assert st == 202, body
    s = send_partial(reg, "PATCH", loc, tok, 2 * MIB, data[MIB:2 * MIB],
                     content_range=f"{MIB}-{3 * MIB - 1}")
    data_file = session_path(reg, loc) / "data"
    wait_for(lambda: size_of(data_file) >= MIB + MIB // 2, "the chunk on disk")
    s.close()
    wait_for(lambda: size_of(data_file) == MIB, "the dropped chunk to be cut off", timeout=5)
    st, h, body = reg.request("GET", loc, tok)
    assert st == 204, body
    assert h["range"] == f"0-{MIB - 1}"
    st, h, body = patch(reg, loc, tok, data[MIB:], MIB)
    assert st == 202, body
    finish_session(reg, repo, h["location"], data, tok)
    assert_blob_served(reg, repo, digest_of(data), tok)
    assert entries(reg, "uploads") == []
    assert entries(reg, "tmp") == []


def test_one_session_one_request_at_a_time(registry):
    """While a chunk is arriving, a second PATCH, the PUT and DELETE of the
    same session are refused (503, not interleaved); status reads still
    work; the chunk then completes and the blob is exact."""
    reg = registry
    repo = "alice/busy"
    tok = reg.token("alice", repo, "pull", "push")
    data = os.urandom(2 * MIB)
    piece = 64 * 1024
    loc = start_session(reg, repo, tok)
    data_file = session_path(reg, loc) / "data"
    release = threading.Event()
    result = {}

    def body():
        # More than the registry buffers before writing (SPOOL_BUF_SIZE).
        yield data[:OVER_SPOOL]
        release.wait(WAIT_S)
        for off in range(OVER_SPOOL, len(data), piece):
            yield data[off:off + piece]

    def send():
        try:
            result["response"] = reg.request("PATCH", loc, tok, body=body(),
                                             headers=patch_headers(0, len(data)))
        except (OSError, http.client.HTTPException) as e:
            result["error"] = e

    t = threading.Thread(target=send)
    t.start()
    try:
        wait_for(lambda: size_of(data_file) > 0, "the first bytes of the chunk")
        for method, path, payload, headers in (
                ("PATCH", loc, b"x", patch_headers(0, 1)),
                ("PUT", f"{loc}?digest={digest_of(data)}", None, None),
                ("DELETE", loc, None, None)):
            st, _, resp = reg.request(method, path, tok, body=payload, headers=headers)
            assert (st, error_code(resp)) == (503, "UNAVAILABLE"), (method, st, resp)
        st, h, resp = reg.request("GET", loc, tok)
        assert st == 204, resp
        assert h["range"] == "0-0"
    finally:
        release.set()
        t.join(WAIT_S)
    assert "error" not in result, result
    st, h, resp = result["response"]
    assert st == 202, resp
    assert h["range"] == f"0-{len(data) - 1}"
    finish_session(reg, repo, loc, data, tok)
    assert_blob_served(reg, repo, digest_of(data), tok)


# ---- 3. GC beside the daemon while pushes run --------------------------------

def test_gc_while_pushing(registry_factory):
    """Garbage older than the grace period is collected by `ff-registry gc`
    runs in a separate process while eight clients push; no manifest that
    was acknowledged loses a blob."""
    reg = registry_factory("[gc]\ngrace = 2\n" + NO_LIMITS)
    tok_keep = reg.token("alice", "alice/keep", "pull", "push")
    tok_g = reg.token("alice", "alice/garbage", "pull", "push", "delete")

    # Old but referenced: must survive.
    keep_cfg = b'{"architecture":"amd64","os":"linux","image":"keep"}'
    keep_layers = [os.urandom(300_000)]
    keep_manifest, _ = push_image(reg, "alice/keep", "v1", keep_cfg, keep_layers, tok_keep)
    # Garbage: an image whose manifest was deleted, and a blob nothing uses.
    g_cfg = b'{"architecture":"amd64","os":"linux","image":"garbage"}'
    g_layers = [os.urandom(200_000), os.urandom(100_000)]
    g_manifest, g_digest = push_image(reg, "alice/garbage", "old", g_cfg, g_layers, tok_g)
    st, _, body = reg.request("DELETE", f"/v2/alice/garbage/manifests/{g_digest}", tok_g)
    assert st == 202, body
    loose = os.urandom(150_000)
    upload_monolithic(reg, "alice/garbage", loose, tok_g)
    garbage = [g_cfg, *g_layers, g_manifest, loose]
    garbage_digests = {digest_of(x) for x in garbage}
    assert garbage_digests <= set(reg.blob_files())
    # Older than the 2 s grace by whole seconds, as the registry counts them.
    time.sleep(3.2)

    stop = threading.Event()
    base = os.urandom(MIB)
    acked = []    # (repo, tag, manifest)
    refused = []  # manifests answered 400 MANIFEST_BLOB_UNKNOWN

    def pusher(t):
        repo = f"alice/w{t}"
        tok = reg.token("alice", repo, "pull", "push")
        k = 0
        while not stop.is_set():
            cfg = json.dumps({"architecture": "amd64", "os": "linux", "w": t, "k": k}).encode()
            layers = [base, os.urandom(64 * 1024 + 1000 * t + k)]
            push_blobs(reg, repo, cfg, layers, tok, chunked={1} if k % 2 else ())
            manifest = image_manifest(cfg, layers)
            st, h, body = put_manifest(reg, repo, f"n{k}", manifest, tok)
            if st == 201:
                assert h["docker-content-digest"] == digest_of(manifest)
                acked.append((repo, f"n{k}", manifest))
            else:
                assert (st, error_code(body)) == (400, "MANIFEST_BLOB_UNKNOWN"), (st, body)
                refused.append((repo, f"n{k}", body))
            k += 1

    runs = []
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(pusher, t) for t in range(8)]
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not any(f.done() for f in futures):
                runs.append(gc(reg))
        finally:
            stop.set()
        for f in futures:
            f.result(timeout=120)
    runs.append(gc(reg))

    # The first run found exactly the garbage: four links (two layers, the
    # config, the loose blob) and five files (those plus the manifest's
    # bytes); the manifest row itself went with the DELETE.
    assert len(runs) >= 3, runs
    assert runs[0][:3] == (0, 4, 5), runs[0]
    assert runs[0][4] == sum(len(x) for x in garbage), runs[0]
    print(f"\ngc runs: {len(runs)}, manifests acknowledged: {len(acked)}, "
          f"refused with MANIFEST_BLOB_UNKNOWN: {len(refused)}")
    assert len(acked) >= 16, "the pushers barely ran"
    # With a 2 s grace a layer is collected before its manifest arrives only
    # when a push stalls; a collector that ignored the grace would refuse
    # most of them.
    assert len(refused) * 10 <= len(acked), (len(refused), len(acked), refused[:3])

    files = set(reg.blob_files())
    assert not garbage_digests & files
    for d in (digest_of(g_cfg), *(digest_of(x) for x in g_layers), digest_of(loose)):
        assert_blob_absent(reg, "alice/garbage", d, tok_g)
    assert_manifest_absent(reg, "alice/garbage", g_digest, tok_g)
    assert_image_served(reg, "alice/keep", "v1", keep_manifest, tok_keep)
    # Each acknowledged manifest by its tag, then each blob they name once
    # per repository (the base layer is in all of them).
    tokens = {repo: reg.token("alice", repo, "pull") for repo, _, _ in acked}
    blobs = set()
    for repo, tag, manifest in acked:
        st, h, body = reg.request("GET", f"/v2/{repo}/manifests/{tag}", tokens[repo])
        assert (st, body) == (200, manifest), (repo, tag, st, body)
        assert h["docker-content-digest"] == digest_of(manifest)
        m = json.loads(manifest)
        blobs |= {(repo, d["digest"]) for d in [m["config"]] + m["layers"]}
    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(assert_blob_served, reg, repo, d, tokens[repo])
                  for repo, d in blobs]:
            f.result()
    assert_store_sound(reg)
    assert entries(reg, "tmp") == []
    assert entries(reg, "uploads") == []
    log = reg.daemon.log()
    assert "internal.error" not in log, log[-3000:]


def test_gc_grace_covers_a_repushed_manifest(registry_factory):
    """A multi-arch push sends its per-platform manifests by digest, then
    the index. When such a manifest already exists, untagged and older than
    the grace period (an earlier identical build), pushing it again must
    make it count as new, as pushing an existing blob does: a collector
    running between the two PUTs must not take it."""
    reg = registry_factory("[gc]\ngrace = 2\n")
    repo = "alice/multiarch"
    tok = reg.token("alice", repo, "pull", "push")
    cfg = b'{"architecture":"arm64","os":"linux"}'
    layers = [os.urandom(20_000)]
    manifest, digest = push_image(reg, repo, digest_of(image_manifest(cfg, layers)), cfg,
                                  layers, tok)
    time.sleep(3.2)

    # The rebuild: same blobs, same manifest, by digest; then gc strikes.
    push_blobs(reg, repo, cfg, layers, tok)
    st, h, body = put_manifest(reg, repo, digest, manifest, tok)
    assert st == 201, body
    assert gc(reg)[:3] == (0, 0, 0)
    assert_image_served(reg, repo, digest, manifest, tok)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
         "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()
    st, _, body = put_manifest(reg, repo, "latest", index, tok, OCI_INDEX)
    assert st == 201, body


# ---- 4. ff-registry gc -------------------------------------------------------

def test_gc_command_removes_unreferenced(registry):
    """Image A and B share a layer; A's manifest is deleted; `gc --grace 0`
    removes A's own config, layer and manifest bytes and nothing of B."""
    reg = registry
    repo = "alice/gc"
    tok = reg.token("alice", repo, "pull", "push", "delete")
    shared = os.urandom(100_000)
    a_cfg = b'{"architecture":"amd64","os":"linux","image":"a"}'
    b_cfg = b'{"architecture":"arm64","os":"linux","image":"b"}'
    a_own = os.urandom(50_000)
    b_own = os.urandom(60_000)
    a_manifest, a_digest = push_image(reg, repo, "a", a_cfg, [shared, a_own], tok)
    b_manifest, b_digest = push_image(reg, repo, "b", b_cfg, [shared, b_own], tok)
    assert len(reg.blob_files()) == 7

    st, _, body = reg.request("DELETE", f"/v2/{repo}/manifests/{a_digest}", tok)
    assert st == 202, body
    assert_manifest_absent(reg, repo, a_digest, tok)
    assert_manifest_absent(reg, repo, "a", tok)
    # Gone for clients, but the bytes wait for the collector.
    assert a_digest in reg.blob_files()
    # --grace 0 still spares what was written in the current second.
    time.sleep(1.1)

    assert gc(reg, "--grace", "0") == (
        0, 2, 3, 7, len(a_cfg) + len(a_own) + len(a_manifest))
    assert set(reg.blob_files()) == {digest_of(shared), digest_of(b_cfg), digest_of(b_own),
                                     b_digest}
    assert_blob_absent(reg, repo, digest_of(a_cfg), tok)
    assert_blob_absent(reg, repo, digest_of(a_own), tok)
    assert_image_served(reg, repo, "b", b_manifest, tok)
    assert_store_sound(reg)
    # Nothing left to do, and the daemon's own grace (3600 s) keeps all.
    assert gc(reg, "--grace", "0") == (0, 0, 0, 4, 0)
    assert gc(reg) == (0, 0, 0, 4, 0)

    p = run([reg.bin, "-f", reg.config, "gc", "--grace", "soon"], check=False)
    assert p.returncode == 2
    assert 'bad argument "soon"' in p.stderr


def test_gc_command_follows_manifest_references(registry):
    """Untagged manifests go, an index's children only once the index is
    gone, a referrer only once its subject is gone; tagged manifests and
    what they reference (children, subjects) stay."""
    reg = registry
    repo = "alice/refs"
    tok = reg.token("alice", repo, "pull", "push", "delete")
    images = {}

    def image(name, ref, subject=None):
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "image": name}).encode()
        layers = [os.urandom(10_000 + len(images))]
        manifest, _ = push_image(reg, repo, ref, cfg, layers, tok,
                                 subject=images[subject][0] if subject else None)
        images[name] = (manifest, [cfg, *layers])
        return manifest

    def index(name, ref, child):
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest_of(images[child][0]),
             "size": len(images[child][0]),
             "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
        st, _, resp = put_manifest(reg, repo, digest_of(body) if ref is None else ref, body,
                                   tok, OCI_INDEX)
        assert st == 201, resp
        images[name] = (body, [])

    image("x", "x")                       # tagged: stays
    image("y", "moving")                  # untagged when z takes its tag: goes
    image("z", "moving")
    image("w", "tmp-w")                   # only an untagged index refers to it
    index("idx", None, "w")               # untagged index: goes, then w
    image("v", "tmp-v")
    index("tidx", "multi", "v")           # tagged index: stays, and so does v
    image("r", "tmp-r", subject="z")      # referrer of a live subject: stays
    image("r2", "tmp-r2", subject="y")    # referrer of y: goes after y
    for tag in ("tmp-w", "tmp-v", "tmp-r", "tmp-r2"):
        st, _, body = reg.request("DELETE", f"/v2/{repo}/manifests/{tag}", tok)
        assert st == 202, (tag, body)
    time.sleep(1.1)

    gone = ["y", "w", "idx", "r2"]
    kept = ["x", "z", "v", "tidx", "r"]
    gone_files = {digest_of(images[n][0]) for n in gone}
    gone_files |= {digest_of(b) for n in gone for b in images[n][1]}
    all_files = set(reg.blob_files())
    assert gone_files <= all_files
    gone_bytes = len(images["y"][0]) + len(images["w"][0]) + len(images["idx"][0]) + \
        len(images["r2"][0]) + sum(len(b) for n in gone for b in images[n][1])
    gone_links = sum(len(images[n][1]) for n in gone)
    assert gc(reg, "--grace", "0") == (4, gone_links, len(gone_files), len(all_files),
                                       gone_bytes)
    assert set(reg.blob_files()) == all_files - gone_files
    for n in gone:
        assert_manifest_absent(reg, repo, digest_of(images[n][0]), tok)
        for b in images[n][1]:
            assert_blob_absent(reg, repo, digest_of(b), tok)
    for n in kept:
        manifest, blobs = images[n]
        st, _, body = reg.request("GET", f"/v2/{repo}/manifests/{digest_of(manifest)}", tok,
                                  headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        assert (st, body) == (200, manifest), (n, st, body)
        for b in blobs:
            assert_blob_served(reg, repo, digest_of(b), tok)
    assert_store_sound(reg)


# ---- 5. upload sessions: restart, cancel, expiry -----------------------------

def test_upload_session_restart_cancel_expiry(registry_factory):
    """A session survives a restart at its acknowledged size; DELETE cancels
    one for good; the periodic job expires a session idle longer than
    upload_expiry and leaves a fresh one alone. upload_expiry cannot be set
    below 60 s, so the idle session is made old by moving its files' mtime
    back (the age the registry measures) rather than by waiting."""
    extra = "[gc]\ninterval = 1\nupload_expiry = 60\n"
    reg = registry_factory(extra)
    repo = "alice/sessions"
    tok = reg.token("alice", repo, "pull", "push")
    data = os.urandom(3 * MIB + 5)
    loc = start_session(reg, repo, tok)
    st, h, body = patch(reg, loc, tok, data[:2 * MIB], 0)
    assert st == 202, body
    assert h["range"] == f"0-{2 * MIB - 1}"
    loc2 = start_session(reg, repo, tok)
    st, _, body = patch(reg, loc2, tok, b"x" * 1000, 0)
    assert st == 202, body
    assert reg.daemon.stop() == 0

    reg = registry_factory(extra, root=reg.root, port=reg.port)
    st, h, body = reg.request("GET", loc, tok)
    assert st == 204, body
    assert h["range"] == f"0-{2 * MIB - 1}"
    assert h["location"] == loc
    assert h["docker-upload-uuid"] == loc.rsplit("/", 1)[1]
    # Only its own repository knows the session.
    other = loc.replace(f"/v2/{repo}/", "/v2/alice/other/")
    st, _, body = reg.request("GET", other, reg.token("alice", "alice/other", "push"))
    assert (st, error_code(body)) == (404, "BLOB_UPLOAD_UNKNOWN"), body

    st, _, body = reg.request("DELETE", loc2, tok)
    assert st == 204, body
    assert not session_path(reg, loc2).exists()
    for method, path, payload in (("GET", loc2, None), ("DELETE", loc2, None),
                                  ("PATCH", loc2, b"y"),
                                  ("PUT", f"{loc2}?digest={digest_of(b'x' * 1000)}", None)):
        headers = patch_headers(1000, 1) if method == "PATCH" else None
        st, _, body = reg.request(method, path, tok, body=payload, headers=headers)
        assert (st, error_code(body)) == (404, "BLOB_UPLOAD_UNKNOWN"), (method, st, body)

    st, h, body = patch(reg, loc, tok, data[2 * MIB:], 2 * MIB)
    assert st == 202, body
    finish_session(reg, repo, h["location"], data, tok)
    assert_blob_served(reg, repo, digest_of(data), tok)

    idle = start_session(reg, repo, tok)
    st, _, body = patch(reg, idle, tok, b"z" * 10, 0)
    assert st == 202, body
    fresh = start_session(reg, repo, tok)
    old = time.time() - 2 * 3600
    for f in ("info", "data"):
        os.utime(session_path(reg, idle) / f, (old, old))
    wait_for(lambda: not session_path(reg, idle).exists(), "the idle session to expire",
             timeout=5)
    st, _, body = reg.request("GET", idle, tok)
    assert (st, error_code(body)) == (404, "BLOB_UPLOAD_UNKNOWN"), body
    time.sleep(1.2)  # at least one more pass of the periodic job
    st, h, body = reg.request("GET", fresh, tok)
    assert st == 204, body
    assert entries(reg, "uploads") == [fresh.rsplit("/", 1)[1]]

    # upload_expiry has a floor of 60 s: a smaller value is a config error.
    cfg = Path(reg.config).read_text().replace("upload_expiry = 60", "upload_expiry = 59")
    bad = Path(reg.config).with_name("registry-bad-expiry.ini")
    bad.write_text(cfg)
    p = run([reg.bin, "-f", bad, "-n"], check=False)
    assert p.returncode != 0
    assert "upload_expiry" in p.stdout + p.stderr


# ---- 6. graceful shutdown ----------------------------------------------------

def test_sigterm_lets_inflight_patch_finish(registry_factory):
    """SIGTERM while a chunk trickles in over ~2 s: new connections are
    refused at once, the chunk completes with 202, the daemon exits 0 well
    within shutdown_grace (10 s), and the chunk is there after a restart."""
    reg = registry_factory()
    repo = "alice/slow"
    tok = reg.token("alice", repo, "pull", "push")
    data = os.urandom(2 * MIB)
    piece = 64 * 1024
    loc = start_session(reg, repo, tok)
    data_file = session_path(reg, loc) / "data"
    result = {}

    def slow_body():
        for off in range(0, len(data), piece):
            yield data[off:off + piece]
            time.sleep(0.07)

    def send():
        try:
            result["response"] = reg.request("PATCH", loc, tok, body=slow_body(),
                                             headers=patch_headers(0, len(data)))
        except (OSError, http.client.HTTPException) as e:
            result["error"] = e

    t = threading.Thread(target=send)
    t.start()
    try:
        wait_for(lambda: size_of(data_file) >= 4 * piece, "the first bytes of the chunk")
        sent_at = time.monotonic()
        reg.daemon.proc.send_signal(signal.SIGTERM)

        def refused():
            try:
                with socket.create_connection(("127.0.0.1", reg.port), timeout=0.5):
                    return False
            except OSError:
                return True

        wait_for(refused, "new connections to be refused", timeout=1.0)
        assert t.is_alive(), "the chunk finished before the refusal could be seen"
    finally:
        t.join(30)
    assert not t.is_alive()
    assert "error" not in result, result
    st, h, body = result["response"]
    assert st == 202, body
    assert h["range"] == f"0-{len(data) - 1}"
    rc = reg.daemon.proc.wait(timeout=15)
    elapsed = time.monotonic() - sent_at
    assert rc == 0
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    log = reg.daemon.log()
    assert re.search(r"http\.stop.*in_flight=1 cut=0", log), log[-2000:]
    assert "graceful=yes" in log, log[-2000:]

    reg = registry_factory(root=reg.root, port=reg.port)
    st, h, body = reg.request("GET", loc, tok)
    assert st == 204, body
    assert h["range"] == f"0-{len(data) - 1}"
    finish_session(reg, repo, loc, data, tok)
    assert_blob_served(reg, repo, digest_of(data), tok)
    assert entries(reg, "uploads") == []


def test_sigterm_cuts_a_request_past_shutdown_grace(registry_factory, daemons):
    """A chunk that stalls past shutdown_grace is cut: the daemon still
    exits 0 soon after the grace, says the stop was not graceful, and the
    session stays at what it had acknowledged before."""
    reg = registry_factory()
    assert reg.daemon.stop() == 0
    cfg = Path(reg.config).read_text()
    assert "shutdown_grace = 10\n" in cfg
    Path(reg.config).write_text(cfg.replace("shutdown_grace = 10\n", "shutdown_grace = 1\n"))
    reg.daemon = daemons.start("ff-registry", [reg.bin, "-f", reg.config], port=reg.port,
                               ca=reg.tls.ca)
    repo = "alice/stuck"
    tok = reg.token("alice", repo, "pull", "push")
    data = os.urandom(2 * MIB)
    loc = start_session(reg, repo, tok)
    st, _, body = patch(reg, loc, tok, data[:MIB], 0)
    assert st == 202, body
    data_file = session_path(reg, loc) / "data"
    sent = threading.Event()
    release = threading.Event()
    result = {}

    def send():
        try:
            result["response"] = reg.request(
                "PATCH", loc, tok, body=blocked_body(data[MIB:], OVER_SPOOL, sent, release),
                headers=patch_headers(MIB, MIB))
        except (OSError, http.client.HTTPException) as e:
            result["error"] = e

    t = threading.Thread(target=send)
    t.start()
    try:
        assert sent.wait(WAIT_S)
        wait_for(lambda: size_of(data_file) > MIB, "the stalled chunk on disk")
        sent_at = time.monotonic()
        reg.daemon.proc.send_signal(signal.SIGTERM)
        rc = reg.daemon.proc.wait(timeout=15)
        elapsed = time.monotonic() - sent_at
    finally:
        release.set()
        t.join(WAIT_S)
    assert rc == 0
    assert 0.9 < elapsed < 5, f"stopped after {elapsed:.1f} s with a 1 s grace"
    assert "response" not in result, result
    log = reg.daemon.log()
    assert re.search(r"http\.stop.*in_flight=1 cut=1 grace_s=1", log), log[-2000:]
    assert "graceful=no" in log, log[-2000:]

    reg = registry_factory(root=reg.root, port=reg.port)
    st, h, body = reg.request("GET", loc, tok)
    assert st == 204, body
    assert h["range"] == f"0-{MIB - 1}"
    assert size_of(data_file) == MIB
    st, h, body = patch(reg, loc, tok, data[MIB:], MIB)
    assert st == 202, body
    finish_session(reg, repo, h["location"], data, tok)
    assert_blob_served(reg, repo, digest_of(data), tok)
