/* A pipelined blob writer: the connection thread only copies what it
 * receives into a piece; one helper thread hashes full pieces and another
 * writes them, side by side, while the connection thread fills the next.
 * libmicrohttpd hands an upload over one TLS record (16 KiB) at a time,
 * and doing pwrite and SHA-256 for each record on the connection thread
 * kept that thread the bottleneck of a push; with hashing and writing on
 * one helper, the two took turns (see docs/benchmarks.md). Whole pieces at
 * aligned offsets go to the file with O_DIRECT when the caller allows it:
 * copying every pushed byte into new page-cache pages was most of what a
 * large push cost. Blobs smaller than one piece never start a thread. */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Large enough for the disk to take each write in one go, small enough
 * that the pieces of many uploads in flight stay cheap. */
#define SPOOL_PIECE_SIZE ((size_t)512 * 1024)
/* One being filled, and up to two with the hasher and the writer, so that
 * a slow write does not stop the hasher or the connection at once. */
#define SPOOL_PIECES 3

enum spool_stage { STAGE_HASH, STAGE_WRITE, STAGE_COUNT };

struct spool_piece {
    unsigned char *data;
    size_t len;
    int64_t offset;
    int pending;                 /* stages still to run on it; 0 = free */
};

struct spool {
    int fd;
    int direct_fd;               /* the same file opened O_DIRECT, or -1 */
    struct ff_digest_ctx *ctx;   /* borrowed; may be NULL */
    int64_t offset;              /* where the piece being filled goes */
    size_t fill;                 /* bytes in that piece */
    struct spool_piece piece[SPOOL_PIECES];
    pthread_t thread[STAGE_COUNT];
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* Under lock: */
    uint64_t handed;             /* pieces handed over; the caller fills piece[handed % N] */
    uint64_t done[STAGE_COUNT];  /* pieces each stage has finished */
    bool stop;
    int rc;                      /* first error of a stage */
    struct ff_err err;
};

struct spool_worker {
    struct spool *sp;
    enum spool_stage stage;
};

static int piece_write(struct spool *sp, const struct spool_piece *p, struct ff_err *err)
{
    bool aligned =
        (uint64_t)p->offset % BLOB_DIRECT_ALIGN == 0 && p->len % BLOB_DIRECT_ALIGN == 0;
    int fd = sp->direct_fd >= 0 && aligned ? sp->direct_fd : sp->fd;
    return blob_fd_write(fd, p->offset, p->data, p->len, err);
}

static int piece_hash(struct spool *sp, const struct spool_piece *p, struct ff_err *err)
{
    return sp->ctx == NULL ? 0 : ff_digest_ctx_update(sp->ctx, p->data, p->len, err);
}

static int stage_run(struct spool *sp, enum spool_stage stage, const struct spool_piece *p,
                     struct ff_err *err)
{
    return stage == STAGE_HASH ? piece_hash(sp, p, err) : piece_write(sp, p, err);
}

/* Each stage takes the pieces in order; a piece is free again once every
 * stage is done with it. After an error the stages only mark pieces done. */
static void *spool_main(void *arg)
{
    struct spool_worker *w = arg;
    struct spool *sp = w->sp;
    enum spool_stage stage = w->stage;
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        while (sp->done[stage] == sp->handed && !sp->stop)
            pthread_cond_wait(&sp->wake, &sp->lock);
        if (sp->done[stage] == sp->handed)
            break;
        struct spool_piece *p = &sp->piece[sp->done[stage] % SPOOL_PIECES];
        bool failed = sp->rc != 0;
        pthread_mutex_unlock(&sp->lock);
        struct ff_err err;
        int rc = failed ? 0 : stage_run(sp, stage, p, &err);
        pthread_mutex_lock(&sp->lock);
        if (rc != 0 && sp->rc == 0) {
            sp->rc = rc;
            sp->err = err;
        }
        sp->done[stage]++;
        p->pending--;
        pthread_cond_broadcast(&sp->wake);
    }
    pthread_mutex_unlock(&sp->lock);
    free(w);
    return NULL;
}

