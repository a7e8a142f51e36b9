"""ff-registry with real clients: skopeo through the token flow, umoci, and
raw HTTPS requests for the protocol corners skopeo does not reach."""

import hashlib
import json
import os


from conftest import run

PASSWORD = {"alice": "alice-password", "bob": "bob-password", "admin": "admin-password"}


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(cert_dir, *args, user="alice", check=True):
    """skopeo with the farm CA and credentials for the token realm."""
    creds = []
    for a in args:
        if a.startswith("docker://"):
            flag = "--dest-creds" if a is args[-1] else "--src-creds"
            creds += [flag, f"{user}:{PASSWORD[user]}"]
    cmd = ["skopeo", "--command-timeout", "120s"] + list(args[:1])
    if args[0] in ("copy",):
        cmd += ["--src-cert-dir", str(cert_dir), "--dest-cert-dir", str(cert_dir)] + creds
    else:
        cmd += ["--cert-dir", str(cert_dir), "--creds", f"{user}:{PASSWORD[user]}"]
    cmd += list(args[1:])
    return run(cmd, check=check)


def make_image(layout, tag, files, arch="amd64"):
    """An OCI image in layout:tag with one layer per (path, content)."""
    if not (layout / "index.json").exists():
        run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:{tag}"])
    src = layout.parent / f"src-{tag}"
    src.mkdir(exist_ok=True)
    for i, (path, content) in enumerate(files):
        f = src / f"f{i}"
        f.write_bytes(content)
        run(["umoci", "insert", "--image", f"{layout}:{tag}", f, path])
    run(["umoci", "config", "--image", f"{layout}:{tag}", "--architecture", arch,
         "--config.cmd", "/bin/app"])


def layout_manifest(layout, tag):
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m
    raise KeyError(tag)


def add_index(layout, tag, children):
    """Adds an OCI index over the images tagged children (tag -> arch)."""
    entries = []
    for child, arch in children.items():
        d = dict(layout_manifest(layout, child))
        d.pop("annotations", None)
        d["platform"] = {"architecture": arch, "os": "linux"}
        entries.append(d)
    body = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}).encode()
    digest = sha(body)
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(body)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": digest, "size": len(body),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    (layout / "index.json").write_text(json.dumps(index))
    return digest


def test_skopeo_oci_image_round_trip(registry, cert_dir, tmp_path):
    layout = tmp_path / "img"
    make_image(layout, "v1", [("/etc/one.txt", b"one\n"), ("/app/two.txt", b"two" * 5000),
                              ("/app/three.bin", os.urandom(70000))])
    ref = f"docker://{registry.host}/alice/app:v1"
    skopeo(cert_dir, "copy", f"oci:{layout}:v1", ref)
    pushed = layout_manifest(layout, "v1")["digest"]

    info = json.loads(skopeo(cert_dir, "inspect", ref).stdout)
    assert info["Digest"] == pushed
    assert len(info["Layers"]) == 3
    raw = skopeo(cert_dir, "inspect", "--raw", ref).stdout.encode()
    assert sha(raw) == pushed
    tags = json.loads(skopeo(cert_dir, "list-tags", f"docker://{registry.host}/alice/app").stdout)
    assert tags["Tags"] == ["v1"]

    back = tmp_path / "back"
    skopeo(cert_dir, "copy", ref, f"oci:{back}:v1")
    assert layout_manifest(back, "v1")["digest"] == pushed
    for blob in (layout / "blobs" / "sha256").iterdir():
        copy = back / "blobs" / "sha256" / blob.name
        if copy.exists():
            assert copy.read_bytes() == blob.read_bytes()
    run(["umoci", "unpack", "--image", f"{back}:v1", tmp_path / "bundle"])
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "etc" / "one.txt").read_bytes() == b"one\n"
    assert (rootfs / "app" / "two.txt").read_bytes() == b"two" * 5000

    skopeo(cert_dir, "delete", ref)
    res = skopeo(cert_dir, "inspect", ref, check=False)
    assert res.returncode != 0 and "manifest unknown" in res.stderr.lower()


def test_skopeo_multi_arch_index(registry, cert_dir, tmp_path):
    layout = tmp_path / "img"
    make_image(layout, "amd64", [("/arch", b"amd64\n")], arch="amd64")
    make_image(layout, "arm64", [("/arch", b"arm64\n")], arch="arm64")
    index_digest = add_index(layout, "multi", {"amd64": "amd64", "arm64": "arm64"})
    ref = f"docker://{registry.host}/alice/multi:v1"
    skopeo(cert_dir, "copy", "--all", f"oci:{layout}:multi", ref)
    raw = skopeo(cert_dir, "inspect", "--raw", ref).stdout.encode()
    assert sha(raw) == index_digest
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    back = tmp_path / "back"
    skopeo(cert_dir, "copy", "--all", ref, f"oci:{back}:multi")
    assert layout_manifest(back, "multi")["digest"] == index_digest
    arm_digest = layout_manifest(layout, "arm64")["digest"]
    child = f"docker://{registry.host}/alice/multi@{arm_digest}"
    assert json.loads(skopeo(cert_dir, "inspect", "--config", child).stdout)["architecture"] \
        == "arm64"


def test_skopeo_docker_v2_manifest(registry, cert_dir, tmp_path):
    layout = tmp_path / "img"
    make_image(layout, "v1", [("/hello", b"hello\n")])
    ref = f"docker://{registry.host}/alice/docker:v1"
    skopeo(cert_dir, "copy", "--format", "v2s2", f"oci:{layout}:v1", ref)
    raw = json.loads(skopeo(cert_dir, "inspect", "--raw", ref).stdout)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    back = tmp_path / "back"
    skopeo(cert_dir, "copy", ref, f"dir:{back}")
    assert (back / "manifest.json").exists()


def test_skopeo_refused_without_grant(registry, cert_dir, tmp_path):
    layout = tmp_path / "img"
    make_image(layout, "v1", [("/x", b"x")])
    skopeo(cert_dir, "copy", f"oci:{layout}:v1", f"docker://{registry.host}/alice/shared:v1")
    # bob may pull alice/shared but push nothing.
    skopeo(cert_dir, "inspect", f"docker://{registry.host}/alice/shared:v1", user="bob")
    res = skopeo(cert_dir, "copy", f"oci:{layout}:v1",
                 f"docker://{registry.host}/alice/shared:v2", user="bob", check=False)
    assert res.returncode != 0
    assert "unauthorized" in res.stderr.lower() or "denied" in res.stderr.lower()
    status, _, _ = registry.request("GET", "/v2/alice/shared/manifests/v2",
                                    registry.token("admin", "alice/shared", "pull"))
    assert status == 404
