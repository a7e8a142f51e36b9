/* A RUN step in runc: config.json, the bundle, running `runc run` with its
 * output streamed and a time limit, and the clean-up that must happen
 * whatever went wrong (container deleted, overlay unmounted, bundle
 * removed).
 *
 * runc, not crun: crun cannot place containers in this host's cgroup v1
 * hierarchy. runc's state lives under the worker's own --root, so `runc
 * list` there shows exactly the worker's containers and runc_reap can
 * clear what a dead worker left. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_json.h"
#include "ff_log.h"
#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* ---- config.json --------------------------------------------------------- */

/* Docker's default capability set: what package installs and builds use
 * (chown, setuid for su, binding low ports in tests, raw sockets for
 * ping), nothing that reaches past the container. */
static const char *const default_caps[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
};

/* runc's defaults (plus Docker's powercap): kernel state a build has no
 * business reading, and knobs it must not turn. */
static const char *const masked_paths[] = {
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
};
static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static json_t *string_array(const char *const *list, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a, json_string(list[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static json_t *caps_object(bool root)
{
    size_t n = ARRAY_LEN(default_caps);
    /* A user other than root gets no effective or permitted capabilities,
     * as execve would leave it; the bounding set still caps setuid
     * programs (which no_new_privs stops anyway). */
    return json_pack("{sosososo}", "bounding", string_array(default_caps, n), "effective",
                     string_array(default_caps, root ? n : 0), "permitted",
                     string_array(default_caps, root ? n : 0), "ambient", json_array());
}

static int check_args(const struct runc_config *c, struct ff_err *err)
{
    if (c->n_args == 0 || c->args == NULL)
        return ff_err_set(err, FF_EINVAL, "RUN: no command");
    if (c->shell_form && c->n_args != 1)
        return ff_err_set(err, FF_EINVAL, "RUN: shell form takes one command string, got %zu",
                          c->n_args);
    if (c->n_args > RUNC_ARGS_MAX || c->n_env > RUNC_ARGS_MAX)
        return ff_err_set(err, FF_ETOOBIG, "RUN: more than %d arguments or variables",
                          RUNC_ARGS_MAX);
    if (c->args[0] == NULL || c->args[0][0] == '\0')
        return ff_err_set(err, FF_EINVAL, "RUN: empty command");
    size_t total = 0;
    for (size_t i = 0; i < c->n_args; i++) {
        if (c->args[i] == NULL)
            return ff_err_set(err, FF_EINVAL, "RUN: argument %zu is missing", i);
        total += strlen(c->args[i]);
    }
    for (size_t i = 0; i < c->n_env; i++) {
        const char *eq = c->env[i] != NULL ? strchr(c->env[i], '=') : NULL;
        if (eq == NULL || eq == c->env[i]) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(c->env[i] != NULL ? c->env[i] : "", c->env[i] != NULL ?
                         strlen(c->env[i]) : 0, q);
            return ff_err_set(err, FF_EINVAL, "environment entry \"%s\": expected KEY=value", q);
        }
        total += strlen(c->env[i]);
    }
    if (total > RUNC_ARG_BYTES_MAX)
        return ff_err_set(err, FF_ETOOBIG, "RUN: arguments and environment exceed %zu bytes",
                          RUNC_ARG_BYTES_MAX);
    if (c->cwd != NULL && c->cwd[0] != '/')
        return ff_err_set(err, FF_EINVAL, "working directory \"%s\" is not absolute", c->cwd);
    return 0;
}

static json_t *args_array(const struct runc_config *c)
{
    if (c->shell_form)
        return json_pack("[sss]", "/bin/sh", "-c", c->args[0]);
    return string_array(c->args, c->n_args);
}

static json_t *env_array(const struct runc_config *c)
{
    bool has_path = false;
    for (size_t i = 0; i < c->n_env; i++)
        has_path = has_path || ff_str_has_prefix(c->env[i], "PATH=");
    json_t *a = string_array(c->env, c->n_env);
    if (a != NULL && !has_path && json_array_insert_new(a, 0, json_string(RUNC_PATH_ENV)) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *user_object(const struct runc_config *c)
{
    json_t *u = json_pack("{sIsIsi}", "uid", (json_int_t)c->uid, "gid", (json_int_t)c->gid,
                          "umask", 022);
    if (u == NULL || c->n_gids == 0)
        return u;
    json_t *gids = json_array();
    for (size_t i = 0; gids != NULL && i < c->n_gids; i++) {
        if (json_array_append_new(gids, json_integer((json_int_t)c->gids[i])) != 0) {
            json_decref(gids);
            gids = NULL;
        }
    }
    if (json_object_set_new(u, "additionalGids", gids) != 0) {
        json_decref(u);
        return NULL;
    }
    return u;
}

static json_t *process_object(const struct runc_config *c)
{
    json_int_t nofile = (json_int_t)(c->nofile != 0 ? c->nofile : RUNC_NOFILE);
    json_t *rlimit = json_pack("{sssIsI}", "type", "RLIMIT_NOFILE", "hard", nofile, "soft",
                               nofile);
    return json_pack("{sbsosososssos[o]sb}", "terminal", 0, "user", user_object(c), "args",
                     args_array(c), "env", env_array(c), "cwd", c->cwd != NULL ? c->cwd : "/",
                     "capabilities", caps_object(c->uid == 0), "rlimits", rlimit,
                     "noNewPrivileges", 1);
}

static json_t *mount_entry(const char *dest, const char *type, const char *source,
                           const char *const *opts, size_t n_opts)
{
    return json_pack("{ssssssso}", "destination", dest, "type", type, "source", source,
                     "options", string_array(opts, n_opts));
}

static int append_mount(json_t *mounts, json_t *m)
{
    return json_array_append_new(mounts, m) == 0 ? 0 : FF_ENOMEM;
}

static json_t *mounts_array(const struct runc_config *c)
{
    static const char *const proc_o[] = {"nosuid", "noexec", "nodev"};
    static const char *const dev_o[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
    static const char *const pts_o[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                        "mode=0620", "gid=5"};
    static const char *const mq_o[] = {"nosuid", "noexec", "nodev"};
    static const char *const sys_o[] = {"nosuid", "noexec", "nodev", "ro"};
    static const char *const bind_o[] = {"rbind", "ro", "nosuid", "nodev", "noexec"};
    char shm_size[64];
    (void)snprintf(shm_size, sizeof(shm_size), "size=%llu",
                   (unsigned long long)RUNC_SHM_BYTES);
    const char *const shm_o[] = {"nosuid", "noexec", "nodev", "mode=1777", shm_size};
    json_t *m = json_array();
    int rc = m == NULL ? FF_ENOMEM : 0;
    if (rc == 0)
        rc = append_mount(m, mount_entry("/proc", "proc", "proc", proc_o, ARRAY_LEN(proc_o)));
    if (rc == 0)
        rc = append_mount(m, mount_entry("/dev", "tmpfs", "tmpfs", dev_o, ARRAY_LEN(dev_o)));
    if (rc == 0)
        rc = append_mount(m, mount_entry("/dev/pts", "devpts", "devpts", pts_o,
                                         ARRAY_LEN(pts_o)));
    if (rc == 0)
        rc = append_mount(m, mount_entry("/dev/shm", "tmpfs", "shm", shm_o, ARRAY_LEN(shm_o)));
    if (rc == 0)
        rc = append_mount(m, mount_entry("/dev/mqueue", "mqueue", "mqueue", mq_o,
                                         ARRAY_LEN(mq_o)));
    if (rc == 0)
        rc = append_mount(m, mount_entry("/sys", "sysfs", "sysfs", sys_o, ARRAY_LEN(sys_o)));
    if (rc == 0 && c->network && c->hosts_file != NULL)
        rc = append_mount(m, mount_entry("/etc/hosts", "bind", c->hosts_file, bind_o,
                                         ARRAY_LEN(bind_o)));
    if (rc == 0 && c->network && c->resolv_file != NULL)
        rc = append_mount(m, mount_entry("/etc/resolv.conf", "bind", c->resolv_file, bind_o,
                                         ARRAY_LEN(bind_o)));
    if (rc != 0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static json_t *namespaces_array(bool network)
{
    json_t *ns = json_pack("[{ss}{ss}{ss}{ss}{ss}]", "type", "pid", "type", "ipc", "type",
                           "uts", "type", "mount", "type", "cgroup");
    if (ns != NULL && !network && json_array_append_new(ns, json_pack("{ss}", "type",
                                                                      "network")) != 0) {
        json_decref(ns);
        return NULL;
    }
    return ns;
}

static json_t *resources_object(const struct runc_config *c)
{
    json_t *r = json_pack("{s[{sbss}]}", "devices", "allow", 0, "access", "rwm");
    /* swap equal to the limit: memory+swap may not pass it either. */
    if (r != NULL && c->memory_limit != 0 &&
        json_object_set_new(r, "memory", json_pack("{sIsI}", "limit",
                                                   (json_int_t)c->memory_limit, "swap",
                                                   (json_int_t)c->memory_limit)) != 0) {
        json_decref(r);
        return NULL;
    }
    if (r != NULL && c->pids_limit != 0 &&
        json_object_set_new(r, "pids", json_pack("{sI}", "limit",
                                                 (json_int_t)c->pids_limit)) != 0) {
        json_decref(r);
        return NULL;
    }
    return r;
}

static json_t *linux_object(const struct runc_config *c, json_t *seccomp)
{
    return json_pack("{sososososo}", "namespaces", namespaces_array(c->network), "resources",
                     resources_object(c), "maskedPaths",
                     string_array(masked_paths, ARRAY_LEN(masked_paths)), "readonlyPaths",
                     string_array(readonly_paths, ARRAY_LEN(readonly_paths)), "seccomp",
                     seccomp);
}

int runc_config_build(const struct runc_config *c, char **out, size_t *out_len,
                      struct ff_err *err)
{
    int rc = check_args(c, err);
    if (rc != 0)
        return rc;
    if (c->memory_limit > (uint64_t)INT64_MAX || c->pids_limit < 0 ||
        c->nofile > (uint64_t)INT64_MAX)
        return ff_err_set(err, FF_ERANGE, "memory or pids limit out of range");
    json_t *seccomp = NULL;
    rc = seccomp_profile_new(c->host_machine, &seccomp, err);
    if (rc != 0)
        return rc;
    json_t *cfg = json_pack("{sss{sssb}sssososo}", "ociVersion", "1.0.2", "root", "path",
                            c->rootfs, "readonly", 0, "hostname", RUNC_HOSTNAME, "process",
                            process_object(c), "mounts", mounts_array(c), "linux",
                            linux_object(c, seccomp));
    if (cfg == NULL)
        return ff_err_set(err, FF_ENOMEM, "config.json: out of memory");
    rc = ff_json_dump(cfg, out, out_len, err);
    json_decref(cfg);
    return rc;
}

/* ---- running programs ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A child with its pidfd and, when captured, the read ends of its stdout
 * and stderr. */
struct child {
    pid_t pid;
    int pidfd;
    int fd[2]; /* stdout, stderr; -1 when closed or not captured */
};

static void child_init(struct child *ch)
{
    ch->pid = -1;
    ch->pidfd = -1;
    ch->fd[0] = ch->fd[1] = -1;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        (void)close(*fd);
    *fd = -1;
}

static int spawn_actions(posix_spawn_file_actions_t *fa, const int *wr)
{
    int rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    for (int i = 0; rc == 0 && i < 2; i++)
        rc = wr[i] >= 0 ? posix_spawn_file_actions_adddup2(fa, wr[i], i + 1)
                        : posix_spawn_file_actions_addopen(fa, i + 1, "/dev/null", O_WRONLY, 0);
    /* Nothing of the worker's (sockets, keys) reaches runc or the step. */
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(fa, 3);
    return rc;
}

static int spawn_attrs(posix_spawnattr_t *at)
{
    sigset_t none, dflt;
    (void)sigemptyset(&none);
    (void)sigemptyset(&dflt);
    static const int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD,
                               SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
        (void)sigaddset(&dflt, sigs[i]);
    int rc = posix_spawnattr_setsigmask(at, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(at, &dflt);
    /* Its own process group: a terminal's ^C goes to the caller, which
     * then stops the container the orderly way. */
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(at, 0);
    if (rc == 0)
        rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                              POSIX_SPAWN_SETPGROUP);
    return rc;
}

static int make_pipes(int *rd, int *wr, struct ff_err *err)
{
    for (int i = 0; i < 2; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            return ff_err_set(err, FF_EIO, "pipe: %s", strerror(errno));
        rd[i] = p[0];
        wr[i] = p[1];
        /* Only our end: the step's writes block as usual. */
        if (fcntl(rd[i], F_SETFL, O_NONBLOCK) != 0)
            return ff_err_set(err, FF_EIO, "pipe: %s", strerror(errno));
    }
    return 0;
}

static int child_spawn(const char *const *argv, bool capture, struct child *ch,
                       struct ff_err *err)
{
    static char *const env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    int rd[2] = {-1, -1}, wr[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int rc = capture ? make_pipes(rd, wr, err) : 0;
    if (rc != 0)
        goto out_pipes;
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = ff_err_set(err, FF_ENOMEM, "spawn: out of memory");
        goto out_pipes;
    }
    if (posix_spawnattr_init(&at) != 0) {
        rc = ff_err_set(err, FF_ENOMEM, "spawn: out of memory");
        goto out_fa;
    }
    int e = spawn_actions(&fa, wr);
    if (e == 0)
        e = spawn_attrs(&at);
    if (e == 0)
        e = posix_spawn(&ch->pid, argv[0], &fa, &at, (char *const *)argv, env);
    if (e != 0) {
        rc = ff_err_set(err, FF_EIO, "starting \"%s\" failed: %s", argv[0], strerror(e));
    } else {
        ch->pidfd = pidfd_open(ch->pid, 0);
        if (ch->pidfd < 0)
            rc = ff_err_set(err, FF_EIO, "pidfd_open: %s", strerror(errno));
        ch->fd[0] = rd[0];
        ch->fd[1] = rd[1];
        rd[0] = rd[1] = -1;
    }
    posix_spawnattr_destroy(&at);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
out_pipes:
    for (int i = 0; i < 2; i++) {
        close_fd(&rd[i]);
        close_fd(&wr[i]);
    }
    return rc;
}

/* Waits for the child (killing it after timeout_ms) and returns its exit
 * status as a shell reports it (128+N for signal N). */
static int child_wait(struct child *ch, int64_t timeout_ms)
{
    if (ch->pid <= 0)
        return -1;
    if (ch->pidfd >= 0) {
        struct pollfd p = {.fd = ch->pidfd, .events = POLLIN};
        int64_t end = now_ms() + timeout_ms;
        int n;
        do {
            int64_t left = end - now_ms();
            n = poll(&p, 1, left > 0 ? (int)left : 0);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            (void)kill(ch->pid, SIGKILL);
    }
    int ws = 0;
    pid_t r;
    do {
        r = waitpid(ch->pid, &ws, 0);
    } while (r < 0 && errno == EINTR);
    close_fd(&ch->pidfd);
    close_fd(&ch->fd[0]);
    close_fd(&ch->fd[1]);
    ch->pid = -1;
    if (r < 0)
        return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : -1;
}

/* runc kill / delete: short commands whose output nobody reads. */
#define RUNC_CMD_TIMEOUT_MS 30000

static int runc_quiet(const struct runc_opts *o, const char *cmd, const char *id,
                      const char *extra)
{
    const char *argv[] = {o->runc != NULL ? o->runc : RUNC_PATH_DEFAULT, "--root",
                          o->state_root, cmd, id, extra, NULL};
    if (strcmp(cmd, "delete") == 0) {
        argv[4] = "--force";
        argv[5] = id;
    }
    struct child ch;
    child_init(&ch);
    if (child_spawn(argv, false, &ch, NULL) != 0) {
        (void)child_wait(&ch, 0);
        return -1;
    }
    return child_wait(&ch, RUNC_CMD_TIMEOUT_MS);
}

/* ---- output lines -------------------------------------------------------- */

struct splitter {
    struct ff_buf line;
    enum runc_stream stream;
    runc_output_fn cb;
    void *arg;
};

static void split_emit(struct splitter *s)
{
    if (s->cb != NULL)
        s->cb(s->arg, s->stream, s->line.data != NULL ? s->line.data : "", s->line.len);
    ff_buf_reset(&s->line);
}

static void split_feed(struct splitter *s, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - p) : n;
        size_t room = RUNC_LINE_MAX - s->line.len;
        if (take > room) {
            (void)ff_buf_append(&s->line, p, room);
            split_emit(s);
            p += room;
            n -= room;
            continue;
        }
        (void)ff_buf_append(&s->line, p, take);
        p += take;
        n -= take;
        if (nl != NULL) {
            split_emit(s);
            p++;
            n--;
        }
    }
}

static void split_flush(struct splitter *s)
{
    if (s->line.len > 0)
        split_emit(s);
}

/* Reads per wake-up: a step that writes without pause must not keep the
 * loop from its deadline. */
#define DRAIN_CHUNKS 16

/* Reads what is there (at most DRAIN_CHUNKS reads); false at end of file or
 * on an error. */
static bool drain(int fd, struct splitter *s)
{
    char chunk[16384];
    for (int i = 0; i < DRAIN_CHUNKS; i++) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n > 0) {
            split_feed(s, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
}

/* ---- runc run ------------------------------------------------------------ */

struct run_state {
    const struct runc_opts *opts;
    const char *id;
    struct child ch;
    struct splitter out[2];
    int64_t deadline;
    bool timed_out;
    int64_t kill_sent;  /* last runc kill, ms */
    int64_t kill_first; /* first runc kill, ms */
    bool exited;
    int64_t exit_time;
    int status;
};

/* After the deadline: `runc kill` every half second (the container may not
 * exist yet while runc sets it up), and SIGKILL to runc itself when it has
 * not gone after RUNC_KILL_GRACE_MS. */
static void enforce_deadline(struct run_state *st, int64_t now)
{
    if (st->exited)
        return;
    if (!st->timed_out && now >= st->deadline) {
        st->timed_out = true;
        st->kill_first = now;
        st->kill_sent = now - 1000;
    }
    if (!st->timed_out)
        return;
    if (now - st->kill_sent >= 500) {
        (void)runc_quiet(st->opts, "kill", st->id, "KILL");
        st->kill_sent = now_ms();
    }
    if (now - st->kill_first >= RUNC_KILL_GRACE_MS)
        (void)kill(st->ch.pid, SIGKILL);
}

static int poll_timeout(const struct run_state *st, int64_t now)
{
    int64_t t;
    if (st->exited)
        t = st->exit_time + RUNC_DRAIN_GRACE_MS - now;
    else if (st->timed_out)
        t = 100;
    else
        t = st->deadline - now;
    return t < 0 ? 0 : t > 60000 ? 60000 : (int)t;
}

static void reap_if_exited(struct run_state *st)
{
    int ws = 0;
    pid_t r = waitpid(st->ch.pid, &ws, WNOHANG);
    if (r != st->ch.pid)
        return;
    st->exited = true;
    st->exit_time = now_ms();
    st->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    st->ch.pid = -1;
    close_fd(&st->ch.pidfd);
}

static void run_loop(struct run_state *st)
{
    for (;;) {
        int64_t now = now_ms();
        enforce_deadline(st, now);
        if (st->exited && ((st->ch.fd[0] < 0 && st->ch.fd[1] < 0) ||
                           now >= st->exit_time + RUNC_DRAIN_GRACE_MS))
            return;
        struct pollfd p[3] = {{.fd = st->ch.fd[0], .events = POLLIN},
                              {.fd = st->ch.fd[1], .events = POLLIN},
                              {.fd = st->ch.pidfd, .events = POLLIN}};
        int n = poll(p, 3, poll_timeout(st, now));
        if (n < 0 && errno != EINTR)
            return;
        for (int i = 0; n > 0 && i < 2; i++) {
            if (p[i].revents != 0 && !drain(st->ch.fd[i], &st->out[i]))
                close_fd(&st->ch.fd[i]);
        }
        if (n > 0 && p[2].revents != 0)
            reap_if_exited(st);
    }
}

/* The last error runc wrote to its --log (JSON lines), or NULL. */
static char *runc_log_error(const char *log_path)
{
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct ff_buf b;
    ff_buf_init(&b, RUNC_LOG_MAX);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0 && ff_buf_append(&b, chunk, (size_t)n) == 0)
        ;
    (void)close(fd);
    char *msg = NULL;
    const char *p = b.data;
    const char *end = b.data != NULL ? b.data + b.len : NULL;
    while (p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *o = NULL;
        const char *level = NULL, *m = NULL;
        if (ff_json_parse_object(p, len, RUNC_LOG_MAX, &o, NULL) == 0 &&
            ff_json_get_string(o, "level", true, 32, &level, NULL) == 0 &&
            strcmp(level, "error") == 0 &&
            ff_json_get_string(o, "msg", true, RUNC_LOG_MAX, &m, NULL) == 0) {
            free(msg);
            msg = ff_strndup(m, strlen(m));
        }
        json_decref(o);
        p = nl != NULL ? nl + 1 : end;
    }
    ff_buf_release(&b);
    return msg;
}

static int state_dir_gone(const struct runc_opts *o, const char *id, struct ff_err *err)
{
    char *dir = ff_asprintf("%s/%s", o->state_root, id);
    if (dir == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    struct stat st;
    int rc = 0;
    if (lstat(dir, &st) == 0)
        rc = ff_err_set(err, FF_EIO, "runc delete left container \"%s\" in \"%s\"", id,
                        o->state_root);
    free(dir);
    return rc;
}

static int run_container(const struct runc_opts *o, const char *bundle, const char *id,
                         unsigned timeout_s, runc_output_fn cb, void *cb_arg, int *status,
                         struct ff_err *err)
{
    char *log_path = ff_asprintf("%s/%s.log", o->state_root, id);
    if (log_path == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    const char *argv[] = {o->runc != NULL ? o->runc : RUNC_PATH_DEFAULT, "--root",
                          o->state_root, "--log", log_path, "--log-format", "json", "run",
                          "--bundle", bundle, id, NULL};
    struct run_state st = {.opts = o, .id = id};
    child_init(&st.ch);
    for (int i = 0; i < 2; i++) {
        ff_buf_init(&st.out[i].line, RUNC_LINE_MAX);
        st.out[i].stream = i == 0 ? RUNC_STDOUT : RUNC_STDERR;
        st.out[i].cb = cb;
        st.out[i].arg = cb_arg;
    }
    int rc = child_spawn(argv, true, &st.ch, err);
    if (rc == 0) {
        st.deadline = now_ms() + (int64_t)timeout_s * 1000;
        run_loop(&st);
    }
    if (st.ch.pid > 0) { /* spawn half-failed, or poll broke: make sure it ends */
        (void)runc_quiet(o, "kill", id, "KILL");
        st.status = child_wait(&st.ch, RUNC_KILL_GRACE_MS);
    }
    for (int i = 0; i < 2; i++) {
        close_fd(&st.ch.fd[i]);
        split_flush(&st.out[i]);
        ff_buf_release(&st.out[i].line);
    }
    close_fd(&st.ch.pidfd);
    /* runc run removes its container on exit; this is for every other
     * ending (killed, timed out, runc failed half-way). Starting runc only
     * when its state is still there saves a fifth of a trivial step. */
    if (state_dir_gone(o, id, NULL) != 0)
        (void)runc_quiet(o, "delete", id, NULL);
    char *runc_err = runc_log_error(log_path);
    (void)unlink(log_path);
    free(log_path);
    if (rc == 0 && st.timed_out)
        rc = ff_err_set(err, FF_ETIMEOUT, "step exceeded its time limit of %u s and was "
                        "killed", timeout_s);
    else if (rc == 0 && runc_err != NULL && st.status != 0) /* not a clean-up warning */
        rc = ff_err_set(err, FF_EIO, "runc: %s", runc_err);
    if (rc == 0 && (rc = state_dir_gone(o, id, err)) == 0)
        *status = st.status;
    else
        (void)state_dir_gone(o, id, NULL);
    free(runc_err);
    return rc;
}

/* ---- mount points runc creates ------------------------------------------- */

/* runc creates the destinations of its mounts that the image lacks, and
 * those land in upper as if the step had made them; creating them also
 * copies their existing parent directories up. Docker's builders remove
 * such stubs again; so does this: stubs that are still empty, and copied-up
 * parents that are empty in upper and kept their mode and owner (their
 * times differ, but the layer writer clamps times anyway). */
#define STUBS_MAX 16

struct stub {
    char *path; /* relative to the rootfs */
    bool parent; /* existed before: remove only when unchanged */
    mode_t mode;
    uid_t uid;
    gid_t gid;
};

struct stubs {
    struct stub s[STUBS_MAX]; /* shallow before deep */
    size_t n;
};

static void stubs_release(struct stubs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->s[i].path);
    s->n = 0;
}

static bool stubs_has(const struct stubs *s, const char *p)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->s[i].path, p) == 0)
            return true;
    }
    return false;
}

/* Records every component of dest (relative): the existing ancestors of
 * the first missing one as parents, the missing ones as stubs. */
static int stubs_record(int root_fd, const char *dest, struct stubs *s, struct ff_err *err)
{
    size_t len = strlen(dest);
    bool missing = false;
    struct stub pending[STUBS_MAX];
    size_t n_pending = 0;
    int rc = 0;
    for (size_t i = 1; rc == 0 && i <= len && n_pending < STUBS_MAX; i++) {
        if (i < len && dest[i] != '/')
            continue;
        struct stub st = {.path = ff_strndup(dest, i)};
        struct stat sb;
        if (st.path == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
            break;
        }
        if (!missing && fstatat(root_fd, st.path, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            if (!S_ISDIR(sb.st_mode)) { /* runc follows no further: nothing to undo */
                free(st.path);
                break;
            }
            st.parent = true;
            st.mode = sb.st_mode;
            st.uid = sb.st_uid;
            st.gid = sb.st_gid;
        } else {
            missing = true;
        }
        pending[n_pending++] = st;
    }
    for (size_t i = 0; i < n_pending; i++) {
        if (!missing || stubs_has(s, pending[i].path) || s->n == STUBS_MAX)
            free(pending[i].path);
        else
            s->s[s->n++] = pending[i];
    }
    return rc;
}

/* Opens rel inside upper without following symlinks (the step may have
 * put one where a directory was). */
static int open_beneath(int upper_fd, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC | O_NOFOLLOW,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, upper_fd, rel, &how, sizeof(how));
}

/* True when the copied-up directory dfd carries no change of the step: same
 * mode and owner as before, no extended attribute but overlay's own. */
static bool parent_unchanged(int dfd, const struct stub *st)
{
    struct stat sb;
    if (fstat(dfd, &sb) != 0 || sb.st_mode != st->mode || sb.st_uid != st->uid ||
        sb.st_gid != st->gid)
        return false;
    char names[1024];
    ssize_t n = flistxattr(dfd, names, sizeof(names));
    if (n < 0)
        return errno == ENOTSUP;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
        if (!ff_str_has_prefix(names + i, "trusted.overlay."))
            return false;
    }
    return true;
}

static void stub_remove(int upper_fd, const struct stub *st)
{
    const char *slash = strrchr(st->path, '/');
    const char *last = slash != NULL ? slash + 1 : st->path;
    char *parent = slash != NULL ? ff_strndup(st->path, (size_t)(slash - st->path)) : NULL;
    int pfd = slash == NULL ? fcntl(upper_fd, F_DUPFD_CLOEXEC, 0)
              : parent != NULL ? open_beneath(upper_fd, parent, O_PATH | O_DIRECTORY) : -1;
    free(parent);
    if (pfd < 0)
        return;
    struct stat sb;
    if (fstatat(pfd, last, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
        if (st->parent && S_ISDIR(sb.st_mode)) {
            int dfd = open_beneath(upper_fd, st->path, O_RDONLY | O_DIRECTORY);
            if (dfd >= 0 && parent_unchanged(dfd, st))
                (void)unlinkat(pfd, last, AT_REMOVEDIR); /* fails when not empty: kept */
            if (dfd >= 0)
                (void)close(dfd);
        } else if (!st->parent && S_ISDIR(sb.st_mode)) {
            (void)unlinkat(pfd, last, AT_REMOVEDIR);
        } else if (!st->parent && S_ISREG(sb.st_mode) && sb.st_size == 0) {
            (void)unlinkat(pfd, last, 0);
        }
    }
    (void)close(pfd);
}

static void stubs_remove(const char *upper, const struct stubs *s)
{
    int upper_fd = open(upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (upper_fd < 0)
        return;
    for (size_t i = s->n; i-- > 0;)
        stub_remove(upper_fd, &s->s[i]);
    (void)close(upper_fd);
}

/* ---- the step ------------------------------------------------------------ */

static int write_file(const char *path, const char *data, size_t len, struct ff_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "creating \"%s\" failed: %s", path, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            (void)close(fd);
            return ff_err_set(err, FF_EIO, "writing \"%s\" failed: %s", path, strerror(e));
        }
        off += (size_t)n;
    }
    if (close(fd) != 0)
        return ff_err_set(err, FF_EIO, "writing \"%s\" failed: %s", path, strerror(errno));
    return 0;
}

/* The host's resolver configuration, for steps with network. */
#define RESOLV_MAX 65536

static int copy_resolv(const char *dst, struct ff_err *err)
{
    struct ff_buf b;
    ff_buf_init(&b, RESOLV_MAX);
    int fd = open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char chunk[4096];
        ssize_t n;
        while ((n = read(fd, chunk, sizeof(chunk))) > 0 &&
               ff_buf_append(&b, chunk, (size_t)n) == 0)
            ;
        (void)close(fd);
    }
    int rc = write_file(dst, b.data != NULL ? b.data : "", b.len, err);
    ff_buf_release(&b);
    return rc;
}

/* Paths inside the bundle, all derived from step->bundle. */
struct bundle {
    char *rootfs, *config, *hosts, *resolv;
    bool made, mounted;
};

static void bundle_remove(const char *dir, struct bundle *b)
{
    if (b->made) {
        const char *files[] = {b->config, b->hosts, b->resolv};
        for (size_t i = 0; i < ARRAY_LEN(files); i++) {
            if (files[i] != NULL)
                (void)unlink(files[i]);
        }
        if (b->rootfs != NULL)
            (void)rmdir(b->rootfs);
        (void)rmdir(dir);
    }
    free(b->rootfs);
    free(b->config);
    free(b->hosts);
    free(b->resolv);
}

static int bundle_make(const struct runc_step *s, struct bundle *b, struct ff_err *err)
{
    b->rootfs = ff_asprintf("%s/rootfs", s->bundle);
    b->config = ff_asprintf("%s/config.json", s->bundle);
    b->hosts = ff_asprintf("%s/hosts", s->bundle);
    b->resolv = ff_asprintf("%s/resolv.conf", s->bundle);
    if (b->rootfs == NULL || b->config == NULL || b->hosts == NULL || b->resolv == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    if (mkdir(s->bundle, 0700) != 0)
        return ff_err_set(err, errno == EEXIST ? FF_EEXIST : FF_EIO,
                          "creating bundle \"%s\" failed: %s", s->bundle, strerror(errno));
    b->made = true;
    if (mkdir(b->rootfs, 0755) != 0)
        return ff_err_set(err, FF_EIO, "creating \"%s\" failed: %s", b->rootfs,
                          strerror(errno));
    if (!s->network) {
        free(b->hosts);
        free(b->resolv);
        b->hosts = b->resolv = NULL;
        return 0;
    }
    static const char hosts[] = "127.0.0.1\tlocalhost " RUNC_HOSTNAME "\n"
                                "::1\tlocalhost ip6-localhost ip6-loopback\n";
    int rc = write_file(b->hosts, hosts, sizeof(hosts) - 1, err);
    return rc != 0 ? rc : copy_resolv(b->resolv, err);
}

static int check_step(const struct runc_opts *o, const struct runc_step *s, struct ff_err *err)
{
    if (o->state_root == NULL || o->state_root[0] != '/')
        return ff_err_set(err, FF_EINVAL, "runc state root must be an absolute path");
    if (s->bundle == NULL || s->bundle[0] != '/')
        return ff_err_set(err, FF_EINVAL, "bundle must be an absolute path");
    if (s->timeout_s > RUNC_TIMEOUT_MAX_S)
        return ff_err_set(err, FF_ERANGE, "time limit %u s is above %u s", s->timeout_s,
                          RUNC_TIMEOUT_MAX_S);
    if (s->memory_limit != 0 && s->memory_limit < RUNC_MEMORY_MIN)
        return ff_err_set(err, FF_ERANGE, "memory limit %llu bytes is below %llu",
                          (unsigned long long)s->memory_limit,
                          (unsigned long long)RUNC_MEMORY_MIN);
    if (s->pids_limit < 0)
        return ff_err_set(err, FF_ERANGE, "pids limit %lld is negative",
                          (long long)s->pids_limit);
    if (mkdir(o->state_root, 0700) != 0 && errno != EEXIST)
        return ff_err_set(err, FF_EIO, "creating runc state root \"%s\" failed: %s",
                          o->state_root, strerror(errno));
    return 0;
}

/* What the mounted rootfs decides: the user's ids and the stubs. */
static int inspect_rootfs(const struct runc_step *s, const struct bundle *b,
                          struct passwd_ids *ids, struct stubs *stubs, struct ff_err *err)
{
    int fd = open(b->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "opening \"%s\" failed: %s", b->rootfs, strerror(errno));
    int rc = passwd_resolve(fd, s->user, ids, err);
    static const char *const dests[] = {"proc", "dev", "sys", "etc/hosts", "etc/resolv.conf"};
    for (size_t i = 0; rc == 0 && i < ARRAY_LEN(dests); i++) {
        if (i < 3 || s->network)
            rc = stubs_record(fd, dests[i], stubs, err);
    }
    (void)close(fd);
    return rc;
}

static uint64_t nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        rl.rlim_max < RUNC_NOFILE)
        return rl.rlim_max;
    return RUNC_NOFILE;
}

