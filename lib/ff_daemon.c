#include "ff_daemon.h"

#include "ff_log.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int ff_daemon_parse_args(int argc, char **argv, struct ff_daemon_opts *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-f") == 0) {
            if (i + 1 >= argc)
                return ff_err_set(err, FF_EINVAL, "option -f needs a file name");
            out->config_path = argv[++i];
        } else if (strcmp(a, "-n") == 0) {
            out->check_only = true;
        } else if (strcmp(a, "-d") == 0) {
            out->debug = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return ff_err_set(err, FF_EINVAL, "help");
        } else {
            return ff_err_set(err, FF_EINVAL, "unknown option \"%s\"", a);
        }
    }
    out->argc = argc - i;
    out->argv = argv + i;
    return 0;
}

void ff_fatal(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ff_log_error(NULL, "fatal", "error=%s", msg);
    exit(1);
}

void ff_daemon_signals_block(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
}

int ff_daemon_signal_wait(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}

int ff_daemon_log_level(const struct ff_conf *conf, const char *path, enum ff_log_level *out,
                        struct ff_err *err)
{
    const char *level = ff_conf_string(conf, "log", "level");
    if (level == NULL || ff_log_level_parse(level, out) != 0)
        return ff_err_set(err, FF_EINVAL, "config \"%s\": [log] level: \"%s\" is not debug, "
                          "info, warn or error", path, level != NULL ? level : "");
    return 0;
}

void ff_daemon_http_config(const struct ff_conf *conf, struct ff_http_server_config *cfg)
{
    ff_http_server_config_init(cfg);
    cfg->bind_addr = ff_conf_string(conf, "server", "listen");
    cfg->port = (uint16_t)ff_conf_int(conf, "server", "port");
    cfg->cert_path = ff_conf_string(conf, "server", "cert");
    cfg->key_path = ff_conf_string(conf, "server", "key");
    cfg->max_connections = (unsigned)ff_conf_int(conf, "server", "max_connections");
    cfg->max_per_ip = (unsigned)ff_conf_int(conf, "server", "max_per_ip");
    cfg->timeout_seconds = (unsigned)ff_conf_int(conf, "server", "timeout");
}

int ff_daemon_drop_privileges(const char *user, struct ff_err *err)
{
    if (user != NULL && geteuid() == 0) {
        errno = 0;
        struct passwd *pw = getpwnam(user);
        if (pw == NULL)
            return ff_err_set(err, FF_ENOTFOUND, "drop privileges: no user \"%s\"", user);
        uid_t uid = pw->pw_uid;
        gid_t gid = pw->pw_gid;
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0)
            return ff_err_set(err, FF_EIO, "drop privileges to \"%s\": %s", user,
                              strerror(errno));
        /* If this succeeds, the drop did not take, and we must not go on. */
        if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
            return ff_err_set(err, FF_EIO, "drop privileges to \"%s\": root regained", user);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return ff_err_set(err, FF_EIO, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    return 0;
}
