#include "ff_log.h"

#include "ff_buf.h"
#include "ff_err.h"
#include "ff_str.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static char log_role[64] = "ff";
static enum ff_log_level log_min = FF_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ff_log_open(const char *role, enum ff_log_level min_level)
{
    ff_strlcpy(log_role, role, sizeof(log_role));
    log_min = min_level;
}

void ff_log_set_fd(int fd)
{
    log_fd = fd;
}

int ff_log_level_parse(const char *s, enum ff_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum ff_log_level)i;
            return 0;
        }
    }
    return FF_EINVAL;
}

void ff_log_reqid_new(char out[FF_LOG_REQID_SIZE])
{
    unsigned char raw[(FF_LOG_REQID_SIZE - 1) / 2];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            FF_BUG("getrandom failed");
        got += (size_t)n;
    }
    ff_hex_encode(raw, sizeof(raw), out);
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t sl = strlen(suffix);
    return n >= sl && memcmp(s + n - sl, suffix, sl) == 0;
}

/* Whether a key names a secret whose value must never reach a log. */
static bool key_is_secret(const char *key, size_t len)
{
    char k[64];
    size_t n = len < sizeof(k) ? len : sizeof(k) - 1;
    for (size_t i = 0; i < n; i++)
        k[i] = (char)tolower((unsigned char)key[i]);
    k[n] = '\0';
    static const char *const safe_suffix[] = {"_id", "_fp", "_name", "kid"};
    for (size_t i = 0; i < sizeof(safe_suffix) / sizeof(safe_suffix[0]); i++) {
        if (ends_with(k, n, safe_suffix[i]))
            return false;
    }
    static const char *const secret_words[] = {"password", "passwd", "secret", "token",
                                               "authorization", "cookie", "private"};
    for (size_t i = 0; i < sizeof(secret_words) / sizeof(secret_words[0]); i++) {
        if (strstr(k, secret_words[i]) != NULL)
            return true;
    }
    return strcmp(k, "key") == 0 || ends_with(k, n, "_key");
}

static bool needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return true;
    }
    return false;
}

static void append_value(struct ff_buf *b, const char *s, size_t n)
{
    bool clipped = false;
    if (s == NULL) {
        s = "(null)";
        n = 6;
    }
    if (n > FF_LOG_VALUE_MAX) {
        n = FF_LOG_VALUE_MAX;
        clipped = true;
    }
    if (!needs_quotes(s, n)) {
        ff_buf_append(b, s, n);
    } else {
        ff_buf_append(b, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '"' || c == '\\') {
                char esc[2] = {'\\', (char)c};
                ff_buf_append(b, esc, 2);
            } else if (c == '\n') {
                ff_buf_append(b, "\\n", 2);
            } else if (c == '\t') {
                ff_buf_append(b, "\\t", 2);
            } else if (c < ' ' || c == 0x7f) {
                ff_buf_printf(b, "\\x%02x", c);
            } else {
                ff_buf_append(b, &s[i], 1);
            }
        }
        ff_buf_append(b, "\"", 1);
    }
    if (clipped)
        ff_buf_append(b, "...", 3);
}

enum length_mod { LEN_NONE, LEN_L, LEN_LL, LEN_Z, LEN_J };

/* Formats one integer conversion into tmp from the va_list. */
static void format_int(char *tmp, size_t size, char conv, enum length_mod mod, va_list *ap)
{
    bool is_signed = conv == 'd' || conv == 'i';
    /* Each modifier reads its own type even where two types share a size
     * (long and ssize_t on LP64): va_arg must name the type passed. */
    if (is_signed) {
        intmax_t v;
        switch (mod) {
        case LEN_L: v = va_arg(*ap, long); break;
        case LEN_LL: v = va_arg(*ap, long long); break;
        case LEN_Z: v = va_arg(*ap, ssize_t); break; // NOLINT(bugprone-branch-clone)
        case LEN_J: v = va_arg(*ap, intmax_t); break;
        default: v = va_arg(*ap, int); break;
        }
        (void)snprintf(tmp, size, "%" PRIdMAX, v);
        return;
    }
    uintmax_t v;
    switch (mod) {
    case LEN_L: v = va_arg(*ap, unsigned long); break;
    case LEN_LL: v = va_arg(*ap, unsigned long long); break;
    case LEN_Z: v = va_arg(*ap, size_t); break; // NOLINT(bugprone-branch-clone)
    case LEN_J: v = va_arg(*ap, uintmax_t); break;
    default: v = va_arg(*ap, unsigned int); break;
    }
    (void)snprintf(tmp, size, conv == 'x' ? "%" PRIxMAX : "%" PRIuMAX, v);
}

