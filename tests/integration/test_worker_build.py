"""`ff-worker build` end to end: real ff-builder and ff-registry, real
runc, qemu-user-static for arm64 and armv7, busybox base images from
Debian's packages pushed as library/busybox:1 (an index of three
platforms), results pulled back with skopeo and unpacked with umoci.

The image is pushed the way a worker does: with the credentials of a
worker that holds a running job of the app dev/app (the only identity
besides admins that may push). Needs root (mounts, runc, binfmt_misc)."""

import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from builderlib import skopeo  # noqa: E402
from busybox import ARCHES, UNAME  # noqa: E402
from conftest import bin_path  # noqa: E402
from workerlib import (ALL_ARCHES, BASE_REPO, BASE_TAG, FileServer, Layout,  # noqa: E402
                       busybox_index_layout, ff_worker, qemu_possible, sha, start_farm,
                       tar_bytes, trusting, write_tree)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mounts and runc")

EPOCH = 1700000000
BASE = f"{BASE_REPO}:{BASE_TAG}"

SAMPLE_DOCKERFILE = f"""\
# A sample app that uses every kind of step the engine has.
FROM {BASE}
ARG GREETING=hello
ENV APP_HOME=/srv/app \\
    GREETING=${{GREETING}}
WORKDIR /srv/app
COPY conf/ ./conf/
RUN uname -m > /arch.txt && mkdir -p data && echo scratch > data/tmp.txt \\
 && echo keep > data/keep.txt && chmod 0750 data && echo RUN-MARKER-1
COPY hello.txt ./
COPY --chown=app:app --chmod=0640 secret.txt owned.txt
RUN rm data/tmp.txt && echo RUN-MARKER-2
USER app
RUN echo "$GREETING from $(id -u):$(id -g) in $(pwd)" > /home/app/whoami.txt \\
 && uname -m > /home/app/arch.txt && echo RUN-MARKER-3
LABEL org.example.name="sample app" version=1.0
EXPOSE 8080 9090/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /arch.txt"]
"""
# The kind of every step that makes a layer, in order.
SAMPLE_STEPS = ["COPY", "RUN", "COPY", "COPY", "RUN", "RUN"]


def sample_context(root, hello="hello, world\n"):
    root = write_tree(root, {
        "Dockerfile": SAMPLE_DOCKERFILE,
        "conf/app.ini": "[app]\nport = 8080\n",
        "conf/nested/deep.txt": "deep\n",
        "hello.txt": hello,
        "secret.txt": "not really\n",
        "ignored.log": "never copied\n",
        ".dockerignore": "*.log\n",
    })
    os.chmod(root / "hello.txt", 0o604)
    os.chmod(root / "conf" / "nested", 0o751)
    return root


def need(arch):
    reason = qemu_possible(arch)
    if reason is not None:
        pytest.skip(f"{arch} cannot run here: {reason}")


@pytest.fixture(scope="session")
def base_layout(tmp_path_factory):
    """busybox for amd64, arm64 and armv7 as one OCI layout, tagged 1."""
    dest = tmp_path_factory.mktemp("base") / "busybox"
    busybox_index_layout(dest)
    return dest


@pytest.fixture
def farm(builder, registry_behind_builder, tls_cert, cert_dir, tmp_path, base_layout):
    return start_farm(builder, registry_behind_builder, tls_cert, cert_dir, tmp_path / "store",
                      base_layout)


def base_layer_digest(base_layout, arch):
    lay = Layout(base_layout)
    index = json.loads((base_layout / "index.json").read_text())
    image_index = json.loads(lay.read(index["manifests"][0]["digest"]))
    _, oci_arch, _ = ARCHES[arch]
    for m in image_index["manifests"]:
        if m["platform"]["architecture"] == oci_arch:
            return json.loads(lay.read(m["digest"]))["layers"][0]["digest"]
    raise AssertionError(arch)


