"""Layers written by workers/layer_write.c, read by other tools.

worker-layer (tests/integration/bin/worker-layer.c) writes a directory as a
layer blob and unpacks blobs. Here GNU tar, gzip, Python's tarfile and
umoci (Go: compress/gzip and archive/tar, the readers of skopeo, containerd
and distribution) read what it writes, including the multi-member gzip of
layers over 1 MiB, and umoci applies our whiteouts across two layers of an
OCI layout assembled here. The unpacker is fed tars crafted with tarfile."""

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile

import pytest

from conftest import bin_path, run

EPOCH = 1700000000
OLD = 1600000000


def layer(*args, check=True):
    """Runs worker-layer; returns its "key value" lines as a dict."""
    proc = run([bin_path("worker-layer"), *args], check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"worker-layer {args}: {proc.stderr}")
    if proc.returncode != 0:
        return proc
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put(path, data=b"", mode=0o644, uid=0, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.lchown(path, uid, uid)  # before chmod: chown clears setuid
    os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def lines(n):
    return b"".join(b"line %07d of a layer file\n" % i for i in range(n))


def base_tree(root):
    """A first layer: files, a directory to make opaque later, links, a
    2.6 MB file so the gzip has three members."""
    put(root / "etc/hostname", b"fleet\n", mtime=OLD)
    put(root / "bin/tool", b"#!/bin/sh\necho tool\n", mode=0o4755)
    put(root / "home/user/notes", b"mine\n", mode=0o600, uid=1000)
    os.lchown(root / "home/user", 1000, 1000)
    put(root / "app/old.conf", b"old\n")
    put(root / "app/keep-not", b"hidden by opaque\n")
    put(root / "data/big.txt", lines(100000))
    put(root / ("d" * 120) / ("f" * 120), b"long path\n")
    put(root / "caf\u00e9.txt", b"utf-8 name\n")
    os.link(root / "bin/tool", root / "bin/tool-link")
    os.symlink("tool", root / "bin/sym")


def upper_tree(root):
    """A second layer as overlayfs leaves it: a whiteout and an opaque dir."""
    root.mkdir()
    os.mknod(root / "etc-gone", stat.S_IFCHR, os.makedev(0, 0))
    (root / "etc").mkdir()
    os.mknod(root / "etc/hostname", stat.S_IFCHR, os.makedev(0, 0))
    (root / "app").mkdir()
    os.setxattr(root / "app", "trusted.overlay.opaque", b"y")
    put(root / "app/new.conf", b"new\n")


def test_gnu_tar_gzip_and_tarfile_read_our_layer(tmp_path):
    base_tree(tmp_path / "up")
    out = tmp_path / "layer.tar.gz"
    info = layer("write", tmp_path / "up", out, "--epoch", str(EPOCH))
    blob = out.read_bytes()
    assert info["digest"] == sha256(blob)
    assert int(info["size"]) == len(blob)
    assert info["diff_id"] == sha256(gzip.decompress(blob))
    assert info["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    run(["gzip", "-t", out])
    # Three gzip members: one per MiB of tar.
    assert int(info["tar_size"]) > 2 << 20
    assert blob.count(b"\x1f\x8b\x08") >= 3

    listing = run(["tar", "--numeric-owner", "--full-time", "-tvzf", out],
                  env=dict(os.environ, TZ="UTC")).stdout
    rows = [line.split() for line in listing.splitlines()]
    names = [r[5] for r in rows]
    assert names == sorted(names, key=lambda n: n.rstrip("/").split("/"))
    by_name = {r[5]: r for r in rows}
    assert by_name["bin/tool"][0] == "-rwsr-xr-x"
    assert by_name["home/user/"][1] == "1000/1000"
    assert by_name["home/user/notes"][1] == "1000/1000"
    assert by_name["etc/hostname"][3] == "2020-09-13"  # older than the epoch: kept
    assert by_name["bin/sym"][0].startswith("l") and by_name["bin/sym"][7] == "tool"
    assert by_name["bin/tool-link"][0].startswith("h")
    assert "caf\u00e9.txt" in by_name or "caf\\303\\251.txt" in by_name

    with tarfile.open(out) as tf:
        members = tf.getmembers()
        byn = {m.name: m for m in members}
        assert byn["bin/tool-link"].islnk() and byn["bin/tool-link"].linkname == "bin/tool"
        assert byn["caf\u00e9.txt"].isfile()
        assert byn[("d" * 120) + "/" + ("f" * 120)].size == 10
        assert all(m.mtime <= EPOCH for m in members)
        assert all(m.uname == "" and m.gname == "" for m in members)
        assert not any("atime" in m.pax_headers or "ctime" in m.pax_headers
                       for m in members)
        assert tf.extractfile("data/big.txt").read() == lines(100000)


def test_same_content_same_digest(tmp_path):
    base_tree(tmp_path / "a")
    out1, out2 = tmp_path / "1.tgz", tmp_path / "2.tgz"
    i1 = layer("write", tmp_path / "a", out1, "--epoch", str(EPOCH), "--threads", "1")
    # A copy made later, in another order, with other atimes and inodes.
    subprocess.run(["cp", "-a", tmp_path / "a", tmp_path / "b"], check=True)
    os.utime(tmp_path / "b/etc/hostname", (1, OLD))
    i2 = layer("write", tmp_path / "b", out2, "--epoch", str(EPOCH), "--threads", "2")
    assert i1["digest"] == i2["digest"]
    assert out1.read_bytes() == out2.read_bytes()
    z1 = layer("write", tmp_path / "a", tmp_path / "1.zst", "--zstd", "--epoch", str(EPOCH))
    assert z1["diff_id"] == i1["diff_id"]
    run(["zstd", "-t", tmp_path / "1.zst"])


def oci_layout(path, blobs):
    """An OCI image layout with one image, tag "t", of the given
    (blob path, worker-layer info) layers."""
    (path / "blobs/sha256").mkdir(parents=True)

    def add(data):
        digest = sha256(data)
        (path / "blobs/sha256" / digest.split(":")[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    layers = []
    for blob, info in blobs:
        desc = add(blob.read_bytes())
        assert desc["digest"] == info["digest"]
        layers.append({"mediaType": info["media_type"], **desc})
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [i["diff_id"] for _, i in blobs]}}
    cdesc = add(json.dumps(config).encode())
    manifest = {"schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cdesc},
                "layers": layers}
    mdesc = add(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **mdesc,
         "annotations": {"org.opencontainers.image.ref.name": "t"}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))


def test_umoci_applies_our_layers_and_whiteouts(tmp_path):
    base_tree(tmp_path / "base")
    upper_tree(tmp_path / "upper")
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    i1 = layer("write", tmp_path / "base", l1, "--epoch", str(EPOCH))
    i2 = layer("write", tmp_path / "upper", l2, "--overlay", "--epoch", str(EPOCH))
    oci_layout(tmp_path / "oci", [(l1, i1), (l2, i2)])
    run(["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:t", tmp_path / "bundle"])
    rootfs = tmp_path / "bundle/rootfs"
    assert not (rootfs / "etc/hostname").exists()          # whiteout
    assert (rootfs / "app/new.conf").read_bytes() == b"new\n"
    assert not (rootfs / "app/old.conf").exists()           # opaque directory
    assert not (rootfs / "app/keep-not").exists()
    assert (rootfs / "data/big.txt").read_bytes() == lines(100000)
    st = os.stat(rootfs / "bin/tool")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert os.stat(rootfs / "bin/tool-link").st_ino == st.st_ino
    assert os.readlink(rootfs / "bin/sym") == "tool"
    assert os.stat(rootfs / "home/user/notes").st_uid == 1000
    assert (rootfs / ("d" * 120) / ("f" * 120)).read_bytes() == b"long path\n"

    # umoci checks diff_ids: a wrong one is refused, so the match above
    # says our diff_id is right.
    bad = dict(i1, diff_id=sha256(b"not this layer"))
    oci_layout(tmp_path / "oci-bad", [(l1, bad)])
    proc = run(["umoci", "unpack", "--image", f"{tmp_path / 'oci-bad'}:t",
                tmp_path / "bundle-bad"], check=False)
    assert proc.returncode != 0
    assert "diffid" in proc.stderr.lower() or "diff_id" in proc.stderr.lower()


def test_round_trip_gives_overlay_back(tmp_path):
    upper_tree(tmp_path / "upper")
    blob = tmp_path / "l.zst"
    info = layer("write", tmp_path / "upper", blob, "--overlay", "--zstd",
                 "--epoch", str(EPOCH))
    (tmp_path / "lower").mkdir()
    got = layer("unpack", blob, tmp_path / "lower", "--diff-id", info["diff_id"],
                "--digest", info["digest"])
    assert got["entries"] == info["entries"]
    lower = tmp_path / "lower"
    st = os.lstat(lower / "etc/hostname")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert stat.S_ISCHR(os.lstat(lower / "etc-gone").st_mode)
    assert os.getxattr(lower / "app", "trusted.overlay.opaque") == b"y"
    assert (lower / "app/new.conf").read_bytes() == b"new\n"
    # A wrong expected diff_id is an error.
    (tmp_path / "again").mkdir()
    proc = layer("unpack", blob, tmp_path / "again", "--diff-id", sha256(b"x"), check=False)
    assert proc.returncode == 1
    assert "diff_id mismatch" in proc.stderr


def crafted(path, entries, compress=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            data = None
            if kind == tarfile.REGTYPE:
                data = io.BytesIO(arg)
                ti.size = len(arg)
            else:
                ti.linkname = arg
            tf.addfile(ti, data)
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("entries,why", [
    ([("../outside/x", tarfile.REGTYPE, b"x")], 'layer entry "../outside/x": path has a ".."'),
    ([("OUTSIDE/x", tarfile.REGTYPE, b"x")], "path is absolute"),
    ([("l", tarfile.SYMTYPE, "OUTSIDE"), ("l/x", tarfile.REGTYPE, b"x")],
     'layer entry "l/x": opening its parent directory: the path goes through a symlink'),
    ([("l", tarfile.SYMTYPE, "../outside"), ("h", tarfile.LNKTYPE, "l/secret")],
     'layer entry "h": opening the hard link target\'s directory: the path goes through'),
    ([("h", tarfile.LNKTYPE, "../../etc/shadow")], "hard link target has a \"..\""),
])
def test_unpack_refuses_escapes(tmp_path, entries, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    fixed = [(n.replace("OUTSIDE", str(outside)), k,
              a.replace("OUTSIDE", str(outside)) if isinstance(a, str) else a)
             for n, k, a in entries]
    crafted(tmp_path / "evil.tgz", fixed, compress=True)
    (tmp_path / "dest").mkdir()
    proc = layer("unpack", tmp_path / "evil.tgz", tmp_path / "dest", check=False)
    assert proc.returncode == 1
    assert why.replace("OUTSIDE", str(outside)) in proc.stderr
    assert sorted(os.listdir(outside)) == ["secret"]
    assert os.stat(outside / "secret").st_nlink == 1
