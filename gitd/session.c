/* One SSH connection, in a process of its own (forked by sshd.c):
 *
 *   1. a slot of the per-address limit, before any byte of the client is read
 *   2. key exchange; the listener's copy of the host key is freed
 *   3. public-key authentication only: the key's SHA256 fingerprint must be
 *      one the builder knows (GET /v1/keys/lookup); none, password and
 *      keyboard-interactive fail, listing only publickey
 *   4. one session channel and one exec of git-receive-pack or
 *      git-upload-pack (a shell gets a usage text and exit status 1);
 *      PTYs, env, subsystems, X11 and agent forwarding, port forwarding and
 *      any other channel or request are refused
 *   5. access from the builder (push for receive-pack, pull for
 *      upload-pack) and a slot of the per-user limit, before the git
 *      program starts, so a refused push never has its pack read
 *   6. the git program under spawn.c, then its exit status, EOF and close.
 *
 * Steps 1-4 must finish within the auth timeout (alarm: the process ends),
 * and the client's requests arrive through one libssh message callback, so
 * that everything not explicitly accepted gets libssh's default refusal. */
#include "gitd.h"

#include "ff_log.h"
#include "ff_secret.h"
#include "ff_str.h"

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest message we write to the client in one go (usage, refusals). */
#define SESSION_SAY_MAX 4096
/* Room for the git program's arguments and environment (run_git). */
#define SESSION_ARGV_MAX 16
#define SESSION_ENV_MAX 12

enum phase {
    PHASE_AUTH,  /* authenticating, opening the channel, waiting for a command */
    PHASE_EXEC,  /* an exec request was accepted */
    PHASE_SHELL, /* a shell request was accepted */
    PHASE_END    /* the connection is to be closed */
};

struct conn {
    struct sshd *srv;
    ssh_session ssh;
    ssh_event event;
    ssh_channel chan;
    const char *peer;
    char reqid[FF_LOG_REQID_SIZE];
    enum phase phase;
    bool over_limit;   /* the per-address limit was reached */
    bool builder_told; /* the client was told the builder does not answer */
    unsigned auth_failures;
    bool authenticated;
    struct builder_user user;
    char *cached_fp; /* the last key looked up, its answer and user */
    int cached_rc;
    struct builder_user cached_user;
    char *command;
    struct ssh_server_callbacks_struct server_cb;
    struct ssh_channel_callbacks_struct channel_cb;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool closed(const struct conn *c)
{
    return (ssh_get_status(c->ssh) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0 ||
           !ssh_is_connected(c->ssh);
}

/* A line or a few for the client's stderr (SSH extended data). */
static void say(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct conn *c, const char *fmt, ...)
{
    if (c->chan == NULL || ssh_channel_is_closed(c->chan))
        return;
    struct ff_buf b;
    ff_buf_init(&b, SESSION_SAY_MAX);
    va_list ap;
    va_start(ap, fmt);
    int rc = ff_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    /* Never wait for a window: a client that does not read loses the end
     * of a message rather than holding the session. */
    uint32_t win = ssh_channel_window_size(c->chan);
    uint32_t len = b.len < win ? (uint32_t)b.len : win;
    if (rc == 0 && len > 0)
        (void)ssh_channel_write_stderr(c->chan, b.data, len);
    ff_buf_release(&b);
}

/* The SSH user-authentication banner: the one thing a client shows before
 * it has a channel. */
static void banner(struct conn *c, const char *text)
{
    ssh_string s = ssh_string_from_char(text);
    if (s != NULL)
        (void)ssh_send_issue_banner(c->ssh, s);
    ssh_string_free(s);
}

/* False when this connection may not authenticate (any more), and then
 * it is ending. */
static bool auth_allowed(struct conn *c)
{
    if (c->phase == PHASE_END)
        return false;
    if (c->over_limit) {
        char text[256];
        (void)snprintf(text, sizeof(text),
                       "ff-gitd: too many sessions from %s (at most %u at "
                       "once); try again when one has ended\n",
                       c->peer, c->srv->cfg->sessions_per_address);
        banner(c, text);
        ff_log_warn(c->reqid, "session.refused", "peer=%s reason=address_limit limit=%u", c->peer,
                    c->srv->cfg->sessions_per_address);
        c->phase = PHASE_END;
        return false;
    }
    if (c->auth_failures >= SESSION_AUTH_FAILURES_MAX) {
        ff_log_warn(c->reqid, "session.refused", "peer=%s reason=auth_failures", c->peer);
        c->phase = PHASE_END;
        return false;
    }
    return true;
}

/* Who holds key, asking the builder at most once per key. */
static int key_owner(struct conn *c, ssh_key key, struct builder_user *u, char **fp_out)
{
    char *fp = NULL;
    if (sshd_key_fingerprint(key, &fp) != 0)
        return FF_ECRYPTO;
    if (c->cached_fp == NULL || strcmp(c->cached_fp, fp) != 0) {
        struct ff_err e;
        ff_err_clear(&e);
        free(c->cached_fp);
        c->cached_fp = fp;
        c->cached_rc = builder_key_lookup(c->srv->builder, fp, &c->cached_user, &e);
        if (c->cached_rc == FF_ENOTFOUND) {
            ff_log_info(c->reqid, "auth.unknown_key", "peer=%s fingerprint=%s", c->peer, fp);
        } else if (c->cached_rc != 0) {
            ff_log_error(c->reqid, "auth.builder", "peer=%s fingerprint=%s error=%s", c->peer, fp,
                         e.msg);
            if (!c->builder_told)
                banner(c, "ff-gitd: cannot check SSH keys right now (the builder does not "
                          "answer); try again later\n");
            c->builder_told = true;
        }
    } else {
        free(fp);
    }
    *u = c->cached_user;
    *fp_out = c->cached_fp;
    return c->cached_rc;
}

static int on_auth_pubkey(ssh_session ssh, const char *ssh_user, struct ssh_key_struct *key,
                          char state, void *userdata)
{
    (void)ssh;
    struct conn *c = userdata;
    if (!auth_allowed(c) ||
        (state != SSH_PUBLICKEY_STATE_NONE && state != SSH_PUBLICKEY_STATE_VALID))
        return SSH_AUTH_DENIED;
    struct builder_user u;
    char *fp = NULL;
    if (key_owner(c, key, &u, &fp) != 0) {
        c->auth_failures++;
        return SSH_AUTH_DENIED;
    }
    /* A probe only asks whether the key would do; a valid signature is the
     * proof that the client holds it. */
    if (state == SSH_PUBLICKEY_STATE_VALID) {
        c->authenticated = true;
        c->user = u;
        ff_log_info(c->reqid, "auth.ok", "peer=%s user=%s key_id=%lld fingerprint=%s ssh_user=%s",
                    c->peer, u.name, (long long)u.key_id, fp, ssh_user != NULL ? ssh_user : "");
    }
    return SSH_AUTH_SUCCESS;
}

static void on_agent_request(ssh_session ssh, ssh_channel chan, void *userdata)
{
    (void)ssh;
    (void)chan;
    struct conn *c = userdata;
    say(c, "ff-gitd: agent forwarding refused: Fleetforge runs git commands only\n");
    ff_log_info(c->reqid, "request.refused", "kind=auth-agent-req");
}

static int on_channel_request(struct conn *c, ssh_message msg, int sub)
{
    if (ssh_message_channel_request_channel(msg) != c->chan)
        return 1;
    const char *kind = "other";
    switch (sub) {
    case SSH_CHANNEL_REQUEST_EXEC:
    case SSH_CHANNEL_REQUEST_SHELL:
        if (c->phase != PHASE_AUTH)
            return 1;
        if (sub == SSH_CHANNEL_REQUEST_EXEC) {
            const char *cmd = ssh_message_channel_request_command(msg);
            c->command = strdup(cmd != NULL ? cmd : "");
            if (c->command == NULL)
                return 1;
        }
        c->phase = sub == SSH_CHANNEL_REQUEST_EXEC ? PHASE_EXEC : PHASE_SHELL;
        (void)ssh_message_channel_request_reply_success(msg);
        return 0;
    case SSH_CHANNEL_REQUEST_PTY:
        kind = "pty-req";
        say(c, "ff-gitd: no terminal here: Fleetforge runs git commands only\n");
        break;
    case SSH_CHANNEL_REQUEST_X11:
        kind = "x11-req";
        say(c, "ff-gitd: X11 forwarding refused: Fleetforge runs git commands only\n");
        break;
    case SSH_CHANNEL_REQUEST_SUBSYSTEM: {
        const char *name = ssh_message_channel_request_subsystem(msg);
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(name != NULL ? name : "", name != NULL ? strlen(name) : 0, q);
        kind = "subsystem";
        say(c, "ff-gitd: subsystem \"%s\" refused: Fleetforge runs git commands only\n", q);
        break;
    }
    case SSH_CHANNEL_REQUEST_ENV:
        /* Refused without a word: OpenSSH sends LANG and LC_* on every
         * connection, and git sends GIT_PROTOCOL, which must not switch
         * the session to protocol v2 (we speak v0). */
        kind = "env";
        break;
    case SSH_CHANNEL_REQUEST_WINDOW_CHANGE: kind = "window-change"; break;
    default: break;
    }
    ff_log_debug(c->reqid, "request.refused", "kind=%s", kind);
    return 1;
}

/* Every request that no server callback took: returning 1 makes libssh
 * send its default answer, a refusal (for a service request, acceptance
 * of ssh-userauth, the only service a client asks for). */
static int on_message(ssh_session ssh, ssh_message msg, void *userdata)
{
    (void)ssh;
    struct conn *c = userdata;
    int type = ssh_message_type(msg);
    int sub = ssh_message_subtype(msg);
    switch (type) {
    case SSH_REQUEST_AUTH:
        /* none (which clients send first to learn the methods), password,
         * keyboard-interactive, hostbased, gssapi: all fail */
        if (auth_allowed(c) && sub != SSH_AUTH_METHOD_NONE)
            c->auth_failures++;
        return 1;
    case SSH_REQUEST_SERVICE: return 1;
    case SSH_REQUEST_CHANNEL_OPEN:
        if (c->authenticated && c->phase == PHASE_AUTH && sub == SSH_CHANNEL_SESSION &&
            c->chan == NULL) {
            c->chan = ssh_message_channel_request_open_reply_accept(msg);
            if (c->chan == NULL) {
                c->phase = PHASE_END;
                return 1;
            }
            ssh_callbacks_init(&c->channel_cb);
            c->channel_cb.userdata = c;
            c->channel_cb.channel_auth_agent_req_function = on_agent_request;
            (void)ssh_set_channel_callbacks(c->chan, &c->channel_cb);
            return 0;
        }
        ff_log_info(c->reqid, "request.refused", "kind=channel-open type=%d", sub);
        return 1;
    case SSH_REQUEST_CHANNEL:
        return c->authenticated && c->chan != NULL ? on_channel_request(c, msg, sub) : 1;
    case SSH_REQUEST_GLOBAL:
        if (sub == SSH_GLOBAL_REQUEST_TCPIP_FORWARD)
            ff_log_info(c->reqid, "request.refused", "kind=tcpip-forward");
        return 1;
    default: return 1;
    }
}

/* Runs libssh until the client has asked for a command, or left. */
static void negotiate(struct conn *c)
{
    while (c->phase == PHASE_AUTH) {
        (void)ssh_event_dopoll(c->event, -1);
        if (closed(c))
            c->phase = PHASE_END;
    }
}

/* host:port the client reached us at, for the usage text. */
static void local_address(struct conn *c, char *out, size_t size)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;
    if (getsockname(ssh_get_fd(c->ssh), (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
            (void)inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            (void)inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
            port = ntohs(in6->sin6_port);
        }
    }
    (void)snprintf(out, size, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, port);
}

static int run_shell(struct conn *c)
{
    char where[INET6_ADDRSTRLEN + 16];
    local_address(c, where, sizeof(where));
    say(c,
        "Hi %s! You are authenticated, but Fleetforge does not give shell access.\n"
        "Push an app (create it first with: ff app create NAME):\n"
        "  git push ssh://git@%s/%s/NAME.git main\n"
        "Clone it:\n"
        "  git clone ssh://git@%s/%s/NAME.git\n",
        c->user.name, where, c->user.name, where, c->user.name);
    ff_log_info(c->reqid, "session.refused", "user=%s reason=shell", c->user.name);
    return 1;
}

/* What the builder's access answer means for this command; 0 when it may
 * run, else the client has been told why. */
static int authorize(struct conn *c, const struct command *cmd, struct builder_access *acc)
{
    struct ff_err e;
    ff_err_clear(&e);
    int rc = builder_app_access(c->srv->builder, cmd->owner, cmd->app, c->user.name, acc, &e);
    bool receive = cmd->verb == COMMAND_RECEIVE_PACK;
    const char *reason = NULL;
    if (rc == FF_ENOTFOUND || (rc == 0 && !acc->pull)) {
        /* Someone else's app that one may not see is "not found" too, so
         * that names do not tell which apps exist. */
        if (strcmp(cmd->owner, c->user.name) == 0)
            say(c, "ff-gitd: app %s/%s does not exist: create it first with: ff app create %s\n",
                cmd->owner, cmd->app, cmd->app);
        else
            say(c, "ff-gitd: app %s/%s does not exist, or %s has no access to it\n", cmd->owner,
                cmd->app, c->user.name);
        reason = "no_app";
    } else if (rc != 0) {
        ff_log_error(c->reqid, "access.builder", "app=%s/%s user=%s error=%s", cmd->owner, cmd->app,
                     c->user.name, e.msg);
        say(c,
            "ff-gitd: cannot check your access to %s/%s right now (the builder does not "
            "answer); try again later\n",
            cmd->owner, cmd->app);
        reason = "builder";
    } else if (receive && !acc->push) {
        say(c, "ff-gitd: you have read access only to %s/%s: push refused\n", cmd->owner, cmd->app);
        reason = "read_only";
    }
    if (reason == NULL)
        return 0;
    ff_log_info(c->reqid, "session.refused", "user=%s app=%s/%s command=%s reason=%s", c->user.name,
                cmd->owner, cmd->app, command_verb_name(cmd->verb), reason);
    return FF_EDENIED;
}

/* Adds "NAME=value" to env (at most cap entries, NULL-terminated). */
static int env_add(char **env, size_t *n, size_t cap, const char *name, const char *value)
{
    if (*n + 1 >= cap)
        return FF_ETOOBIG;
    env[*n] = ff_asprintf("%s=%s", name, value);
    if (env[*n] == NULL)
        return FF_ENOMEM;
    (*n)++;
    env[*n] = NULL;
    return 0;
}

static const char *level_name(enum ff_log_level level)
{
    switch (level) {
    case FF_LOG_DEBUG: return "debug";
    case FF_LOG_INFO: return "info";
    case FF_LOG_WARN: return "warn";
    default: return "error";
    }
}

/* Runs the git program for cmd; returns the exit status to report (-1:
 * the client is gone). */
static int run_git(struct conn *c, const struct command *cmd, const struct builder_access *acc,
                   const char *repo)
{
    const struct gitd_config *cfg = c->srv->cfg;
    bool receive = cmd->verb == COMMAND_RECEIVE_PACK;
    char bytes[24], objects[24], app[COMMAND_OWNER_MAX + COMMAND_APP_MAX + 2], logfd[8], keyfd[8];
    (void)snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)cfg->max_pack_bytes);
    (void)snprintf(objects, sizeof(objects), "%u", (unsigned)cfg->max_objects);
    (void)snprintf(app, sizeof(app), "%s/%s", cmd->owner, cmd->app);
    (void)snprintf(logfd, sizeof(logfd), "%d", SPAWN_LOG_FD);
    (void)snprintf(keyfd, sizeof(keyfd), "%d", SPAWN_KEY_FD);
    char *argv[SESSION_ARGV_MAX];
    size_t a = 0;
    argv[a++] = "ff-gitd";
    if (receive) {
        char *const more[] = {
            "receive-pack",    "--max-pack-bytes",         bytes,    "--max-objects", objects,
            "--deploy-branch", (char *)acc->deploy_branch, "--gate", "builder"};
        for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
            argv[a++] = more[i];
    } else {
        argv[a++] = "upload-pack";
    }
    argv[a++] = (char *)repo;
    argv[a] = NULL;

