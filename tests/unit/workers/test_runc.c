#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <stdlib.h>
#include <string.h>

static const char *const sh_args[] = {"make -j2 && make install"};

static struct runc_config base_config(void)
{
    return (struct runc_config){.host_machine = "x86_64", .rootfs = "rootfs",
                                .shell_form = true, .args = sh_args, .n_args = 1};
}

/* Builds c and parses the result; fails the test when either fails. */
static json_t *build(const struct runc_config *c)
{
    char *text = NULL;
    size_t len = 0;
    struct ff_err err = {0};
    int rc = runc_config_build(c, &text, &len, &err);
    if (rc != 0)
        fail_msg("runc_config_build: %s", err.msg);
    assert_int_equal(strlen(text), len);
    json_error_t jerr;
    json_t *cfg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (cfg == NULL)
        fail_msg("not JSON: %s", jerr.text);
    free(text);
    return cfg;
}

static int build_err(const struct runc_config *c, struct ff_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = runc_config_build(c, &text, &len, err);
    assert_null(text);
    return rc;
}

/* The value at a dotted path of object keys ("process.user.uid"). */
static json_t *at(json_t *v, const char *path)
{
    while (v != NULL && *path != '\0') {
        const char *dot = strchr(path, '.');
        size_t n = dot != NULL ? (size_t)(dot - path) : strlen(path);
        v = json_object_getn(v, path, n);
        path += n + (dot != NULL ? 1 : 0);
    }
    return v;
}

static bool array_has(const json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static json_t *mount_at(json_t *cfg, const char *dest)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cfg, "mounts"), i, m) {
        if (strcmp(json_string_value(json_object_get(m, "destination")), dest) == 0)
            return m;
    }
    return NULL;
}

static bool has_namespace(json_t *cfg, const char *type)
{
    size_t i;
    json_t *ns;
    json_array_foreach(at(cfg, "linux.namespaces"), i, ns) {
        if (strcmp(json_string_value(json_object_get(ns, "type")), type) == 0)
            return true;
    }
    return false;
}

static void test_namespaces_and_network(void **state)
{
    (void)state;
    struct runc_config c = base_config();
    json_t *cfg = build(&c);
    static const char *const want[] = {"pid", "mount", "ipc", "uts", "cgroup", "network"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_true(has_namespace(cfg, want[i]));
    assert_false(has_namespace(cfg, "user"));
    assert_int_equal(json_array_size(at(cfg, "linux.namespaces")), 6);
    assert_null(mount_at(cfg, "/etc/hosts"));
    assert_null(mount_at(cfg, "/etc/resolv.conf"));
    json_decref(cfg);

    /* With network: the host's namespace, and hosts/resolv.conf bound in. */
    c.network = true;
    c.hosts_file = "/b/hosts";
    c.resolv_file = "/b/resolv.conf";
    cfg = build(&c);
    assert_false(has_namespace(cfg, "network"));
    assert_true(has_namespace(cfg, "pid"));
    json_t *h = mount_at(cfg, "/etc/hosts");
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "source")), "/b/hosts");
    assert_string_equal(json_string_value(json_object_get(h, "type")), "bind");
    assert_true(array_has(json_object_get(h, "options"), "ro"));
    json_t *r = mount_at(cfg, "/etc/resolv.conf");
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "source")), "/b/resolv.conf");
    json_decref(cfg);
}

static const char *const docker_caps[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
};

static void check_caps(json_t *set, bool full)
{
    assert_true(json_is_array(set));
    assert_int_equal(json_array_size(set), full ? 14 : 0);
    for (size_t i = 0; full && i < 14; i++)
        assert_true(array_has(set, docker_caps[i]));
    assert_false(array_has(set, "CAP_SYS_ADMIN"));
}

