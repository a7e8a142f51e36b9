/* A pipelined blob writer: the connection thread only copies what it
 * receives into a buffer; a helper thread writes the full buffers to the
 * file and hashes them while the next one fills. libmicrohttpd hands an
 * upload over one TLS record (16 KiB) at a time, and doing pwrite and
 * SHA-256 for each record on the connection thread kept that thread the
 * bottleneck of a push (see docs/benchmarks.md). Blobs smaller than one
 * buffer never start the thread. */
#include "registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Big enough that the file gets 32x fewer write calls than one per TLS
 * record, small enough that two of them per upload in flight stay cheap. */
#define SPOOL_BUF_SIZE ((size_t)512 * 1024)

struct spool {
    int fd;
    int64_t offset;              /* where the next full buffer goes */
    struct ff_digest_ctx *ctx;   /* borrowed; may be NULL */
    unsigned char *buf[2];
    size_t fill;                 /* bytes in buf[cur] */
    int cur;                     /* the buffer the caller fills */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* Under lock: */
    size_t job_len;              /* bytes of buf[!cur] to write; 0 = idle */
    int64_t job_offset;
    bool stop;
    int rc;                      /* first error of the helper */
    struct ff_err err;
};

/* Writes and hashes one buffer; the caller's thread or the helper. */
static int spool_put(struct spool *sp, const unsigned char *data, size_t len, int64_t offset,
                     struct ff_err *err)
{
    int rc = blob_fd_write(sp->fd, offset, data, len, err);
    if (rc == 0 && sp->ctx != NULL)
        rc = ff_digest_ctx_update(sp->ctx, data, len, err);
    return rc;
}

static void *spool_main(void *arg)
{
    struct spool *sp = arg;
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        while (sp->job_len == 0 && !sp->stop)
            pthread_cond_wait(&sp->wake, &sp->lock);
        if (sp->job_len == 0)
            break;
        const unsigned char *data = sp->buf[!sp->cur];
        size_t len = sp->job_len;
        int64_t offset = sp->job_offset;
        bool failed = sp->rc != 0;
        pthread_mutex_unlock(&sp->lock);
        struct ff_err err;
        int rc = failed ? 0 : spool_put(sp, data, len, offset, &err);
        pthread_mutex_lock(&sp->lock);
        if (rc != 0 && sp->rc == 0) {
            sp->rc = rc;
            sp->err = err;
        }
        sp->job_len = 0;
        pthread_cond_broadcast(&sp->wake);
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

int spool_new(int fd, int64_t offset, struct ff_digest_ctx *ctx, struct spool **out,
              struct ff_err *err)
{
    struct spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return ff_err_set(err, FF_ENOMEM, "spool: out of memory");
    sp->fd = fd;
    sp->offset = offset;
    sp->ctx = ctx;
    if (pthread_mutex_init(&sp->lock, NULL) != 0) {
        free(sp);
        return ff_err_set(err, FF_ENOMEM, "spool: no mutex");
    }
    if (pthread_cond_init(&sp->wake, NULL) != 0) {
        pthread_mutex_destroy(&sp->lock);
        free(sp);
        return ff_err_set(err, FF_ENOMEM, "spool: no condition variable");
    }
    *out = sp;
    return 0;
}

/* Waits until the helper is idle; returns its first error (copied to err). */
static int spool_wait_idle(struct spool *sp, struct ff_err *err)
{
    pthread_mutex_lock(&sp->lock);
    while (sp->job_len != 0)
        pthread_cond_wait(&sp->wake, &sp->lock);
    int rc = sp->rc;
    if (rc != 0)
        *err = sp->err;
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

/* Hands the full buffer to the helper (started on first use) and switches
 * to the other one. */
static int spool_hand_over(struct spool *sp, struct ff_err *err)
{
    int rc = spool_wait_idle(sp, err);
    if (rc != 0)
        return rc;
    if (!sp->started) {
        rc = pthread_create(&sp->thread, NULL, spool_main, sp);
        if (rc != 0)
            return ff_err_set(err, FF_ENOMEM, "spool: cannot start a thread: %s",
                              strerror(rc));
        sp->started = true;
    }
    pthread_mutex_lock(&sp->lock);
    sp->job_len = sp->fill;
    sp->job_offset = sp->offset;
    sp->cur = !sp->cur;
    pthread_cond_broadcast(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    sp->offset += (int64_t)sp->fill;
    sp->fill = 0;
    return 0;
}

int spool_write(struct spool *sp, const void *data, size_t len, struct ff_err *err)
{
    const unsigned char *p = data;
    while (len > 0) {
        if (sp->buf[sp->cur] == NULL) {
            sp->buf[sp->cur] = malloc(SPOOL_BUF_SIZE);
            if (sp->buf[sp->cur] == NULL)
                return ff_err_set(err, FF_ENOMEM, "spool: out of memory");
        }
        size_t n = SPOOL_BUF_SIZE - sp->fill;
        if (n > len)
            n = len;
        memcpy(sp->buf[sp->cur] + sp->fill, p, n);
        sp->fill += n;
        p += n;
        len -= n;
        if (sp->fill == SPOOL_BUF_SIZE) {
            int rc = spool_hand_over(sp, err);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int spool_flush(struct spool *sp, struct ff_err *err)
{
    int rc = spool_wait_idle(sp, err);
    if (rc == 0 && sp->fill > 0)
        rc = spool_put(sp, sp->buf[sp->cur], sp->fill, sp->offset, err);
    if (rc == 0) {
        sp->offset += (int64_t)sp->fill;
        sp->fill = 0;
    }
    return rc;
}

void spool_free(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->started) {
        pthread_mutex_lock(&sp->lock);
        sp->stop = true;
        pthread_cond_broadcast(&sp->wake);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->thread, NULL);
    }
    pthread_cond_destroy(&sp->wake);
    pthread_mutex_destroy(&sp->lock);
    free(sp->buf[0]);
    free(sp->buf[1]);
    free(sp);
}
