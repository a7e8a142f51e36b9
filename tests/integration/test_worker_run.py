"""A RUN step end to end (workers/runc.c, rootfs.c, seccomp.c, passwd.c,
binfmt.c) through tests/integration/bin/worker-run: real overlay mounts, real
runc, real qemu-user-static, busybox base images from Debian's packages.

Needs root (mounts, runc, binfmt_misc)."""

import hashlib
import http.server
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from busybox import UNAME, make_oci_layout, make_rootfs  # noqa: E402
from conftest import bin_path  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mounts and runc")

EXIT_TIMEOUT = 124
EXIT_FAILED = 125
# Docker's 14 default capabilities as /proc/self/status prints them.
DEFAULT_CAPS = "00000000a80425fb"


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory):
    """busybox rootfs per architecture, made once; tests must not change them
    (test_lowers_unchanged checks that the runner does not either)."""
    made = {}

    def get(arch):
        if arch not in made:
            made[arch] = make_rootfs(tmp_path_factory.mktemp(f"busybox-{arch}") / "rootfs",
                                     arch)
        return made[arch]
    return get


class Step:
    def __init__(self, proc, upper, state, bundle, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.out = [ln[5:] for ln in proc.stdout.splitlines() if ln.startswith("out: ")]
        self.err = [ln[5:] for ln in proc.stdout.splitlines() if ln.startswith("err: ")]
        self.upper = upper
        self.state = state
        self.bundle = bundle
        self.elapsed = elapsed


_counter = [0]


def run_step(tmp_path, lowers, cmd, arch="amd64", shell=True, user=None, env=(), cwd=None,
             timeout=None, memory=None, network=False, extra=(), proc_timeout=120):
    """Runs cmd (a shell string, or a list for the exec form) in a fresh
    upper/work pair and returns a Step."""
    _counter[0] += 1
    base = tmp_path / f"step{_counter[0]}"
    upper, work = base / "upper", base / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    state = base / "state"
    bundle = base / "bundle"
    argv = [bin_path("worker-run"), "--upper", upper, "--work", work, "--arch", arch,
            "--state", state, "--bundle", bundle]
    for lower in lowers:
        argv += ["--lower", lower]
    if user is not None:
        argv += ["--user", user]
    for kv in env:
        argv += ["--env", kv]
    if cwd is not None:
        argv += ["--cwd", cwd]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    if memory is not None:
        argv += ["--memory", str(memory)]
    if network:
        argv.append("--network")
    argv += list(extra)
    if shell:
        argv += ["--shell", "--", cmd]
    else:
        argv += ["--"] + list(cmd)
    t0 = time.monotonic()
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=proc_timeout)
    step = Step(proc, upper, state, bundle, time.monotonic() - t0)
    assert_clean(step)
    return step


def mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def runc_list(state):
    if not Path(state).exists():
        return []
    out = subprocess.run(["/usr/sbin/runc", "--root", str(state), "list", "-q"],
                         capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if ln]


def assert_clean(step):
    """Whatever happened, nothing is left: no container, no mount, no bundle."""
    assert runc_list(step.state) == [], step.stdout + step.stderr
    assert not mounted(step.bundle / "rootfs")
    assert not step.bundle.exists(), list(step.bundle.rglob("*"))


def tree_digest(root):
    """Names, modes, owners, link targets and contents of a tree."""
    h = hashlib.sha256()
    root = Path(root)
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(root)} {st.st_mode:o} {st.st_uid} {st.st_gid} "
                 f"{st.st_rdev}\n".encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def upper_entries(upper):
    return sorted(p.relative_to(upper).as_posix() for p in Path(upper).rglob("*"))


# ---- architectures ---------------------------------------------------------

