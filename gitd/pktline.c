/* pkt-line framing and side-band multiplexing (gitprotocol-common,
 * gitprotocol-pack), over a stream the SSH layer or stdio provides. Every
 * length is checked before anything is read into memory. */
#include "gitd.h"

#include "ff_str.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ssize_t fds_read(void *ctx, void *buf, size_t n)
{
    const struct gitd_fds *fds = ctx;
    for (;;) {
        ssize_t got = read(fds->in, buf, n);
        if (got >= 0 || errno != EINTR)
            return got;
    }
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            return -1;
        p += put;
        n -= (size_t)put;
    }
    return 0;
}

static int fds_write(void *ctx, const void *buf, size_t n)
{
    const struct gitd_fds *fds = ctx;
    return write_all(fds->out, buf, n);
}

static int fds_write_err(void *ctx, const void *buf, size_t n)
{
    const struct gitd_fds *fds = ctx;
    if (fds->err < 0)
        return 0;
    return write_all(fds->err, buf, n);
}

void pktline_stream_fds(struct gitd_stream *s, struct gitd_fds *fds)
{
    s->read = fds_read;
    s->write = fds_write;
    s->write_err = fds_write_err;
    s->ctx = fds;
}

int pktline_init(struct pktline *p, const struct gitd_stream *stream, struct ff_err *err)
{
    memset(p, 0, sizeof(*p));
    p->stream = stream;
    p->in = malloc(PKTLINE_READ_BUF);
    p->line = malloc(PKTLINE_DATA_MAX + 1);
    if (p->in == NULL || p->line == NULL) {
        pktline_release(p);
        return ff_err_set(err, FF_ENOMEM, "pkt-line buffers: out of memory");
    }
    return 0;
}

void pktline_release(struct pktline *p)
{
    free(p->in);
    free(p->line);
    p->in = NULL;
    p->line = NULL;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pktline_parse_length(const unsigned char hdr[4], enum pktline_kind *kind,
                         size_t *payload_len, struct ff_err *err)
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        int v = hex_value(hdr[i]);
        if (v < 0) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote((const char *)hdr, 4, q);
            return ff_err_set(err, FF_EINVAL,
                              "pkt-line length \"%s\" is not four hex digits", q);
        }
        n = n * 16 + (size_t)v;
    }
    *payload_len = 0;
    switch (n) {
    case 0:
        *kind = PKTLINE_FLUSH;
        return 0;
    case 1:
        *kind = PKTLINE_DELIM;
        return 0;
    case 2:
        *kind = PKTLINE_RESPONSE_END;
        return 0;
    case 3:
        return ff_err_set(err, FF_EINVAL,
                          "pkt-line length 0003 is invalid (expected 0000, 0001, 0002 or "
                          "0004 to %04x)", PKTLINE_MAX);
    default:
        break;
    }
    if (n > PKTLINE_MAX)
        return ff_err_set(err, FF_EINVAL, "pkt-line length %zu is over the limit of %d", n,
                          PKTLINE_MAX);
    *kind = PKTLINE_DATA;
    *payload_len = n - 4;
    return 0;
}

/* Makes at least want bytes available in the read-ahead buffer, or fewer
 * at end of input (*have says how many). */
static int fill(struct pktline *p, size_t want, size_t *have, struct ff_err *err)
{
    *have = 0;
    if (p->in_pos > 0 && p->in_len - p->in_pos < want) {
        memmove(p->in, p->in + p->in_pos, p->in_len - p->in_pos);
        p->in_len -= p->in_pos;
        p->in_pos = 0;
    }
    while (p->in_len - p->in_pos < want && !p->in_eof) {
        ssize_t got = p->stream->read(p->stream->ctx, p->in + p->in_len,
                                      PKTLINE_READ_BUF - p->in_len);
        if (got < 0)
            return ff_err_set(err, FF_EIO, "reading from the client: %s", strerror(errno));
        if (got == 0)
            p->in_eof = true;
        p->in_len += (size_t)got;
    }
    *have = p->in_len - p->in_pos;
    return 0;
}

int pktline_read(struct pktline *p, enum pktline_kind *kind, size_t *len, struct ff_err *err)
{
    size_t have = 0;
    int rc = fill(p, 4, &have, err);
    if (rc != 0)
        return rc;
    *len = 0;
    if (have == 0) {
        *kind = PKTLINE_EOF;
        return 0;
    }
    if (have < 4)
        return ff_err_set(err, FF_EINVAL,
                          "input ends inside a pkt-line length (%zu of 4 digits)", have);
    size_t n = 0;
    rc = pktline_parse_length(p->in + p->in_pos, kind, &n, err);
    if (rc != 0)
        return rc;
    p->in_pos += 4;
    if (*kind != PKTLINE_DATA)
        return 0;
    rc = fill(p, n, &have, err);
    if (rc != 0)
        return rc;
    if (have < n)
        return ff_err_set(err, FF_EINVAL,
                          "input ends inside a pkt-line (%zu of %zu payload bytes)", have, n);
    memcpy(p->line, p->in + p->in_pos, n);
    p->line[n] = '\0';
    p->in_pos += n;
    *len = n;
    return 0;
}

