/* The git program of a session, as a child: our own binary run again
 * (/proc/self/exe receive-pack|upload-pack ...) with a clean environment,
 * so that it starts from a fresh address space that never held the host
 * key, and a pump that moves bytes between it and the SSH channel.
 *
 * The pump is one poll loop over the session socket (through libssh's
 * event, which also flushes what libssh has queued) and the child's pipes,
 * all non-blocking, one bounded buffer per direction. Flow control is end
 * to end: we read from the channel only when the child's buffer is empty,
 * and libssh grows the client's window only when we read; we read from the
 * child only when its buffer has room, and write to the channel only as
 * much as the client's window allows. So no side can make us buffer more
 * than SPAWN_IN_BUF or SPAWN_BUF per direction, and neither waits on the
 * other. */
#include "gitd.h"

#include "ff_log.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Descriptors below this are the child's fixed ones (0-4): everything
 * handed to it is moved above first, so that dup2 never meets itself. */
#define SPAWN_FD_FLOOR 10

struct flow {
    unsigned char *buf;
    size_t off;
    size_t len;
};

/* One registered descriptor of the event and the events it waits for. */
struct watch {
    int fd;
    short events; /* 0: not registered */
};

struct pump {
    ssh_session ssh;
    ssh_event event;
    ssh_channel chan;
    pid_t pid;
    struct watch pidfd;
    struct watch in;  /* the child's stdin (we write) */
    struct watch out; /* its stdout (we read) */
    struct watch err; /* its stderr (we read) */
    struct flow to_child;
    struct flow from_out;
    struct flow from_err;
    bool client_eof;
    bool client_gone;
    bool exited;
    int status;
    uint64_t bytes_in;
    uint64_t bytes_out;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wakes the event loop; the work is done after ssh_event_dopoll returns. */
static int on_fd_ready(socket_t fd, int revents, void *userdata)
{
    (void)fd;
    (void)revents;
    (void)userdata;
    return 0;
}

/* Registers w for events (0: unregisters it). */
static void watch_set(struct pump *pm, struct watch *w, short events)
{
    if (w->fd < 0 || w->events == events)
        return;
    if (w->events != 0)
        (void)ssh_event_remove_fd(pm->event, w->fd);
    w->events = 0;
    if (events != 0 && ssh_event_add_fd(pm->event, w->fd, events, on_fd_ready, pm) == SSH_OK)
        w->events = events;
}

static void watch_close(struct pump *pm, struct watch *w)
{
    if (w->fd < 0)
        return;
    watch_set(pm, w, 0);
    (void)close(w->fd);
    w->fd = -1;
}

/* Moves fd above SPAWN_FD_FLOOR, close-on-exec; the old number is closed. */
static int fd_high(int fd)
{
    int high = fcntl(fd, F_DUPFD_CLOEXEC, SPAWN_FD_FLOOR);
    int e = errno;
    (void)close(fd);
    errno = e;
    return high;
}

static int nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++) {
        if (p[i] >= 0)
            (void)close(p[i]);
        p[i] = -1;
    }
}

/* A pipe whose child end (index child) sits above SPAWN_FD_FLOOR. */
static int make_pipe(int p[2], int child)
{
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    p[child] = fd_high(p[child]);
    if (p[child] < 0) {
        close_pair(p);
        return -1;
    }
    return 0;
}

/* The key pipe: filled and closed for writing before the fork (a key is far
 * smaller than a pipe's buffer), so the child reads it at its leisure; our
 * copy of the key is wiped, the session has no more use for it. */