@pytest.mark.parametrize("arch", ["amd64", "arm64", "armv7"])
def test_uname_in_each_architecture(tmp_path, rootfs, arch):
    s = run_step(tmp_path, [rootfs(arch)], "uname -m; test -e /usr; echo usr=$?", arch=arch)
    assert s.rc == 0, s.stdout + s.stderr
    # qemu is not in the rootfs (no /usr at all): the F flag made the
    # kernel open it at registration.
    assert s.out == [UNAME[arch], "usr=1"]
    if arch != "amd64":
        cpu = "aarch64" if arch == "arm64" else "arm"
        entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{cpu}").read_text()
        assert entry.startswith("enabled")
        assert "F" in re.search(r"^flags: (\S*)", entry, re.M).group(1)


def test_binfmt_replaces_an_entry_without_fix_binary(tmp_path):
    """An entry registered without F (or disabled) is replaced by one with F."""
    name = f"fftest-{os.getpid()}"
    entry = Path("/proc/sys/fs/binfmt_misc") / name
    # A magic no real file starts with, so nothing else is affected.
    magic = r"\x7fFFTEST" + "".join(f"\\x{b:02x}" for b in os.getpid().to_bytes(4, "little"))
    line = f":{name}:M::{magic}::/bin/true:"
    Path("/proc/sys/fs/binfmt_misc/register").write_text(line)
    try:
        entry.write_text("0")
        assert entry.read_text().startswith("disabled")
        conf = tmp_path / "fftest.conf"
        conf.write_text("# a test entry\n" + line + "P\n")
        r = subprocess.run([str(bin_path("worker-run")), "binfmt-def", str(conf)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        text = entry.read_text()
        assert text.startswith("enabled")
        assert re.search(r"^flags: (\S*)", text, re.M).group(1) == "PF"
        # Already right: nothing to do, still fine.
        r = subprocess.run([str(bin_path("worker-run")), "binfmt-def", str(conf)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        # A missing interpreter is a clear error.
        conf.write_text(f":{name}:M::{magic}::/nonexistent/qemu:F\n")
        r = subprocess.run([str(bin_path("worker-run")), "binfmt-def", str(conf)],
                           capture_output=True, text=True)
        assert r.returncode == EXIT_FAILED
        assert "/nonexistent/qemu" in r.stderr and "missing" in r.stderr
    finally:
        if entry.exists():
            entry.write_text("-1")


def test_unknown_architecture_is_refused(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "true", arch="sparc")
    assert s.rc == EXIT_FAILED
    assert '"sparc"' in s.stderr


# ---- the overlay -------------------------------------------------------------

def test_changes_land_in_upper_with_whiteouts(tmp_path, rootfs):
    layer = tmp_path / "layer"
    (layer / "data" / "sub").mkdir(parents=True)
    (layer / "data" / "keep").write_text("keep")
    (layer / "data" / "gone").write_text("gone")
    (layer / "data" / "sub" / "x").write_text("x")
    (layer / "data" / "opq").mkdir()
    (layer / "data" / "opq" / "old").write_text("old")
    lowers = [layer, rootfs("amd64")]
    before = [tree_digest(p) for p in lowers]
    s = run_step(tmp_path, lowers, "echo new > /data/new; rm /data/gone; rm -r /data/sub; "
                 "rm -r /data/opq; mkdir /data/opq; touch /data/opq/fresh; "
                 "echo more >> /data/keep; cat /data/keep")
    assert s.rc == 0, s.stderr
    assert s.out == ["keep", "more"] or s.out == ["keepmore"]
    up = s.upper
    assert (up / "data" / "new").read_text() == "new\n"
    for gone in ("gone", "sub"):
        st = (up / "data" / gone).lstat()
        assert (st.st_mode & 0o170000) == 0o020000, gone  # a character device
        assert os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert (up / "data" / "keep").read_text() == "keepmore\n"
    # A directory removed and made again hides the lower one: opaque.
    assert os.getxattr(up / "data" / "opq", "trusted.overlay.opaque") == b"y"
    # Nothing else: runc's mount points existed in the image, so no stubs.
    assert upper_entries(up) == ["data", "data/gone", "data/keep", "data/new", "data/opq",
                                 "data/opq/fresh", "data/sub"]
    assert [tree_digest(p) for p in lowers] == before


def test_topmost_lower_wins(tmp_path, rootfs):
    top, mid = tmp_path / "top", tmp_path / "mid"
    top.mkdir()
    mid.mkdir()
    (top / "f").write_text("top\n")
    (mid / "f").write_text("mid\n")
    (mid / "m").write_text("mid only\n")
    s = run_step(tmp_path, [top, mid, rootfs("amd64")], "cat /f /m")
    assert s.rc == 0, s.stderr
    assert s.out == ["top", "mid only"]


def test_many_layers_exceeding_a_page_of_options(tmp_path, rootfs):
    """100 layers with 200-byte paths: 20 KB of lowerdir=, which only fits
    as /proc/self/fd/N names."""
    lowers = []
    long = "l" * 180
    for i in range(100):
        d = tmp_path / f"{long}{i:03d}"
        d.mkdir()
        (d / f"file{i:03d}").write_text(f"{i}\n")
        (d / "which").write_text(f"{i}\n")
        lowers.append(d)
    assert sum(len(str(p)) + 1 for p in lowers) > 4096
    s = run_step(tmp_path, list(reversed(lowers)) + [rootfs("amd64")],
                 "cat /which /file000 /file099; ls / | grep -c '^file'")
    assert s.rc == 0, s.stderr
    assert s.out == ["99", "0", "99", "100"]


def test_too_many_layers_is_refused(tmp_path, rootfs):
    lowers = []
    for i in range(129):
        d = tmp_path / f"l{i}"
        d.mkdir()
        lowers.append(d)
    s = run_step(tmp_path, lowers + [rootfs("amd64")], "true")
    assert s.rc == EXIT_FAILED
    assert "130 lower layers (at most 128)" in s.stderr


def test_missing_mount_points_leave_no_stubs(tmp_path, rootfs):
    """An image without /proc, /dev, /sys: runc creates them to mount on, and
    the runner removes them from upper again."""
    bare = tmp_path / "bare"
    (bare / "bin").mkdir(parents=True)
    for p in (rootfs("amd64") / "bin").iterdir():
        if p.is_symlink():
            os.symlink(os.readlink(p), bare / "bin" / p.name)
        else:
            (bare / "bin" / p.name).write_bytes(p.read_bytes())
            os.chmod(bare / "bin" / p.name, 0o755)
    s = run_step(tmp_path, [bare], "ls /proc/self >/dev/null && touch /made", network=True)
    assert s.rc == 0, s.stderr
    assert upper_entries(s.upper) == ["made"]


def test_reused_work_dir_is_an_error_not_a_hang(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "true")
    assert s.rc == 0
    work = s.upper.parent / "work"
    r = subprocess.run([str(bin_path("worker-run")), "--lower", str(rootfs("amd64")),
                        "--upper", str(s.upper), "--work", str(work), "--arch", "amd64",
                        "--state", str(s.state), "--bundle", str(s.bundle), "--", "/bin/true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_FAILED
    assert "overlay mount" in r.stderr
    assert not s.bundle.exists() and not mounted(s.bundle / "rootfs")


# ---- the process -------------------------------------------------------------

def test_user_app_and_groups(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "id -u; id -g; id -G; echo $HOME; "
                 "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status; touch /root/x",
                 user="app")
    assert s.rc != 0  # /root is 0700: app may not write there
    assert s.out[:4] == ["1000", "1000", "1000 100", "/home/app"]
    caps = dict(ln.split(":\t") for ln in s.out[4:8])
    assert caps == {"CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": DEFAULT_CAPS,
                    "CapAmb": "0" * 16}


@pytest.mark.parametrize("user,expect", [
    ("1000", "1000 1000 1000 100"),
    ("app:0", "1000 0 0"),
    ("1000:users", "1000 100 100"),
    ("4242", "4242 0 0"),  # not in /etc/passwd: gid 0, as Docker does
    ("root", "0 0 0"),
])
def test_user_forms(tmp_path, rootfs, user, expect):
    s = run_step(tmp_path, [rootfs("amd64")], 'echo $(id -u) $(id -g) $(id -G)', user=user)
    assert s.rc == 0, s.stderr
    assert s.out == [expect]


def test_unknown_user_is_named(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "true", user="nosuchuser")
    assert s.rc == EXIT_FAILED
    assert 'user "nosuchuser" not found in /etc/passwd' in s.stderr
    s = run_step(tmp_path, [rootfs("amd64")], "true", user="app:nosuchgroup")
    assert s.rc == EXIT_FAILED
    assert 'group "nosuchgroup" not found in /etc/group' in s.stderr


def test_passwd_symlink_out_of_the_rootfs_stays_inside(tmp_path, rootfs):
    """/etc/passwd -> /etc/shadow-like host path is resolved inside the rootfs."""
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "elsewhere").write_text("evil:x:777:777::/:/bin/sh\n")
    os.symlink("/elsewhere", layer / "etc" / "passwd")
    s = run_step(tmp_path, [layer, rootfs("amd64")], "id -u", user="evil")
    assert s.rc == 0, s.stderr
    assert s.out == ["777"]
    s = run_step(tmp_path, [layer, rootfs("amd64")], "id -u", user="root")
    assert s.rc == EXIT_FAILED  # the host's root is not looked up through the link
    os.unlink(layer / "etc" / "passwd")
    os.mkfifo(layer / "etc" / "passwd")
    s = run_step(tmp_path, [layer, rootfs("amd64")], "id -u", user="app", proc_timeout=30)
    assert s.rc == EXIT_FAILED
    assert "not a regular file" in s.stderr


def test_env_cwd_and_default_path(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], 'echo "$FOO|$EMPTY|$PATH"; pwd; hostname',
                 env=["FOO=bar baz", "EMPTY="], cwd="/tmp/sub dir")
    assert s.rc == 0, s.stderr
    assert s.out[0] == "bar baz||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert s.out[1] == "/tmp/sub dir"
    # The working directory did not exist: it is a change of the step.
    assert (s.upper / "tmp" / "sub dir").is_dir()
    s = run_step(tmp_path, [rootfs("amd64")], "echo $PATH", env=["PATH=/bin"])
    assert s.out == ["/bin"]


def test_exec_form_takes_arguments_as_given(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], ["/bin/echo", "a  b", "$HOME", "*"], shell=False)
    assert s.rc == 0
    assert s.out == ["a  b $HOME *"]


def test_exit_status_is_reported(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "echo before; exit 7")
    assert s.rc == 7
    assert s.out == ["before"]
    s = run_step(tmp_path, [rootfs("amd64")], "exit 255")
    assert s.rc == 255


def test_missing_program_is_an_error_naming_it(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], ["/bin/nosuch", "x"], shell=False)
    assert s.rc == EXIT_FAILED
    assert "/bin/nosuch" in s.stderr and "runc" in s.stderr


def test_output_lines_split_and_flushed(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "printf 'x%.0s' $(seq 5000); echo; "
                 "echo to-err >&2; printf 'no newline'")
    assert s.rc == 0, s.stderr
    assert s.out == ["x" * 4096, "x" * 904, "no newline"]
    assert s.err == ["to-err"]


def test_output_is_streamed_live(tmp_path, rootfs):
    base = tmp_path / "live"
    (base / "upper").mkdir(parents=True)
    (base / "work").mkdir()
    argv = [str(bin_path("worker-run")), "--lower", str(rootfs("amd64")), "--upper",
            str(base / "upper"), "--work", str(base / "work"), "--arch", "amd64", "--shell",
            "--", "echo first; sleep 3; echo second"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        t_first = time.monotonic() - t0
        rest = proc.stdout.read()
    finally:
        proc.wait(timeout=60)
    assert first == "out: first\n"
    assert t_first < 2.5, t_first
    assert rest == "out: second\n"
    assert time.monotonic() - t0 >= 3


# ---- confinement ---------------------------------------------------------------

@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_capabilities_no_new_privs_and_seccomp(tmp_path, rootfs, arch):
    s = run_step(tmp_path, [rootfs(arch)], "grep -E '^(Cap|NoNewPrivs|Seccomp:)' "
                 "/proc/self/status", arch=arch)
    assert s.rc == 0, s.stderr
    st = dict(ln.split(":\t") for ln in s.out)
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == DEFAULT_CAPS
    assert st["CapAmb"] == st["CapInh"] == "0" * 16
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"


@pytest.mark.parametrize("arch", ["amd64", "arm64", "armv7"])
def test_forbidden_syscalls_fail_with_eperm(tmp_path, rootfs, arch):
    """unshare(CLONE_NEWUSER) needs no capability: only seccomp stops it.
    Under qemu the kernel sees qemu's x86_64 call, which the filter stops too."""
    s = run_step(tmp_path, [rootfs(arch)], "unshare -U true; echo unshare=$?; "
                 "mount -t tmpfs none /mnt 2>&1; echo mount=$?; swapon /x 2>&1; "
                 "echo swapon=$?", arch=arch)
    assert s.rc == 0, s.stderr
    assert "unshare=1" in s.out and "mount=1" in s.out
    assert any("Operation not permitted" in ln for ln in s.err)
    assert any(ln.startswith("swapon=") and ln != "swapon=0" for ln in s.out)


def test_masked_and_read_only_paths(tmp_path, rootfs):
    # /proc/kcore is not in every kernel; timer_list and keys are here.
    assert len(Path("/proc/timer_list").read_bytes()) > 0  # not empty on the host
    s = run_step(tmp_path, [rootfs("amd64")], "cat /proc/timer_list /proc/keys | wc -c; "
                 "echo 1 > /proc/sysrq-trigger; echo sysrq=$?; touch /sys/x; echo sys=$?; "
                 "ls /dev | tr '\\n' ' '")
    assert s.out[0] == "0"
    assert "sysrq=0" not in s.out and "sys=0" not in s.out
    assert any(ln.startswith("sysrq=") for ln in s.out)
    assert "null" in s.out[-1] and "shm" in s.out[-1] and "pts" in s.out[-1]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from the host\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def host_http():
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Hello)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_no_network_by_default(tmp_path, rootfs, host_http):
    s = run_step(tmp_path, [rootfs("amd64")], f"ls /sys/class/net; "
                 f"wget -q -O - http://127.0.0.1:{host_http}/; echo wget=$?")
    assert s.out[0] == "lo" and s.out[1] == "wget=1", s.out


def test_network_when_allowed(tmp_path, rootfs, host_http):
    # (busybox 1.35's static wget crashes with -T: no time-out option here)
    s = run_step(tmp_path, [rootfs("amd64")], f"wget -q -O - http://127.0.0.1:{host_http}/;"
                 f" grep -c localhost /etc/hosts; hostname", network=True)
    assert s.rc == 0, s.stdout + s.stderr
    assert s.out == ["hello from the host", "2", "ff-build"]
    # resolv.conf and hosts were bound over files the image has no stubs of.
    assert upper_entries(s.upper) == []


# ---- limits ---------------------------------------------------------------------

def test_time_limit_kills_and_cleans_up(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "echo started; sleep 100", timeout=2)
    assert s.rc == EXIT_TIMEOUT, s.stderr
    assert "ETIMEOUT" in s.stderr and "time limit of 2 s" in s.stderr
    assert s.out == ["started"]
    assert s.elapsed < 8
    # The sleep is gone too (it was in the container's PID namespace).
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 100" not in ps


def test_time_limit_with_output_flooding(tmp_path, rootfs):
    """A step that writes without pause is still stopped on time."""
    s = run_step(tmp_path, [rootfs("amd64")], "yes", timeout=2, extra=["--quiet"])
    assert s.rc == EXIT_TIMEOUT, s.stderr
    assert s.elapsed < 8
    lines = int(re.search(r"lines=(\d+)", s.stderr).group(1))
    assert lines > 10000


def test_time_limit_under_qemu(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("arm64")], "sleep 100", arch="arm64", timeout=2)
    assert s.rc == EXIT_TIMEOUT
    assert s.elapsed < 8


def test_memory_limit(tmp_path, rootfs):
    """tmpfs pages count against the memory cgroup: 48 MiB into /dev/shm
    under a 32 MiB limit gets the writer killed; under 256 MiB it works."""
    cmd = "dd if=/dev/zero of=/dev/shm/x bs=1M count=48 2>/dev/null; echo dd=$?"
    s = run_step(tmp_path, [rootfs("amd64")], cmd, memory=32 << 20)
    assert s.rc == 0 and s.out[-1] != "dd=0", s.out
    s = run_step(tmp_path, [rootfs("amd64")], cmd, memory=256 << 20)
    assert s.out[-1] == "dd=0", s.out


def test_pids_limit(tmp_path, rootfs):
    s = run_step(tmp_path, [rootfs("amd64")], "for i in $(seq 40); do sleep 5 & done; "
                 "echo done", extra=["--pids", "20"])
    assert s.rc != 0 and "done" not in s.out
    assert any("can't fork" in ln for ln in s.err), s.err
    s = run_step(tmp_path, [rootfs("amd64")], "for i in $(seq 10); do sleep 1 & done; "
                 "echo done", extra=["--pids", "20"])
    assert s.rc == 0 and s.out == ["done"], s.err


def test_reap_clears_what_a_dead_worker_left(tmp_path, rootfs):
    base = tmp_path / "dead"
    (base / "upper").mkdir(parents=True)
    (base / "work").mkdir()
    state, bundle = base / "state", base / "bundle"
    argv = [str(bin_path("worker-run")), "--lower", str(rootfs("amd64")), "--upper",
            str(base / "upper"), "--work", str(base / "work"), "--arch", "amd64",
            "--state", str(state), "--bundle", str(bundle), "--shell", "--",
            "echo up; sleep 100"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "out: up\n"
        proc.kill()  # the worker dies; runc and the container live on
        proc.wait()
        assert runc_list(state) != []
        r = subprocess.run([str(bin_path("worker-run")), "reap", "--state", str(state)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert runc_list(state) == []
    finally:
        subprocess.run(["umount", "-l", str(bundle / "rootfs")], capture_output=True)


# ---- test images ----------------------------------------------------------------

@pytest.mark.parametrize("arch", ["amd64", "arm64", "armv7"])
def test_busybox_oci_layout_is_reproducible(tmp_path, arch):
    a = make_oci_layout(tmp_path / "a", arch)
    b = make_oci_layout(tmp_path / "b", arch)
    assert a["digest"] == b["digest"]
    index = (tmp_path / "a" / "index.json").read_text()
    assert a["digest"] in index
    if subprocess.run(["which", "umoci"], capture_output=True).returncode == 0:
        r = subprocess.run(["umoci", "raw", "unpack", "--rootless", "--image",
                            f"{tmp_path / 'a'}:latest", str(tmp_path / "un")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "un" / "bin" / "busybox").is_file()
        assert (tmp_path / "un" / "etc" / "passwd").read_text().startswith("root:")


# ---- overhead ---------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_overhead_of_a_trivial_step(tmp_path, rootfs, arch):
    """mount + runc + unmount of `true`, median of 10 (printed; the bound is
    loose so that a loaded machine does not fail it)."""
    times = []
    for _ in range(10):
        s = run_step(tmp_path, [rootfs(arch)], ["/bin/true"], shell=False, arch=arch,
                     extra=["--time"])
        assert s.rc == 0, s.stderr
        times.append(int(re.search(r"time_us=(\d+)", s.stderr).group(1)) / 1e6)
    med = statistics.median(times)
    print(f"\ntrivial RUN {arch}: median {med * 1000:.0f} ms "
          f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    assert med < 3.0
