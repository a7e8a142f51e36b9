#include "ff_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ff_err_set(struct ff_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        err->msg[0] = '\0';
    return code;
}

int ff_err_wrap(struct ff_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return FF_EINVAL;
    char prefix[FF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (n < 0)
        return err->code;
    char joined[FF_ERR_MSG_MAX];
    n = snprintf(joined, sizeof(joined), "%s: %s", prefix, err->msg);
    if (n >= 0)
        memcpy(err->msg, joined, sizeof(err->msg));
    return err->code;
}

void ff_err_clear(struct ff_err *err)
{
    if (err == NULL)
        return;
    err->code = FF_OK;
    err->msg[0] = '\0';
}

const char *ff_err_name(int code)
{
    switch (code) {
    case FF_OK: return "OK";
    case FF_EINVAL: return "EINVAL";
    case FF_ENOMEM: return "ENOMEM";
    case FF_EIO: return "EIO";
    case FF_ENOTFOUND: return "ENOTFOUND";
    case FF_EEXIST: return "EEXIST";
    case FF_ETOOBIG: return "ETOOBIG";
    case FF_EAUTH: return "EAUTH";
    case FF_EDENIED: return "EDENIED";
    case FF_ECRYPTO: return "ECRYPTO";
    case FF_ETIMEOUT: return "ETIMEOUT";
    case FF_EBUSY: return "EBUSY";
    case FF_ERANGE: return "ERANGE";
    case FF_EEXPIRED: return "EEXPIRED";
    case FF_ENET: return "ENET";
    case FF_EDB: return "EDB";
    case FF_ECONFLICT: return "ECONFLICT";
    default: return "EUNKNOWN";
    }
}

void ff_bug(const char *file, int line, const char *msg)
{
    (void)fprintf(stderr, "BUG at %s:%d: %s\n", file, line, msg);
    abort();
}