int spool_new(int fd, int64_t offset, struct ff_digest_ctx *ctx, struct spool **out,
              struct ff_err *err)
{
    struct spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return ff_err_set(err, FF_ENOMEM, "spool: out of memory");
    sp->fd = fd;
    sp->direct_fd = -1;
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

void spool_direct_open(struct spool *sp, int dir_fd, const char *name)
{
    sp->direct_fd = blob_fd_reopen_direct(dir_fd, name, O_WRONLY, sp->fd);
}

/* Waits until no stage holds piece i (all of them if i < 0); returns the
 * first error of a stage (copied to err). */
static int spool_wait_free(struct spool *sp, int i, struct ff_err *err)
{
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        bool busy = false;
        for (int k = 0; k < SPOOL_PIECES; k++)
            busy = busy || ((i < 0 || k == i) && sp->piece[k].pending > 0);
        if (!busy)
            break;
        pthread_cond_wait(&sp->wake, &sp->lock);
    }
    int rc = sp->rc;
    if (rc != 0)
        *err = sp->err;
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

/* Stops the stages started so far and makes the failure stick: a spool
 * whose stages did not all start is only good for spool_free. */
static int spool_start_failed(struct spool *sp, int started, int rc, struct ff_err *err)
{
    pthread_mutex_lock(&sp->lock);
    sp->stop = true;
    sp->rc = FF_ENOMEM;
    (void)ff_err_set(&sp->err, FF_ENOMEM, "spool: cannot start a thread: %s", strerror(rc));
    *err = sp->err;
    pthread_cond_broadcast(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    for (int k = 0; k < started; k++)
        pthread_join(sp->thread[k], NULL);
    return FF_ENOMEM;
}

static int spool_start(struct spool *sp, struct ff_err *err)
{
    if (sp->stop) { /* an earlier start failed; no stage runs */
        *err = sp->err;
        return sp->rc;
    }
    for (int s = 0; s < STAGE_COUNT; s++) {
        struct spool_worker *w = malloc(sizeof(*w));
        if (w == NULL)
            return spool_start_failed(sp, s, ENOMEM, err);
        w->sp = sp;
        w->stage = (enum spool_stage)s;
        int rc = pthread_create(&sp->thread[s], NULL, spool_main, w);
        if (rc != 0) {
            free(w);
            return spool_start_failed(sp, s, rc, err);
        }
    }
    sp->started = true;
    return 0;
}

/* Hands the full piece to the stages (started on first use); the caller
 * goes on with the next one. */
static int spool_hand_over(struct spool *sp, struct ff_err *err)
{
    if (!sp->started) {
        int rc = spool_start(sp, err);
        if (rc != 0)
            return rc;
    }
    pthread_mutex_lock(&sp->lock);
    struct spool_piece *p = &sp->piece[sp->handed % SPOOL_PIECES];
    p->len = sp->fill;
    p->offset = sp->offset;
    p->pending = STAGE_COUNT;
    sp->handed++;
    pthread_cond_broadcast(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    sp->offset += (int64_t)sp->fill;
    sp->fill = 0;
    return 0;
}

/* Makes piece i ready to be filled: waits, before its first byte, until
 * the stages are done with it, and gives it its buffer. */
static int spool_piece_ready(struct spool *sp, int i, struct ff_err *err)
{
    if (sp->fill == 0) {
        int rc = spool_wait_free(sp, i, err);
        if (rc != 0)
            return rc;
    }
    if (sp->piece[i].data == NULL) {
        void *b = NULL;
        if (posix_memalign(&b, BLOB_DIRECT_ALIGN, SPOOL_PIECE_SIZE) != 0)
            return ff_err_set(err, FF_ENOMEM, "spool: out of memory");
        sp->piece[i].data = b;
    }
    return 0;
}

int spool_write(struct spool *sp, const void *data, size_t len, struct ff_err *err)
{
    const unsigned char *src = data;
    while (len > 0) {
        int i = (int)(sp->handed % SPOOL_PIECES);
        int rc = spool_piece_ready(sp, i, err);
        if (rc != 0)
            return rc;
        /* A piece ends at an aligned offset, so that after the first one
         * of an append at an odd offset every piece can go straight to
         * the disk. */
        size_t full = SPOOL_PIECE_SIZE - (size_t)((uint64_t)sp->offset % BLOB_DIRECT_ALIGN);
        size_t n = full - sp->fill;
        if (n > len)
            n = len;
        memcpy(sp->piece[i].data + sp->fill, src, n);
        sp->fill += n;
        src += n;
        len -= n;
        if (sp->fill == full) {
            rc = spool_hand_over(sp, err);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int spool_flush(struct spool *sp, struct ff_err *err)
{
    int rc = spool_wait_free(sp, -1, err);
    if (rc != 0 || sp->fill == 0)
        return rc;
    struct spool_piece *tail = &sp->piece[sp->handed % SPOOL_PIECES];
    tail->len = sp->fill;
    tail->offset = sp->offset;
    rc = piece_write(sp, tail, err);
    if (rc == 0)
        rc = piece_hash(sp, tail, err);
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
        for (int s = 0; s < STAGE_COUNT; s++)
            pthread_join(sp->thread[s], NULL);
    }
    pthread_cond_destroy(&sp->wake);
    pthread_mutex_destroy(&sp->lock);
    if (sp->direct_fd >= 0)
        close(sp->direct_fd);
    for (int k = 0; k < SPOOL_PIECES; k++)
        free(sp->piece[k].data);
    free(sp);
}
