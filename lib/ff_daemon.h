/* What every Fleetforge daemon does the same way at start-up: the common
 * flags (-f FILE config, -n check config and exit, -d foreground debug),
 * fatal() for start-up failures, signal handling in one thread, and the
 * privilege drop (after opening sockets and keys, before reading any
 * untrusted input). */
#ifndef FF_DAEMON_H
#define FF_DAEMON_H

#include "ff_conf.h"
#include "ff_err.h"
#include "ff_http_server.h"
#include "ff_log.h"

#include <signal.h>
#include <stdbool.h>

struct ff_daemon_opts {
    const char *config_path; /* -f FILE; NULL when not given */
    bool check_only;         /* -n: check the configuration and exit */
    bool debug;              /* -d: debug logging */
    int argc;                /* operands after the options (subcommand …) */
    char **argv;
};

/* Parses the common flags of argv; operands are left in out->argc/argv
 * (pointing into argv). Returns 0, or FF_EINVAL with a message for an
 * unknown option or a missing argument. -h is FF_EINVAL with "help" so the
 * caller prints usage. */
int ff_daemon_parse_args(int argc, char **argv, struct ff_daemon_opts *out, struct ff_err *err);

/* Start-up failures only (bad config, cannot bind): logs one error line
 * with event=fatal and exits 1. Never call it once serving. */
void ff_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Blocks SIGTERM, SIGINT and SIGHUP (and ignores SIGPIPE) in the calling
 * thread, so that threads created afterwards inherit the mask and only
 * ff_daemon_signal_wait sees them. Call before starting any thread. */
void ff_daemon_signals_block(void);

/* Waits for SIGTERM, SIGINT or SIGHUP and returns its number. */
int ff_daemon_signal_wait(void);

/* When running as root: switches to user (supplementary groups cleared,
 * real, effective and saved ids changed) and checks that root cannot be
 * regained. Always sets PR_SET_NO_NEW_PRIVS. user NULL or not running as
 * root: only NO_NEW_PRIVS. Errors: FF_ENOTFOUND (no such user), FF_EIO. */
int ff_daemon_drop_privileges(const char *user, struct ff_err *err);

/* Reads [log] level of a daemon's configuration into *out. Errors:
 * FF_EINVAL naming path and the value when it is not debug, info, warn or
 * error. */
int ff_daemon_log_level(const struct ff_conf *conf, const char *path, enum ff_log_level *out,
                        struct ff_err *err);

/* Fills cfg (after ff_http_server_config_init) from the [server] keys every
 * HTTPS daemon declares: listen, port, cert, key, max_connections,
 * max_per_ip and timeout. */
void ff_daemon_http_config(const struct ff_conf *conf, struct ff_http_server_config *cfg);

#endif
