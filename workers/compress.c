/* The blob side of layers: tar bytes in, compressed bytes out (and back),
 * with the uncompressed and the compressed SHA-256 taken in the same pass.
 *
 * gzip is written as independent members of LAYER_GZIP_CHUNK input bytes
 * each, compressed by libdeflate on worker threads and written in order by
 * the calling thread. RFC 1952 allows any number of members; gzip, zlib's
 * gzread, Go's compress/gzip (multistream by default) and Python read them
 * as one stream. Because chunk boundaries depend only on the input, the
 * output does not depend on the thread count or on scheduling. */
#include "worker.h"

#include "ff_digest.h"

#include <assert.h>
#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* Bytes gathered before one write(2) of an uncompressed blob, and the size
 * of the zstd output buffer: big writes, few syscalls. */
#define COMPRESS_IO_BUF (1u << 20)
/* Read buffer and decompressed-output buffer of compress_in. */
#define COMPRESS_IN_BUF (256u << 10)
/* Chunks in flight per thread: one being compressed, one waiting, so a
 * thread never idles while the caller fills the next chunk. */
#define GZ_SLOTS_PER_THREAD 2
/* zstd frames may ask for a window up to this (128 MiB, what zstd --long
 * writes); a larger window in a hostile blob is refused rather than
 * allocated. */
#define COMPRESS_ZSTD_WINDOW_LOG_MAX 27

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

struct gz_slot {
    unsigned char *in;
    size_t in_len;
    unsigned char *out;
    size_t out_len;
    uint64_t seq;
    enum slot_state state;
};

struct gz_pool;

struct gz_thread {
    struct gz_pool *pool;
    struct libdeflate_compressor *comp;
    pthread_t tid;
    bool started;
};

struct gz_pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a slot was queued, or stop was set */
    pthread_cond_t done; /* a slot was compressed */
    struct gz_slot *slots;
    unsigned nslots;
    struct gz_thread *threads;
    unsigned nthreads;
    size_t out_cap;
    uint64_t next_submit; /* seq of the slot being filled */
    uint64_t next_flush;  /* seq of the next slot to write out */
    bool filling;         /* slot next_submit holds data not yet queued */
    bool stop;
};

struct compress_out {
    int fd;
    enum layer_compression kind;
    struct ff_digest_ctx *tar_hash;
    struct ff_digest_ctx *blob_hash; /* NULL when uncompressed: same bytes */
    uint64_t tar_size;
    uint64_t blob_size;
    struct gz_pool *gz;
    ZSTD_CCtx *zc;
    unsigned char *buf; /* zstd output, or uncompressed bytes not yet written */
    size_t buf_len;
    bool failed;
};