static int write_config(const struct runc_step *s, const struct bundle *b,
                        const struct passwd_ids *ids, struct ff_err *err)
{
    struct utsname u;
    if (uname(&u) != 0)
        return ff_err_set(err, FF_EIO, "uname: %s", strerror(errno));
    struct runc_config c = {
        .host_machine = u.machine, .rootfs = b->rootfs, .shell_form = s->shell_form,
        .args = s->args, .n_args = s->n_args, .env = s->env, .n_env = s->n_env,
        .cwd = s->cwd, .uid = ids->uid, .gid = ids->gid, .gids = ids->gids,
        .n_gids = ids->n_gids, .network = s->network, .hosts_file = b->hosts,
        .resolv_file = b->resolv,
        .memory_limit = s->memory_limit != 0 ? s->memory_limit : RUNC_MEMORY_DEFAULT,
        .pids_limit = s->pids_limit != 0 ? s->pids_limit : RUNC_PIDS_DEFAULT,
        .nofile = nofile_limit(),
    };
    char *json = NULL;
    size_t len = 0;
    int rc = runc_config_build(&c, &json, &len, err);
    if (rc == 0)
        rc = write_file(b->config, json, len, err);
    free(json);
    return rc;
}

int runc_step_run(const struct runc_opts *opts, const struct runc_step *step,
                  runc_output_fn out, void *out_arg, int *status, struct ff_err *err)
{
    int rc = check_step(opts, step, err);
    if (rc != 0)
        return rc;
    struct bundle b = {0};
    struct passwd_ids ids = {0};
    struct stubs stubs = {.n = 0};
    rc = bundle_make(step, &b, err);
    if (rc == 0)
        rc = rootfs_mount(b.rootfs, step->lowers, step->n_lowers, step->upper, step->work, err);
    b.mounted = rc == 0;
    if (rc == 0)
        rc = inspect_rootfs(step, &b, &ids, &stubs, err);
    if (rc == 0)
        rc = write_config(step, &b, &ids, err);
    if (rc == 0) {
        char hex[FF_LOG_REQID_SIZE];
        ff_log_reqid_new(hex);
        char id[FF_LOG_REQID_SIZE + 3];
        (void)snprintf(id, sizeof(id), "ff-%s", hex);
        rc = run_container(opts, step->bundle, id,
                           step->timeout_s != 0 ? step->timeout_s : RUNC_TIMEOUT_DEFAULT_S,
                           out, out_arg, status, err);
    }
    if (b.mounted) {
        struct ff_err uerr;
        int urc = rootfs_unmount(b.rootfs, &uerr);
        if (urc != 0 && rc == 0)
            rc = ff_err_set(err, urc, "%s", uerr.msg);
        if (urc == 0)
            stubs_remove(step->upper, &stubs);
    }
    stubs_release(&stubs);
    passwd_ids_release(&ids);
    bundle_remove(step->bundle, &b);
    return rc;
}