def check_sample_image(rootfs, config, members, arch, base_layer, manifest_layers):
    # Files written by RUN in each architecture (natively or under qemu).
    assert (rootfs / "arch.txt").read_text() == UNAME[arch] + "\n"
    assert (rootfs / "home/app/arch.txt").read_text() == UNAME[arch] + "\n"
    # USER app: its files belong to uid 1000.
    who = rootfs / "home/app/whoami.txt"
    assert who.read_text() == "hello from 1000:1000 in /srv/app\n"
    assert (who.stat().st_uid, who.stat().st_gid) == (1000, 1000)
    # COPY: contents, modes, owners (0:0 unless --chown), .dockerignore.
    app = rootfs / "srv/app"
    assert (app / "hello.txt").read_text() == "hello, world\n"
    assert stat.S_IMODE((app / "hello.txt").stat().st_mode) == 0o604
    assert (app / "hello.txt").stat().st_uid == 0
    assert (app / "conf/app.ini").read_text() == "[app]\nport = 8080\n"
    assert (app / "conf/nested/deep.txt").read_text() == "deep\n"
    assert stat.S_IMODE((app / "conf/nested").stat().st_mode) == 0o751
    owned = app / "owned.txt"
    assert owned.read_text() == "not really\n"
    assert (owned.stat().st_uid, owned.stat().st_gid) == (1000, 1000)
    assert stat.S_IMODE(owned.stat().st_mode) == 0o640
    assert not (app / "ignored.log").exists()
    # The RUN that deleted a file of an earlier RUN: gone, through a whiteout.
    assert not (app / "data/tmp.txt").exists()
    assert (app / "data/keep.txt").read_text() == "keep\n"
    assert stat.S_IMODE((app / "data").stat().st_mode) == 0o750
    assert any(n.endswith("srv/app/data/.wh.tmp.txt") for layer in members for n in layer)
    assert [n for layer in members for n in layer if "tmp.txt" in n and ".wh." not in n] \
        == ["srv/app/data/tmp.txt"]
    # Base layer kept as pulled (never re-compressed), then one layer per
    # step that changed something.
    assert manifest_layers[0] == base_layer
    assert len(manifest_layers) == 1 + len(SAMPLE_STEPS)
    # Every time in a layer is clamped to SOURCE_DATE_EPOCH.
    assert (app / "hello.txt").stat().st_mtime <= EPOCH
    assert who.stat().st_mtime <= EPOCH

    _, oci_arch, variant = ARCHES[arch]
    assert config["architecture"] == oci_arch
    assert config.get("variant") == variant
    assert config["os"] == "linux"
    assert config["created"] == "2023-11-14T22:13:20Z"
    c = config["config"]
    assert c["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "APP_HOME=/srv/app", "GREETING=hello"]
    assert c["User"] == "app"
    assert c["WorkingDir"] == "/srv/app"
    assert c["Entrypoint"] == ["/bin/sh", "-c"]
    assert c["Cmd"] == ["cat /arch.txt"]
    assert c["Labels"] == {"org.example.name": "sample app", "version": "1.0"}
    assert c["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    assert len(config["rootfs"]["diff_ids"]) == 1 + len(SAMPLE_STEPS)


def test_sample_app_for_three_architectures(farm, tmp_path, base_layout):
    for arch in ALL_ARCHES:
        need(arch)
    ctx = sample_context(tmp_path / "ctx")
    b = ff_worker(ctx, "--arch", "amd64", "--arch", "arm64", "--arch", "armv7",
                  "--push", f"{farm.app_repo}:1", "--epoch", EPOCH, env=farm.env(),
                  cache=tmp_path / "cache")
    print(f"three-arch build and push: {b.elapsed:.1f} s")
    # The digest on stdout is the pushed index's.
    raw = farm.raw(f"{farm.app_repo}:1", creds=farm.dev)
    assert b.digest == sha(raw)
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "arm", "os": "linux", "variant": "v7"}]
    for arch in ALL_ARCHES:
        assert [s[1:] for s in b.steps(arch)] == [(k, "done") for k in SAMPLE_STEPS], \
            b.stderr
        assert [ln for ln in b.output(arch) if ln.startswith("RUN-MARKER")] == \
            ["RUN-MARKER-1", "RUN-MARKER-2", "RUN-MARKER-3"], b.stderr

    for arch, desc in zip(ALL_ARCHES, index["manifests"]):
        rootfs, config, members = farm.pull(f"{farm.app_repo}:1", arch, tmp_path / arch)
        manifest = json.loads(farm.raw(f"{farm.app_repo}@{desc['digest']}", creds=farm.dev))
        check_sample_image(rootfs, config, members, arch, base_layer_digest(base_layout, arch),
                           [layer["digest"] for layer in manifest["layers"]])


