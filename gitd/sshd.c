/* The SSH listener: loads (or makes) the host key and reads the service
 * key while it may still be root, binds, drops to its own user, and then
 * only accepts connections and forks a session process for each. It never
 * reads a byte the network sends: key exchange and everything after it
 * happen in the session process (session.c), so the one process that holds
 * the host key for good is not the one that parses untrusted input. */
#include "gitd.h"

#include "ff_base64.h"
#include "ff_daemon.h"
#include "ff_log.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Largest host key file read: an ed25519 key is 400 bytes, RSA 4096 3 KiB. */
#define SSHD_HOST_KEY_MAX 65536
/* Connections waiting to be accepted. */
#define SSHD_BACKLOG 64
/* How often lock files of ended sessions are swept from the run directory. */
#define SSHD_SWEEP_INTERVAL_MS ((int64_t)3600 * 1000)
/* What we call ourselves in the SSH version string (instead of the
 * library's name and version). */
#define SSHD_BANNER "ff-gitd"

int sshd_key_fingerprint(struct ssh_key_struct *key, char **out)
{
    *out = NULL;
    unsigned char *hash = NULL;
    size_t hlen = 0;
    if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) != SSH_OK)
        return FF_ECRYPTO;
    char *b64 = ff_base64_encode_new(hash, hlen, false);
    ssh_clean_pubkey_hash(&hash);
    if (b64 == NULL)
        return FF_ENOMEM;
    /* ssh-keygen -l writes no padding. */
    size_t n = strlen(b64);
    while (n > 0 && b64[n - 1] == '=')
        b64[--n] = '\0';
    *out = ff_asprintf("SHA256:%s", b64);
    free(b64);
    return *out != NULL ? 0 : FF_ENOMEM;
}

static int fsync_dir_of(const char *path)
{
    char *dir = strdup(path);
    if (dir == NULL)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        ff_strlcpy(dir, ".", 2);
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    int rc = fd >= 0 ? fsync(fd) : -1;
    if (fd >= 0)
        (void)close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes a new ed25519 key to path: into a 0600 temporary file, synced,
 * then linked to its name, which fails if the name exists, so that a key
 * is never replaced. FF_EEXIST when another process made one first. */
static int host_key_create(const char *path, struct ff_err *err)
{
    ssh_key key = NULL;
    char *b64 = NULL;
    char *tmp = ff_asprintf("%s.new-XXXXXX", path);
    int fd = -1, rc = 0;
    if (tmp == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK ||
        ssh_pki_export_privkey_base64(key, NULL, NULL, NULL, &b64) != SSH_OK) {
        rc = ff_err_set(err, FF_ECRYPTO, "host key \"%s\": cannot make an ed25519 key", path);
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = ff_err_set(err, FF_EIO, "host key \"%s\": %s", path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, b64, strlen(b64)) != 0 || fsync(fd) != 0) {
        rc = ff_err_set(err, FF_EIO, "host key \"%s\": %s", tmp, strerror(errno));
        goto out;
    }
    if (link(tmp, path) != 0) {
        int e = errno;
        rc = e == EEXIST ? FF_EEXIST
                         : ff_err_set(err, FF_EIO, "host key \"%s\": %s", path, strerror(e));
        goto out;
    }
    if (fsync_dir_of(path) != 0)
        rc = ff_err_set(err, FF_EIO, "host key \"%s\": syncing its directory: %s", path,
                        strerror(errno));
out:
    if (fd >= 0)
        (void)close(fd);
    if (tmp != NULL)
        (void)unlink(tmp);
    free(tmp);
    if (b64 != NULL) {
        ff_secret_wipe(b64, strlen(b64));
        ssh_string_free_char(b64);
    }
    ssh_key_free(key);
    return rc;
}

/* Reads the key file at fd (path for messages) and imports it. */
static int host_key_read(int fd, const char *path, ssh_key *out, struct ff_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return ff_err_set(err, FF_EIO, "host key \"%s\": %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ff_err_set(err, FF_EINVAL, "host key \"%s\" is not a regular file", path);
    if ((st.st_mode & 077) != 0)
        return ff_err_set(err, FF_EDENIED,
                          "host key \"%s\" is readable by others (mode %03o): it must be 0600",
                          path, (unsigned)(st.st_mode & 0777));
    if (st.st_size <= 0 || st.st_size > SSHD_HOST_KEY_MAX)
        return ff_err_set(err, FF_EINVAL, "host key \"%s\" must hold 1..%d bytes", path,
                          SSHD_HOST_KEY_MAX);
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    size_t n = 0;
    int rc = 0;
    while (n < size) {
        ssize_t r = read(fd, buf + n, size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = ff_err_set(err, FF_EIO, "host key \"%s\": short read", path);
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (rc == 0 && (ssh_pki_import_privkey_base64(buf, NULL, NULL, NULL, out) != SSH_OK ||
                    !ssh_key_is_private(*out))) {
        ssh_key_free(*out);
        *out = NULL;
        rc = ff_err_set(err, FF_EINVAL, "host key \"%s\" is not an unencrypted OpenSSH private key",
                        path);
    }
    ff_secret_wipe(buf, size + 1);
    free(buf);
    return rc;
}

int sshd_host_key_load(const char *path, struct ssh_key_struct **out, char **fingerprint,
                       struct ff_err *err)
{
    *out = NULL;
    *fingerprint = NULL;
    bool created = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0 && errno == ENOENT) {
        int rc = host_key_create(path, err);
        if (rc != 0 && rc != FF_EEXIST)
            return rc;
        created = rc == 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    }
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "host key \"%s\": %s", path, strerror(errno));
    ssh_key key = NULL;
    int rc = host_key_read(fd, path, &key, err);
    (void)close(fd);
    if (rc == 0 && sshd_key_fingerprint(key, fingerprint) != 0)
        rc = ff_err_set(err, FF_ECRYPTO, "host key \"%s\": no fingerprint", path);
    if (rc != 0) {
        ssh_key_free(key);
        return rc;
    }
    if (created)
        ff_log_info(NULL, "hostkey.created", "path=%s fingerprint=%s", path, *fingerprint);
    *out = key;
    return 0;
}

static int listen_on(const char *address, uint16_t port, int *out, struct ff_err *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof(*in6);
    } else {
        return ff_err_set(err, FF_EINVAL, "address \"%s\" is not numeric", address);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SSHD_BACKLOG) != 0) {
        int e = errno;
        if (fd >= 0)
            (void)close(fd);
        return ff_err_set(err, FF_EIO, "listen on %s port %u: %s", address, (unsigned)port,
                          strerror(e));
    }
    *out = fd;
    return 0;
}