int runc_reap(const struct runc_opts *opts, struct ff_err *err)
{
    struct stat st;
    if (opts->state_root == NULL || stat(opts->state_root, &st) != 0)
        return 0;
    const char *argv[] = {opts->runc != NULL ? opts->runc : RUNC_PATH_DEFAULT, "--root",
                          opts->state_root, "list", "-q", NULL};
    struct child ch;
    child_init(&ch);
    struct ff_buf ids;
    ff_buf_init(&ids, RUNC_LOG_MAX);
    int rc = child_spawn(argv, true, &ch, err);
    while (rc == 0 && ch.fd[0] >= 0) {
        struct pollfd p = {.fd = ch.fd[0], .events = POLLIN};
        if (poll(&p, 1, RUNC_CMD_TIMEOUT_MS) <= 0)
            break;
        char chunk[4096];
        ssize_t n = read(ch.fd[0], chunk, sizeof(chunk));
        if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN)))
            break;
        if (n > 0 && ff_buf_append(&ids, chunk, (size_t)n) != 0)
            break;
    }
    int ls = child_wait(&ch, RUNC_CMD_TIMEOUT_MS);
    if (rc == 0 && ls != 0)
        rc = ff_err_set(err, FF_EIO, "runc list in \"%s\" exited with %d", opts->state_root, ls);
    const char *p = ids.data;
    const char *end = ids.data != NULL ? ids.data + ids.len : NULL;
    while (rc == 0 && p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        char *id = ff_strndup(p, nl != NULL ? (size_t)(nl - p) : (size_t)(end - p));
        if (id == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        else if (id[0] != '\0' && runc_quiet(opts, "delete", id, NULL) != 0)
            rc = ff_err_set(err, FF_EIO, "runc delete --force \"%s\" failed", id);
        free(id);
        p = nl != NULL ? nl + 1 : end;
    }
    ff_buf_release(&ids);
    return rc;
}