def rewrite(root):
    """Writes every file of the context again: new mtimes and inodes, the
    same content and modes."""
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink():
            mode = stat.S_IMODE(p.stat().st_mode)
            data = p.read_bytes()
            p.unlink()
            p.write_bytes(data)
            os.chmod(p, mode)


def test_two_clean_builds_give_the_same_digest(farm, tmp_path):
    need("arm64")
    need("armv7")
    digests, layouts = [], []
    for n in (1, 2):
        ctx = tmp_path / f"ctx{n}"
        sample_context(ctx)
        if n == 2:
            rewrite(ctx)
        out = tmp_path / f"out{n}"
        # The second takes its time from the environment, as CI systems set it.
        epoch = ("--epoch", EPOCH) if n == 1 else ()
        env = {**farm.env(), **({"SOURCE_DATE_EPOCH": str(EPOCH)} if n == 2 else {})}
        b = ff_worker(ctx, "--arch", "amd64,arm64,armv7", "--oci-layout", f"{out}:v1", *epoch,
                      env=env, cache=tmp_path / f"cache{n}")
        print(f"clean build {n}: {b.elapsed:.1f} s")
        digests.append(b.digest)
        layouts.append(out)
    assert digests[0] == digests[1]
    assert digests[0].startswith("sha256:") and len(digests[0]) == 71
    blobs = [sorted(p.name for p in (out / "blobs" / "sha256").iterdir()) for out in layouts]
    assert blobs[0] == blobs[1]
    index = json.loads((layouts[0] / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digests[0]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"


def test_cache_no_change_then_one_copy_source_changed(farm, tmp_path):
    ctx = sample_context(tmp_path / "ctx")
    cache = tmp_path / "cache"
    args = ("--arch", "amd64", "--oci-layout", tmp_path / "out", "--epoch", EPOCH)
    cold = ff_worker(ctx, *args, env=farm.env(), cache=cache)
    assert [s[1:] for s in cold.steps("amd64")] == [(k, "done") for k in SAMPLE_STEPS]
    assert "RUN-MARKER-1" in cold.output("amd64")

    # No change (files written again, same content): nothing runs.
    rewrite(ctx)
    warm = ff_worker(ctx, *args, env=farm.env(), cache=cache)
    print(f"cold {cold.elapsed:.2f} s, no-change rebuild {warm.elapsed:.2f} s")
    assert [s[1:] for s in warm.steps("amd64")] == [(k, "cached") for k in SAMPLE_STEPS]
    assert warm.output("amd64") == []
    assert warm.digest == cold.digest
    assert "6 from the cache" in warm.stderr and "0 steps run" in warm.stderr

    # One COPY source changed: the steps before it come from the cache,
    # that step and every later one run again.
    (ctx / "hello.txt").write_text("hello, changed\n")
    changed = ff_worker(ctx, *args, env=farm.env(), cache=cache)
    changed_at = [k for k, kind in enumerate(SAMPLE_STEPS) if kind == "COPY"][1]
    assert [s[1:] for s in changed.steps("amd64")] == \
        [(kind, "cached" if k < changed_at else "done") for k, kind in enumerate(SAMPLE_STEPS)]
    markers = [ln for ln in changed.output("amd64") if ln.startswith("RUN-MARKER")]
    assert markers == ["RUN-MARKER-2", "RUN-MARKER-3"]
    assert changed.digest != cold.digest

    # --no-cache runs everything, and gives the same image.
    fresh = ff_worker(ctx, *args, "--no-cache", env=farm.env(), cache=cache)
    assert [s[1:] for s in fresh.steps("amd64")] == [(k, "done") for k in SAMPLE_STEPS]
    assert fresh.digest == changed.digest


TEMPLATE = f"""\
FROM {BASE} AS build
RUN echo "built for %%FF_ARCH%% app %%FF_APP%%" > /out.txt && uname -m >> /out.txt
FROM scratch
COPY --from=build /out.txt /bin/busybox /
CMD ["/busybox", "cat", "/out.txt"]
"""


def test_template_multi_stage_and_zstd(farm, tmp_path):
    need("arm64")
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile.template": TEMPLATE})
    b = ff_worker(ctx, "--arch", "arm64", "--app", "dev/app", "--zstd", "--push",
                  f"{farm.app_repo}:tpl", env=farm.env(), cache=tmp_path / "cache")
    raw = farm.raw(f"{farm.app_repo}:tpl", creds=farm.dev)
    assert sha(raw) == b.digest
    manifest = json.loads(raw)
    assert [layer["mediaType"] for layer in manifest["layers"]] == \
        ["application/vnd.oci.image.layer.v1.tar+zstd"]
    # skopeo pulls it (and verifies every digest); zstd -d reads the layer.
    dest = tmp_path / "pulled"
    res = skopeo(
        "copy", "--src-cert-dir", farm.cert_dir, "--src-creds", farm.dev,
        f"docker://{farm.registry}/{farm.app_repo}:tpl", f"oci:{dest}:tpl", check=False)
    assert res.returncode == 0, res.stderr
    lay = Layout(dest)
    plain = subprocess.run(["zstd", "-d", "-c"], input=lay.read(manifest["layers"][0]["digest"]),
                           capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(plain)) as t:
        assert sorted(t.getnames()) == ["busybox", "out.txt"]
        assert t.extractfile("out.txt").read() == b"built for arm64 app dev/app\naarch64\n"
        assert t.getmember("busybox").mode & 0o111
    config = json.loads(lay.read(manifest["config"]["digest"]))
    assert (config["architecture"], config["variant"]) == ("arm64", "v8")
    assert config["config"]["Cmd"] == ["/busybox", "cat", "/out.txt"]
    # The final stage is FROM scratch: the busybox layer is not in it.
    assert len(config["rootfs"]["diff_ids"]) == 1


# ---- bad input: a clear error naming the step, nothing pushed ------------------------


def build_fails(farm, tmp_path, dockerfile, files=None, args=(), tag="bad", symlinks=None,
                prefix=()):
    """Builds dockerfile (and files, and symlinks {name: target}) for amd64
    with --push dev/app:<tag>; expects exit status 1, and that the registry
    got neither the tag nor any blob upload. Returns the Build."""
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": dockerfile, **(files or {})})
    for name, target in (symlinks or {}).items():
        os.symlink(target, ctx / name)
    uploads = farm.uploads()
    b = ff_worker(ctx, "--arch", "amd64", "--push", f"{farm.app_repo}:{tag}", *args,
                  env=farm.env(), cache=tmp_path / "cache", check=False, prefix=prefix)
    assert b.rc == 1, b.stderr
    assert b.stdout == ""
    assert b.error() is not None, b.stderr
    assert b.stderr.splitlines()[-1].startswith("ff-worker: "), b.stderr
    # "Dockerfile:3: COPY: <what>", not "Dockerfile:3: COPY: COPY: <what>".
    assert not re.match(r"Dockerfile:\d+: (\w+): \1: ", b.error()), b.error()
    assert tag not in farm.tags(farm.app_repo)
    assert farm.uploads() == uploads
    return b


# A step that succeeds before the bad one, so that something was built
# (and cached) when the build fails.
GOOD = f"FROM {BASE}\nRUN echo good > /good.txt\n"

BAD_RECIPES = {
    "unknown instruction": (
        GOOD + "FROBNICATE all the things\n", {},
        ["Dockerfile:3", "FROBNICATE"]),
    "missing COPY source": (
        GOOD + "COPY missing.txt /x\n", {"present.txt": "x"},
        ["Dockerfile:3: COPY", "missing.txt"]),
    "COPY of ../": (
        GOOD + "COPY ../outside.txt /x\n", {},
        ["Dockerfile:3: COPY", "../outside.txt"]),
    "COPY of a glob": (
        GOOD + "COPY nothing-*.txt /x/\n", {},
        ["Dockerfile:3: COPY", "nothing-*.txt"]),
    "RUN exits non-zero": (
        GOOD + "RUN echo about to fail && exit 3\n", {},
        ["Dockerfile:3: RUN", "3"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe(farm, tmp_path, case):
    dockerfile, files, needles = BAD_RECIPES[case]
    b = build_fails(farm, tmp_path, dockerfile, files)
    msg = b.error()
    for needle in needles:
        assert needle in msg, msg
    print(f"{case}: {msg}")


def test_copy_of_a_symlink_leaving_the_context(farm, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret of the host\n")
    for n, (link, target) in enumerate((("abs-link", str(outside)),
                                        ("rel-link", "../outside.txt"))):
        b = build_fails(farm, tmp_path / link, GOOD + f"COPY {link} /x\n",
                        symlinks={link: target}, tag=f"bad{n}")
        msg = b.error()
        assert msg.startswith("Dockerfile:3: COPY: ") and f'symlink "{link}"' in msg, msg
        assert "points outside" in msg, msg
        print(f"{link}: {msg}")


def test_one_architecture_failing_pushes_nothing(farm, tmp_path):
    need("arm64")
    b = build_fails(farm, tmp_path, GOOD + 'RUN test "$(uname -m)" = x86_64\n',
                    args=("--arch", "arm64"))
    msg = b.error()
    print(msg)
    assert "Dockerfile:3: RUN: " in msg and "status 1" in msg, msg
    # Of several architectures, the message names the one that failed.
    assert "arm64" in msg, msg
    # amd64 built completely before arm64 failed; still nothing went up.
    assert [s[1:] for s in b.steps("amd64")] == [("RUN", "done"), ("RUN", "done")]


def crafted_base(farm, tmp_path, repo, entries):
    """Pushes library/<repo>:1, one amd64 image whose only layer is a tar of
    entries (see tar_bytes); returns the layer's blob digest."""
    layout = Layout(tmp_path / f"{repo}-layout")
    desc = layout.image([tar_bytes(entries)])
    layout.tag("1", desc)
    farm.push_layout(layout.path, f"library/{repo}:1", "1")
    manifest = json.loads(layout.read(desc["digest"]))
    return manifest["layers"][0]["digest"]


def symlink_entry(name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def no_escape(tmp_path, name):
    """Nothing called name was written outside the layer being unpacked."""
    found = list(Path(tmp_path).rglob(name)) + \
        [p for p in (Path("/") / name, Path("/tmp") / name) if p.exists()]
    assert found == [], found


@pytest.mark.parametrize("how", ["dot-dot", "through-symlink"])
def test_base_layer_with_traversal_entries(farm, tmp_path, how):
    evil = f"ff-evil-{os.getpid()}-{how}"
    if how == "dot-dot":
        entries = [("ok.txt", b"ok\n"), (f"../../../{evil}", b"evil\n")]
    else:
        entries = [("ok.txt", b"ok\n"), symlink_entry("up", "../../../../../../../tmp"),
                   (f"up/{evil}", b"evil\n")]
    digest = crafted_base(farm, tmp_path, "evil", entries)
    b = build_fails(farm, tmp_path, "FROM library/evil:1\nRUN echo never\n")
    msg = b.error()
    print(f"{how}: {msg}")
    assert msg.startswith("Dockerfile:1: FROM: "), msg
    assert digest[7:19] in msg or evil in msg, msg
    assert "never" not in b.output("amd64")
    no_escape(tmp_path, evil)


def test_base_image_blob_digest_mismatch(farm, tmp_path):
    digest = crafted_base(farm, tmp_path, "tampered", [("hello.txt", b"hello\n" * 100)])
    path = farm.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    b = build_fails(farm, tmp_path, "FROM library/tampered:1\nRUN echo never\n")
    msg = b.error()
    print(msg)
    assert msg.startswith("Dockerfile:1: FROM: "), msg
    assert "digest" in msg and digest in msg, msg
    # The corrupt blob was not kept in the worker's cache.
    assert not list((tmp_path / "cache").rglob(digest[7:]))


def test_add_of_a_tar_with_traversal_entries(farm, tmp_path):
    evil = f"ff-evil-{os.getpid()}-add"
    tar = tar_bytes([("ok.txt", b"ok\n"), (f"../../{evil}", b"evil\n")])
    b = build_fails(farm, tmp_path, GOOD + "ADD evil.tar /dest/\n", {"evil.tar": tar})
    msg = b.error()
    print(msg)
    assert msg.startswith("Dockerfile:3: ADD: "), msg
    assert evil in msg and ".." in msg, msg
    no_escape(tmp_path, evil)


def test_add_url_with_checksum(farm, tmp_path, tls_cert):
    """ADD <url> fetches https only and trusts the system's CAs (not FF_CA),
    so ff-worker runs where the system bundle also holds the test CA."""
    body = b"fetched over https\n"
    server = FileServer({"/files/data.txt": body}, cert=tls_cert.cert, key=tls_cert.key)
    prefix = trusting(tls_cert.ca, tmp_path)
    try:
        # The right checksum: the file lands in the image.
        right = sha(body)
        url = f"{server.url.replace('127.0.0.1', 'localhost')}/files/data.txt"
        ctx = write_tree(tmp_path / "ok", {"Dockerfile": GOOD + f"ADD --checksum={right} "
                                           f"{url} /srv/\n"})
        out = tmp_path / "out"
        ff_worker(ctx, "--arch", "amd64", "--oci-layout", out, env=farm.env(),
                  cache=tmp_path / "cache-ok", prefix=prefix)
        lay = Layout(out)
        index = json.loads((out / "index.json").read_text())
        manifest = json.loads(lay.read(index["manifests"][0]["digest"]))
        with tarfile.open(fileobj=io.BytesIO(lay.read(manifest["layers"][-1]["digest"]))) as t:
            assert t.extractfile("srv/data.txt").read() == body
        # A wrong one: a clear error naming the step, nothing pushed.
        wrong = sha(b"something else")
        b = build_fails(farm, tmp_path, GOOD + f"ADD --checksum={wrong} {url} /srv/\n",
                        prefix=prefix)
        msg = b.error()
        print(msg)
        assert msg.startswith("Dockerfile:3: ADD: "), msg
        assert wrong in msg and right in msg, msg
        assert server.hits["/files/data.txt"] == 2
    finally:
        server.stop()


def test_run_over_its_time_limit(farm, tmp_path):
    """Also: the --creds secret is gone from the command line while the
    build runs."""
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": GOOD + "RUN echo sleeping && sleep 30\n"})
    user, secret = farm.worker.split(":", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FF_")}
    uploads = farm.uploads()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [bin_path("ff-worker"), "build", ctx, "--arch", "amd64", "--push",
         f"{farm.app_repo}:slow", "--registry", farm.registry, "--ca", farm.ca, "--creds",
         f"{user}:{secret}", "--cache", tmp_path / "cache", "--step-timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # The options are parsed (and the secret wiped) long before the step
    # has run into its limit.
    time.sleep(1.0)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert user.encode() in cmdline and secret.encode() not in cmdline, cmdline
    assert proc.returncode == 1, err
    assert out == ""
    line = err.splitlines()[-1]
    print(f"{line} ({elapsed:.1f} s)")
    assert line.startswith("ff-worker: Dockerfile:3: RUN: "), err
    assert "time limit of 2 s" in line, line
    assert elapsed < 20
    assert secret not in out + err
    assert "slow" not in farm.tags(farm.app_repo)
    assert farm.uploads() == uploads


# ---- credentials and the command line ----------------------------------------------


def test_credentials_refused_or_not_allowed_to_push(farm, tmp_path):
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": GOOD})
    user = farm.worker.split(":", 1)[0]
    wrong = "ffw_" + "x" * 43
    b = ff_worker(ctx, "--arch", "amd64", "--push", f"{farm.app_repo}:1",
                  env={**farm.env(), "FF_ADMIN_TOKEN": wrong}, cache=tmp_path / "c1",
                  check=False)
    assert b.rc == 1, b.stderr
    msg = b.error()
    print(msg)
    assert user in msg and wrong not in b.stderr + b.stdout, msg
    # The app's owner may pull it but not push: only its worker may.
    b = ff_worker(ctx, "--arch", "amd64", "--push", f"{farm.app_repo}:1",
                  env=farm.env(farm.dev), cache=tmp_path / "c2", check=False)
    assert b.rc == 1, b.stderr
    msg = b.error()
    print(msg)
    assert "denie" in msg, msg
    assert farm.tags(farm.app_repo) == []


USAGE_ERRORS = [
    (["--arch", "x86"], 'option "--arch": unknown architecture "x86"'),
    (["--arch", "amd64"], "give --push REPO:TAG and/or --oci-layout"),
    (["--arch", "amd64", "--push", "a/b:1"], 'option "--push" needs a registry'),
    (["--arch", "amd64", "--oci-layout", "o", "--build-arg", "1X=y"],
     '"1X" is not NAME=VALUE'),
    (["--arch", "amd64", "--oci-layout", "o", "--step-memory", "12Q"],
     'option "--step-memory": "12Q" is not a size'),
    (["--arch", "amd64", "--oci-layout", "o", "--no-cache", "--no-cache"],
     'option "--no-cache" given twice'),
    (["--arch", "amd64", "--oci-layout", "o", "--creds", ":hunter2"],
     'option "--creds": expected USER:SECRET'),
]


def test_command_line(tmp_path):
    exe = str(bin_path("ff-worker"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FF_")}

    def ffw(*args, cwd=None):
        return subprocess.run([exe] + [str(a) for a in args], capture_output=True, text=True,
                              env=env, cwd=cwd)

    for args, needle in USAGE_ERRORS:
        r = ffw("build", tmp_path, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("ff-worker: ") and needle in r.stderr, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
        assert "hunter2" not in r.stderr
    r = ffw("build", "--help")
    assert r.returncode == 0 and "--oci-layout DIR[:TAG]" in r.stdout and r.stderr == ""
    r = ffw("--help")
    assert r.returncode == 0 and "ff-worker build" in r.stdout
    r = ffw()
    assert r.returncode == 2 and "usage:" in r.stderr
    r = ffw("frobnicate")
    assert r.returncode == 2 and 'unknown command "frobnicate"' in r.stderr
    # Not a usage error but a failed build: exit 1, naming what is wrong.
    r = ffw("build", tmp_path / "nowhere", "--arch", "amd64", "--oci-layout", tmp_path / "o",
            "--cache", tmp_path / "cache")
    assert r.returncode == 1 and str(tmp_path / "nowhere") in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith("ff-worker: ")
    # Relative paths work (the cache's overlay mounts need absolute ones).
    write_tree(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY a /a\n", "a": "a\n"})
    r = ffw("build", "ctx", "--arch", "amd64", "--oci-layout", "out:x", "--cache", "cache",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("sha256:")
    assert json.loads((tmp_path / "out/index.json").read_text())["manifests"][0]["digest"] == \
        r.stdout.strip()
    assert (tmp_path / "cache" / "steps").is_dir()


def mounts_under(path):
    return [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if ln.split()[4].startswith(str(path))]


def test_killed_mid_run_then_the_next_build_works(farm, tmp_path):
    """kill -9 while a RUN step runs: the next build with the same cache
    clears what was left (runc container, overlay mount, work directories)
    and builds; nothing was pushed by the killed one."""
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": GOOD + "RUN echo started && sleep 30\n"})
    cache = tmp_path / "cache"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FF_")}, **farm.env()}
    proc = subprocess.Popen([bin_path("ff-worker"), "build", ctx, "--arch", "amd64", "--push",
                             f"{farm.app_repo}:killed", "--cache", cache],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if line.rstrip().endswith("  started"):
            break
    proc.kill()
    proc.communicate(timeout=30)
    assert "killed" not in farm.tags(farm.app_repo)
    (ctx / "Dockerfile").write_text(GOOD + "RUN echo second run\n")
    b = ff_worker(ctx, "--arch", "amd64", "--push", f"{farm.app_repo}:2", env=farm.env(),
                  cache=cache)
    assert "second run" in b.output("amd64")
    assert b.steps("amd64")[0][1:] == ("RUN", "cached")
    assert farm.tags(farm.app_repo) == ["2"]
    # The container of the killed step is gone (runc_reap), and no mount
    # under the cache survives the second build.
    assert mounts_under(cache) == []
    left = subprocess.run(["runc", "--root", str(cache / "runc"), "list", "-q"],
                          capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout
