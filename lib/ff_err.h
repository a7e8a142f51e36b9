/* Error codes and messages shared by every Fleetforge module.
 *
 * Run-time failures are returned as 0 or a negative FF_E* code; the callee
 * also fills a struct ff_err (when the caller passed one) with a message that
 * says what failed, on what, and what was expected. The layer that decides
 * what to do with the failure logs it once. */
#ifndef FF_ERR_H
#define FF_ERR_H

#include <stddef.h>

enum {
    FF_OK = 0,
    FF_EINVAL = -1,    /* input from outside is malformed */
    FF_ENOMEM = -2,    /* allocation failed */
    FF_EIO = -3,       /* file system or socket failure */
    FF_ENOTFOUND = -4, /* the named thing does not exist */
    FF_EEXIST = -5,    /* it exists already */
    FF_ETOOBIG = -6,   /* a size limit was exceeded */
    FF_EAUTH = -7,     /* credentials missing, malformed or wrong */
    FF_EDENIED = -8,   /* authenticated, but not allowed */
    FF_ECRYPTO = -9,   /* a cryptographic operation failed */
    FF_ETIMEOUT = -10, /* a deadline passed */
    FF_EBUSY = -11,    /* a resource is busy; retrying later may work */
    FF_ERANGE = -12,   /* a number is outside its allowed range */
    FF_EEXPIRED = -13, /* a token, key or session is no longer valid */
    FF_ENET = -14,     /* a network peer failed or answered wrongly */
    FF_EDB = -15,      /* the database failed */
    FF_ECONFLICT = -16 /* a concurrent change won, or state forbids it */
};

/* Longest message kept; longer messages are truncated, never overflowed. */
#define FF_ERR_MSG_MAX 512

struct ff_err {
    int code;
    char msg[FF_ERR_MSG_MAX];
};

/* Records code and a printf-style message in err (which may be NULL) and
 * returns code, so that `return ff_err_set(err, FF_EINVAL, "...")` reads
 * naturally. */
int ff_err_set(struct ff_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with "<fmt>: " to add context as an
 * error travels up; returns err->code (or FF_EINVAL when err is NULL). */
int ff_err_wrap(struct ff_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets err to FF_OK with an empty message. NULL-safe. */
void ff_err_clear(struct ff_err *err);

/* Short stable name of a code ("EINVAL"), for logs. Never NULL. */
const char *ff_err_name(int code);

/* Programmer errors: abort with file and line. Never for outside input. */
#define FF_BUG(msg) ff_bug(__FILE__, __LINE__, (msg))
void ff_bug(const char *file, int line, const char *msg) __attribute__((noreturn));

#endif
