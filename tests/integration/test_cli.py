"""The ff command-line client against a real ff-builder: every command
group, the token file's modes, where configuration comes from, and the
exit statuses scripts rely on (0 ok, 1 refused, 2 usage, 3 authentication,
4 not found, 5 cannot connect). Passwords and codes go in on stdin, never
on the command line."""

import base64
import hashlib
import hmac
import json
import os
import pty
import re
import select
import sqlite3
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from builderlib import USER_PASSWORD
from conftest import bin_path, free_port, run

# Finishes well within the test's patience even with one retry.
CLI_TIMEOUT = 60


class FF:
    """Runs the ff binary with a private HOME and the builder's URL and CA
    in the environment, and nothing else of ours (no FF_TOKEN)."""

    def __init__(self, builder, home, **env):
        self.builder = builder
        self.home = home
        home.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("FF_") and k != "XDG_CONFIG_HOME"}
        self.env.update(HOME=str(home), FF_API_URL=f"https://127.0.0.1:{builder.port}",
                        FF_CA=str(builder.tls.ca))
        self.env.update(env)

    @property
    def config_dir(self):
        xdg = self.env.get("XDG_CONFIG_HOME")
        return Path(xdg) / "ff" if xdg else self.home / ".config" / "ff"

    def __call__(self, *args, stdin="", expect=0, env=None, drop=()):
        full = dict(self.env)
        full.update(env or {})
        for k in drop:
            full.pop(k, None)
        res = subprocess.run([str(bin_path("ff")), *map(str, args)], input=stdin,
                             capture_output=True, text=True, env=full, timeout=CLI_TIMEOUT)
        if expect is not None:
            assert res.returncode == expect, (args, res.returncode, res.stdout, res.stderr)
        if res.returncode != 0:
            # One line on stderr, "ff: <what>: <why>", nothing on stdout.
            assert res.stderr.startswith("ff: ") and res.stderr.count("\n") == 1, res.stderr
            assert res.stdout == "", res.stdout
        return res

    def json(self, *args, **kw):
        return json.loads(self("--json", *args, **kw).stdout)

    def login(self, user, password, **kw):
        return self("login", "--user", user, stdin=password + "\n", **kw)


def table(text):
    """A table's rows as lists of cells (split on two or more spaces)."""
    lines = text.rstrip("\n").split("\n")
    for line in lines:
        assert line == line.rstrip(), f"trailing spaces in {line!r}"
    return [re.split(r"\s{2,}", line) for line in lines]


