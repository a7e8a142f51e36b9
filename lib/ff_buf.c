#include "ff_buf.h"

#include "ff_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ff_buf_init(struct ff_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void ff_buf_release(struct ff_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void ff_buf_reset(struct ff_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for need more bytes plus the NUL terminator. */
static int buf_reserve(struct ff_buf *b, size_t need)
{
    size_t want;
    if (__builtin_add_overflow(b->len, need, &want) || want > b->max)
        return FF_ETOOBIG;
    if (want + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < want + 1) {
        if (__builtin_mul_overflow(ncap, (size_t)2, &ncap))
            return FF_ETOOBIG;
    }
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    char *p = realloc(b->data, ncap);
    if (p == NULL)
        return FF_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int ff_buf_append(struct ff_buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ff_buf_append_str(struct ff_buf *b, const char *s)
{
    return ff_buf_append(b, s, strlen(s));
}

int ff_buf_vprintf(struct ff_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return FF_EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc != 0)
        return rc;
    (void)vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int ff_buf_printf(struct ff_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ff_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *ff_buf_steal(struct ff_buf *b)
{
    char *p = b->data;
    if (p == NULL)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
