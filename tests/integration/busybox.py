"""Tiny base images for tests, made from Debian's busybox-static packages.

Until base-images/ publishes real ones, tests that need a rootfs or an OCI
image for amd64, arm64 or armv7 make it here:

    make_rootfs(dest, "arm64")        a directory: bin/busybox and links,
                                      /etc/passwd (root, app 1000), /etc/group,
                                      /tmp 1777, empty /proc /dev /sys
    make_oci_layout(dest, "armv7")    the same as a one-layer OCI image layout
                                      (tag "latest"), reproducible byte for byte

The .deb files are cached in /var/cache/fleetforge/busybox/ (FF_BUSYBOX_CACHE
overrides), where deploy/install-deps puts them; a missing one is fetched
with `apt-get download` on first use, which needs the foreign architectures
install-deps adds (`dpkg --add-architecture arm64 armhf`)."""

import fcntl
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("FF_BUSYBOX_CACHE", "/var/cache/fleetforge/busybox"))

# Worker architecture -> (Debian architecture, OCI architecture, OCI variant).
ARCHES = {
    "amd64": ("amd64", "amd64", None),
    "arm64": ("arm64", "arm64", "v8"),
    "armv7": ("armhf", "arm", "v7"),
}
ARCHES["armhf"] = ARCHES["armv7"]

# What `uname -m` says in each, natively or under qemu-user.
UNAME = {"amd64": "x86_64", "arm64": "aarch64", "armv7": "armv7l", "armhf": "armv7l"}

# Applets linked in /bin: the minimum the issue names, and what the tests of
# the build engine use (id, grep, dd, unshare, wget, nc …).
APPLETS = (
    "sh ls cat echo uname mkdir rm sha256sum sleep id touch "
    "grep dd unshare wget nc env pwd printf true false ln mv cp chmod chown "
    "stat head tail wc mount swapon umount ip seq tr sed"
).split()

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = ("root:x:0:\n"
         "users:x:100:app\n"
         "app:x:1000:\n"
         "nogroup:x:65534:\n")

# Layer timestamps: fixed, so that the same package gives the same digests.
EPOCH = 0


def _debian_arch(arch):
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r} (expected amd64, arm64 or armv7)")
    return ARCHES[arch][0]


def deb_path(arch):
    """The cached busybox-static .deb for arch, downloaded when missing."""
    darch = _debian_arch(arch)
    found = sorted(CACHE.glob(f"busybox-static_*_{darch}.deb"))
    if found:
        return found[-1]
    CACHE.mkdir(parents=True, exist_ok=True)
    # One download at a time when several test processes start together.
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(CACHE.glob(f"busybox-static_*_{darch}.deb"))
        if found:
            return found[-1]
        proc = subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                               f"busybox-static:{darch}"], cwd=CACHE, capture_output=True,
                              text=True)
        found = sorted(CACHE.glob(f"busybox-static_*_{darch}.deb"))
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"apt-get download busybox-static:{darch} failed "
                               f"(has deploy/install-deps run?):\n{proc.stderr}")
        return found[-1]


def _busybox_binary(arch):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb_path(arch)), tmp], check=True)
        return (Path(tmp) / "bin" / "busybox").read_bytes()


def make_rootfs(dest, arch):
    """Lays out a busybox rootfs for arch in dest (created, must not exist
    or be empty) and returns dest as a Path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "etc", "proc", "dev", "sys", "root", "home/app", "tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    os.chown(dest / "home/app", 1000, 1000)
    busybox = dest / "bin" / "busybox"
    busybox.write_bytes(_busybox_binary(arch))
    os.chmod(busybox, 0o755)
    for applet in APPLETS:
        os.symlink("busybox", dest / "bin" / applet)
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


def _tar_layer(rootfs):
    """The rootfs as an uncompressed tar: sorted, numeric owners, fixed
    times, so that the digest depends on the content only."""
    buf = io.BytesIO()
    root = Path(rootfs)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            info = tar.gettarinfo(str(root / rel), arcname=rel)
            info.mtime = EPOCH
            info.uname = info.gname = ""
            if info.isreg():
                with open(root / rel, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def make_oci_layout(dest, arch, tag="latest"):
    """Writes an OCI image layout with one gzip layer of make_rootfs(arch)
    to dest and returns the manifest's descriptor (dict with digest, size,
    mediaType)."""
    dest = Path(dest)
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tar = _tar_layer(make_rootfs(Path(tmp) / "rootfs", arch))
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=EPOCH, compresslevel=6) as z:
        z.write(tar)
    layer = _put_blob(dest, gz.getvalue())
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    _, oci_arch, variant = ARCHES[arch]
    config = {
        "architecture": oci_arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created_by": f"busybox-static {arch} (tests/integration/busybox.py)"}],
    }
    if variant:
        config["variant"] = variant
    cfg = _put_blob(dest, json.dumps(config, sort_keys=True).encode())
    cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": [layer]}
    desc = _put_blob(dest, json.dumps(manifest, sort_keys=True).encode())
    desc["mediaType"] = manifest["mediaType"]
    platform = {"architecture": oci_arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [dict(desc, annotations={"org.opencontainers.image.ref.name": tag},
                                platform=platform)]}
    (dest / "index.json").write_text(json.dumps(index, sort_keys=True))
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return desc


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 4 and sys.argv[1] == "rootfs":
        print(make_rootfs(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "oci":
        print(make_oci_layout(sys.argv[2], sys.argv[3])["digest"])
    else:
        sys.exit("usage: busybox.py rootfs|oci DEST ARCH")