int pktline_read_raw(struct pktline *p, void *buf, size_t cap, size_t *n, struct ff_err *err)
{
    size_t have = 0;
    int rc = fill(p, 1, &have, err);
    if (rc != 0)
        return rc;
    if (have > cap)
        have = cap;
    memcpy(buf, p->in + p->in_pos, have);
    p->in_pos += have;
    *n = have;
    return 0;
}

static int send_raw(struct pktline *p, const void *data, size_t len, struct ff_err *err)
{
    if (p->out_failed)
        return ff_err_set(err, FF_EIO, "the client is gone");
    if (p->stream->write(p->stream->ctx, data, len) != 0) {
        p->out_failed = true;
        return ff_err_set(err, FF_EIO, "writing to the client: %s", strerror(errno));
    }
    return 0;
}

/* Sends one pkt-line made of an optional band byte and len bytes of data.
 * The frame is assembled first so a pkt-line is one write. */
static int send_frame(struct pktline *p, int band, const void *data, size_t len,
                      struct ff_err *err)
{
    size_t head = band > 0 ? 5 : 4;
    if (len > PKTLINE_MAX - head)
        FF_BUG("pkt-line frame larger than PKTLINE_MAX");
    char *frame = malloc(head + len);
    if (frame == NULL)
        return ff_err_set(err, FF_ENOMEM, "pkt-line: out of memory");
    char digits[5];
    (void)snprintf(digits, sizeof(digits), "%04zx", head + len);
    memcpy(frame, digits, 4);
    if (band > 0)
        frame[4] = (char)band;
    if (len > 0)
        memcpy(frame + head, data, len);
    int rc = send_raw(p, frame, head + len, err);
    free(frame);
    return rc;
}

int pktline_write_raw(struct pktline *p, const void *data, size_t len, struct ff_err *err)
{
    return send_raw(p, data, len, err);
}

int pktline_write(struct pktline *p, const void *data, size_t len, struct ff_err *err)
{
    if (len > PKTLINE_DATA_MAX)
        return ff_err_set(err, FF_ETOOBIG, "pkt-line payload of %zu bytes is over %d", len,
                          PKTLINE_DATA_MAX);
    return send_frame(p, 0, data, len, err);
}

int pktline_printf(struct pktline *p, struct ff_err *err, const char *fmt, ...)
{
    struct ff_buf b;
    ff_buf_init(&b, PKTLINE_DATA_MAX);
    va_list ap;
    va_start(ap, fmt);
    int rc = ff_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc != 0)
        rc = ff_err_set(err, rc, "pkt-line text: %s", ff_err_name(rc));
    else
        rc = send_frame(p, 0, b.data, b.len, err);
    ff_buf_release(&b);
    return rc;
}

int pktline_flush(struct pktline *p, struct ff_err *err)
{
    return send_raw(p, "0000", 4, err);
}

int pktline_band(struct pktline *p, enum pktline_band band, const void *data, size_t len,
                 struct ff_err *err)
{
    if (!p->sideband) {
        if (band == PKTLINE_BAND_DATA)
            return send_raw(p, data, len, err);
        if (p->stream->write_err == NULL || len == 0)
            return 0;
        if (p->stream->write_err(p->stream->ctx, data, len) != 0)
            return ff_err_set(err, FF_EIO, "writing messages to the client: %s",
                              strerror(errno));
        return 0;
    }
    const char *d = data;
    while (len > 0) {
        size_t n = len < PKTLINE_BAND_DATA_MAX ? len : PKTLINE_BAND_DATA_MAX;
        int rc = send_frame(p, (int)band, d, n, err);
        if (rc != 0)
            return rc;
        d += n;
        len -= n;
    }
    return 0;
}

int pktline_buf_printf(struct ff_buf *b, const char *fmt, ...)
{
    struct ff_buf line;
    ff_buf_init(&line, PKTLINE_DATA_MAX);
    va_list ap;
    va_start(ap, fmt);
    int rc = ff_buf_vprintf(&line, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = ff_buf_printf(b, "%04zx", line.len + 4);
    if (rc == 0)
        rc = ff_buf_append(b, line.data, line.len);
    ff_buf_release(&line);
    return rc;
}

int pktline_buf_flush(struct ff_buf *b)
{
    return ff_buf_append(b, "0000", 4);
}

void pktline_progress(struct progress *p, const char *fmt, ...)
{
    if (p->quiet)
        return;
    /* The line and its LF must fit one side-band packet; longer is cut. */
    char *line = malloc(PKTLINE_BAND_DATA_MAX);
    if (line == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, PKTLINE_BAND_DATA_MAX, fmt, ap);
    va_end(ap);
    if (n >= 0) {
        size_t len = (size_t)n < PKTLINE_BAND_DATA_MAX - 1 ? (size_t)n : PKTLINE_BAND_DATA_MAX - 1;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                line[i] = '?';
        }
        line[len] = '\n';
        (void)pktline_band(p->pkt, PKTLINE_BAND_PROGRESS, line, len + 1, NULL);
    }
    free(line);
}

void pktline_fatal(struct pktline *p, const char *msg)
{
    struct ff_buf b;
    ff_buf_init(&b, PKTLINE_BAND_DATA_MAX);
    if (ff_buf_printf(&b, "ff-gitd: %s\n", msg) == 0)
        (void)pktline_band(p, PKTLINE_BAND_ERROR, b.data, b.len, NULL);
    ff_buf_release(&b);
}
