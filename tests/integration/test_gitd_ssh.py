"""ff-gitd's SSH front against a real ff-builder, driven by the real OpenSSH
client and git: keys registered through the builder's API push and clone,
everything else is refused with a message the user can act on, limits hold,
and the host key survives restarts."""

import os
import shlex
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import bin_path, free_port, run

KEY_TYPES = [("ed25519", ["-t", "ed25519"]), ("ecdsa", ["-t", "ecdsa", "-b", "256"]),
             ("rsa", ["-t", "rsa", "-b", "3072"])]


def keygen(directory, name, *args):
    path = Path(directory) / name
    run(["ssh-keygen", "-q", "-N", "", "-C", f"{name}@test", "-f", path] + list(args or
                                                                              ["-t", "ed25519"]))
    return path


def fingerprint(pub):
    return run(["ssh-keygen", "-lf", pub]).stdout.split()[1]


class Gitd:
    """A running ff-gitd in front of a builder, and clients that talk to it."""

    def __init__(self, daemons, builder, tmp, extra="", port=None, name="ff-gitd", root=None,
                 ca=None):
        self.builder = builder
        self.tmp = Path(tmp)
        self.root = Path(root or tmp)
        self.port = port or free_port()
        self.repos = self.root / "repos"
        self.repos.mkdir(exist_ok=True)
        self.host_key = self.root / "ssh_host_ed25519_key"
        self.key_file = self.root / "gitd.key"
        if not self.key_file.exists():
            self.key_file.write_text(f"FF_GITD_KEY={builder.service_key()}\n")
            self.key_file.chmod(0o600)
        self.known_hosts = self.tmp / "known_hosts"
        self.config = self.root / f"gitd-{self.port}.ini"
        self.config.write_text(
            f"[server]\nport = {self.port}\nhost_key = {self.host_key}\n"
            f"[builder]\nurl = https://127.0.0.1:{builder.port}\nca = {ca or builder.tls.ca}\n"
            f"key_file = {self.key_file}\n[storage]\nrepos = {self.repos}\n" + extra)
        self.daemon = daemons.start(name, [bin_path("ff-gitd"), "-f", self.config],
                                    port=self.port)
        self.home = self.tmp / "home"
        self.home.mkdir(exist_ok=True)

    def url(self, path):
        return f"ssh://git@127.0.0.1:{self.port}/{path}"

    def ssh_argv(self, key, *options):
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(key),
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                "-o", "SendEnv=LANG"] + list(options)

    def ssh(self, key, *args, options=(), timeout=30, input=""):
        env = dict(os.environ, LANG="C.UTF-8")
        return subprocess.run(self.ssh_argv(key, *options) + ["git@127.0.0.1"] + list(args),
                              capture_output=True, text=True, timeout=timeout, input=input,
                              env=env)

    def git_env(self, key, ssh_options=()):
        ssh = " ".join(shlex.quote(a) for a in self.ssh_argv(key, *ssh_options))
        return dict(os.environ, HOME=str(self.home), GIT_CONFIG_NOSYSTEM="1",
                    GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="t@e.st",
                    GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="t@e.st",
                    GIT_SSH_COMMAND=ssh)

    def git(self, key, *args, cwd=None, check=True, ssh_options=()):
        p = subprocess.run(["git"] + list(args), capture_output=True, text=True, timeout=60,
                           cwd=cwd, env=self.git_env(key, ssh_options))
        if check:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    def repo_ref(self, owner, app, ref):
        p = subprocess.run(["git", "--git-dir", str(self.repos / owner / f"{app}.git"),
                            "rev-parse", "--verify", "-q", ref], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None


def wait_for_log(gitd, needle, timeout=10):
    """The listener logs a session's end when it reaps it, a moment after
    the client saw the connection close."""
    deadline = time.monotonic() + timeout
    while needle not in gitd.daemon.log():
        assert time.monotonic() < deadline, f"{needle!r} not logged"
        time.sleep(0.05)


def add_key(builder, token, path):
    line = Path(f"{path}.pub").read_text()
    builder.ok("POST", "/v1/keys", token, {"public_key": line}, status=201)


def make_work(gitd, key, name, branch="feature", files=None):
    """A local repository with one commit on branch; returns its path."""
    work = gitd.tmp / name
    gitd.git(key, "init", "-q", "-b", branch, str(work))
    for fname, text in (files or {"README": f"{name}\n", "src/app.py": "print('hi')\n"}).items():
        (work / fname).parent.mkdir(parents=True, exist_ok=True)
        (work / fname).write_text(text)
    gitd.git(key, "add", "-A", cwd=work)
    gitd.git(key, "commit", "-q", "-m", f"{name}", cwd=work)
    return work


def head(gitd, key, work, rev="HEAD"):
    return gitd.git(key, "rev-parse", rev, cwd=work).stdout.strip()


@pytest.fixture
def world(builder, daemons, tmp_path):
    """A builder with bob (owner of bob/web, one ed25519 key) and a gitd."""
    bob = builder.add_user("bob")
    builder.add_app(bob, "web")
    key = keygen(tmp_path, "bob_ed25519")
    add_key(builder, bob, key)
    gitd = Gitd(daemons, builder, tmp_path)
    return gitd, bob, key


def test_push_and_clone_with_each_key_type(builder, daemons, tmp_path):
    bob = builder.add_user("bob")
    builder.add_app(bob, "web")
    gitd = Gitd(daemons, builder, tmp_path)
    for i, (name, args) in enumerate(KEY_TYPES):
        key = keygen(tmp_path, f"bob_{name}", *args)
        add_key(builder, bob, key)
        branch = f"feature-{name}"
        work = make_work(gitd, key, f"work-{name}", branch=branch,
                         files={"README": f"pushed with {name}\n", f"{name}/data": str(i) * 50})
        p = gitd.git(key, "push", gitd.url("bob/web.git"), branch, cwd=work)
        assert f"* [new branch]      {branch} -> {branch}" in p.stderr
        assert gitd.repo_ref("bob", "web", f"refs/heads/{branch}") == head(gitd, key, work)
        # scp-like syntax: git sends the path without the leading '/'.
        clone = tmp_path / f"clone-{name}"
        gitd.git(key, "clone", "-q", "-b", branch, "git@127.0.0.1:bob/web", str(clone),
                 ssh_options=["-p", str(gitd.port)])
        assert head(gitd, key, clone, "HEAD^{tree}") == head(gitd, key, work, "HEAD^{tree}")
        assert (clone / name / "data").read_text() == str(i) * 50
    # A fast-forward on top of what is there, with a key of the first type.
    key = tmp_path / "bob_ed25519"
    work = tmp_path / "work-ed25519"
    (work / "more").write_text("more\n")
    gitd.git(key, "add", "more", cwd=work)
    gitd.git(key, "commit", "-q", "-m", "more", cwd=work)
    gitd.git(key, "push", gitd.url("bob/web"), "feature-ed25519", cwd=work)
    assert gitd.repo_ref("bob", "web", "refs/heads/feature-ed25519") == head(gitd, key, work)
    log = gitd.daemon.log()
    assert "event=auth.ok" in log and "user=bob" in log
    assert fingerprint(f"{key}.pub") in log


def test_forced_thin_and_atomic_pushes_over_ssh(world, tmp_path):
    gitd, bob, key = world
    url = gitd.url("bob/web.git")
    big = "".join(f"line {i} of a file large enough to be sent as a delta\n" for i in range(4000))
    work = make_work(gitd, key, "work", branch="feature", files={"big.txt": big})
    gitd.git(key, "push", url, "feature", cwd=work)
    # A one-line change on top: git sends a thin pack (a delta against the
    # blob the server has), which gitd completes from the repository.
    (work / "big.txt").write_text(big.replace("line 10 ", "line ten "))
    gitd.git(key, "commit", "-q", "-am", "one line", cwd=work)
    p = gitd.git(key, "push", "--thin", url, "feature", cwd=work)
    assert gitd.repo_ref("bob", "web", "refs/heads/feature") == head(gitd, key, work)
    # A rewritten commit: refused by git without --force, taken with it.
    gitd.git(key, "commit", "-q", "--amend", "-m", "rewritten", cwd=work)
    p = gitd.git(key, "push", url, "feature", cwd=work, check=False)
    assert p.returncode != 0 and "non-fast-forward" in p.stderr
    gitd.git(key, "push", "--force", url, "feature", cwd=work)
    assert gitd.repo_ref("bob", "web", "refs/heads/feature") == head(gitd, key, work)
    # --atomic with two refs, one of them a non-fast-forward: neither moves.
    gitd.git(key, "branch", "second", cwd=work)
    before = gitd.repo_ref("bob", "web", "refs/heads/feature")
    gitd.git(key, "reset", "-q", "--hard", "HEAD~1", cwd=work)
    gitd.git(key, "commit", "-q", "--allow-empty", "-m", "diverged", cwd=work)
    p = gitd.git(key, "push", "--atomic", url, "feature", "second", cwd=work, check=False)
    assert p.returncode != 0
    assert gitd.repo_ref("bob", "web", "refs/heads/feature") == before
    assert gitd.repo_ref("bob", "web", "refs/heads/second") is None
    gitd.git(key, "push", "--atomic", "--force", url, "feature", "second", cwd=work)
    assert gitd.repo_ref("bob", "web", "refs/heads/feature") == head(gitd, key, work)
    assert gitd.repo_ref("bob", "web", "refs/heads/second") == head(gitd, key, work, "second")
    # Cloned back over SSH, the tree is the client's; the repository is sound.
    clone = tmp_path / "clone"
    gitd.git(key, "clone", "-q", "-b", "feature", url, str(clone))
    assert head(gitd, key, clone, "HEAD^{tree}") == head(gitd, key, work, "HEAD^{tree}")
    fsck = subprocess.run(["git", "--git-dir", str(gitd.repos / "bob" / "web.git"), "fsck",
                           "--strict"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_push_to_deploy_branch_goes_through_the_gate(world):
    gitd, bob, key = world
    work = make_work(gitd, key, "work", branch="feature")
    gitd.git(key, "push", gitd.url("bob/web.git"), "feature", cwd=work)
    gitd.git(key, "branch", "main", cwd=work)
    p = gitd.git(key, "push", gitd.url("bob/web.git"), "main", cwd=work, check=False)
    assert p.returncode != 0
    assert "! [remote rejected] main -> main (no builder available)" in p.stderr, p.stderr
    assert "asking the builder to build" in p.stderr
    assert gitd.repo_ref("bob", "web", "refs/heads/main") is None
    assert gitd.repo_ref("bob", "web", "refs/heads/feature") == head(gitd, key, work)
    assert gitd.builder.audit("build.refused", "bob")
    # The receive-pack child logs to the daemon's log, not to the client.
    assert 'event=gate.refused' in gitd.daemon.log()
    assert "event=gate.refused" not in p.stderr


def test_per_app_deploy_branch(builder, daemons, tmp_path):
    """An app created with deploy_branch=production: pushes to main are
    plain pushes, pushes to production go through the build gate."""
    bob = builder.add_user("bob")
    builder.ok("POST", "/v1/apps", bob, {"name": "svc", "archs": ["amd64"],
                                        "deploy_branch": "production"})
    key = keygen(tmp_path, "bob_key")
    add_key(builder, bob, key)
    gitd = Gitd(daemons, builder, tmp_path)
    work = make_work(gitd, key, "work", branch="main")
    url = gitd.url("bob/svc.git")
    gitd.git(key, "push", url, "main", cwd=work)
    assert gitd.repo_ref("bob", "svc", "refs/heads/main") == head(gitd, key, work)
    p = gitd.git(key, "push", url, "main:production", cwd=work, check=False)
    assert p.returncode != 0
    assert "(no builder available)" in p.stderr, p.stderr
    assert gitd.repo_ref("bob", "svc", "refs/heads/production") is None
    # Deleting the deploy branch is refused; another branch may be deleted.
    p = gitd.git(key, "push", url, ":main", cwd=work)
    assert gitd.repo_ref("bob", "svc", "refs/heads/main") is None


def test_unknown_key_and_other_methods_refused(world, tmp_path):
    gitd, bob, key = world
    stranger = keygen(tmp_path, "stranger")
    p = gitd.ssh(stranger, "git-upload-pack 'bob/web.git'")
    assert p.returncode == 255
    assert "Permission denied (publickey)." in p.stderr, p.stderr
    # Passwords and keyboard-interactive are not even offered.
    p = gitd.ssh(key, "git-upload-pack 'bob/web.git'",
                 options=["-o", "PreferredAuthentications=password,keyboard-interactive"])
    assert p.returncode == 255
    assert "Permission denied (publickey)." in p.stderr, p.stderr
    assert "event=auth.unknown_key" in gitd.daemon.log()
    assert fingerprint(f"{stranger}.pub") in gitd.daemon.log()
    # A client may offer a few keys before the right one ...
    others = [keygen(tmp_path, f"other{i}") for i in range(11)]
    identities = [a for k in others[1:3] + [key] for a in ("-i", str(k))]
    p = gitd.ssh(others[0], options=identities)
    assert p.returncode == 1 and "Hi bob!" in p.stderr, p.stderr
    # ... but not key after key: the connection ends after 10 failures.
    identities = [a for k in others[1:] + [key] for a in ("-i", str(k))]
    p = gitd.ssh(others[0], options=identities)
    assert p.returncode == 255 and "Hi bob!" not in p.stderr
    wait_for_log(gitd, "reason=auth_failures")
    # Without the builder nobody gets in, and is told why.
    gitd.builder.daemon.stop()
    p = gitd.ssh(key)
    assert p.returncode == 255
    assert "ff-gitd: cannot check SSH keys right now (the builder does not answer)" in p.stderr
    assert "event=auth.builder" in gitd.daemon.log()


def test_other_users_app_refused_before_any_pack(world, tmp_path):
    gitd, bob, key = world
    alice = gitd.builder.add_user("alice")
    akey = keygen(tmp_path, "alice")
    add_key(gitd.builder, alice, akey)
    work = make_work(gitd, akey, "alice-work")
    p = gitd.git(akey, "push", gitd.url("bob/web.git"), "feature", cwd=work, check=False)
    assert p.returncode != 0
    assert "ff-gitd: app bob/web does not exist, or alice has no access to it" in p.stderr
    assert not (gitd.repos / "bob").exists()
    p = gitd.git(akey, "clone", gitd.url("bob/web.git"), str(tmp_path / "c"), check=False)
    assert p.returncode != 0 and "alice has no access to it" in p.stderr
    # Her own namespace: an app she has not created yet.
    p = gitd.git(akey, "push", gitd.url("alice/nope.git"), "feature", cwd=work, check=False)
    assert p.returncode != 0
    assert "ff-gitd: app alice/nope does not exist: create it first with: ff app create nope" \
        in p.stderr
    assert not (gitd.repos / "alice").exists()


def test_viewer_may_clone_but_not_push(world, tmp_path):
    gitd, bob, key = world
    carol = gitd.builder.add_user("carol")
    ckey = keygen(tmp_path, "carol")
    add_key(gitd.builder, carol, ckey)
    gitd.builder.add_member(bob, "bob/web", "carol", "viewer")
    work = make_work(gitd, key, "work")
    gitd.git(key, "push", gitd.url("bob/web.git"), "feature", cwd=work)
    before = gitd.repo_ref("bob", "web", "refs/heads/feature")
    clone = tmp_path / "carol-clone"
    gitd.git(ckey, "clone", "-q", "-b", "feature", gitd.url("bob/web.git"), str(clone))
    assert head(gitd, ckey, clone) == before
    (clone / "evil").write_text("x\n")
    gitd.git(ckey, "add", "evil", cwd=clone)
    gitd.git(ckey, "commit", "-q", "-m", "evil", cwd=clone)
    p = gitd.git(ckey, "push", "origin", "feature", cwd=clone, check=False)
    assert p.returncode != 0
    assert "ff-gitd: you have read access only to bob/web: push refused" in p.stderr, p.stderr
    assert gitd.repo_ref("bob", "web", "refs/heads/feature") == before
    assert "reason=read_only" in gitd.daemon.log()


def test_shell_commands_pty_and_forwarding_refused(world, tmp_path):
    gitd, bob, key = world
    p = gitd.ssh(key)
    assert p.returncode == 1
    assert "Hi bob! You are authenticated, but Fleetforge does not give shell access." \
        in p.stderr
    assert f"git push ssh://git@127.0.0.1:{gitd.port}/bob/NAME.git main" in p.stderr
    for cmd, needle in [
            ("ls", 'command "ls" is not allowed: only git-receive-pack and git-upload-pack'),
            ("git-receive-pack bob/web.git", "expected one argument in single quotes"),
            ("git-upload-pack '../etc/passwd'", "the owner must be a user name"),
            ("git-upload-pack 'bob/web/x.git'", "the app must be a name"),
            ("git-upload-archive 'bob/web.git'", 'command "git-upload-archive" is not allowed'),
            ("git-receive-pack 'bob/web.git'; rm -rf /", "expected one argument in single")]:
        p = gitd.ssh(key, cmd)
        assert p.returncode == 1, (cmd, p.stderr)
        assert needle in p.stderr, (cmd, p.stderr)
    # A PTY is refused; OpenSSH ends a session whose PTY it was told to get.
    for cmd in ([], ["git-upload-pack 'bob/web.git'"]):
        p = gitd.ssh(key, *cmd, options=["-tt"])
        assert p.returncode == 255
        assert "ff-gitd: no terminal here" in p.stderr
        assert "PTY allocation request failed" in p.stderr
    # Subsystems (sftp).
    p = gitd.ssh(key, "sftp", options=["-s"])
    assert p.returncode != 0
    assert 'ff-gitd: subsystem "sftp" refused' in p.stderr
    # X11 forwarding (OpenSSH sends fake cookies without xauth).
    p = subprocess.run(gitd.ssh_argv(key, "-X") + ["git@127.0.0.1"], capture_output=True,
                       text=True, input="", env=dict(os.environ, DISPLAY=":37"), timeout=30)
    assert p.returncode == 1
    assert "ff-gitd: X11 forwarding refused" in p.stderr
    assert "X11 forwarding request failed" in p.stderr
    # Agent forwarding, with a real (empty) agent to forward.
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        argv = gitd.ssh_argv(key, "-A")
        i = argv.index("IdentityAgent=none")
        del argv[i - 1:i + 1]
        p = subprocess.run(argv + ["git@127.0.0.1"],
                           capture_output=True, text=True, input="", timeout=30,
                           env=dict(os.environ, SSH_AUTH_SOCK=str(sock)))
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert "ff-gitd: agent forwarding refused" in p.stderr, p.stderr
    assert p.returncode == 1 and "Hi bob!" in p.stderr
    # Remote forwarding: the server refuses the global request.
    p = gitd.ssh(key, "git-upload-pack 'bob/web.git'",
                 options=["-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"])
    assert p.returncode == 255
    assert "remote port forwarding failed" in p.stderr, p.stderr
    # Local forwarding: the client listens, the server refuses the channel.
    lport = free_port()
    proc = subprocess.Popen(gitd.ssh_argv(key, "-N", "-L", f"{lport}:127.0.0.1:{gitd.port}") +
                            ["git@127.0.0.1"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        data = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", lport), timeout=5) as s:
                    s.settimeout(5)
                    data = s.recv(100)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert data == b""  # closed at once: nothing was forwarded
    finally:
        proc.kill()
        err = proc.communicate(timeout=10)[1]
    assert "open failed: administratively prohibited" in err, err
    log = gitd.daemon.log()
    assert "kind=channel-open" in log and "kind=tcpip-forward" in log


def test_host_key_made_once_and_kept(builder, daemons, tmp_path):
    gitd = Gitd(daemons, builder, tmp_path)
    mode = stat.S_IMODE(gitd.host_key.stat().st_mode)
    assert mode == 0o600
    first = run(["ssh-keyscan", "-t", "ed25519", "-p", str(gitd.port), "127.0.0.1"]).stdout
    assert "ssh-ed25519" in first
    fp = run(["ssh-keygen", "-lf", gitd.host_key]).stdout.split()[1]
    assert f"host_key_fp={fp}" in gitd.daemon.log()
    assert "event=hostkey.created" in gitd.daemon.log()
    content = gitd.host_key.read_bytes()
    gitd.daemon.stop()
    again = Gitd(daemons, builder, tmp_path, port=gitd.port, name="ff-gitd-again")
    second = run(["ssh-keyscan", "-t", "ed25519", "-p", str(again.port), "127.0.0.1"]).stdout
    assert first.split("\n")[-2] == second.split("\n")[-2]
    assert gitd.host_key.read_bytes() == content
    assert "hostkey.created" not in again.daemon.log()
    again.daemon.stop()
    # A key others may read is refused, not silently used.
    gitd.host_key.chmod(0o644)
    p = run([bin_path("ff-gitd"), "-f", gitd.config], check=False, timeout=30)
    assert p.returncode != 0
    assert "is readable by others" in p.stderr


def test_config_check_and_bad_config(builder, daemons, tmp_path):
    gitd = Gitd(daemons, builder, tmp_path)
    p = run([bin_path("ff-gitd"), "-f", gitd.config, "-n"], check=False)
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "bad.ini"
    bad.write_text(gitd.config.read_text() + "[limits]\nsessions_per_user = 0\n")
    p = run([bin_path("ff-gitd"), "-f", bad, "-n"], check=False)
    assert p.returncode != 0 and "sessions_per_user" in p.stderr


def hold_session(gitd, key):
    """An upload-pack session waiting for the client's wants; returns the
    ssh process once the advertisement has arrived."""
    proc = subprocess.Popen(gitd.ssh_argv(key) + ["git@127.0.0.1", "git-upload-pack 'bob/web.git'"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.read(4)
    assert len(first) == 4 and int(first, 16) > 4, first
    return proc


def end_sessions(procs):
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_session_limits(builder, daemons, tmp_path):
    bob = builder.add_user("bob")
    builder.add_app(bob, "web")
    key = keygen(tmp_path, "bob")
    add_key(builder, bob, key)
    carol = builder.add_user("carol")
    ckey = keygen(tmp_path, "carol")
    add_key(builder, carol, ckey)
    builder.add_member(bob, "bob/web", "carol", "viewer")
    gitd = Gitd(daemons, builder, tmp_path,
                extra="[limits]\nsessions_per_user = 2\nsessions_per_address = 3\n")
    work = make_work(gitd, key, "work")
    gitd.git(key, "push", gitd.url("bob/web.git"), "feature", cwd=work)
    held = [hold_session(gitd, key), hold_session(gitd, key)]
    try:
        p = gitd.ssh(key, "git-upload-pack 'bob/web.git'")
        assert p.returncode == 1
        assert "ff-gitd: too many sessions for bob (at most 2 at once)" in p.stderr, p.stderr
        held.append(hold_session(gitd, ckey))
        p = gitd.ssh(ckey, "git-upload-pack 'bob/web.git'")
        assert p.returncode == 255
        assert "ff-gitd: too many sessions from 127.0.0.1 (at most 3 at once)" in p.stderr, \
            p.stderr
    finally:
        end_sessions(held)
    # Ended sessions free their slots at once.
    p = gitd.ssh(key, "git-upload-pack 'bob/web.git'")
    assert p.returncode == 0, p.stderr
    assert "reason=address_limit" in gitd.daemon.log()


def test_idle_and_auth_timeouts(world, builder, daemons, tmp_path):
    gitd, bob, key = world
    work = make_work(gitd, key, "work")
    gitd.git(key, "push", gitd.url("bob/web.git"), "feature", cwd=work)
    quick = Gitd(daemons, builder, tmp_path, name="ff-gitd-quick",
                 extra="[limits]\nidle_timeout = 1\nauth_timeout = 2\n")
    start = time.monotonic()
    proc = hold_session(quick, key)
    err = proc.stderr.read().decode()
    proc.wait(timeout=20)
    end_sessions([proc])
    assert proc.returncode != 0
    assert "ff-gitd: nothing moved for 1 s: session closed" in err, err
    assert time.monotonic() - start < 10
    assert "event=session.idle" in quick.daemon.log()
    # A connection that never authenticates is dropped after auth_timeout.
    with socket.create_connection(("127.0.0.1", quick.port), timeout=10) as s:
        s.settimeout(10)
        start = time.monotonic()
        banner = s.recv(100)
        assert banner.startswith(b"SSH-2.0-ff-gitd")
        rest = s.recv(100000)
        while rest:
            rest = s.recv(100000)
        assert time.monotonic() - start < 8
    wait_for_log(quick, "reason=auth_timeout")


def test_large_push_and_clone_through_flow_control(world, tmp_path):
    """Several MiB each way: more than any window or buffer on the path, so
    the pump must wait on both sides without losing or reordering bytes."""
    gitd, bob, key = world
    files = {f"blob{i}.bin": os.urandom(1 << 20).hex() for i in range(6)}
    files.update({f"many/f{i}.txt": f"file {i}\n" * 20 for i in range(300)})
    work = make_work(gitd, key, "big", files=files)
    gitd.git(key, "push", gitd.url("bob/web.git"), "feature", cwd=work)
    clone = tmp_path / "big-clone"
    gitd.git(key, "clone", "-q", "-b", "feature", gitd.url("bob/web.git"), str(clone))
    assert head(gitd, key, clone, "HEAD^{tree}") == head(gitd, key, work, "HEAD^{tree}")
    assert (clone / "blob5.bin").read_text() == files["blob5.bin"]
    gitd.git(key, "fsck", "--strict", cwd=clone)


def children(pid):
    """Pids whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def proc_status(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split()[1:]
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_least_privilege(builder, daemons, tmp_path):
    """Started as root: the listener reads the keys and binds as root, then
    every process serves as [server] user with no way back; the git program
    sees only what it needs, and never the service key in its environment."""
    bob = builder.add_user("bob")
    builder.add_app(bob, "web")
    key = keygen(tmp_path, "bob")
    add_key(builder, bob, key)
    # Outside pytest's private temp dir, so that nobody can reach its files.
    root = Path(tempfile.mkdtemp(prefix="ff-gitd-", dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "repos").mkdir()
        os.chown(root / "repos", 65534, 65534)
        ca = root / "ca.crt"
        ca.write_bytes(Path(builder.tls.ca).read_bytes())
        ca.chmod(0o644)
        gitd = Gitd(daemons, builder, tmp_path, root=root, ca=ca,
                    extra="[server]\nuser = nobody\n")
        st = gitd.host_key.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
        listener = gitd.daemon.proc.pid
        assert proc_status(listener, "Uid") == ["65534"] * 4
        assert proc_status(listener, "Gid") == ["65534"] * 4
        assert proc_status(listener, "Groups") == []
        assert proc_status(listener, "NoNewPrivs") == ["1"]
        work = make_work(gitd, key, "work")
        gitd.git(key, "push", gitd.url("bob/web.git"), "feature", cwd=work)
        assert (root / "repos" / "bob" / "web.git").stat().st_uid == 65534
        for command in ("git-upload-pack 'bob/web.git'", "git-receive-pack 'bob/web.git'"):
            proc = subprocess.Popen(gitd.ssh_argv(key) + ["git@127.0.0.1", command],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            try:
                assert len(proc.stdout.read(4)) == 4  # the advertisement has started
                sessions = children(listener)
                assert len(sessions) == 1
                session = sessions[0]
                assert proc_status(session, "Uid") == ["65534"] * 4
                # The session does not keep the listening socket.
                fds = {os.readlink(f"/proc/{session}/fd/{fd}")
                       for fd in os.listdir(f"/proc/{session}/fd")}
                git = children(session)
                assert len(git) == 1
                env = Path(f"/proc/{git[0]}/environ").read_bytes().split(b"\0")
                names = sorted(e.split(b"=", 1)[0].decode() for e in env if e)
                assert all(n.startswith("FF_GITD_") for n in names), names
                assert b"ffg_" not in b"".join(env)
                assert "FF_GITD_USER" in names and "FF_GITD_APP" in names
                # 0-2 are pipes to the session, 3 the daemon's log; past that
                # only what libgit2 opens: the key pipe was read and closed,
                # and no socket is inherited.
                git_fds = {int(fd): os.readlink(f"/proc/{git[0]}/fd/{fd}")
                           for fd in os.listdir(f"/proc/{git[0]}/fd")}
                assert all(git_fds[fd].startswith("pipe:") for fd in (0, 1, 2)), git_fds
                assert git_fds[3] == str(gitd.daemon.log_path), git_fds
                assert not [t for fd, t in git_fds.items()
                            if fd > 3 and t.startswith(("pipe:", "socket:"))], git_fds
                if "receive" in command:
                    assert "FF_GITD_KEY_FD" in names
                else:
                    assert "FF_GITD_KEY_FD" not in names
                    assert "FF_GITD_BUILDER_URL" not in names
            finally:
                end_sessions([proc])
        listening = {os.readlink(f"/proc/{listener}/fd/{fd}")
                     for fd in os.listdir(f"/proc/{listener}/fd")}
        listening = {t for t in listening if t.startswith("socket:")}
        assert listening and not listening & fds
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
