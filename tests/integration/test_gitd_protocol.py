"""ff-gitd's git protocol core over stdio, driven by real git.

git runs `ff-gitd receive-pack` / `ff-gitd upload-pack` itself through
--receive-pack / --upload-pack, exactly as it would run them over ssh; the
bad-input cases speak raw pkt-lines to the same program from Python. Every
test checks what the server repository holds afterwards with git itself
(rev-parse, cat-file, fsck), never only what ff-gitd says."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import bin_path

ZERO = "0" * 40
DIGEST = "sha256:" + "5e" * 32
# How long a git command or an ff-gitd session may take (slow under ASan).
TIMEOUT = 120


def pkt(data):
    return b"%04x" % (len(data) + 4) + data


def read_pkts(data):
    """Splits bytes into pkt-lines: a list of payloads, None for a flush,
    and the bytes left after the first flush of the advertisement."""
    out, pos = [], 0
    while pos + 4 <= len(data):
        n = int(data[pos:pos + 4], 16)
        if n == 0:
            out.append(None)
            pos += 4
            continue
        out.append(data[pos + 4:pos + n])
        pos += n
    return out


def report_lines(stdout):
    """The report-status lines of a raw receive-pack session without
    side-band: everything after the advertisement's flush."""
    pkts = read_pkts(stdout)
    first_flush = pkts.index(None)
    return [p.decode().rstrip("\n") for p in pkts[first_flush + 1:] if p is not None]


def demux(stdout):
    """Band 1 and band 2 of a side-band session after the advertisement."""
    pkts = read_pkts(stdout)
    bands = {1: b"", 2: b"", 3: b""}
    for p in pkts[pkts.index(None) + 1:]:
        if p is not None:
            bands[p[0]] += p[1:]
    return bands