    char *env[SESSION_ENV_MAX] = {NULL};
    size_t n = 0;
    int rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_USER, c->user.name);
    if (rc == 0)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_APP, app);
    if (rc == 0)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_REQID, c->reqid);
    if (rc == 0)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_LOG_FD, logfd);
    if (rc == 0)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_LOG_LEVEL, level_name(cfg->log_level));
    if (rc == 0 && receive)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_BUILDER_URL, cfg->builder_url);
    if (rc == 0 && receive && cfg->builder_ca != NULL)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_BUILDER_CA, cfg->builder_ca);
    if (rc == 0 && receive)
        rc = env_add(env, &n, SESSION_ENV_MAX, SPAWN_ENV_KEY_FD, keyfd);
    int status = 1;
    struct ff_err e;
    ff_err_clear(&e);
    /* From here on this process only moves bytes: what it held for the
     * builder goes (the receive-pack child gets the key through a pipe,
     * and spawn_run wipes it once written). */
    builder_client_free(c->srv->builder);
    c->srv->builder = NULL;
    if (!receive)
        ff_secret_wipe(c->srv->service_key, strlen(c->srv->service_key));
    if (rc == 0) {
        struct spawn_spec spec = {
            .argv = argv,
            .envp = env,
            .key = receive ? c->srv->service_key : NULL,
            .idle_timeout_s = cfg->idle_timeout_s,
            .reqid = c->reqid,
        };
        rc = spawn_run(c->ssh, c->event, c->chan, &spec, &status, &e);
    } else {
        ff_err_set(&e, rc, "environment of the git program: %s", ff_err_name(rc));
    }
    for (size_t i = 0; i < n; i++)
        free(env[i]);
    if (rc == FF_ETIMEOUT) {
        say(c, "ff-gitd: nothing moved for %u s: session closed\n", cfg->idle_timeout_s);
        ff_log_info(c->reqid, "session.idle", "user=%s app=%s", c->user.name, app);
        return status >= 0 ? status : 1;
    }
    if (rc != 0) {
        ff_log_error(c->reqid, "session.failed", "user=%s app=%s error=%s", c->user.name, app,
                     e.msg);
        say(c, "ff-gitd: internal error (request %s)\n", c->reqid);
        return status > 0 ? status : 1;
    }
    return status;
}