static int key_pipe(int p[2], char *key)
{
    if (make_pipe(p, 0) != 0)
        return -1;
    size_t len = strlen(key);
    ssize_t w = write(p[1], key, len);
    ff_secret_wipe(key, len);
    (void)close(p[1]);
    p[1] = -1;
    if (w < 0 || (size_t)w != len) {
        close_pair(p);
        return -1;
    }
    return 0;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_exec(int in, int out, int err, int log, int key, char **argv, char **envp)
{
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(log, SPAWN_LOG_FD) < 0 ||
        (key >= 0 && dup2(key, SPAWN_KEY_FD) < 0))
        _exit(127);
    (void)close_range(key >= 0 ? SPAWN_KEY_FD + 1 : SPAWN_LOG_FD + 1, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    (void)signal(SIGPIPE, SIG_DFL);
    execve("/proc/self/exe", argv, envp);
    _exit(127);
}

static int start(struct pump *pm, const struct spawn_spec *spec, struct ff_err *err)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, key[2] = {-1, -1};
    int log = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, SPAWN_FD_FLOOR);
    int rc = 0;
    if (log < 0 || make_pipe(in, 0) != 0 || make_pipe(out, 1) != 0 || make_pipe(errp, 1) != 0 ||
        (spec->key != NULL && key_pipe(key, spec->key) != 0)) {
        rc = ff_err_set(err, FF_EIO, "pipes for the git program: %s", strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        rc = ff_err_set(err, FF_EIO, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child_exec(in[0], out[1], errp[1], log, key[0], spec->argv, spec->envp);
    pm->pid = pid;
    pm->pidfd.fd = pidfd_open(pid, 0);
    if (pm->pidfd.fd < 0) {
        rc = ff_err_set(err, FF_EIO, "pidfd_open: %s", strerror(errno));
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        pm->exited = true;
        goto out;
    }
    pm->in.fd = in[1];
    pm->out.fd = out[0];
    pm->err.fd = errp[0];
    in[1] = out[0] = errp[0] = -1;
    if (nonblock(pm->in.fd) != 0 || nonblock(pm->out.fd) != 0 || nonblock(pm->err.fd) != 0)
        rc = ff_err_set(err, FF_EIO, "non-blocking pipes: %s", strerror(errno));
out:
    close_pair(in);
    close_pair(out);
    close_pair(errp);
    close_pair(key);
    if (log >= 0)
        (void)close(log);
    return rc;
}

static void reap(struct pump *pm, int options)
{
    if (pm->exited)
        return;
    int st = 0;
    pid_t r;
    do
        r = waitpid(pm->pid, &st, options);
    while (r < 0 && errno == EINTR);
    if (r != pm->pid)
        return;
    pm->exited = true;
    pm->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    watch_close(pm, &pm->pidfd);
}

/* SIGTERM, and SIGKILL if it is still there after the grace time. */
static void stop_child(struct pump *pm)
{
    if (pm->exited)
        return;
    (void)kill(pm->pid, SIGTERM);
    struct pollfd p = {.fd = pm->pidfd.fd, .events = POLLIN};
    if (poll(&p, 1, SPAWN_KILL_GRACE_MS) <= 0)
        (void)kill(pm->pid, SIGKILL);
    reap(pm, 0);
}

/* Client to the child's buffer: only once the buffer is empty, so that the
 * client's window stays closed while the child is not reading. */
static bool client_to_buffer(struct pump *pm)
{
    if (pm->client_gone || pm->client_eof || pm->to_child.len > 0)
        return false;
    int n = ssh_channel_read_nonblocking(pm->chan, pm->to_child.buf, SPAWN_IN_BUF, 0);
    if (n == SSH_EOF) {
        pm->client_eof = true;
        return true;
    }
    if (n < 0) {
        pm->client_gone = true;
        return false;
    }
    /* The child stopped reading: what the client still sends is dropped. */
    if (pm->in.fd < 0)
        return n > 0;
    pm->to_child.off = 0;
    pm->to_child.len = (size_t)n;
    pm->bytes_in += (uint64_t)n;
    return n > 0;
}

static bool buffer_to_child(struct pump *pm)
{
    bool moved = false;
    if (pm->to_child.len > 0 && pm->in.fd >= 0) {
        ssize_t w = write(pm->in.fd, pm->to_child.buf + pm->to_child.off, pm->to_child.len);
        if (w > 0) {
            pm->to_child.off += (size_t)w;
            pm->to_child.len -= (size_t)w;
            moved = true;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            /* EPIPE: the child is done reading. */
            watch_close(pm, &pm->in);
            pm->to_child.len = 0;
        }
    }
    if (pm->in.fd < 0)
        pm->to_child.len = 0;
    if (pm->client_eof && pm->to_child.len == 0 && pm->in.fd >= 0)
        watch_close(pm, &pm->in);
    return moved;
}

static bool child_to_buffer(struct pump *pm, struct watch *w, struct flow *f)
{
    if (w->fd < 0)
        return false;
    if (f->off > 0 && f->off + f->len == SPAWN_BUF) {
        memmove(f->buf, f->buf + f->off, f->len);
        f->off = 0;
    }
    size_t room = SPAWN_BUF - f->off - f->len;
    if (room == 0)
        return false;
    ssize_t r = read(w->fd, f->buf + f->off + f->len, room);
    if (r > 0) {
        f->len += (size_t)r;
        return true;
    }
    if (r == 0 || (errno != EAGAIN && errno != EINTR))
        watch_close(pm, w);
    return r == 0;
}

/* Sends what the window allows of f on stdout or stderr. */
static bool buffer_to_client(struct pump *pm, struct flow *f, bool is_stderr)
{
    if (pm->client_gone || f->len == 0)
        return false;
    uint32_t win = ssh_channel_window_size(pm->chan);
    uint32_t n = f->len < win ? (uint32_t)f->len : win;
    if (n == 0)
        return false;
    int w = is_stderr ? ssh_channel_write_stderr(pm->chan, f->buf + f->off, n)
                      : ssh_channel_write(pm->chan, f->buf + f->off, n);
    if (w < 0) {
        pm->client_gone = true;
        return false;
    }
    f->off += (size_t)w;
    f->len -= (size_t)w;
    if (f->len == 0)
        f->off = 0;
    pm->bytes_out += (uint64_t)w;
    return w > 0;
}

static bool client_alive(const struct pump *pm)
{
    return ssh_is_connected(pm->ssh) && !ssh_channel_is_closed(pm->chan) &&
           (ssh_get_status(pm->ssh) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
}

static int pump(struct pump *pm, const struct spawn_spec *spec, struct ff_err *err)
{
    const int64_t idle_ms = (int64_t)spec->idle_timeout_s * 1000;
    int64_t last = now_ms();
    for (;;) {
        bool moved = client_to_buffer(pm);
        moved |= buffer_to_child(pm);
        moved |= child_to_buffer(pm, &pm->out, &pm->from_out);
        moved |= child_to_buffer(pm, &pm->err, &pm->from_err);
        moved |= buffer_to_client(pm, &pm->from_out, false);
        moved |= buffer_to_client(pm, &pm->from_err, true);
        reap(pm, WNOHANG);
        if (!pm->client_gone && !client_alive(pm))
            pm->client_gone = true;
        if (pm->client_gone)
            return 0;
        if (pm->to_child.len > 0 && ssh_channel_poll(pm->chan, 0) > (int)SPAWN_QUEUED_MAX) {
            stop_child(pm);
            return ff_err_set(err, FF_ENET, "the client sent more than %u bytes past its window",
                              SPAWN_QUEUED_MAX);
        }
        if (pm->exited && pm->out.fd < 0 && pm->err.fd < 0 && pm->from_out.len == 0 &&
            pm->from_err.len == 0)
            return 0;
        int64_t now = now_ms();
        if (moved)
            last = now;
        if (now - last >= idle_ms) {
            stop_child(pm);
            return ff_err_set(err, FF_ETIMEOUT, "nothing moved for %u s", spec->idle_timeout_s);
        }
        watch_set(pm, &pm->in, pm->to_child.len > 0 ? POLLOUT : 0);
        watch_set(pm, &pm->out, pm->from_out.off + pm->from_out.len < SPAWN_BUF ? POLLIN : 0);
        watch_set(pm, &pm->err, pm->from_err.off + pm->from_err.len < SPAWN_BUF ? POLLIN : 0);
        watch_set(pm, &pm->pidfd, pm->exited ? 0 : POLLIN);
        /* After progress only a look (libssh writes to its socket, and reads
         * window adjustments, from inside the poll); else wait. */
        int64_t left = moved ? 0 : idle_ms - (now - last);
        (void)ssh_event_dopoll(pm->event, left > INT32_MAX ? INT32_MAX : (int)left);
    }
}

int spawn_run(struct ssh_session_struct *ssh, struct ssh_event_struct *event,
              struct ssh_channel_struct *chan, const struct spawn_spec *spec, int *exit_status,
              struct ff_err *err)
{
    *exit_status = -1;
    struct pump pm = {
        .ssh = ssh,
        .event = event,
        .chan = chan,
        .pid = -1,
        .pidfd = {-1, 0},
        .in = {-1, 0},
        .out = {-1, 0},
        .err = {-1, 0},
    };
    pm.to_child.buf = malloc(SPAWN_IN_BUF);
    pm.from_out.buf = malloc(SPAWN_BUF);
    pm.from_err.buf = malloc(SPAWN_BUF);
    int rc = 0;
    if (pm.to_child.buf == NULL || pm.from_out.buf == NULL || pm.from_err.buf == NULL)
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
    if (rc == 0)
        rc = start(&pm, spec, err);
    int blocking = ssh_is_blocking(ssh);
    ssh_set_blocking(ssh, 0);
    if (rc == 0)
        rc = pump(&pm, spec, err);
    ssh_set_blocking(ssh, blocking);
    /* However it ended, the child gets EOF on its input and its output goes
     * nowhere; a receive-pack whose client left finishes its push. */
    watch_close(&pm, &pm.in);
    watch_close(&pm, &pm.out);
    watch_close(&pm, &pm.err);
    if (pm.pid > 0)
        reap(&pm, 0);
    watch_close(&pm, &pm.pidfd);
    if (pm.pid > 0)
        ff_log_info(spec->reqid, "session.child",
                    "pid=%d status=%d bytes_in=%llu bytes_out=%llu client=%s", (int)pm.pid,
                    pm.status, (unsigned long long)pm.bytes_in, (unsigned long long)pm.bytes_out,
                    pm.client_gone ? "gone" : "stayed");
    if (pm.exited)
        *exit_status = pm.client_gone ? -1 : pm.status;
    free(pm.to_child.buf);
    free(pm.from_out.buf);
    free(pm.from_err.buf);
    return rc;
}

void spawn_child_log_setup(void)
{
    const char *v = getenv(SPAWN_ENV_LOG_FD);
    int64_t fd = -1;
    if (v == NULL || ff_parse_i64(v, 3, 1023, &fd) != 0 || fcntl((int)fd, F_GETFD) < 0)
        return;
    (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    ff_log_set_fd((int)fd);
    enum ff_log_level level;
    const char *name = getenv(SPAWN_ENV_LOG_LEVEL);
    if (name != NULL && ff_log_level_parse(name, &level) == 0)
        ff_log_open("ff-gitd", level);
}