def record(text):
    """A record's "name: value" lines as a dict."""
    out = {}
    for line in text.rstrip("\n").split("\n"):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def totp(secret, at=None, step=30):
    """RFC 6238 code (SHA-1, 6 digits) of a base32 secret."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def skip_unless_implemented(builder, method, path, token=None, body=None):
    """Skips the test while the server still answers 501 on this route."""
    st, _, _ = builder.request(method, path, token, body)
    if st == 501:
        pytest.skip(f"{method} {path} answers 501 (not implemented yet)")


@pytest.fixture
def ff(builder, tmp_path):
    return FF(builder, tmp_path / "home")


@pytest.fixture
def admin_ff(builder, tmp_path):
    """ff logged in as the admin through FF_TOKEN."""
    return FF(builder, tmp_path / "admin-home", FF_TOKEN=builder.admin_token)


# ---- login, the token file, logout -------------------------------------------------


def test_login_stores_token_privately_and_whoami(builder, ff):
    builder.add_user("bob")
    res = ff.login("bob", USER_PASSWORD)
    assert "logged in as bob (user)" in res.stdout
    token_file = ff.config_dir / "token"
    token = token_file.read_text().strip()
    assert token.startswith("ffu_")
    # Shown nowhere: it is stored.
    assert token not in res.stdout + res.stderr
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(ff.config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(ff.config_dir.parent.stat().st_mode) == 0o700
    # The stored token is the session the server made.
    st, _, me = builder.request("GET", "/v1/whoami", token)
    assert st == 200 and me["name"] == "bob"

    who = record(ff("whoami").stdout)
    assert who["name"] == "bob" and who["kind"] == "user" and who["role"] == "user"
    assert who["token id"] == str(me["token_id"])
    assert ff.json("whoami") == me

    # --json login output leaves the token out too.
    res = ff("--json", "login", "--user", "bob", stdin=USER_PASSWORD + "\n")
    body = json.loads(res.stdout)
    assert "token" not in body and body["user"] == {"name": "bob", "role": "user"}
    assert body["expires_at"] > time.time()


class Terminal:
    """ff on a pseudo-terminal, as a person runs it: what it writes there
    (including the terminal's own echo of what is typed)."""

    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(str(bin_path("ff")), ["ff", *argv], env)
            finally:
                os._exit(127)
        self.out = b""

    def expect(self, marker, timeout=CLI_TIMEOUT):
        deadline = time.monotonic() + timeout
        while marker not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} in {self.out!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"ff ended before {marker!r}: {self.out!r}"
                self.out += chunk

    def type(self, text):
        os.write(self.fd, text.encode() + b"\n")

    def finish(self, timeout=CLI_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([self.fd], [], [], 0.2)[0]:
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    break
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                done, status = os.waitpid(self.pid, 0)
                break
            self.out += chunk
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
            raise AssertionError(f"ff did not finish: {self.out!r}")
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_login_on_a_terminal_does_not_echo_the_password(builder, ff):
    builder.add_user("bob")
    term = Terminal(["login"], ff.env)
    term.expect(b"user: ")
    term.type("bob")
    term.expect(b"password for bob: ")
    term.type(USER_PASSWORD)
    assert term.finish() == 0
    text = term.out.decode(errors="replace")
    assert "logged in as bob" in text
    # The user name was echoed as typed, the password never was.
    assert "bob\r\n" in text and USER_PASSWORD not in text
    # Echo is back on for whatever runs next on that terminal: creating a
    # user (as admin) asks twice, and refuses two different passwords.
    env = dict(ff.env, FF_TOKEN=builder.admin_token)
    term = Terminal(["users", "create", "carol"], env)
    term.expect(b"password for carol: ")
    term.type("carol-password-long")
    term.expect(b"again: ")
    term.type("carol-password-other")
    assert term.finish() == 1
    assert b"the two passwords differ" in term.out and b"carol-password" not in term.out
    term = Terminal(["users", "create", "carol"], env)
    term.expect(b"password for carol: ")
    term.type("carol-password-long")
    term.expect(b"again: ")
    term.type("carol-password-long")
    assert term.finish() == 0
    ff.login("carol", "carol-password-long")


def test_login_honours_xdg_config_home(builder, tmp_path):
    xdg = tmp_path / "xdg"
    ff = FF(builder, tmp_path / "home", XDG_CONFIG_HOME=str(xdg))
    ff.login(builder.admin, builder.admin_password)
    assert stat.S_IMODE((xdg / "ff" / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((xdg / "ff").stat().st_mode) == 0o700
    assert not (tmp_path / "home" / ".config").exists()
    assert record(ff("whoami").stdout)["role"] == "admin"


def test_login_failures(builder, ff):
    builder.add_user("bob")
    # Wrong password: exit 3, the server's message, nothing stored.
    res = ff.login("bob", "wrong-password-here", expect=3)
    assert res.stderr.startswith("ff: login: wrong user name or password")
    assert not (ff.config_dir / "token").exists()
    # No password at all: refused before anything is sent.
    res = ff("login", "--user", "bob", stdin="", expect=1)
    assert "no password given" in res.stderr
    # A user name is needed when stdin is not a terminal.
    ff("login", stdin=USER_PASSWORD + "\n", expect=2)
    # The password is never an option.
    ff("login", "--user", "bob", "--password", USER_PASSWORD, expect=2)
    assert builder.audit("login.failed", "bob")


def test_token_file_readable_by_others_is_refused(builder, ff):
    ff.login(builder.admin, builder.admin_password)
    token_file = ff.config_dir / "token"
    token_file.chmod(0o644)
    res = ff("whoami", expect=1)
    assert "mode 0644" in res.stderr and "ff login" in res.stderr
    # Logging in again replaces it with a private one.
    ff.login(builder.admin, builder.admin_password)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    ff("whoami")


def test_logout_revokes_the_session(builder, ff):
    ff.login(builder.admin, builder.admin_password)
    token = (ff.config_dir / "token").read_text().strip()
    assert ff("logout").stdout == "logged out\n"
    assert not (ff.config_dir / "token").exists()
    st, _, _ = builder.request("GET", "/v1/whoami", token)
    assert st == 401
    assert "not logged in" in ff("logout").stdout
    res = ff("whoami", expect=3)
    assert "not logged in" in res.stderr


# ---- tokens, keys, 2fa ----------------------------------------------------------------


def test_tokens_create_list_revoke(builder, admin_ff, ff):
    created = admin_ff.json("tokens", "create", "ci", "--expires-in", "3600")
    assert created["token"].startswith("ffu_") and created["name"] == "ci"
    # The human form shows it once as well.
    shown = record(admin_ff("tokens", "create", "deploy").stdout)
    assert shown["token"].startswith("ffu_") and shown["expires"] == "-"

    rows = table(admin_ff("tokens", "list").stdout)
    assert rows[0] == ["ID", "NAME", "KIND", "CREATED", "EXPIRES", "LAST USED", "REVOKED"]
    by_name = {r[1]: r for r in rows[1:]}
    assert by_name["ci"][4] == iso(created["expires_at"])
    assert by_name["ci"][6] == "-"
    # No token value in a list.
    assert "ffu_" not in admin_ff("--json", "tokens", "list").stdout

    # The new token works on its own, then stops working once revoked.
    assert ff("whoami", env={"FF_TOKEN": created["token"]}).stdout
    assert admin_ff("tokens", "revoke", created["id"]).stdout == f"revoked token {created['id']}\n"
    res = ff("whoami", env={"FF_TOKEN": created["token"]}, expect=3)
    assert "check FF_TOKEN" in res.stderr
    after = {r[1]: r for r in table(admin_ff("tokens", "list").stdout)[1:]}
    assert after["ci"][6] != "-" and after["deploy"][6] == "-"
    admin_ff("tokens", "revoke", "999999", expect=4)
    admin_ff("tokens", "revoke", "abc", expect=2)


def test_keys_add_list_rm(builder, admin_ff, tmp_path):
    skip_unless_implemented(builder, "GET", "/v1/keys", builder.admin_token)
    key = tmp_path / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", key])
    fingerprint = run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"]).stdout.split()[1]

    # The private key is refused before anything is sent.
    res = admin_ff("keys", "add", key, expect=1)
    assert "private key" in res.stderr
    assert admin_ff.json("keys", "list")["items"] == []

    added = record(admin_ff("keys", "add", f"{key}.pub").stdout)
    assert added["name"] == "laptop" and added["fingerprint"] == fingerprint
    assert added["type"] == "ssh-ed25519"
    rows = table(admin_ff("keys", "list").stdout)
    assert rows[0] == ["ID", "NAME", "TYPE", "FINGERPRINT", "CREATED"]
    assert rows[1][1:4] == ["laptop", "ssh-ed25519", fingerprint]
    # The same key twice is the server's refusal (exit 1).
    res = admin_ff("keys", "add", f"{key}.pub", "--name", "again", expect=1)
    assert res.stderr.startswith("ff: keys add: ")
    admin_ff("keys", "rm", added["id"])
    assert admin_ff.json("keys", "list")["items"] == []
    # Without a comment, the file's name names it.
    bare = tmp_path / "bare.pub"
    bare.write_text(" ".join((tmp_path / "id_ed25519.pub").read_text().split()[:2]) + "\n")
    assert admin_ff.json("keys", "add", bare)["name"] == "bare.pub"
    admin_ff("keys", "add", tmp_path / "missing.pub", expect=1)


def test_2fa_enable_login_disable(builder, ff):
    skip_unless_implemented(builder, "POST", "/v1/2fa/confirm", builder.add_user("bob"),
                            {"code": "x"})
    ff.login("bob", USER_PASSWORD)
    # Interactive through pipes: read the secret, answer with its code.
    proc = subprocess.Popen([str(bin_path("ff")), "2fa", "enable"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ff.env)
    secret = None
    for line in proc.stdout:
        if line.startswith("secret:"):
            secret = line.split()[1]
        if line.startswith("Then enter"):
            break
    assert secret, "no secret printed"
    at = time.time()
    proc.stdin.write(totp(secret, at) + "\n")
    proc.stdin.flush()
    out, errs = proc.communicate(timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, errs
    codes = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert len(codes) == 10

    # Login now asks for the code: password and code on stdin. The next
    # step's code is accepted (±1) and cannot be a replay of the one above.
    res = ff.login("bob", USER_PASSWORD, expect=3)
    assert "2FA code" in res.stderr
    res = ff("login", "--user", "bob", stdin=f"{USER_PASSWORD}\n{totp(secret, at + 30)}\n")
    assert "logged in as bob" in res.stdout
    # A wrong code is refused, then a recovery code turns it off.
    near = {totp(secret, time.time() + d) for d in (-60, -30, 0, 30, 60)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in near)
    ff("2fa", "disable", stdin=wrong + "\n", expect=1)
    assert ff("2fa", "disable", stdin=codes[0] + "\n").stdout.startswith("Two-factor")
    ff.login("bob", USER_PASSWORD)


# ---- apps, members, provisioning keys, devices, env ------------------------------------


def test_app_create_list_show_members_rm(builder, ff, tmp_path):
    builder.add_user("bob")
    builder.add_user("carol")
    ff.login("bob", USER_PASSWORD)
    shown = record(ff("app", "create", "demo", "--arch", "amd64,arm64").stdout)
    assert shown["app"] == "bob/demo" and shown["archs"] == "amd64,arm64"
    assert shown["deploy branch"] == "main"
    tiny = ff.json("app", "create", "tiny", "--arch", "armv7", "--deploy-branch", "production")
    assert tiny["deploy_branch"] == "production"
    rows = table(ff("app", "list").stdout)
    assert rows[0] == ["APP", "ARCHS", "BRANCH", "RELEASE", "CREATED"]
    assert sorted(r[0] for r in rows[1:]) == ["bob/demo", "bob/tiny"]
    app = ff.json("app", "show", "bob/demo")
    assert app["archs"] == ["amd64", "arm64"]
    assert record(ff("app", "show", "bob/demo").stdout)["created"] == iso(app["created_at"])

    # The server's refusals: exit 1 with its message.
    res = ff("app", "create", "demo", "--arch", "amd64", expect=1)
    assert res.stderr.startswith("ff: app create: ")
    res = ff("app", "create", "Bad_Name", "--arch", "amd64", expect=1)
    assert "app name" in res.stderr
    ff("app", "create", "x", "--arch", "sparc", expect=1)

    assert ff("app", "members", "bob/demo", "add", "carol", "--role", "viewer").stdout == \
        "carol is now a viewer of bob/demo\n"
    assert table(ff("app", "members", "bob/demo").stdout) == [["USER", "ROLE"],
                                                              ["carol", "viewer"]]
    # Carol sees it, cannot delete it.
    carol = FF(builder, tmp_path / "carol")
    carol.login("carol", USER_PASSWORD)
    assert [r[0] for r in table(carol("app", "list").stdout)[1:]] == ["bob/demo"]
    res = carol("app", "rm", "bob/demo", expect=1)
    assert "owner" in res.stderr
    carol("app", "show", "bob/tiny", expect=4)

    ff("app", "members", "bob/demo", "rm", "carol")
    assert ff.json("app", "members", "bob/demo")["items"] == []
    carol("app", "show", "bob/demo", expect=4)

    assert ff("app", "rm", "bob/demo").stdout == "removed app bob/demo\n"
    res = ff("app", "show", "bob/demo", expect=4)
    assert res.stderr.startswith("ff: app show: bob/demo: ")
    ff("app", "rm", "bob/demo", expect=4)


def register_device(builder, key, name="pi", arch="arm64"):
    st, _, dev = builder.request("POST", "/v1/devices", key,
                                 {"name": name, "device_type": "raspberrypi4", "arch": arch})
    return st, dev


def test_provision_keys_and_devices(builder, ff):
    skip_unless_implemented(builder, "GET", "/v1/devices/00000000-0000-0000-0000-000000000000",
                            builder.admin_token)
    builder.add_user("bob")
    ff.login("bob", USER_PASSWORD)
    ff("app", "create", "demo", "--arch", "arm64")

    created = ff.json("provision-key", "create", "bob/demo", "--name", "factory",
                      "--max-uses", "2", "--expires-in", "3600")
    assert created["key"].startswith("ffp_") and created["max_uses"] == 2
    shown = record(ff("provision-key", "create", "bob/demo", "--name", "spare").stdout)
    assert shown["key"].startswith("ffp_")
    rows = table(ff("provision-key", "list", "bob/demo").stdout)
    assert rows[0] == ["ID", "NAME", "USES", "MAX USES", "EXPIRES", "CREATED BY", "CREATED",
                       "REVOKED"]
    assert rows[1][:4] == [str(created["id"]), "factory", "0", "2"]
    assert rows[1][4] == iso(created["expires_at"]) and rows[1][5] == "bob"
    assert "ffp_" not in ff("--json", "provision-key", "list", "bob/demo").stdout

    st, dev = register_device(builder, created["key"])
    assert st == 201, dev
    rows = table(ff("devices", "list", "bob/demo").stdout)
    assert rows[0] == ["UUID", "NAME", "TYPE", "ARCH", "STATUS", "LAST SEEN", "CREATED"]
    assert rows[1][:4] == [dev["uuid"], "pi", "raspberrypi4", "arm64"]
    shown = record(ff("devices", "show", dev["uuid"]).stdout)
    assert shown["app"] == "bob/demo" and shown["uuid"] == dev["uuid"]
    assert ff.json("devices", "show", dev["uuid"])["name"] == "pi"

    # Revoked: no more registrations with it.
    ff("provision-key", "revoke", "bob/demo", created["id"])
    st, _ = register_device(builder, created["key"], "pi2")
    assert st in (401, 403)
    ff("provision-key", "revoke", "bob/demo", "x", expect=2)

    # Deleting the device ends its key at once.
    st, _, _ = builder.request("GET", "/v1/whoami", dev["key"])
    assert st == 200
    ff("devices", "rm", dev["uuid"])
    st, _, _ = builder.request("GET", "/v1/whoami", dev["key"])
    assert st == 401
    res = ff("devices", "show", dev["uuid"], expect=4)
    assert dev["uuid"] in res.stderr
    ff("devices", "list", "bob/nope", expect=4)


def test_env_set_list_rm(builder, ff):
    builder.add_user("bob")
    ff.login("bob", USER_PASSWORD)
    ff("app", "create", "demo", "--arch", "arm64")
    ff("app", "create", "other", "--arch", "arm64")
    key = ff.json("provision-key", "create", "bob/demo", "--name", "k")["key"]
    other_key = ff.json("provision-key", "create", "bob/other", "--name", "k")["key"]
    st, dev = register_device(builder, key)
    assert st == 201, dev
    st, other_dev = register_device(builder, other_key)
    assert st == 201, other_dev

    ff("env", "set", "bob/demo", "MODE=prod")
    ff("env", "set", "bob/demo", "EMPTY=")
    ff("env", "set", "bob/demo", "URL=https://x/?a=b")
    # A secret value comes from stdin, never from the command line.
    assert ff("env", "set", "bob/demo", "API_KEY", stdin="s3cret value\n").stdout == \
        "set API_KEY\n"
    assert ff.json("env", "list", "bob/demo")["vars"] == {
        "MODE": "prod", "EMPTY": "", "URL": "https://x/?a=b", "API_KEY": "s3cret value"}
    rows = table(ff("env", "list", "bob/demo").stdout)
    assert rows[0] == ["NAME", "VALUE"]
    assert [r[0] for r in rows[1:]] == ["API_KEY", "EMPTY", "MODE", "URL"]

    # A device override, seen merged from the device's side.
    ff("env", "set", "bob/demo", "MODE=debug", "--device", dev["uuid"])
    merged = ff.json("env", "list", "bob/demo", "--device", dev["uuid"])["vars"]
    assert merged["MODE"] == "debug" and merged["API_KEY"] == "s3cret value"
    st, _, seen = builder.request("GET", f"/v1/devices/{dev['uuid']}/env", dev["key"])
    assert st == 200 and seen["vars"]["MODE"] == "debug"
    assert ff.json("env", "list", "bob/demo")["vars"]["MODE"] == "prod"
    # A device of another app is refused before anything changes.
    res = ff("env", "set", "bob/demo", "MODE=x", "--device", other_dev["uuid"], expect=1)
    assert "belongs to app \"bob/other\"" in res.stderr
    assert "MODE" not in ff.json("env", "list", "bob/other", "--device", other_dev["uuid"])["vars"]

    ff("env", "rm", "bob/demo", "MODE", "--device", dev["uuid"])
    assert ff.json("env", "list", "bob/demo", "--device", dev["uuid"])["vars"]["MODE"] == "prod"
    ff("env", "rm", "bob/demo", "MODE")
    assert "MODE" not in ff.json("env", "list", "bob/demo")["vars"]
    ff("env", "set", "bob/demo", "=x", expect=2)
    ff("env", "set", "bob/nope", "A=1", expect=4)


# ---- admin commands -----------------------------------------------------------------


def test_audit_for_admins_only(builder, ff, tmp_path):
    builder.add_user("bob")
    # The admin through an env file written like deploy/farm's var/farm.env,
    # with nothing in the environment.
    env_file = tmp_path / "farm.env"
    env_file.write_text(
        "# Written by 'make up'. Source it: . var/farm.env\n"
        f"FF_VAR='{tmp_path}'\nFF_CA='{builder.tls.ca}'\n"
        f"FF_API_URL='https://127.0.0.1:{builder.port}'\n"
        f"FF_ADMIN_USER='{builder.admin}'\nFF_ADMIN_TOKEN='{builder.admin_token}'\n")
    env_file.chmod(0o600)
    rows = table(ff("--env-file", env_file, "audit", drop=("FF_API_URL", "FF_CA")).stdout)
    assert rows[0] == ["ID", "TIME", "ACTOR", "IP", "EVENT", "DETAIL"]
    events = [r[4] for r in rows[1:]]
    assert "user.create" in events and "login.ok" in events
    assert len(table(ff("audit", "--limit", "2", "--env-file", env_file).stdout)) == 3

    # A user is refused with the server's reason, exit 1.
    ff.login("bob", USER_PASSWORD)
    res = ff("audit", expect=1)
    assert res.stderr == "ff: audit: only admins read the audit log\n"
    # A stored login wins over the env file's admin token.
    ff("audit", "--env-file", env_file, expect=1)


def test_lists_follow_pages_to_the_end(builder, admin_ff):
    # More rows than one page (the server's page is at most 200).
    now = int(time.time())
    with sqlite3.connect(builder.db) as db:
        db.executemany("INSERT INTO audit(at, actor, ip, event, detail) VALUES (?,?,?,?,?)",
                       [(now, "loader", "127.0.0.1", "test.event", f"n={i}")
                        for i in range(450)])
    total = builder.query("SELECT count(*) FROM audit")[0][0]
    page = admin_ff.json("audit")
    assert len(page["items"]) == total and page["next"] is None
    ids = [i["id"] for i in page["items"]]
    assert ids == sorted(set(ids))
    assert len(table(admin_ff("audit").stdout)) == total + 1
    # --limit stops early and says where the rest begins.
    page = admin_ff.json("audit", "--limit", "250")
    assert len(page["items"]) == 250 and page["next"] == page["items"][-1]["id"]
    admin_ff("audit", "--limit", "0", expect=2)


def test_users_create_and_worker_join_token(builder, admin_ff, ff):
    shown = record(admin_ff("users", "create", "dave", stdin="dave-password-long\n").stdout)
    assert shown["name"] == "dave" and shown["role"] == "user"
    ff.login("dave", "dave-password-long")
    assert admin_ff.json("users", "create", "erin", "--admin",
                         stdin="erin-password-long\n")["role"] == "admin"
    res = admin_ff("users", "create", "frank", stdin="short\n", expect=1)
    assert "password" in res.stderr
    # Only admins create users.
    res = ff("users", "create", "mallory", stdin="mallory-password\n", expect=1)
    assert res.stderr.startswith("ff: users create: ")

    skip_unless_implemented(builder, "GET", "/v1/workers", builder.admin_token)
    join = admin_ff.json("workers", "join-token", "--expires-in", "600")
    assert join["token"].startswith("ffj_")
    st, _, worker = builder.request("POST", "/v1/workers/join", join["token"],
                                    {"name": "w1", "archs": ["amd64"]})
    assert st == 201, worker
    assert record(admin_ff("workers", "join-token").stdout)["token"].startswith("ffj_")
    ff("workers", "join-token", expect=1)


# ---- configuration and exit statuses --------------------------------------------------


def test_config_file_and_precedence(builder, tmp_path):
    ff = FF(builder, tmp_path / "home")
    dead = f"https://127.0.0.1:{free_port()}"
    cfg = ff.home / ".config" / "ff"
    cfg.mkdir(parents=True)
    (cfg / "config").write_text(f"# ff\napi_url = https://127.0.0.1:{builder.port}/\n"
                                f"ca = {builder.tls.ca}\n")
    env = {"FF_TOKEN": builder.admin_token}
    # The config file serves when the environment is silent ...
    ff("whoami", env=env, drop=("FF_API_URL", "FF_CA"))
    # ... and the environment wins over it.
    ff("whoami", env=dict(env, FF_API_URL=dead), expect=5)
    (cfg / "config").write_text(f"api_url = {dead}\nca = {builder.tls.ca}\n")
    ff("whoami", env=env)
    (cfg / "config").write_text("api_url = https://127.0.0.1:1\nproxy = x\n")
    res = ff("whoami", env=env, expect=1)
    assert "unknown key \"proxy\"" in res.stderr


def test_exit_statuses(builder, ff, tmp_path):
    # 2: usage errors, before anything is sent.
    for args in (["frob"], ["app"], ["app", "create"], ["app", "create", "x"],
                 ["app", "show", "no-slash"], ["tokens", "revoke"], ["keys", "rm", "1", "2"],
                 ["app", "list", "--bogus"], ["audit", "--limit", "many"],
                 ["app", "members", "a/b", "add", "carol"],
                 ["app", "members", "a/b", "add", "carol", "--role", "boss"],
                 ["app", "members", "a/b", "kick", "carol"], []):
        res = ff(*args, expect=2, env={"FF_TOKEN": builder.admin_token})
        assert res.stderr.count("\n") == 1
    # 0: help, on stdout.
    assert "Exit status" in ff("--help").stdout
    assert "usage: ff app create NAME --arch" in ff("app", "create", "--help").stdout
    assert "ff app members" in ff("app", "--help").stdout
    # 3: no token, or a wrong one.
    assert "not logged in" in ff("app", "list", expect=3).stderr
    res = ff("app", "list", env={"FF_TOKEN": "ffu_" + "A" * 43}, expect=3)
    assert res.stderr.startswith("ff: app list: ")
    # 4: not found.
    admin = {"FF_TOKEN": builder.admin_token}
    res = ff("app", "show", "admin/nope", env=admin, expect=4)
    assert "admin/nope" in res.stderr
    # 5: nothing listening, or a server the CA does not vouch for.
    res = ff("app", "list", env=dict(admin, FF_API_URL=f"https://127.0.0.1:{free_port()}"),
             expect=5)
    assert res.stderr.startswith("ff: app list: ")
    ff("app", "list", env=dict(admin, FF_CA="/etc/ssl/certs/ca-certificates.crt"), expect=5)
    # 1: no API URL at all, or one that is not https.
    res = ff("app", "list", env=admin, drop=("FF_API_URL",), expect=1)
    assert "FF_API_URL" in res.stderr
    ff("app", "list", env=dict(admin, FF_API_URL=f"http://127.0.0.1:{builder.port}"), expect=1)


def test_server_down_mid_session(builder, ff):
    ff.login(builder.admin, builder.admin_password)
    builder.daemon.stop()
    res = ff("whoami", expect=5)
    assert res.stderr.startswith("ff: whoami: ")
    # The stored token is untouched by the failure.
    assert (ff.config_dir / "token").exists()