class Site:
    """A server repository served by ff-gitd and the git environment of a
    developer pushing to it."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.srv = self.tmp / "srv.git"
        self.gitd = str(bin_path("ff-gitd"))
        home = self.tmp / "home"
        home.mkdir()
        (home / ".gitconfig").write_text(
            "[user]\n\tname = Dev\n\temail = dev@example.com\n"
            "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
        self.env = dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C",
                        GIT_TERMINAL_PROMPT="0")
        for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_TRACE", "GIT_PROTOCOL"):
            self.env.pop(k, None)

    def git(self, *args, cwd=None, check=True, input=None, env=None):
        return subprocess.run(["git", *map(str, args)], cwd=cwd, env=dict(self.env, **(env or {})),
                              check=check,
                              capture_output=True, input=input, timeout=TIMEOUT,
                              text=input is None or isinstance(input, str))

    def srv_git(self, *args, check=True):
        return self.git("--git-dir", self.srv, *args, check=check)

    def work(self, name="work"):
        d = self.tmp / name
        self.git("init", "-q", "-b", "main", d)
        return d

    def commit(self, work, path="file", text=None, msg="change", date=None):
        f = Path(work) / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text if text is not None else f"{msg} {time.monotonic_ns()}\n")
        self.git("add", path, cwd=work)
        dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else None
        self.git("commit", "-q", "-m", msg, cwd=work, env=dates)
        return self.git("rev-parse", "HEAD", cwd=work).stdout.strip()

    def receive_pack(self, *opts):
        return " ".join([self.gitd, "receive-pack", *map(str, opts)])

    def push(self, work, *refspecs, opts=(), flags=()):
        return self.git("push", *flags, f"--receive-pack={self.receive_pack(*opts)}", self.srv,
                        *refspecs, cwd=work, check=False)

    def clone(self, dest):
        r = self.git("clone", f"--upload-pack={self.gitd} upload-pack", self.srv, dest,
                     check=False)
        assert r.returncode == 0, r.stderr
        return Path(dest)

    def ref(self, ref):
        r = self.srv_git("rev-parse", "--verify", "-q", ref, check=False)
        return r.stdout.strip() or None

    def refs(self):
        return self.srv_git("for-each-ref", "--format=%(objectname) %(refname)").stdout

    def has_object(self, oid):
        return self.srv_git("cat-file", "-e", oid, check=False).returncode == 0

    def fsck(self):
        r = self.srv_git("fsck", "--no-dangling", check=False)
        assert r.returncode == 0, r.stdout + r.stderr

    def incoming(self):
        return sorted((self.srv / "objects").glob("incoming-*"))

    def pack(self, work, *revs, thin=False):
        args = ["pack-objects", "--stdout", "--revs"] + (["--thin"] if thin else [])
        return subprocess.run(["git", *args], cwd=work, env=self.env, check=True,
                              capture_output=True, timeout=TIMEOUT,
                              input=("\n".join(revs) + "\n").encode()).stdout

    def raw(self, data, *opts, role="receive-pack"):
        """One ff-gitd session fed data on stdin."""
        extra = list(map(str, opts)) if role == "receive-pack" else []
        r = subprocess.run([self.gitd, role, *extra, str(self.srv)], input=data,
                           capture_output=True, timeout=TIMEOUT)
        # under `make asan` a leak or undefined behaviour on an error path
        # shows up here even when the session was meant to fail
        assert b"Sanitizer" not in r.stderr and b"runtime error" not in r.stderr, r.stderr
        return r

    def recording(self, name, lines):
        p = self.tmp / name
        p.write_text("\n".join(lines) + "\n")
        return p


def commands(cmds, caps="report-status"):
    out = b""
    for i, (old, new, ref) in enumerate(cmds):
        line = f"{old} {new} ".encode() + (ref if isinstance(ref, bytes) else ref.encode())
        if i == 0:
            line += b"\0" + caps.encode()
        out += pkt(line + b"\n")
    return out + b"0000"


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


@pytest.fixture
def pushed(site):
    """A server repository holding main at one commit, and the clone that
    pushed it."""
    work = site.work()
    c1 = site.commit(work, "app.txt", "one\n", "one")
    r = site.push(work, "main")
    assert r.returncode == 0, r.stderr
    return work, c1


# ---- git push and clone ----------------------------------------------------

def test_new_repo_push_then_clone_has_the_same_tree(site):
    work = site.work()
    site.commit(work, "README", "hello\n", "first")
    site.commit(work, "src/main.c", "int main(void) { return 0; }\n", "second")
    r = site.push(work, "main")
    assert r.returncode == 0, r.stderr
    assert "* [new branch]      main -> main" in r.stderr
    head = site.git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert site.ref("refs/heads/main") == head
    assert site.srv_git("symbolic-ref", "HEAD").stdout.strip() == "refs/heads/main"
    site.fsck()
    assert site.incoming() == []

    clone = site.clone(site.tmp / "clone")
    tree = site.git("rev-parse", "HEAD^{tree}", cwd=clone).stdout
    assert tree == site.git("rev-parse", "HEAD^{tree}", cwd=work).stdout
    assert site.git("symbolic-ref", "HEAD", cwd=clone).stdout.strip() == "refs/heads/main"
    assert (clone / "src" / "main.c").read_text() == "int main(void) { return 0; }\n"


def test_fast_forward_then_fetch(site, pushed):
    work, c1 = pushed
    clone = site.clone(site.tmp / "clone")
    c2 = site.commit(work, "app.txt", "two\n", "two")
    r = site.push(work, "main")
    assert r.returncode == 0, r.stderr
    assert f"{c1[:7]}..{c2[:7]}  main -> main" in r.stderr
    assert site.ref("main") == c2
    # fetch negotiates: the server ACKs the clone's c1, so only c2 travels
    r = subprocess.run(["git", "fetch", f"--upload-pack={site.gitd} upload-pack", "origin"],
                       cwd=clone, env=dict(site.env, GIT_TRACE_PACKET="1"), text=True,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert f"fetch< ACK {c1}" in r.stderr
    assert "fetch> done" in r.stderr
    assert site.git("rev-parse", "origin/main", cwd=clone).stdout.strip() == c2
    site.fsck()


def test_fetch_negotiates_through_rounds_of_haves(site, pushed):
    work, c1 = pushed
    clone = site.clone(site.tmp / "clone")
    # newer than c1, so git offers all of them before it
    for i in range(40):
        site.commit(clone, "local.txt", f"{i}\n", f"local {i}", date=f"2090-01-01T00:00:{i:02}")
    c2 = site.commit(work, "app.txt", "two\n", "two")
    assert site.push(work, "main").returncode == 0
    r = subprocess.run(["git", "fetch", f"--upload-pack={site.gitd} upload-pack", "origin"],
                       cwd=clone, env=dict(site.env, GIT_TRACE_PACKET="1"), text=True,
                       capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    # the first rounds hold only commits the server lacks: NAK, until c1
    assert "fetch< NAK" in r.stderr
    assert f"fetch< ACK {c1}" in r.stderr
    assert site.git("rev-parse", "origin/main", cwd=clone).stdout.strip() == c2


def test_forced_push_replaces_history_and_plain_push_is_refused_by_git(site, pushed):
    work, c1 = pushed
    c2 = site.commit(work, "app.txt", "two\n", "two")
    assert site.push(work, "main").returncode == 0
    site.git("reset", "-q", "--hard", c1, cwd=work)
    c3 = site.commit(work, "app.txt", "three\n", "diverged")
    r = site.push(work, "main")
    assert r.returncode != 0
    assert "[rejected]" in r.stderr and "main -> main" in r.stderr
    assert site.ref("main") == c2
    # like git receive-pack by default, the server accepts a forced update
    r = site.push(work, "+main")
    assert r.returncode == 0, r.stderr
    assert "(forced update)" in r.stderr
    assert site.ref("main") == c3
    site.fsck()


def big_text(n, changed=None):
    return "".join(f"line {i} {'changed' if i == changed else 'of a long enough file'}\n"
                   for i in range(n))


def test_thin_pack_is_completed_from_the_repository(site):
    work = site.work()
    c1 = site.commit(work, "big.txt", big_text(400), "big")
    assert site.push(work, "main").returncode == 0
    c2 = site.commit(work, "big.txt", big_text(400, changed=200), "one line")
    thin = site.pack(work, c2, f"^{c1}", thin=True)
    # it really is thin: git alone cannot index it without the base
    probe = site.tmp / "probe.git"
    site.git("init", "-q", "--bare", probe)
    r = subprocess.run(["git", "--git-dir", str(probe), "index-pack", "--stdin"], input=thin,
                       capture_output=True, env=site.env, timeout=TIMEOUT)
    assert r.returncode != 0 and b"unresolved delta" in r.stderr
    r = site.raw(commands([(c1, c2, "refs/heads/main")]) + thin)
    assert r.returncode == 0, r.stderr
    assert report_lines(r.stdout) == ["unpack ok", "ok refs/heads/main"]
    assert site.ref("main") == c2
    site.fsck()
    clone = site.clone(site.tmp / "clone")
    assert (clone / "big.txt").read_text() == big_text(400, changed=200)


def test_git_push_sends_thin_packs_that_are_accepted(site):
    work = site.work()
    site.commit(work, "big.txt", big_text(400), "big")
    assert site.push(work, "main").returncode == 0
    c2 = site.commit(work, "big.txt", big_text(400, changed=7), "one line")
    env = dict(site.env, GIT_TRACE="1")
    r = subprocess.run(["git", "push", f"--receive-pack={site.receive_pack()}", str(site.srv),
                        "main"], cwd=work, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert "--thin" in r.stderr
    assert site.ref("main") == c2
    site.fsck()


def test_annotated_tags_are_pushed_and_cloned(site, pushed):
    work, c1 = pushed
    site.git("tag", "-a", "-m", "release one", "v1", cwd=work)
    r = site.push(work, "v1")
    assert r.returncode == 0, r.stderr
    tag = site.git("rev-parse", "v1", cwd=work).stdout.strip()
    assert site.ref("refs/tags/v1") == tag != c1
    clone = site.clone(site.tmp / "clone")
    assert site.git("rev-parse", "v1^{commit}", cwd=clone).stdout.strip() == c1
    assert site.git("cat-file", "-t", "v1", cwd=clone).stdout.strip() == "tag"


def test_atomic_push_where_one_ref_fails_changes_nothing(site, pushed):
    work, c1 = pushed
    site.git("checkout", "-q", "-b", "feature", cwd=work)
    site.commit(work, "feature.txt", "f\n", "feature")
    before = site.refs()
    r = site.push(work, "feature", ":main", flags=("--atomic",))
    assert r.returncode != 0
    assert "! [remote rejected] feature -> feature (atomic push failure)" in r.stderr
    assert "! [remote rejected] main (the deploy branch cannot be deleted)" in r.stderr
    assert site.refs() == before
    # without --atomic the feature branch alone goes in
    r = site.push(work, "feature", ":main")
    assert r.returncode != 0
    assert "* [new branch]      feature -> feature" in r.stderr
    assert site.ref("main") == c1
    site.fsck()


def test_atomic_push_with_a_failed_build_refuses_both(site, pushed):
    work, c1 = pushed
    rec = site.recording("fail.rec", ["log amd64 Step 1/1 : RUN false", "result failed"])
    c2 = site.commit(work, "app.txt", "two\n", "two")
    site.git("branch", "side", cwd=work)
    r = site.push(work, "main", "side", opts=("--fake-build", rec), flags=("--atomic",))
    assert r.returncode != 0
    assert "! [remote rejected] main -> main (build failed)" in r.stderr
    assert "! [remote rejected] side -> side (atomic push failure)" in r.stderr
    assert site.ref("main") == c1 and site.ref("side") is None
    # the objects of a refused push are not kept
    assert not site.has_object(c2)
    assert site.incoming() == []
    site.fsck()


def test_delete_feature_branch_ok_deploy_branch_refused(site, pushed):
    work, c1 = pushed
    site.git("branch", "feature", cwd=work)
    assert site.push(work, "feature", "main:master").returncode == 0
    assert site.ref("refs/heads/feature") == c1
    r = site.push(work, ":feature")
    assert r.returncode == 0, r.stderr
    assert "[deleted]" in r.stderr
    assert site.ref("refs/heads/feature") is None
    for branch in ("main", "master"):
        r = site.push(work, f":{branch}")
        assert r.returncode != 0
        assert f"! [remote rejected] {branch} (the deploy branch cannot be deleted)" in r.stderr
        assert site.ref(f"refs/heads/{branch}") == c1
    # another deploy branch makes main an ordinary branch
    r = site.push(work, ":main", opts=("--deploy-branch", "prod"))
    assert r.returncode == 0, r.stderr
    assert site.ref("refs/heads/main") is None
    site.fsck()


def test_refs_outside_heads_and_tags_are_rejected(site, pushed):
    work, c1 = pushed
    r = site.push(work, "main:refs/notes/x")
    assert r.returncode != 0
    assert "(only refs/heads/ and refs/tags/ may be pushed)" in r.stderr
    assert site.ref("refs/notes/x") is None


def test_tree_entries_a_checkout_could_be_tricked_with_are_refused(site, pushed):
    work, c1 = pushed
    blob = site.git("hash-object", "-w", "--stdin", cwd=work, input="evil\n").stdout.strip()
    for name in (".git", "..", ".GIT"):
        tree = site.git("mktree", cwd=work, input=f"100644 blob {blob}\t{name}\n").stdout.strip()
        commit = site.git("commit-tree", tree, "-p", c1, "-m", "evil", cwd=work).stdout.strip()
        r = site.push(work, f"{commit}:refs/heads/evil")
        assert r.returncode != 0
        assert f'entry name \\"{name}\\" is not allowed' in r.stderr or \
            f'entry name "{name}" is not allowed' in r.stderr, r.stderr
        assert site.ref("refs/heads/evil") is None
        assert not site.has_object(commit)
    site.fsck()


def test_malformed_commit_object_is_refused(site, pushed):
    work, c1 = pushed
    tree = site.git("rev-parse", "HEAD^{tree}", cwd=work).stdout.strip()
    bad = site.git("hash-object", "-t", "commit", "-w", "--literally", "--stdin", cwd=work,
                   input=f"tree {tree}\nparent {c1}\nauthor nobody\n\nbroken\n").stdout.strip()
    pack = subprocess.run(["git", "pack-objects", "--stdout"], cwd=work, env=site.env,
                          input=(bad + "\n").encode(), capture_output=True, check=True,
                          timeout=TIMEOUT).stdout
    r = site.raw(commands([(ZERO, bad, "refs/heads/bad")]) + pack)
    assert r.returncode == 0, r.stderr
    lines = report_lines(r.stdout)
    assert lines[0] == "unpack ok"
    assert lines[1].startswith(f"ng refs/heads/bad commit {bad}"), lines
    assert site.ref("refs/heads/bad") is None
    assert not site.has_object(bad)


def test_clone_of_an_empty_repository(site):
    # a refused first push leaves the created repository empty
    r = site.raw(commands([(ZERO, "1" * 40, "refs/heads/../x")]))
    assert r.returncode != 0
    r = site.git("clone", f"--upload-pack={site.gitd} upload-pack", site.srv,
                 site.tmp / "empty", check=False)
    assert r.returncode == 0, r.stderr
    assert "cloned an empty repository" in r.stderr


# ---- the build gate ---------------------------------------------------------

def test_fake_build_success_moves_the_ref_and_prints_the_digest(site, pushed):
    work, c1 = pushed
    rec = site.recording("ok.rec", ["log amd64 Step 1/3 : FROM alpine:3.19",
                                    "sleep 0.05",
                                    "log arm64 Step 1/3 : FROM alpine:3.19",
                                    "log amd64 Step 3/3 : CMD [\"/app\"]",
                                    f"result ok {DIGEST} release 3"])
    c2 = site.commit(work, "app.txt", "two\n", "two")
    r = site.push(work, "main", opts=("--fake-build", rec))
    assert r.returncode == 0, r.stderr
    lines = [line.rstrip() for line in r.stderr.splitlines()]
    assert f"remote: building {c2[:12]} for refs/heads/main" in lines
    assert "remote: amd64: Step 1/3 : FROM alpine:3.19" in lines
    assert "remote: arm64: Step 1/3 : FROM alpine:3.19" in lines
    assert f"remote: build succeeded: release 3, image {DIGEST}" in lines
    assert lines.index("remote: amd64: Step 1/3 : FROM alpine:3.19") < \
        lines.index(f"remote: build succeeded: release 3, image {DIGEST}")
    assert site.ref("main") == c2
    # only the deploy branch is gated
    site.git("checkout", "-q", "-b", "feature", cwd=work)
    r = site.push(work, "feature", opts=("--fake-build", site.tmp / "missing.rec"))
    assert r.returncode == 0, r.stderr
    assert "remote:" not in r.stderr


def test_quiet_hides_our_progress_but_not_the_build_log(site, pushed):
    work, c1 = pushed
    rec = site.recording("ok.rec", ["log amd64 Step 1/1 : FROM alpine",
                                    f"result ok {DIGEST} release 4"])
    c2 = site.commit(work, "app.txt", "two\n", "two")
    pack = site.pack(work, c2, f"^{c1}")
    for caps, quiet in (("report-status side-band-64k", False),
                        ("report-status side-band-64k quiet", True)):
        site.srv_git("update-ref", "refs/heads/main", c1)
        r = site.raw(commands([(c1, c2, "refs/heads/main")], caps=caps) + pack,
                     "--fake-build", rec)
        assert r.returncode == 0, r.stderr
        progress = demux(r.stdout)[2].decode()
        assert ("received 3 objects" not in progress) == quiet, progress
        assert "amd64: Step 1/1 : FROM alpine\n" in progress
        assert f"build succeeded: release 4, image {DIGEST}\n" in progress
        assert site.ref("main") == c2


def test_fake_build_failure_rejects_and_keeps_the_ref(site, pushed):
    work, c1 = pushed
    rec = site.recording("fail.rec", ["log amd64 Step 2/3 : RUN make", "log amd64 make: *** Error 2",
                                      "result failed"])
    c2 = site.commit(work, "app.txt", "two\n", "two")
    site.git("branch", "other", cwd=work)
    r = site.push(work, "main", "other", opts=("--fake-build", rec))
    assert r.returncode != 0
    assert "remote: amd64: make: *** Error 2" in r.stderr
    assert "! [remote rejected] main -> main (build failed)" in r.stderr
    # not atomic: the other branch went in, with its objects
    assert "* [new branch]      other -> other" in r.stderr
    assert site.ref("main") == c1
    assert site.ref("other") == c2
    site.fsck()


def test_concurrent_pushes_serialise(site, pushed):
    work, c1 = pushed
    release = site.tmp / "release-first-build"
    rec = site.recording("slow.rec", ["log amd64 Step 1/3 : FROM alpine",
                                      f"wait-for {release}",
                                      f"result ok {DIGEST} release 5"])
    c2 = site.commit(work, "app.txt", "two\n", "two")
    other = site.work("other")
    site.git("fetch", "-q", f"--upload-pack={site.gitd} upload-pack", site.srv, "main", cwd=other)
    site.git("checkout", "-q", "-b", "side", "FETCH_HEAD", cwd=other)
    c3 = site.commit(other, "side.txt", "side\n", "side")

    def start(cwd, refspec):
        return subprocess.Popen(["git", "push", f"--receive-pack={site.receive_pack('--fake-build', rec)}",
                                 str(site.srv), refspec], cwd=cwd, env=site.env,
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def wait_line(proc, text):
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if text in line:
                return seen
        raise AssertionError(f"no line with {text!r} in {seen!r}")

    first = start(work, "main")
    second = None
    try:
        wait_line(first, "amd64: Step 1/3")
        # the first push holds the repository while its build runs
        second = start(other, "side")
        wait_line(second, "waiting for the build of another push to finish")
        assert second.poll() is None
        release.write_text("")
        rest_first = first.stderr.read()
        assert first.wait(TIMEOUT) == 0, rest_first
        rest_second = second.stderr.read()
        assert second.wait(TIMEOUT) == 0, rest_second
        assert "* [new branch]      side -> side" in rest_second
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert site.ref("main") == c2
    assert site.ref("side") == c3
    site.fsck()


# ---- hostile input ------------------------------------------------------------

@pytest.mark.parametrize("ref, caps, message", [
    (b"refs/heads/../x", "report-status", '\\"refs/heads/../x\\" is not a valid ref name'),
    (b"refs/heads/a\x01b", "report-status", "holds control character 0x01"),
    (b"refs/heads/x", "report-status push-options", 'capability \\"push-options\\"'),
    (b"refs/heads/x", "report-status", None),  # duplicate, see below
])
def test_invalid_commands_change_nothing(site, pushed, ref, caps, message):
    work, c1 = pushed
    c2 = site.commit(work, "app.txt", "two\n", "two")
    pack = site.pack(work, c2, f"^{c1}")
    cmds = [(ZERO, c2, ref)]
    if message is None:
        cmds.append((ZERO, c2, ref))
        message = 'ref \\"refs/heads/x\\" is named twice'
    before = (site.refs(), sorted(os.listdir(site.srv / "objects" / "pack")))
    r = site.raw(commands(cmds, caps=caps) + pack)
    assert r.returncode != 0
    assert message in r.stderr.decode(), r.stderr
    assert (site.refs(), sorted(os.listdir(site.srv / "objects" / "pack"))) == before
    assert not site.has_object(c2)
    assert site.incoming() == []
    site.fsck()


def test_malformed_ids_are_refused(site, pushed):
    work, c1 = pushed
    for line, message in [
        (f"{ZERO} {c1.upper()} refs/heads/x", "are not two 40-digit lower-case hex ids"),
        (f"{ZERO} {c1[:39]} refs/heads/x", 'is not \\"<old-id> <new-id> <ref>\\"'),
        (f"{ZERO} {ZERO} refs/heads/x", "both zero"),
        (f"{ZERO}{c1} refs/heads/x", 'is not \\"<old-id> <new-id> <ref>\\"'),
    ]:
        r = site.raw(pkt(line.encode() + b"\0report-status\n") + b"0000")
        assert r.returncode != 0
        assert message in r.stderr.decode(), (line, r.stderr)
    assert site.ref("refs/heads/x") is None


@pytest.mark.parametrize("data, message", [
    (b"00zz", 'pkt-line length \\"00zz\\" is not four hex digits'),
    (b"0003", "pkt-line length 0003 is invalid"),
    (b"fff1" + b"x" * 65517, "pkt-line length 65521 is over the limit of 65520"),
    (b"0010abc", "input ends inside a pkt-line (3 of 12 payload bytes)"),
    (b"00", "input ends inside a pkt-line length (2 of 4 digits)"),
    (b"0001", "unexpected delimiter"),
])
def test_malformed_pktlines_are_refused(site, pushed, data, message):
    before = site.refs()
    r = site.raw(data)
    assert r.returncode != 0
    assert message in r.stderr.decode(), r.stderr
    assert site.refs() == before


def corrupt(pack):
    mid = len(pack) // 2
    return pack[:mid] + bytes([pack[mid] ^ 0xff]) + pack[mid + 1:]


@pytest.mark.parametrize("case", ["truncated", "corrupt", "not-a-pack", "oversize",
                                  "too-many-objects"])
def test_bad_packs_are_refused_and_leave_nothing(site, pushed, case):
    work, c1 = pushed
    for i in range(20):
        site.commit(work, f"f{i}.txt", big_text(50, changed=i), f"c{i}")
    c2 = site.git("rev-parse", "HEAD", cwd=work).stdout.strip()
    pack = site.pack(work, c2, f"^{c1}")
    opts, expect = [], None
    if case == "truncated":
        pack, expect = pack[:len(pack) // 2], "unpack pack:"
    elif case == "corrupt":
        pack, expect = corrupt(pack), "unpack pack:"
    elif case == "not-a-pack":
        pack, expect = b"JUNK" + pack[4:], 'unpack data is not a pack (no \\"PACK\\" signature)'
        expect = 'unpack data is not a pack (no "PACK" signature)'
    elif case == "oversize":
        opts, expect = ["--max-pack-bytes", 1000], \
            "unpack pack is larger than the limit of 1000 bytes"
    else:
        opts, expect = ["--max-objects", 10], "unpack pack holds 60 objects, the limit is 10"
    r = site.raw(commands([(c1, c2, "refs/heads/main")]) + pack, *opts)
    assert r.returncode == 0, r.stderr
    lines = report_lines(r.stdout)
    assert lines[0].startswith(expect), lines
    assert lines[1] == "ng refs/heads/main unpacker error"
    assert site.ref("main") == c1
    assert not site.has_object(c2)
    assert site.incoming() == []
    site.fsck()


def test_real_push_over_the_limits_is_refused(site, pushed):
    work, c1 = pushed
    for i in range(5):
        site.commit(work, f"f{i}.txt", big_text(2000, changed=i), f"c{i}")
    for opts, message in ((("--max-objects", 3), "pack holds 15 objects, the limit is 3"),
                          (("--max-pack-bytes", 2000),
                           "pack is larger than the limit of 2000 bytes")):
        r = site.push(work, "main", opts=opts)
        assert r.returncode != 0
        assert f"error: remote unpack failed: {message}" in r.stderr, r.stderr
        assert "! [remote rejected] main -> main (unpacker error)" in r.stderr
        assert site.ref("main") == c1
        assert site.incoming() == []
    site.fsck()


def test_report_goes_through_the_side_band(site, pushed):
    work, c1 = pushed
    c2 = site.commit(work, "app.txt", "two\n", "two")
    rec = site.recording("ok.rec", ["log amd64 hello", f"result ok {DIGEST} release 9"])
    r = site.raw(commands([(c1, c2, "refs/heads/main")], caps="report-status side-band-64k")
                 + site.pack(work, c2, f"^{c1}"), "--fake-build", rec)
    assert r.returncode == 0, r.stderr
    bands = demux(r.stdout)
    assert b"amd64: hello\n" in bands[2]
    assert read_pkts(bands[1]) == [b"unpack ok\n", b"ok refs/heads/main\n", None]
    assert r.stdout.endswith(b"0000")
    assert site.ref("main") == c2


def test_stale_old_id_is_refused(site, pushed):
    work, c1 = pushed
    c2 = site.commit(work, "app.txt", "two\n", "two")
    pack = site.pack(work, c2, f"^{c1}")
    r = site.raw(commands([(c2, c2, "refs/heads/main"), (ZERO, c2, "refs/heads/new"),
                           (c1, c2, "refs/heads/absent")]) + pack)
    assert report_lines(r.stdout) == ["unpack ok",
                                      "ng refs/heads/main old id does not match the ref",
                                      "ok refs/heads/new",
                                      "ng refs/heads/absent old id does not match the ref"]
    assert site.ref("main") == c1


def test_missing_objects_are_refused(site, pushed):
    work, c1 = pushed
    c2 = site.commit(work, "app.txt", "two\n", "two")
    c3 = site.commit(work, "app.txt", "three\n", "three")
    # a pack holding c3 alone: its parent c2 is missing
    pack = site.pack(work, c3, f"^{c2}")
    r = site.raw(commands([(c1, c3, "refs/heads/main")]) + pack)
    lines = report_lines(r.stdout)
    assert lines[0] == "unpack ok"
    assert lines[1].startswith("ng refs/heads/main history below the pushed commits is "
                               "incomplete"), lines
    assert site.ref("main") == c1
    assert not site.has_object(c3)
    # a pack holding c2 and its tree but not the new blob
    tree = site.git("rev-parse", f"{c2}^{{tree}}", cwd=work).stdout.strip()
    blob = site.git("rev-parse", f"{c2}:app.txt", cwd=work).stdout.strip()
    pack = subprocess.run(["git", "pack-objects", "--stdout"], cwd=work, env=site.env,
                          input=f"{c2}\n{tree}\n".encode(), capture_output=True, check=True,
                          timeout=TIMEOUT).stdout
    r = site.raw(commands([(c1, c2, "refs/heads/main")]) + pack)
    lines = report_lines(r.stdout)
    assert lines[1] == (f"ng refs/heads/main commit {c2}: tree {tree}: entry \"app.txt\": "
                        f"blob {blob} is missing"), lines
    assert site.ref("main") == c1


def test_upload_pack_refuses_a_want_that_is_not_advertised(site, pushed):
    work, c1 = pushed
    r = site.raw(pkt(b"want " + b"1" * 40 + b" side-band-64k\n") + b"0000" + pkt(b"done\n"),
                 role="upload-pack")
    assert r.returncode != 0
    assert f"ERR upload-pack: not our ref {'1' * 40}".encode() in r.stdout
    r = site.raw(pkt(f"want {c1} shallow\n".encode()) + b"0000", role="upload-pack")
    assert r.returncode != 0
    assert b'capability \\"shallow\\" was not advertised' in r.stdout or \
        b'capability "shallow" was not advertised' in r.stdout


def test_upload_pack_of_a_missing_repository(site):
    r = site.raw(b"", role="upload-pack")
    assert r.returncode != 0
    assert b"ERR repository" in r.stdout and b"does not exist" in r.stdout


# ---- faults ---------------------------------------------------------------------

def read_advertisement(stream):
    while True:
        n = int(stream.read(4), 16)
        if n == 0:
            return
        stream.read(n - 4)


def test_a_build_result_applies_after_the_client_went_away(site, pushed):
    work, c1 = pushed
    release = site.tmp / "release"
    rec = site.recording("slow.rec", ["log amd64 Step 1/1 : FROM alpine", f"wait-for {release}",
                                      f"result ok {DIGEST} release 6"])
    c2 = site.commit(work, "app.txt", "two\n", "two")
    proc = subprocess.Popen([site.gitd, "receive-pack", "--fake-build", str(rec), str(site.srv)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        read_advertisement(proc.stdout)
        proc.stdin.write(commands([(c1, c2, "refs/heads/main")],
                                  caps="report-status side-band-64k")
                         + site.pack(work, c2, f"^{c1}"))
        proc.stdin.close()
        seen = b""
        while b"amd64: Step 1/1" not in seen:
            chunk = proc.stdout.read1(65536)
            assert chunk, f"no build log before the end of output: {seen!r}"
            seen += chunk
        proc.stdout.close()  # the client hangs up while the build runs
        release.write_text("")
        assert proc.wait(TIMEOUT) != 0  # it could not deliver the report
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert site.ref("main") == c2
    assert site.incoming() == []
    site.fsck()


def test_kill_9_mid_pack_leaves_the_repository_valid(site, pushed):
    work, c1 = pushed
    for i in range(30):
        site.commit(work, f"f{i}.txt", big_text(200, changed=i), f"c{i}")
    c2 = site.git("rev-parse", "HEAD", cwd=work).stdout.strip()
    pack = site.pack(work, c2, f"^{c1}")
    before = site.refs()
    proc = subprocess.Popen([site.gitd, "receive-pack", str(site.srv)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        read_advertisement(proc.stdout)
        proc.stdin.write(commands([(c1, c2, "refs/heads/main")]) + pack[:len(pack) // 2])
        proc.stdin.flush()
        deadline = time.monotonic() + TIMEOUT
        while not any(q.joinpath("pack").is_dir() and any(q.joinpath("pack").iterdir())
                      for q in site.incoming()):
            assert time.monotonic() < deadline, "the pack never reached the quarantine"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the quarantine is there, but nobody sees it
    assert site.incoming() != []
    assert site.refs() == before
    assert not site.has_object(c2)
    site.fsck()
    clone = site.clone(site.tmp / "clone")
    assert site.git("rev-parse", "HEAD", cwd=clone).stdout.strip() == c1
    # the next push cleans up and succeeds
    r = site.push(work, "main")
    assert r.returncode == 0, r.stderr
    assert site.incoming() == []
    assert site.ref("main") == c2
    site.fsck()