static void test_capabilities_by_user(void **state)
{
    (void)state;
    struct runc_config c = base_config();
    json_t *cfg = build(&c);
    check_caps(at(cfg, "process.capabilities.bounding"), true);
    check_caps(at(cfg, "process.capabilities.effective"), true);
    check_caps(at(cfg, "process.capabilities.permitted"), true);
    check_caps(at(cfg, "process.capabilities.ambient"), false);
    assert_null(at(cfg, "process.capabilities.inheritable"));
    assert_true(json_is_true(at(cfg, "process.noNewPrivileges")));
    assert_true(json_is_false(at(cfg, "process.terminal")));
    json_decref(cfg);

    /* A user other than root keeps only the bounding set. */
    c.uid = 1000;
    c.gid = 1000;
    cfg = build(&c);
    check_caps(at(cfg, "process.capabilities.bounding"), true);
    check_caps(at(cfg, "process.capabilities.effective"), false);
    check_caps(at(cfg, "process.capabilities.permitted"), false);
    check_caps(at(cfg, "process.capabilities.ambient"), false);
    json_decref(cfg);
}

static void test_mounts_and_paths(void **state)
{
    (void)state;
    struct runc_config c = base_config();
    json_t *cfg = build(&c);
    static const struct {
        const char *dest, *type, *opt;
    } want[] = {{"/proc", "proc", "nodev"},       {"/dev", "tmpfs", "mode=755"},
                {"/dev/pts", "devpts", "newinstance"}, {"/dev/shm", "tmpfs", "size=67108864"},
                {"/dev/mqueue", "mqueue", "noexec"}, {"/sys", "sysfs", "ro"}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        json_t *m = mount_at(cfg, want[i].dest);
        assert_non_null(m);
        assert_string_equal(json_string_value(json_object_get(m, "type")), want[i].type);
        assert_true(array_has(json_object_get(m, "options"), want[i].opt));
    }
    assert_int_equal(json_array_size(json_object_get(cfg, "mounts")), 6);
    assert_true(array_has(at(cfg, "linux.maskedPaths"), "/proc/kcore"));
    assert_true(array_has(at(cfg, "linux.maskedPaths"), "/sys/firmware"));
    assert_true(array_has(at(cfg, "linux.readonlyPaths"), "/proc/sysrq-trigger"));
    assert_true(array_has(at(cfg, "linux.readonlyPaths"), "/proc/sys"));
    assert_string_equal(json_string_value(at(cfg, "root.path")), "rootfs");
    assert_true(json_is_false(at(cfg, "root.readonly")));
    assert_string_equal(json_string_value(json_object_get(cfg, "hostname")), RUNC_HOSTNAME);
    assert_string_equal(json_string_value(json_object_get(cfg, "ociVersion")), "1.0.2");
    json_decref(cfg);
}

static void test_process_args_env_cwd_user(void **state)
{
    (void)state;
    struct runc_config c = base_config();
    json_t *cfg = build(&c);
    json_t *args = at(cfg, "process.args");
    assert_int_equal(json_array_size(args), 3);
    assert_string_equal(json_string_value(json_array_get(args, 0)), "/bin/sh");
    assert_string_equal(json_string_value(json_array_get(args, 1)), "-c");
    assert_string_equal(json_string_value(json_array_get(args, 2)), sh_args[0]);
    /* No PATH given: Docker's default is added. */
    json_t *env = at(cfg, "process.env");
    assert_int_equal(json_array_size(env), 1);
    assert_string_equal(json_string_value(json_array_get(env, 0)), RUNC_PATH_ENV);
    assert_string_equal(json_string_value(at(cfg, "process.cwd")), "/");
    assert_int_equal(json_integer_value(at(cfg, "process.user.uid")), 0);
    assert_int_equal(json_integer_value(at(cfg, "process.user.umask")), 022);
    assert_null(at(cfg, "process.user.additionalGids"));
    json_decref(cfg);

    static const char *const exec_args[] = {"/usr/bin/env", "a b", "$HOME"};
    static const char *const env_in[] = {"FOO=bar=baz", "PATH=/opt/bin", "EMPTY="};
    static const uint32_t gids[] = {100, 4294967294u};
    c.shell_form = false;
    c.args = exec_args;
    c.n_args = 3;
    c.env = env_in;
    c.n_env = 3;
    c.cwd = "/src/app dir";
    c.uid = 1000;
    c.gid = 1001;
    c.gids = gids;
    c.n_gids = 2;
    cfg = build(&c);
    args = at(cfg, "process.args");
    assert_int_equal(json_array_size(args), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_array_get(args, i)), exec_args[i]);
    env = at(cfg, "process.env");
    assert_int_equal(json_array_size(env), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_array_get(env, i)), env_in[i]);
    assert_string_equal(json_string_value(at(cfg, "process.cwd")), "/src/app dir");
    assert_int_equal(json_integer_value(at(cfg, "process.user.uid")), 1000);
    assert_int_equal(json_integer_value(at(cfg, "process.user.gid")), 1001);
    json_t *ag = at(cfg, "process.user.additionalGids");
    assert_int_equal(json_array_size(ag), 2);
    assert_int_equal(json_integer_value(json_array_get(ag, 0)), 100);
    assert_int_equal(json_integer_value(json_array_get(ag, 1)), 4294967294LL);
    json_decref(cfg);
}

