/* Growable byte buffer with a mandatory maximum size (after curl's dynbuf).
 *
 * Every buffer that may hold outside data has a cap, so a hostile peer
 * cannot make us allocate without bound. The content is always followed by
 * a NUL byte (not counted in len) so text can be used as a C string. */
#ifndef FF_BUF_H
#define FF_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct ff_buf {
    char *data;  /* NULL until the first append */
    size_t len;  /* bytes in use, excluding the trailing NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* largest len allowed */
};

/* Prepares an empty buffer that may grow to max bytes. */
void ff_buf_init(struct ff_buf *b, size_t max);

/* Frees the content; the buffer may be reused after ff_buf_init. */
void ff_buf_release(struct ff_buf *b);

/* Empties the buffer but keeps its allocation. */
void ff_buf_reset(struct ff_buf *b);

/* Appends n bytes. Returns 0, FF_ETOOBIG (content unchanged) if len would
 * pass max, or FF_ENOMEM. */
int ff_buf_append(struct ff_buf *b, const void *p, size_t n);

/* Appends a C string; same errors as ff_buf_append. */
int ff_buf_append_str(struct ff_buf *b, const char *s);

/* Appends printf-formatted text; same errors as ff_buf_append, and
 * FF_EINVAL for a bad format. On error the content is unchanged. */
int ff_buf_printf(struct ff_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int ff_buf_vprintf(struct ff_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Hands the content (NUL-terminated, never NULL: "" when empty) to the
 * caller, who frees it with free(); the buffer is left empty. Returns NULL
 * only when out of memory. */
char *ff_buf_steal(struct ff_buf *b);

#endif