/* The directory the repository of owner lives in; receive-pack creates the
 * repository itself, not its parent. */
static int owner_dir(const char *repos, const char *owner, struct ff_err *err)
{
    char *dir = ff_asprintf("%s/%s", repos, owner);
    if (dir == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        rc = ff_err_set(err, FF_EIO, "directory \"%s\": %s", dir, strerror(errno));
    free(dir);
    return rc;
}

static int run_exec(struct conn *c)
{
    const struct gitd_config *cfg = c->srv->cfg;
    struct command cmd;
    struct ff_err e;
    ff_err_clear(&e);
    if (command_parse(c->command, strlen(c->command), &cmd, &e) != 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(c->command, strlen(c->command), q);
        say(c, "ff-gitd: %s\n", e.msg);
        ff_log_info(c->reqid, "session.refused", "user=%s command=%s reason=command", c->user.name,
                    q);
        return 1;
    }
    struct builder_access acc;
    if (authorize(c, &cmd, &acc) != 0)
        return 1;
    int slot = -1;
    int rc = slot_take(&slot, cfg->run_dir, "user", c->user.name, cfg->sessions_per_user, &e);
    if (rc != 0) {
        if (rc == FF_EBUSY)
            say(c,
                "ff-gitd: too many sessions for %s (at most %u at once); try again when one "
                "has ended\n",
                c->user.name, cfg->sessions_per_user);
        else
            say(c, "ff-gitd: internal error (request %s)\n", c->reqid);
        ff_log_warn(c->reqid, "session.refused", "user=%s reason=user_limit error=%s", c->user.name,
                    e.msg);
        return 1;
    }
    char *repo = ff_asprintf("%s/%s/%s.git", cfg->repos, cmd.owner, cmd.app);
    int status = 1;
    struct stat st;
    if (repo == NULL) {
        say(c, "ff-gitd: internal error (request %s)\n", c->reqid);
    } else if (cmd.verb == COMMAND_UPLOAD_PACK && stat(repo, &st) != 0) {
        say(c, "ff-gitd: %s/%s has no commits yet: push to it first\n", cmd.owner, cmd.app);
        ff_log_info(c->reqid, "session.refused", "user=%s app=%s/%s reason=empty", c->user.name,
                    cmd.owner, cmd.app);
    } else if (cmd.verb == COMMAND_RECEIVE_PACK && owner_dir(cfg->repos, cmd.owner, &e) != 0) {
        ff_log_error(c->reqid, "session.failed", "user=%s error=%s", c->user.name, e.msg);
        say(c, "ff-gitd: internal error (request %s)\n", c->reqid);
    } else {
        ff_log_info(c->reqid, "session.command", "user=%s app=%s/%s command=%s access=%s",
                    c->user.name, cmd.owner, cmd.app, command_verb_name(cmd.verb), acc.access);
        status = run_git(c, &cmd, &acc, repo);
    }
    free(repo);
    (void)close(slot);
    return status;
}

/* Exit status, EOF and close; then a moment for the client to close its
 * side, so that it ends on our close rather than on a disconnect. */
static void finish(struct conn *c, int status)
{
    if (c->chan == NULL || status < 0 || closed(c) || ssh_channel_is_closed(c->chan))
        return;
    (void)ssh_channel_request_send_exit_status(c->chan, status);
    (void)ssh_channel_send_eof(c->chan);
    (void)ssh_channel_close(c->chan);
    int64_t deadline = now_ms() + SESSION_CLOSE_WAIT_MS;
    for (int64_t left = SESSION_CLOSE_WAIT_MS; left > 0 && !closed(c); left = deadline - now_ms())
        (void)ssh_event_dopoll(c->event, (int)left);
}

int session_serve(struct sshd *srv, int fd, const char *peer)
{
    const struct gitd_config *cfg = srv->cfg;
    struct conn c;
    memset(&c, 0, sizeof(c));
    c.srv = srv;
    c.peer = peer;
    ff_log_reqid_new(c.reqid);
    /* The whole of authentication and the choice of a command must fit in
     * the auth timeout; SIGALRM's default action ends the process. */
    (void)alarm(cfg->auth_timeout_s);
    int addr_slot = -1, status = -1;
    struct ff_err e;
    ff_err_clear(&e);
    int rc = slot_take(&addr_slot, cfg->run_dir, "addr", peer, cfg->sessions_per_address, &e);
    if (rc == FF_EBUSY) {
        c.over_limit = true;
    } else if (rc != 0) {
        ff_log_error(c.reqid, "session.failed", "peer=%s error=%s", peer, e.msg);
        (void)close(fd);
        return 1;
    }
    ff_log_debug(c.reqid, "session.start", "peer=%s", peer);
    /* The longest any blocking libssh call may wait on the client: past the
     * alarm while authenticating, the idle timeout after. */
    long wait_s = (long)cfg->auth_timeout_s + 1;
    c.ssh = ssh_new();
    if (c.ssh == NULL || ssh_options_set(c.ssh, SSH_OPTIONS_TIMEOUT, &wait_s) != SSH_OK ||
        ssh_bind_accept_fd(srv->bind, c.ssh, fd) != SSH_OK) {
        ff_log_error(c.reqid, "session.failed", "peer=%s error=%s", peer,
                     c.ssh != NULL ? ssh_get_error(c.ssh) : "out of memory");
        goto out;
    }
    /* The session has its own copy of the host key now (libssh needs it
     * for key re-exchanges); the listener's copy goes. */
    ssh_bind_free(srv->bind);
    srv->bind = NULL;
    ssh_callbacks_init(&c.server_cb);
    c.server_cb.userdata = &c;
    c.server_cb.auth_pubkey_function = on_auth_pubkey;
    (void)ssh_set_server_callbacks(c.ssh, &c.server_cb);
    ssh_set_message_callback(c.ssh, on_message, &c);
    ssh_set_auth_methods(c.ssh, SSH_AUTH_METHOD_PUBLICKEY);
    if (ssh_handle_key_exchange(c.ssh) != SSH_OK) {
        ff_log_info(c.reqid, "session.kex_failed", "peer=%s error=%s", peer, ssh_get_error(c.ssh));
        goto out;
    }
    c.event = ssh_event_new();
    if (c.event == NULL || ssh_event_add_session(c.event, c.ssh) != SSH_OK) {
        ff_log_error(c.reqid, "session.failed", "peer=%s error=event", peer);
        goto out;
    }
    negotiate(&c);
    (void)alarm(0);
    wait_s = (long)cfg->idle_timeout_s;
    (void)ssh_options_set(c.ssh, SSH_OPTIONS_TIMEOUT, &wait_s);
    if (c.phase == PHASE_SHELL)
        status = run_shell(&c);
    else if (c.phase == PHASE_EXEC)
        status = run_exec(&c);
    finish(&c, status);
    if (c.over_limit && !closed(&c))
        ssh_disconnect(c.ssh);
out:
    if (c.event != NULL && c.ssh != NULL)
        (void)ssh_event_remove_session(c.event, c.ssh);
    if (c.event != NULL)
        ssh_event_free(c.event);
    if (c.chan != NULL)
        ssh_channel_free(c.chan);
    if (c.ssh != NULL) {
        ssh_silent_disconnect(c.ssh);
        ssh_free(c.ssh);
    }
    free(c.cached_fp);
    free(c.command);
    if (addr_slot >= 0)
        (void)close(addr_slot);
    ff_log_info(c.reqid, "session.end", "peer=%s user=%s status=%d", peer,
                c.authenticated ? c.user.name : "-", status);
    return status == 0 ? 0 : 1;
}