static void test_limits(void **state)
{
    (void)state;
    struct runc_config c = base_config();
    json_t *cfg = build(&c);
    /* No limits asked: none written, but the device allow-list is. */
    assert_null(at(cfg, "linux.resources.memory"));
    assert_null(at(cfg, "linux.resources.pids"));
    json_t *dev = json_array_get(at(cfg, "linux.resources.devices"), 0);
    assert_true(json_is_false(json_object_get(dev, "allow")));
    assert_string_equal(json_string_value(json_object_get(dev, "access")), "rwm");
    json_t *rl = json_array_get(at(cfg, "process.rlimits"), 0);
    assert_string_equal(json_string_value(json_object_get(rl, "type")), "RLIMIT_NOFILE");
    assert_int_equal(json_integer_value(json_object_get(rl, "hard")), RUNC_NOFILE);
    assert_int_equal(json_integer_value(json_object_get(rl, "soft")), RUNC_NOFILE);
    json_decref(cfg);

    c.memory_limit = (uint64_t)3 << 30;
    c.pids_limit = 77;
    c.nofile = 1024;
    cfg = build(&c);
    assert_int_equal(json_integer_value(at(cfg, "linux.resources.memory.limit")),
                     (int64_t)3 << 30);
    assert_int_equal(json_integer_value(at(cfg, "linux.resources.memory.swap")),
                     (int64_t)3 << 30);
    assert_int_equal(json_integer_value(at(cfg, "linux.resources.pids.limit")), 77);
    rl = json_array_get(at(cfg, "process.rlimits"), 0);
    assert_int_equal(json_integer_value(json_object_get(rl, "hard")), 1024);
    json_decref(cfg);

    struct ff_err err;
    c.memory_limit = UINT64_MAX;
    assert_int_equal(build_err(&c, &err), FF_ERANGE);
    c.memory_limit = 0;
    c.pids_limit = -1;
    assert_int_equal(build_err(&c, &err), FF_ERANGE);
}

static json_t *rule_for(json_t *seccomp, const char *name, const char *action)
{
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(seccomp, "syscalls"), i, r) {
        if (array_has(json_object_get(r, "names"), name) &&
            strcmp(json_string_value(json_object_get(r, "action")), action) == 0)
            return r;
    }
    return NULL;
}