/* Walks fmt, escaping every value and redacting secret keys. */
static void format_pairs(struct ff_buf *b, const char *fmt, va_list *ap)
{
    const char *key_start = fmt;
    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p == ' ')
            key_start = p + 1;
        if (*p != '%') {
            ff_buf_append(b, p, 1);
            continue;
        }
        p++;
        if (*p == '%') {
            ff_buf_append(b, "%", 1);
            continue;
        }
        const char *eq = memchr(key_start, '=', (size_t)(p - key_start));
        bool secret = eq != NULL && key_is_secret(key_start, (size_t)(eq - key_start));
        int precision = -1;
        if (p[0] == '.' && p[1] == '*') {
            precision = va_arg(*ap, int);
            p += 2;
        }
        enum length_mod mod = LEN_NONE;
        if (p[0] == 'l' && p[1] == 'l') {
            mod = LEN_LL;
            p += 2;
        } else if (*p == 'l') {
            mod = LEN_L;
            p++;
        } else if (*p == 'z') {
            mod = LEN_Z;
            p++;
        } else if (*p == 'j') {
            mod = LEN_J;
            p++;
        }
        char tmp[32];
        const char *val = tmp;
        size_t vlen;
        switch (*p) {
        case 's': {
            const char *s = va_arg(*ap, const char *);
            val = s;
            if (s == NULL)
                vlen = 0;
            else if (precision >= 0)
                vlen = strnlen(s, (size_t)precision);
            else
                vlen = strlen(s);
            break;
        }
        case 'c':
            tmp[0] = (char)va_arg(*ap, int);
            vlen = 1;
            break;
        case 'd':
        case 'i':
        case 'u':
        case 'x':
            format_int(tmp, sizeof(tmp), *p, mod, ap);
            vlen = strlen(tmp);
            break;
        case '\0':
            return;
        default:
            /* Unknown conversions cannot be skipped safely: stop here. */
            ff_buf_append(b, "?", 1);
            return;
        }
        if (secret)
            ff_buf_append_str(b, "[redacted]");
        else
            append_value(b, val, vlen);
    }
}

void ff_log_write(enum ff_log_level level, const char *reqid, const char *event,
                  const char *fmt, ...)
{
    if (level < log_min || level > FF_LOG_ERROR)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40];
    (void)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    struct ff_buf b;
    ff_buf_init(&b, FF_LOG_LINE_MAX);
    ff_buf_printf(&b, "%s.%03ldZ %s %s event=", stamp, ts.tv_nsec / 1000000L,
                  level_names[level], log_role);
    append_value(&b, event, event != NULL ? strlen(event) : 0);
    if (reqid != NULL) {
        ff_buf_append_str(&b, " req=");
        append_value(&b, reqid, strlen(reqid));
    }
    if (fmt[0] != '\0') {
        ff_buf_append(&b, " ", 1);
        va_list ap;
        va_start(ap, fmt);
        format_pairs(&b, fmt, &ap);
        va_end(ap);
    }
    if (b.len + 16 >= b.max) {
        b.len = b.max - 16;
        ff_buf_append_str(&b, "... truncated=1");
    }
    if (ff_buf_append(&b, "\n", 1) != 0 && b.data != NULL)
        b.data[b.len - 1] = '\n';
    if (b.data != NULL) {
        /* One write per line keeps concurrent lines from interleaving. */
        ssize_t n = write(log_fd, b.data, b.len);
        (void)n;
    }
    ff_buf_release(&b);
}
