"""make up / make down, through deploy/farm, in a temporary var/: the PKI is
bootstrapped, the built daemons start as their own users and answer, a
second up is harmless, down stops them."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, build_dir, free_port, run


@pytest.fixture
def farm(tmp_path):
    var = tmp_path / "var"
    # The daemons' users must be able to pass through to var/.
    p = tmp_path
    while p != Path("/"):
        p.chmod(p.stat().st_mode | 0o011)
        p = p.parent
    env = dict(os.environ, FF_VAR=str(var), FF_BIN=str(build_dir() / "bin"),
               FF_REGISTRY_PORT=str(free_port()), FF_API_PORT=str(free_port()))

    def cmd(what):
        return subprocess.run([str(ROOT / "deploy" / "farm"), what], env=env,
                              capture_output=True, text=True, check=True)
    cmd.var = var
    cmd.env = env
    yield cmd
    subprocess.run([str(ROOT / "deploy" / "farm"), "down"], env=env, capture_output=True)


def test_up_bootstraps_starts_and_down_stops(farm):
    out = farm("up").stdout
    var = farm.var
    pki = var / "pki"
    assert "created" in out and "ca.crt" in out
    for name in ("ca.crt", "ca.key", "server.crt", "server.key", "token.key",
                 "token.pub", "signing.key", "signing.pub"):
        assert (pki / name).exists(), name
    assert oct((pki / "token.key").stat().st_mode & 0o777) == "0o600"
    assert oct(pki.stat().st_mode & 0o777) == "0o700"
    assert "OK" in run(["openssl", "verify", "-CAfile", pki / "ca.crt",
                        pki / "server.crt"]).stdout
    assert "started ff-registry" in out
    port = farm.env["FF_REGISTRY_PORT"]
    health = run(["curl", "-fsS", "--cacert", pki / "ca.crt",
                  f"https://127.0.0.1:{port}/healthz"])
    assert health.stdout == "ok\n"
    pid = int((var / "run" / "ff-registry.pid").read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1])
    assert uid == int(run(["id", "-u", "ff-registry"]).stdout)
    # The env file is shell-sourceable and names the CA and the registry.
    shown = subprocess.run(["sh", "-c", f". '{var}/farm.env' && echo \"$FF_CA $FF_REGISTRY\""],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shown == f"{pki}/ca.crt 127.0.0.1:{port}"

    # ff-builder runs too, its first admin is in the env file, and the admin's
    # API token buys a registry token from the builder's endpoint.
    assert "started ff-builder" in out
    env = dict(l.split("=", 1) for l in (var / "farm.env").read_text().splitlines()
               if "=" in l and not l.startswith("#"))
    api = env["FF_API_URL"].strip("'")
    assert api == f"https://127.0.0.1:{farm.env['FF_API_PORT']}"
    user, token = env["FF_ADMIN_USER"].strip("'"), env["FF_ADMIN_TOKEN"].strip("'")
    got = run(["curl", "-fsS", "--cacert", pki / "ca.crt", "-u", f"{user}:{token}",
               f"{api}/v2/token?service=ff-registry&scope=repository:library/x:pull,push"])
    assert json.loads(got.stdout)["token"].count(".") == 2
    assert oct((pki / "admin.env").stat().st_mode & 0o777) == "0o600"

    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    again = farm("up").stdout
    assert "nothing created" in again and "ff-registry already running" in again
    assert "ff-builder already running" in again
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == before
    assert int((var / "run" / "ff-registry.pid").read_text()) == pid

    down = farm("down").stdout
    assert "stopped ff-registry" in down and "stopped ff-builder" in down
    assert not Path(f"/proc/{pid}").exists()
    assert "nothing was running" in farm("down").stdout


def test_pki_init_refuses_bad_names(tmp_path):
    res = run([build_dir() / "bin" / "ff-builder", "pki-init", "--dir", tmp_path / "p",
               "--name", "bad name,DNS:evil"], check=False)
    assert res.returncode == 1
    assert "ff-builder: pki-init:" in res.stderr
    assert not (tmp_path / "p" / "ca.key").exists()