/* The peer's address as text; IPv4 clients of an IPv6 socket are written
 * as IPv4, so that they share one per-address limit. */
static void peer_name(const struct sockaddr_storage *ss, char out[INET6_ADDRSTRLEN])
{
    ff_strlcpy(out, "unknown", INET6_ADDRSTRLEN);
    if (ss->ss_family == AF_INET) {
        (void)inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out,
                        INET6_ADDRSTRLEN);
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            (void)inet_ntop(AF_INET, &a->s6_addr[12], out, INET6_ADDRSTRLEN);
        else
            (void)inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN);
    }
}

/* Directories the sessions need, checked as the user that serves. */
static int check_dirs(const struct gitd_config *cfg, struct ff_err *err)
{
    struct stat st;
    if (stat(cfg->repos, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(cfg->repos, R_OK | W_OK | X_OK) != 0)
        return ff_err_set(err, FF_EIO,
                          "repositories \"%s\" must be a directory this user may write: %s",
                          cfg->repos, strerror(errno));
    if (mkdir(cfg->run_dir, 0700) != 0 && errno != EEXIST)
        return ff_err_set(err, FF_EIO, "run directory \"%s\": %s", cfg->run_dir, strerror(errno));
    if (stat(cfg->run_dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(cfg->run_dir, R_OK | W_OK | X_OK) != 0)
        return ff_err_set(err, FF_EIO,
                          "run directory \"%s\" must be a directory this user may write",
                          cfg->run_dir);
    return slot_sweep(cfg->run_dir, err);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Collects ended sessions; returns how many. */
static unsigned reap(void)
{
    unsigned n = 0;
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        n++;
        if (WIFSIGNALED(st))
            ff_log_info(NULL, "session.killed", "pid=%d signal=%d%s", (int)pid, WTERMSIG(st),
                        WTERMSIG(st) == SIGALRM ? " reason=auth_timeout" : "");
    }
    return n;
}

/* In the forked session process: back to default signals, then serve. */
static void session_process(struct sshd *srv, int lfd, int sfd, int fd, const char *peer)
{
    (void)close(lfd);
    (void)close(sfd);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    _exit(session_serve(srv, fd, peer));
}

static void accept_one(struct sshd *srv, int lfd, int sfd, unsigned *children)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len = sizeof(ss);
    /* libssh polls its socket itself; a blocking one could stall a session
     * on a write to a client that does not read. */
    int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            ff_log_warn(NULL, "accept.failed", "error=%s", strerror(errno));
        return;
    }
    char peer[INET6_ADDRSTRLEN];
    peer_name(&ss, peer);
    if (*children >= srv->cfg->sessions) {
        ff_log_warn(NULL, "session.refused", "peer=%s reason=sessions limit=%u", peer,
                    srv->cfg->sessions);
        (void)close(fd);
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        session_process(srv, lfd, sfd, fd, peer);
    if (pid < 0)
        ff_log_error(NULL, "session.fork", "peer=%s error=%s", peer, strerror(errno));
    else
        (*children)++;
    (void)close(fd);
}

static int serve_loop(struct sshd *srv, int lfd, int sfd)
{
    unsigned children = 0;
    int64_t next_sweep = now_ms() + SSHD_SWEEP_INTERVAL_MS;
    for (;;) {
        struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        int64_t left = next_sweep - now_ms();
        int n = poll(p, 2, left < 0 ? 0 : (int)(left > INT32_MAX ? INT32_MAX : left));
        if (n < 0 && errno != EINTR) {
            ff_log_error(NULL, "poll.failed", "error=%s", strerror(errno));
            return 0;
        }
        if (now_ms() >= next_sweep) {
            struct ff_err e;
            if (slot_sweep(srv->cfg->run_dir, &e) != 0)
                ff_log_warn(NULL, "slots.sweep", "error=%s", e.msg);
            next_sweep = now_ms() + SSHD_SWEEP_INTERVAL_MS;
        }
        if (n <= 0)
            continue;
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            bool stop = false;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo != SIGCHLD) {
                    ff_log_info(NULL, "gitd.stopping", "signal=%u", si.ssi_signo);
                    stop = true;
                }
            }
            unsigned gone = reap();
            children = gone > children ? 0 : children - gone;
            if (stop)
                return 0;
        }
        if (p[0].revents & POLLIN)
            accept_one(srv, lfd, sfd, &children);
    }
}