static int write_all(int fd, const unsigned char *p, size_t n, struct ff_err *err)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return ff_err_set(err, FF_EIO, "layer blob: write: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Hashes and writes blob bytes. */
static int blob_emit(struct compress_out *o, const unsigned char *p, size_t n, struct ff_err *err)
{
    if (n == 0)
        return 0;
    if (o->blob_hash != NULL) {
        int rc = ff_digest_ctx_update(o->blob_hash, p, n, err);
        if (rc != 0)
            return rc;
    }
    o->blob_size += n;
    return write_all(o->fd, p, n, err);
}

/* Lowest-numbered queued slot, so chunks finish roughly in write order. */
static struct gz_slot *gz_next_queued(struct gz_pool *p)
{
    struct gz_slot *best = NULL;
    for (unsigned i = 0; i < p->nslots; i++) {
        struct gz_slot *s = &p->slots[i];
        if (s->state == SLOT_QUEUED && (best == NULL || s->seq < best->seq))
            best = s;
    }
    return best;
}

static void *gz_worker(void *arg)
{
    struct gz_thread *t = arg;
    struct gz_pool *p = t->pool;
    (void)pthread_mutex_lock(&p->mu);
    for (;;) {
        struct gz_slot *s = gz_next_queued(p);
        if (s == NULL) {
            if (p->stop)
                break;
            (void)pthread_cond_wait(&p->work, &p->mu);
            continue;
        }
        s->state = SLOT_BUSY;
        (void)pthread_mutex_unlock(&p->mu);
        size_t n = libdeflate_gzip_compress(t->comp, s->in, s->in_len, s->out, p->out_cap);
        (void)pthread_mutex_lock(&p->mu);
        /* 0 means the output did not fit, impossible with the bound. */
        s->out_len = n;
        s->state = SLOT_DONE;
        (void)pthread_cond_signal(&p->done);
    }
    (void)pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void gz_pool_free(struct gz_pool *p)
{
    if (p == NULL)
        return;
    (void)pthread_mutex_lock(&p->mu);
    p->stop = true;
    (void)pthread_cond_broadcast(&p->work);
    (void)pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++) {
        if (p->threads[i].started)
            (void)pthread_join(p->threads[i].tid, NULL);
        libdeflate_free_compressor(p->threads[i].comp);
    }
    for (unsigned i = 0; i < p->nslots; i++) {
        free(p->slots[i].in);
        free(p->slots[i].out);
    }
    free(p->slots);
    free(p->threads);
    (void)pthread_cond_destroy(&p->done);
    (void)pthread_cond_destroy(&p->work);
    (void)pthread_mutex_destroy(&p->mu);
    free(p);
}

static int gz_pool_alloc(struct gz_pool *p, int level, struct ff_err *err)
{
    p->threads = calloc(p->nthreads, sizeof(*p->threads));
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    if (p->threads == NULL || p->slots == NULL)
        return ff_err_set(err, FF_ENOMEM, "gzip: out of memory");
    for (unsigned i = 0; i < p->nthreads; i++) {
        p->threads[i].pool = p;
        p->threads[i].comp = libdeflate_alloc_compressor(level);
        if (p->threads[i].comp == NULL)
            return ff_err_set(err, FF_ENOMEM, "gzip: cannot allocate a level %d compressor",
                              level);
    }
    p->out_cap = libdeflate_gzip_compress_bound(p->threads[0].comp, LAYER_GZIP_CHUNK);
    for (unsigned i = 0; i < p->nslots; i++) {
        p->slots[i].in = malloc(LAYER_GZIP_CHUNK);
        p->slots[i].out = malloc(p->out_cap);
        if (p->slots[i].in == NULL || p->slots[i].out == NULL)
            return ff_err_set(err, FF_ENOMEM, "gzip: out of memory");
    }
    return 0;
}

static int gz_pool_new(struct gz_pool **out, int level, unsigned threads, struct ff_err *err)
{
    struct gz_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ff_err_set(err, FF_ENOMEM, "gzip: out of memory");
    (void)pthread_mutex_init(&p->mu, NULL);
    (void)pthread_cond_init(&p->work, NULL);
    (void)pthread_cond_init(&p->done, NULL);
    p->nthreads = threads;
    p->nslots = threads * GZ_SLOTS_PER_THREAD;
    int rc = gz_pool_alloc(p, level, err);
    if (rc != 0)
        goto fail;
    for (unsigned i = 0; i < p->nthreads; i++) {
        int e = pthread_create(&p->threads[i].tid, NULL, gz_worker, &p->threads[i]);
        if (e != 0) {
            rc = ff_err_set(err, FF_EIO, "gzip: cannot start a thread: %s", strerror(e));
            goto fail;
        }
        p->threads[i].started = true;
    }
    *out = p;
    return 0;
fail:
    gz_pool_free(p);
    return rc;
}

static struct gz_slot *gz_slot_of(struct gz_pool *p, uint64_t seq)
{
    assert(p->nslots > 0);
    return &p->slots[seq % p->nslots];
}

/* Writes out, in order, the compressed slots before seq upto, waiting for
 * them; then, without waiting, any that follow and are already done. */
static int gz_reap(struct compress_out *o, uint64_t upto, struct ff_err *err)
{
    struct gz_pool *p = o->gz;
    for (;;) {
        struct gz_slot *s = gz_slot_of(p, p->next_flush);
        bool must = p->next_flush < upto;
        (void)pthread_mutex_lock(&p->mu);
        if (p->next_flush == p->next_submit) {
            (void)pthread_mutex_unlock(&p->mu);
            return 0;
        }
        while (must && s->state != SLOT_DONE)
            (void)pthread_cond_wait(&p->done, &p->mu);
        bool ready = s->state == SLOT_DONE;
        (void)pthread_mutex_unlock(&p->mu);
        if (!ready)
            return 0;
        /* A done slot belongs to this thread alone until it is freed. */
        if (s->out_len == 0)
            return ff_err_set(err, FF_EIO, "gzip: libdeflate could not compress chunk %llu",
                              (unsigned long long)s->seq);
        int rc = blob_emit(o, s->out, s->out_len, err);
        if (rc != 0)
            return rc;
        (void)pthread_mutex_lock(&p->mu);
        s->state = SLOT_FREE;
        (void)pthread_mutex_unlock(&p->mu);
        p->next_flush++;
    }
}

static struct gz_slot *gz_current(struct gz_pool *p)
{
    return gz_slot_of(p, p->next_submit);
}

/* Makes the slot of seq next_submit free for filling. */
static int gz_acquire(struct compress_out *o, struct ff_err *err)
{
    struct gz_pool *p = o->gz;
    uint64_t upto = p->next_submit >= p->nslots ? p->next_submit - p->nslots + 1 : 0;
    int rc = gz_reap(o, upto, err);
    if (rc != 0)
        return rc;
    struct gz_slot *s = gz_current(p);
    s->in_len = 0;
    s->seq = p->next_submit;
    p->filling = true;
    return 0;
}

static int gz_submit(struct compress_out *o, struct ff_err *err)
{
    struct gz_pool *p = o->gz;
    (void)pthread_mutex_lock(&p->mu);
    gz_current(p)->state = SLOT_QUEUED;
    p->next_submit++;
    p->filling = false;
    (void)pthread_cond_signal(&p->work);
    (void)pthread_mutex_unlock(&p->mu);
    return gz_reap(o, 0, err);
}

static int gz_write(struct compress_out *o, const unsigned char *p, size_t n, struct ff_err *err)
{
    struct gz_pool *g = o->gz;
    while (n > 0) {
        if (!g->filling) {
            int rc = gz_acquire(o, err);
            if (rc != 0)
                return rc;
        }
        struct gz_slot *s = gz_current(g);
        size_t k = LAYER_GZIP_CHUNK - s->in_len;
        if (k > n)
            k = n;
        memcpy(s->in + s->in_len, p, k);
        s->in_len += k;
        p += k;
        n -= k;
        if (s->in_len == LAYER_GZIP_CHUNK) {
            int rc = gz_submit(o, err);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int gz_finish(struct compress_out *o, struct ff_err *err)
{
    struct gz_pool *g = o->gz;
    /* An empty input still makes one (empty) member: a valid gzip file. */
    if (!g->filling && g->next_submit == 0) {
        int rc = gz_acquire(o, err);
        if (rc != 0)
            return rc;
    }
    if (g->filling) {
        int rc = gz_submit(o, err);
        if (rc != 0)
            return rc;
    }
    return gz_reap(o, g->next_submit, err);
}

static int zstd_check(size_t r, const char *what, struct ff_err *err)
{
    if (ZSTD_isError(r))
        return ff_err_set(err, FF_EIO, "zstd: %s: %s", what, ZSTD_getErrorName(r));
    return 0;
}

static int zstd_setup(struct compress_out *o, int level, unsigned threads, struct ff_err *err)
{
    o->zc = ZSTD_createCCtx();
    if (o->zc == NULL)
        return ff_err_set(err, FF_ENOMEM, "zstd: out of memory");
    int rc = zstd_check(ZSTD_CCtx_setParameter(o->zc, ZSTD_c_compressionLevel, level),
                        "level", err);
    if (rc == 0)
        rc = zstd_check(ZSTD_CCtx_setParameter(o->zc, ZSTD_c_checksumFlag, 1), "checksum", err);
    if (rc != 0)
        return rc;
    /* With one worker or more zstd's output is the same whatever their
     * number; a libzstd built without threads stays single-threaded. */
    (void)ZSTD_CCtx_setParameter(o->zc, ZSTD_c_nbWorkers, (int)threads);
    return 0;
}

static int zstd_write(struct compress_out *o, const void *p, size_t n, ZSTD_EndDirective end,
                      struct ff_err *err)
{
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer ob = {o->buf, COMPRESS_IO_BUF, 0};
        size_t r = ZSTD_compressStream2(o->zc, &ob, &in, end);
        int rc = zstd_check(r, "compress", err);
        if (rc == 0)
            rc = blob_emit(o, ob.dst, ob.pos, err);
        if (rc != 0)
            return rc;
        if (end == ZSTD_e_end ? r == 0 : in.pos == in.size)
            return 0;
    }
}

static int plain_write(struct compress_out *o, const unsigned char *p, size_t n,
                       struct ff_err *err)
{
    while (n > 0) {
        size_t k = COMPRESS_IO_BUF - o->buf_len;
        if (k > n)
            k = n;
        memcpy(o->buf + o->buf_len, p, k);
        o->buf_len += k;
        p += k;
        n -= k;
        if (o->buf_len == COMPRESS_IO_BUF) {
            int rc = blob_emit(o, o->buf, o->buf_len, err);
            o->buf_len = 0;
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int out_check_opts(enum layer_compression c, int *level, unsigned *threads,
                          struct ff_err *err)
{
    if (*threads == 0)
        *threads = LAYER_THREADS_DEFAULT;
    if (*threads > LAYER_THREADS_MAX)
        return ff_err_set(err, FF_EINVAL, "layer: %u threads asked, at most %u", *threads,
                          LAYER_THREADS_MAX);
    switch (c) {
    case LAYER_GZIP:
        if (*level == 0)
            *level = LAYER_GZIP_LEVEL_DEFAULT;
        if (*level < 0 || *level > LAYER_GZIP_LEVEL_MAX)
            return ff_err_set(err, FF_EINVAL, "layer: gzip level %d, expected 1 to %d", *level,
                              LAYER_GZIP_LEVEL_MAX);
        return 0;
    case LAYER_ZSTD:
        if (*level == 0)
            *level = LAYER_ZSTD_LEVEL_DEFAULT;
        if (*level < 1 || *level > ZSTD_maxCLevel())
            return ff_err_set(err, FF_EINVAL, "layer: zstd level %d, expected 1 to %d", *level,
                              ZSTD_maxCLevel());
        return 0;
    case LAYER_UNCOMPRESSED:
        return 0;
    }
    return ff_err_set(err, FF_EINVAL, "layer: unknown compression %d", (int)c);
}

int compress_out_new(struct compress_out **out, int fd, enum layer_compression c, int level,
                     unsigned threads, struct ff_err *err)
{
    int rc = out_check_opts(c, &level, &threads, err);
    if (rc != 0)
        return rc;
    struct compress_out *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    o->fd = fd;
    o->kind = c;
    rc = ff_digest_ctx_new(&o->tar_hash, err);
    if (rc == 0 && c != LAYER_UNCOMPRESSED)
        rc = ff_digest_ctx_new(&o->blob_hash, err);
    if (rc != 0)
        goto fail;
    if (c != LAYER_GZIP) {
        o->buf = malloc(COMPRESS_IO_BUF);
        if (o->buf == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "layer: out of memory");
            goto fail;
        }
    }
    if (c == LAYER_GZIP)
        rc = gz_pool_new(&o->gz, level, threads, err);
    else if (c == LAYER_ZSTD)
        rc = zstd_setup(o, level, threads, err);
    if (rc != 0)
        goto fail;
    *out = o;
    return 0;
fail:
    compress_out_free(o);
    return rc;
}

int compress_out_write(struct compress_out *o, const void *p, size_t n, struct ff_err *err)
{
    if (o->failed)
        return ff_err_set(err, FF_EIO, "layer blob: write after a failed write");
    int rc = ff_digest_ctx_update(o->tar_hash, p, n, err);
    if (rc == 0) {
        o->tar_size += n;
        if (o->kind == LAYER_GZIP)
            rc = gz_write(o, p, n, err);
        else if (o->kind == LAYER_ZSTD)
            rc = zstd_write(o, p, n, ZSTD_e_continue, err);
        else
            rc = plain_write(o, p, n, err);
    }
    o->failed = rc != 0;
    return rc;
}

int compress_out_finish(struct compress_out *o, struct layer_info *info, struct ff_err *err)
{
    if (o->failed)
        return ff_err_set(err, FF_EIO, "layer blob: finish after a failed write");
    int rc;
    if (o->kind == LAYER_GZIP)
        rc = gz_finish(o, err);
    else if (o->kind == LAYER_ZSTD)
        rc = zstd_write(o, NULL, 0, ZSTD_e_end, err);
    else
        rc = blob_emit(o, o->buf, o->buf_len, err);
    o->buf_len = 0;
    if (rc == 0)
        rc = ff_digest_ctx_final(o->tar_hash, &info->diff_id, err);
    if (rc == 0 && o->blob_hash != NULL)
        rc = ff_digest_ctx_final(o->blob_hash, &info->digest, err);
    if (rc == 0 && o->blob_hash == NULL)
        info->digest = info->diff_id;
    o->failed = rc != 0;
    if (rc != 0)
        return rc;
    info->size = o->blob_size;
    info->tar_size = o->tar_size;
    info->compression = o->kind;
    return 0;
}

void compress_out_free(struct compress_out *o)
{
    if (o == NULL)
        return;
    gz_pool_free(o->gz);
    ZSTD_freeCCtx(o->zc);
    free(o->buf);
    ff_digest_ctx_free(o->blob_hash);
    ff_digest_ctx_free(o->tar_hash);
    free(o);
}

/* --- reading --- */

struct compress_in {
    int fd;
    enum layer_compression kind;
    unsigned char *raw;
    size_t raw_len;
    size_t raw_pos;
    bool raw_eof;
    unsigned char *out;
    z_stream zs;
    bool zs_init;
    bool in_member; /* gzip: inside a member, its end not yet seen */
    ZSTD_DCtx *zd;
    size_t zret; /* last ZSTD_decompressStream result: 0 at a frame end */
    bool done;
    struct ff_digest_ctx *raw_hash;
    struct ff_digest_ctx *tar_hash; /* NULL when uncompressed: same bytes */
    uint64_t raw_size;
    uint64_t tar_size;
    uint64_t max_bytes;
};

/* Moves unread bytes to the front and reads more after them. */
static int in_fill(struct compress_in *in, struct ff_err *err)
{
    if (in->raw_eof)
        return 0;
    memmove(in->raw, in->raw + in->raw_pos, in->raw_len - in->raw_pos);
    in->raw_len -= in->raw_pos;
    in->raw_pos = 0;
    for (;;) {
        ssize_t r = read(in->fd, in->raw + in->raw_len, COMPRESS_IN_BUF - in->raw_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ff_err_set(err, FF_EIO, "layer blob: read: %s", strerror(errno));
        if (r == 0) {
            in->raw_eof = true;
            return 0;
        }
        int rc = ff_digest_ctx_update(in->raw_hash, in->raw + in->raw_len, (size_t)r, err);
        in->raw_len += (size_t)r;
        in->raw_size += (uint64_t)r;
        return rc;
    }
}

static int in_sniff(struct compress_in *in, struct ff_err *err)
{
    static const unsigned char gz_magic[] = {0x1f, 0x8b};
    static const unsigned char zstd_magic[] = {0x28, 0xb5, 0x2f, 0xfd};
    while (in->raw_len < sizeof(zstd_magic) && !in->raw_eof) {
        int rc = in_fill(in, err);
        if (rc != 0)
            return rc;
    }
    if (in->raw_len >= sizeof(gz_magic) && memcmp(in->raw, gz_magic, sizeof(gz_magic)) == 0)
        in->kind = LAYER_GZIP;
    else if (in->raw_len >= sizeof(zstd_magic) &&
             memcmp(in->raw, zstd_magic, sizeof(zstd_magic)) == 0)
        in->kind = LAYER_ZSTD;
    else
        in->kind = LAYER_UNCOMPRESSED;
    if (in->kind == LAYER_GZIP) {
        /* 16 + 15: gzip framing only, the largest window. */
        if (inflateInit2(&in->zs, 16 + 15) != Z_OK)
            return ff_err_set(err, FF_ENOMEM, "gzip: cannot start inflate");
        in->zs_init = true;
        in->in_member = true;
    } else if (in->kind == LAYER_ZSTD) {
        in->zd = ZSTD_createDCtx();
        if (in->zd == NULL)
            return ff_err_set(err, FF_ENOMEM, "zstd: out of memory");
        if (ZSTD_isError(ZSTD_DCtx_setParameter(in->zd, ZSTD_d_windowLogMax,
                                                COMPRESS_ZSTD_WINDOW_LOG_MAX)))
            return ff_err_set(err, FF_EIO, "zstd: cannot set the window limit");
    }
    return 0;
}

int compress_in_new(struct compress_in **out, int fd, uint64_t max_bytes, struct ff_err *err)
{
    struct compress_in *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return ff_err_set(err, FF_ENOMEM, "layer: out of memory");
    in->fd = fd;
    in->max_bytes = max_bytes;
    int rc = FF_ENOMEM;
    in->raw = malloc(COMPRESS_IN_BUF);
    in->out = malloc(COMPRESS_IN_BUF);
    if (in->raw == NULL || in->out == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "layer: out of memory");
        goto fail;
    }
    rc = ff_digest_ctx_new(&in->raw_hash, err);
    if (rc == 0)
        rc = in_sniff(in, err);
    if (rc == 0 && in->kind != LAYER_UNCOMPRESSED)
        rc = ff_digest_ctx_new(&in->tar_hash, err);
    if (rc != 0)
        goto fail;
    *out = in;
    return 0;
fail:
    compress_in_free(in);
    return rc;
}

enum layer_compression compress_in_kind(const struct compress_in *in)
{
    return in->kind;
}

/* Counts n produced bytes against the cap and hashes them. */
static int in_produced(struct compress_in *in, const unsigned char *p, size_t n,
                       struct ff_err *err)
{
    if (n > in->max_bytes - in->tar_size)
        return ff_err_set(err, FF_ETOOBIG,
                          "layer: more than %llu uncompressed bytes (the limit)",
                          (unsigned long long)in->max_bytes);
    in->tar_size += n;
    if (in->tar_hash == NULL)
        return 0;
    return ff_digest_ctx_update(in->tar_hash, p, n, err);
}

static int in_corrupt(struct compress_in *in, const char *what, const char *why,
                      struct ff_err *err)
{
    return ff_err_set(err, FF_EINVAL, "layer blob: %s %s (after %llu compressed bytes)", what,
                      why, (unsigned long long)(in->raw_size - (in->raw_len - in->raw_pos)));
}

static int in_read_plain(struct compress_in *in, const void **data, size_t *len,
                         struct ff_err *err)
{
    if (in->raw_pos == in->raw_len) {
        int rc = in_fill(in, err);
        if (rc != 0)
            return rc;
    }
    size_t n = in->raw_len - in->raw_pos;
    int rc = in_produced(in, in->raw + in->raw_pos, n, err);
    if (rc != 0)
        return rc;
    *data = in->raw + in->raw_pos;
    *len = n;
    in->raw_pos = in->raw_len;
    return 0;
}

/* One inflate call; *produced bytes land in in->out. */
static int in_inflate(struct compress_in *in, size_t *produced, struct ff_err *err)
{
    in->zs.next_in = in->raw + in->raw_pos;
    in->zs.avail_in = (uInt)(in->raw_len - in->raw_pos);
    in->zs.next_out = in->out;
    in->zs.avail_out = COMPRESS_IN_BUF;
    int zr = inflate(&in->zs, Z_NO_FLUSH);
    in->raw_pos = in->raw_len - in->zs.avail_in;
    *produced = COMPRESS_IN_BUF - in->zs.avail_out;
    if (zr == Z_STREAM_END) {
        in->in_member = false;
        return 0;
    }
    if (zr == Z_OK || zr == Z_BUF_ERROR)
        return 0;
    return in_corrupt(in, "gzip stream is corrupt:", in->zs.msg ? in->zs.msg : "bad data",
                      err);
}

static int in_read_gzip(struct compress_in *in, const void **data, size_t *len,
                        struct ff_err *err)
{
    for (;;) {
        if (in->raw_pos == in->raw_len) {
            int rc = in_fill(in, err);
            if (rc != 0)
                return rc;
        }
        bool input = in->raw_pos < in->raw_len;
        if (!in->in_member) {
            /* Between members: the end, or the header of the next one. */
            if (!input) {
                in->done = true;
                *len = 0;
                return 0;
            }
            if (inflateReset(&in->zs) != Z_OK)
                return ff_err_set(err, FF_EIO, "gzip: inflateReset failed");
            in->in_member = true;
        } else if (!input) {
            return in_corrupt(in, "gzip stream", "is truncated", err);
        }
        size_t produced = 0;
        int rc = in_inflate(in, &produced, err);
        if (rc == 0 && produced > 0)
            rc = in_produced(in, in->out, produced, err);
        if (rc != 0)
            return rc;
        if (produced > 0) {
            *data = in->out;
            *len = produced;
            return 0;
        }
    }
}

static int in_read_zstd(struct compress_in *in, const void **data, size_t *len,
                        struct ff_err *err)
{
    for (;;) {
        if (in->raw_pos == in->raw_len) {
            int rc = in_fill(in, err);
            if (rc != 0)
                return rc;
        }
        ZSTD_inBuffer ib = {in->raw + in->raw_pos, in->raw_len - in->raw_pos, 0};
        ZSTD_outBuffer ob = {in->out, COMPRESS_IN_BUF, 0};
        size_t r = ZSTD_decompressStream(in->zd, &ob, &ib);
        if (ZSTD_isError(r))
            return in_corrupt(in, "zstd stream is corrupt:", ZSTD_getErrorName(r), err);
        in->raw_pos += ib.pos;
        /* Called with nothing to do, zstd answers with the size of a next
         * frame's header: only a call that moved keeps the frame state. */
        if (ib.pos > 0 || ob.pos > 0)
            in->zret = r;
        if (ob.pos > 0) {
            int rc = in_produced(in, in->out, ob.pos, err);
            if (rc != 0)
                return rc;
            *data = in->out;
            *len = ob.pos;
            return 0;
        }
        if (in->raw_pos == in->raw_len && in->raw_eof) {
            if (in->zret != 0)
                return in_corrupt(in, "zstd stream", "is truncated", err);
            in->done = true;
            *len = 0;
            return 0;
        }
        if (ib.pos == 0 && ib.size > 0)
            return in_corrupt(in, "zstd stream", "makes no progress", err);
    }
}

int compress_in_read(struct compress_in *in, const void **data, size_t *len, struct ff_err *err)
{
    *len = 0;
    *data = in->out;
    if (in->done)
        return 0;
    switch (in->kind) {
    case LAYER_GZIP:
        return in_read_gzip(in, data, len, err);
    case LAYER_ZSTD:
        return in_read_zstd(in, data, len, err);
    case LAYER_UNCOMPRESSED:
        break;
    }
    int rc = in_read_plain(in, data, len, err);
    if (rc == 0 && *len == 0)
        in->done = true;
    return rc;
}

int compress_in_finish(struct compress_in *in, struct layer_info *info, struct ff_err *err)
{
    for (;;) {
        const void *data;
        size_t len;
        int rc = compress_in_read(in, &data, &len, err);
        if (rc != 0)
            return rc;
        if (len == 0)
            break;
    }
    int rc = ff_digest_ctx_final(in->raw_hash, &info->digest, err);
    if (rc != 0)
        return rc;
    if (in->tar_hash != NULL) {
        rc = ff_digest_ctx_final(in->tar_hash, &info->diff_id, err);
        if (rc != 0)
            return rc;
    } else {
        info->diff_id = info->digest;
    }
    info->size = in->raw_size;
    info->tar_size = in->tar_size;
    info->compression = in->kind;
    return 0;
}

void compress_in_free(struct compress_in *in)
{
    if (in == NULL)
        return;
    if (in->zs_init)
        (void)inflateEnd(&in->zs);
    ZSTD_freeDCtx(in->zd);
    ff_digest_ctx_free(in->tar_hash);
    ff_digest_ctx_free(in->raw_hash);
    free(in->out);
    free(in->raw);
    free(in);
}
