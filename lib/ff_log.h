/* One line per event, key=value pairs, to stderr:
 *
 *   2026-11-22T03:20:00.123Z info ff-registry event=blob.put req=9f2c… repo=app/x bytes=512
 *
 * The format string is printf-like but restricted to key=%conv pairs; every
 * %s value is quoted and escaped when it holds spaces, quotes, '=' or control
 * characters, so hostile input cannot forge a line or a key. A value whose
 * key names a secret (password, secret, token, authorization, cookie,
 * private, key; not *_id, *_fp, *_name, kid) is written as "[redacted]", so
 * a careless call cannot leak one. Supported conversions: %s %.*s %c %d %i
 * %u %x with l, ll, z, j modifiers, and %%. Anything else prints "?". */
#ifndef FF_LOG_H
#define FF_LOG_H

#include <stddef.h>

enum ff_log_level {
    FF_LOG_DEBUG = 0,
    FF_LOG_INFO = 1,
    FF_LOG_WARN = 2,
    FF_LOG_ERROR = 3
};

/* Longest line written; longer lines end in "..." and truncated=1. */
#define FF_LOG_LINE_MAX 8192
/* Longest single value kept before it is clipped with "...". */
#define FF_LOG_VALUE_MAX 1024
/* Size of a request id buffer: 16 hex characters and a NUL. */
#define FF_LOG_REQID_SIZE 17

/* Sets the role written on every line (e.g. "ff-registry") and the lowest
 * level written. Call once at start-up, before threads start. */
void ff_log_open(const char *role, enum ff_log_level min_level);

/* Sends lines to fd instead of stderr (tests capture this way). */
void ff_log_set_fd(int fd);

/* Parses "debug", "info", "warn" or "error". Returns 0 or FF_EINVAL. */
int ff_log_level_parse(const char *s, enum ff_log_level *out);

/* Fills out with a fresh random request id. */
void ff_log_reqid_new(char out[FF_LOG_REQID_SIZE]);

/* Writes one line. reqid may be NULL; fmt holds the key=value pairs and
 * may be empty (""). Never fails: a line that cannot be built is dropped. */
void ff_log_write(enum ff_log_level level, const char *reqid, const char *event,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define ff_log_debug(reqid, event, ...) ff_log_write(FF_LOG_DEBUG, reqid, event, __VA_ARGS__)
#define ff_log_info(reqid, event, ...) ff_log_write(FF_LOG_INFO, reqid, event, __VA_ARGS__)
#define ff_log_warn(reqid, event, ...) ff_log_write(FF_LOG_WARN, reqid, event, __VA_ARGS__)
#define ff_log_error(reqid, event, ...) ff_log_write(FF_LOG_ERROR, reqid, event, __VA_ARGS__)

#endif
