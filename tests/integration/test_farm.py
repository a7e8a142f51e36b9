"""make up / make down, through deploy/farm, in a temporary var/: the PKI is
bootstrapped, the built daemons start as their own users and answer (a git
push over SSH reaches ff-gitd, which asks ff-builder), a second up is
harmless, down stops them."""

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
               FF_REGISTRY_PORT=str(free_port()), FF_API_PORT=str(free_port()),
               FF_GIT_PORT=str(free_port()))

    def cmd(what):
        return subprocess.run([str(ROOT / "deploy" / "farm"), what], env=env,
                              capture_output=True, text=True, check=True)
    cmd.var = var
    cmd.env = env
    yield cmd
    subprocess.run([str(ROOT / "deploy" / "farm"), "down"], env=env, capture_output=True)


def daemon_uid(var, name):
    pid = int((var / "run" / f"{name}.pid").read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1])


def api(env, method, path, token, body=None):
    args = ["curl", "-fsS", "--cacert", env["FF_CA"], "-X", method,
            "-H", f"Authorization: Bearer {token}", f"{env['FF_API_URL']}{path}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    return json.loads(run(args).stdout or "null")


def push_through_gitd(env, tmp):
    """The admin registers an SSH key and an app, then pushes: a feature
    branch lands, the deploy branch is refused by the builder (no build
    workers yet)."""
    token = env["FF_ADMIN_TOKEN"]
    key = tmp / "id_ed25519"
    run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f", key])
    api(env, "POST", "/v1/keys", token, {"public_key": Path(f"{key}.pub").read_text()})
    api(env, "POST", "/v1/apps", token, {"name": "hello", "archs": ["amd64"]})
    ssh = (f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
           f"-o UserKnownHostsFile={tmp}/known_hosts -o StrictHostKeyChecking=accept-new")
    genv = dict(os.environ, HOME=str(tmp), GIT_SSH_COMMAND=ssh, GIT_CONFIG_NOSYSTEM="1",
                GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@e.st", GIT_COMMITTER_NAME="T",
                GIT_COMMITTER_EMAIL="t@e.st")
    work = tmp / "work"
    run(["git", "init", "-q", "-b", "main", work], env=genv)
    (work / "Dockerfile").write_text("FROM scratch\n")
    run(["git", "-C", work, "add", "-A"], env=genv)
    run(["git", "-C", work, "commit", "-q", "-m", "first"], env=genv)
    url = f"{env['FF_GIT_URL']}/{env['FF_ADMIN_USER']}/hello.git"
    run(["git", "-C", work, "push", "-q", url, "main:feature"], env=genv)
    refused = run(["git", "-C", work, "push", url, "main"], env=genv, check=False)
    assert refused.returncode != 0
    assert "no builder available" in refused.stderr, refused.stderr


def test_up_bootstraps_starts_and_down_stops(farm, tmp_path):
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
    assert daemon_uid(var, "ff-registry") == int(run(["id", "-u", "ff-registry"]).stdout)
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

    # ff-gitd runs as its own user with the service key the farm made, and
    # a real git push over SSH goes through it to the builder.
    assert "started ff-gitd" in out
    assert daemon_uid(var, "ff-gitd") == int(run(["id", "-u", "ff-gitd"]).stdout)
    assert oct((pki / "gitd.key").stat().st_mode & 0o777) == "0o600"
    assert env["FF_GIT_URL"].strip("'") == f"ssh://git@127.0.0.1:{farm.env['FF_GIT_PORT']}"
    push_through_gitd({k: v.strip("'") for k, v in env.items()}, tmp_path)

    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    again = farm("up").stdout
    assert "nothing created" in again and "ff-registry already running" in again
    assert "ff-builder already running" in again and "ff-gitd already running" in again
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == before
    assert int((var / "run" / "ff-registry.pid").read_text()) == pid

    down = farm("down").stdout
    assert "stopped ff-registry" in down and "stopped ff-builder" in down
    assert "stopped ff-gitd" in down
    assert not Path(f"/proc/{pid}").exists()
    assert "nothing was running" in farm("down").stdout


def test_pki_init_refuses_bad_names(tmp_path):
    res = run([build_dir() / "bin" / "ff-builder", "pki-init", "--dir", tmp_path / "p",
               "--name", "bad name,DNS:evil"], check=False)
    assert res.returncode == 1
    assert "ff-builder: pki-init:" in res.stderr
    assert not (tmp_path / "p" / "ca.key").exists()