static void test_seccomp_profile(void **state)
{
    (void)state;
    struct runc_config c = base_config();
    json_t *cfg = build(&c);
    json_t *sc = at(cfg, "linux.seccomp");
    assert_non_null(sc);
    assert_string_equal(json_string_value(json_object_get(sc, "defaultAction")),
                        "SCMP_ACT_ERRNO");
    assert_int_equal(json_integer_value(json_object_get(sc, "defaultErrnoRet")), 1);
    json_t *arches = json_object_get(sc, "architectures");
    assert_true(array_has(arches, "SCMP_ARCH_X86_64"));
    assert_true(array_has(arches, "SCMP_ARCH_X86"));
    assert_false(array_has(arches, "SCMP_ARCH_AARCH64"));
    /* What every program and qemu-user needs is allowed without condition. */
    static const char *const allowed[] = {"read", "write", "openat", "execve", "mmap",
                                          "mprotect", "brk", "futex", "rt_sigaction",
                                          "exit_group", "wait4", "getrandom", "prlimit64",
                                          "membarrier", "madvise", "set_robust_list",
                                          "socket", "setuid", "chown", "mknod", "set_tls"};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        json_t *r = rule_for(sc, allowed[i], "SCMP_ACT_ALLOW");
        if (r == NULL || json_object_get(r, "args") != NULL)
            fail_msg("\"%s\" is not allowed unconditionally", allowed[i]);
    }
    /* What escapes or reconfigures the host is not listed at all. */
    static const char *const denied[] = {"mount", "umount2", "unshare", "setns", "pivot_root",
                                         "ptrace", "bpf", "keyctl", "add_key", "request_key",
                                         "reboot", "kexec_load", "init_module", "finit_module",
                                         "swapon", "swapoff", "settimeofday", "clock_settime",
                                         "sethostname", "perf_event_open", "userfaultfd",
                                         "open_by_handle_at", "process_vm_writev", "acct",
                                         "fsopen", "move_mount", "quotactl", "syslog"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        if (rule_for(sc, denied[i], "SCMP_ACT_ALLOW") != NULL)
            fail_msg("\"%s\" is allowed", denied[i]);
    }
    /* clone only without namespace flags; clone3 says ENOSYS. */
    json_t *clone = rule_for(sc, "clone", "SCMP_ACT_ALLOW");
    assert_non_null(clone);
    json_t *arg = json_array_get(json_object_get(clone, "args"), 0);
    assert_string_equal(json_string_value(json_object_get(arg, "op")), "SCMP_CMP_MASKED_EQ");
    assert_int_equal(json_integer_value(json_object_get(arg, "index")), 0);
    assert_int_equal(json_integer_value(json_object_get(arg, "value")), 0x7E020000);
    assert_int_equal(json_integer_value(json_object_get(arg, "valueTwo")), 0);
    json_t *clone3 = rule_for(sc, "clone3", "SCMP_ACT_ERRNO");
    assert_non_null(clone3);
    assert_int_equal(json_integer_value(json_object_get(clone3, "errnoRet")), 38);
    /* personality only with harmless values (no ADDR_NO_RANDOMIZE 0x40000). */
    size_t i;
    json_t *r;
    int personality_rules = 0;
    json_array_foreach(json_object_get(sc, "syscalls"), i, r) {
        if (!array_has(json_object_get(r, "names"), "personality"))
            continue;
        personality_rules++;
        json_t *a = json_array_get(json_object_get(r, "args"), 0);
        assert_string_equal(json_string_value(json_object_get(a, "op")), "SCMP_CMP_EQ");
        json_int_t v = json_integer_value(json_object_get(a, "value"));
        if (v != 0xffffffff) /* the query, which changes nothing */
            assert_int_equal(v & 0x40000, 0);
    }
    assert_int_equal(personality_rules, 5);
    json_decref(cfg);
}