int sshd_serve(const struct gitd_config *cfg, struct ff_err *err)
{
    struct sshd srv = {.cfg = cfg};
    ssh_key key = NULL;
    char *fp = NULL, *service_key = NULL;
    int lfd = -1, sfd = -1;
    if (ssh_init() != SSH_OK)
        return ff_err_set(err, FF_ECRYPTO, "libssh: initialisation failed");
    int rc = sshd_host_key_load(cfg->host_key, &key, &fp, err);
    if (rc == 0)
        rc = config_service_key_read(cfg->key_file, &service_key, err);
    if (rc == 0)
        rc = listen_on(cfg->address, cfg->port, &lfd, err);
    /* Everything that needed root is open; the rest runs as our user. */
    if (rc == 0)
        rc = ff_daemon_drop_privileges(cfg->user, err);
    if (rc == 0)
        rc = check_dirs(cfg, err);
    if (rc == 0)
        rc = builder_client_new(&srv.builder, cfg->builder_url, cfg->builder_ca, service_key, err);
    if (rc == 0) {
        srv.bind = ssh_bind_new();
        srv.service_key = service_key;
        if (srv.bind == NULL ||
            ssh_bind_options_set(srv.bind, SSH_BIND_OPTIONS_BANNER, SSHD_BANNER) != SSH_OK ||
            ssh_bind_options_set(srv.bind, SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK)
            rc = ff_err_set(err, FF_ECRYPTO, "libssh: cannot set up the server");
        else
            key = NULL; /* the bind owns it */
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    if (rc == 0) {
        (void)signal(SIGPIPE, SIG_IGN);
        (void)sigprocmask(SIG_BLOCK, &set, NULL);
        sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0)
            rc = ff_err_set(err, FF_EIO, "signalfd: %s", strerror(errno));
    }
    if (rc == 0) {
        ff_log_info(NULL, "gitd.listening", "address=%s port=%u host_key_fp=%s user=%s",
                    cfg->address, (unsigned)cfg->port, fp, cfg->user != NULL ? cfg->user : "-");
        rc = serve_loop(&srv, lfd, sfd);
        ff_log_info(NULL, "gitd.stopped", "");
    }
    if (lfd >= 0)
        (void)close(lfd);
    if (sfd >= 0)
        (void)close(sfd);
    ssh_bind_free(srv.bind);
    ssh_key_free(key);
    builder_client_free(srv.builder);
    ff_secret_free(service_key);
    free(fp);
    ssh_finalize();
    return rc;
}
