"""make up / make down, through deploy/farm, in a temporary var/."""

import os
import subprocess

from conftest import ROOT, build_dir, run


def farm(cmd, var):
    env = dict(os.environ, FF_VAR=str(var), FF_BIN=str(build_dir() / "bin"))
    return subprocess.run([str(ROOT / "deploy" / "farm"), cmd], env=env,
                          capture_output=True, text=True, check=True)


def test_up_bootstraps_pki_and_env(tmp_path):
    var = tmp_path / "var"
    out = farm("up", var).stdout
    assert "created" in out and "ca.crt" in out
    pki = var / "pki"
    for name in ("ca.crt", "ca.key", "server.crt", "server.key", "token.key",
                 "token.pub", "signing.key", "signing.pub"):
        assert (pki / name).exists(), name
    assert oct((pki / "token.key").stat().st_mode & 0o777) == "0o600"
    assert oct(var.stat().st_mode & 0o777) == "0o700"
    verify = run(["openssl", "verify", "-CAfile", pki / "ca.crt", pki / "server.crt"])
    assert "OK" in verify.stdout
    env = (var / "farm.env").read_text()
    assert f"FF_CA='{pki}/ca.crt'" in env
    # The env file is shell-sourceable.
    shown = subprocess.run(["sh", "-c", f". '{var}/farm.env' && echo \"$FF_CA\""],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shown == f"{pki}/ca.crt"


def test_up_twice_is_harmless_and_down_stops_nothing(tmp_path):
    var = tmp_path / "var"
    farm("up", var)
    before = {p.name: p.read_bytes() for p in (var / "pki").iterdir()}
    out = farm("up", var).stdout
    assert "nothing created" in out
    after = {p.name: p.read_bytes() for p in (var / "pki").iterdir()}
    assert before == after
    assert "nothing was running" in farm("down", var).stdout


def test_pki_init_refuses_bad_names(tmp_path):
    res = run([build_dir() / "bin" / "ff-builder", "pki-init", "--dir", tmp_path / "p",
               "--name", "bad name,DNS:evil"], check=False)
    assert res.returncode == 1
    assert "ff-builder: pki-init:" in res.stderr
    assert not (tmp_path / "p" / "ca.key").exists()