static void test_seccomp_arches_per_host(void **state)
{
    (void)state;
    static const struct {
        const char *machine;
        const char *has, *lacks;
        size_t n;
    } v[] = {{"x86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", 3},
             {"aarch64", "SCMP_ARCH_ARM", "SCMP_ARCH_X86_64", 2},
             {"armv7l", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", 1}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        json_t *p = NULL;
        struct ff_err err;
        assert_int_equal(seccomp_profile_new(v[i].machine, &p, &err), 0);
        json_t *arches = json_object_get(p, "architectures");
        assert_int_equal(json_array_size(arches), v[i].n);
        assert_true(array_has(arches, v[i].has));
        assert_false(array_has(arches, v[i].lacks));
        json_decref(p);
    }
    json_t *p = NULL;
    struct ff_err err;
    assert_int_equal(seccomp_profile_new("riscv64", &p, &err), FF_EINVAL);
    assert_null(p);
    assert_non_null(strstr(err.msg, "\"riscv64\""));
    struct runc_config c = base_config();
    c.host_machine = "mips";
    assert_int_equal(build_err(&c, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"mips\""));
}

static void test_bad_configs(void **state)
{
    (void)state;
    struct ff_err err;
    struct runc_config c = base_config();
    c.n_args = 0;
    assert_int_equal(build_err(&c, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no command"));

    static const char *const two[] = {"echo", "hi"};
    c = base_config();
    c.args = two;
    c.n_args = 2;
    assert_int_equal(build_err(&c, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "shell form"));

    static const char *const empty[] = {""};
    c = base_config();
    c.shell_form = false;
    c.args = empty;
    assert_int_equal(build_err(&c, &err), FF_EINVAL);

    static const char *const bad_env[][1] = {{"NOEQUALS"}, {"=value"}};
    for (size_t i = 0; i < 2; i++) {
        c = base_config();
        c.env = bad_env[i];
        c.n_env = 1;
        assert_int_equal(build_err(&c, &err), FF_EINVAL);
        assert_non_null(strstr(err.msg, bad_env[i][0]));
    }

    c = base_config();
    c.cwd = "relative/dir";
    assert_int_equal(build_err(&c, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "relative/dir"));

    /* Too many arguments, and too many bytes. */
    const char **many = calloc(RUNC_ARGS_MAX + 1, sizeof(*many));
    assert_non_null(many);
    for (size_t i = 0; i <= RUNC_ARGS_MAX; i++)
        many[i] = "x";
    c = base_config();
    c.shell_form = false;
    c.args = many;
    c.n_args = RUNC_ARGS_MAX + 1;
    assert_int_equal(build_err(&c, &err), FF_ETOOBIG);
    c.n_args = RUNC_ARGS_MAX;
    json_decref(build(&c));
    char *big = malloc(RUNC_ARG_BYTES_MAX + 2);
    assert_non_null(big);
    memset(big, 'a', RUNC_ARG_BYTES_MAX + 1);
    big[RUNC_ARG_BYTES_MAX + 1] = '\0';
    many[0] = big;
    c.n_args = 1;
    assert_int_equal(build_err(&c, &err), FF_ETOOBIG);
    free(big);
    free((void *)many);
}

static void test_step_argument_checks(void **state)
{
    (void)state;
    struct ff_err err;
    int status = -1;
    static const char *const lowers[] = {"/nonexistent/lower"};
    struct runc_opts o = {.state_root = "relative/state"};
    struct runc_step s = {.lowers = lowers, .n_lowers = 1, .upper = "/nonexistent/u",
                          .work = "/nonexistent/w", .bundle = "/nonexistent/b",
                          .shell_form = true, .args = sh_args, .n_args = 1};
    assert_int_equal(runc_step_run(&o, &s, NULL, NULL, &status, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "state root"));
    o.state_root = "/nonexistent/state";
    s.bundle = "bundle";
    assert_int_equal(runc_step_run(&o, &s, NULL, NULL, &status, &err), FF_EINVAL);
    s.bundle = "/nonexistent/b";
    s.timeout_s = RUNC_TIMEOUT_MAX_S + 1;
    assert_int_equal(runc_step_run(&o, &s, NULL, NULL, &status, &err), FF_ERANGE);
    s.timeout_s = 0;
    s.memory_limit = RUNC_MEMORY_MIN - 1;
    assert_int_equal(runc_step_run(&o, &s, NULL, NULL, &status, &err), FF_ERANGE);
    s.memory_limit = 0;
    /* The state root's parent does not exist: an I/O error naming it. */
    assert_int_equal(runc_step_run(&o, &s, NULL, NULL, &status, &err), FF_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/state"));
    assert_int_equal(status, -1);
}

static void test_rootfs_argument_checks(void **state)
{
    (void)state;
    struct ff_err err;
    static const char *const rel[] = {"relative"};
    static const char *const abs[] = {"/a"};
    assert_int_equal(rootfs_mount("/t", abs, 0, "/u", "/w", &err), FF_EINVAL);
    assert_int_equal(rootfs_mount("/t", rel, 1, "/u", "/w", &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"relative\""));
    assert_int_equal(rootfs_mount("/t", abs, 1, "u", "/w", &err), FF_EINVAL);
    assert_int_equal(rootfs_mount("/t", abs, ROOTFS_LOWERS_MAX + 1, "/u", "/w", &err),
                     FF_ETOOBIG);
    /* Nothing mounted there: unmounting is not an error. */
    assert_int_equal(rootfs_unmount("/nonexistent/target", &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_namespaces_and_network),
        cmocka_unit_test(test_capabilities_by_user),
        cmocka_unit_test(test_mounts_and_paths),
        cmocka_unit_test(test_process_args_env_cwd_user),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_seccomp_profile),
        cmocka_unit_test(test_seccomp_arches_per_host),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_step_argument_checks),
        cmocka_unit_test(test_rootfs_argument_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
