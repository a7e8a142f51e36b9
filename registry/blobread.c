/* Reading a blob for a GET. A large blob that is not in the page cache is
 * read with O_DIRECT, a few blocks ahead of the connection through Linux
 * AIO, instead of through the page cache: pushes write large blobs with
 * O_DIRECT (spool.c), so the first pull of a fresh blob would otherwise
 * fill a gigabyte of new page-cache pages, which was most of what a pull
 * of a fresh blob cost (docs/benchmarks.md); and a blob pulled once by
 * each device of a fleet does not need to push the metadata out of memory.
 * A blob whose first page is cached, a small one, or a file system
 * without O_DIRECT is read through the page cache. Any trouble with the
 * direct path (an AIO error, a short block) falls back to plain reads,
 * which then decide. */
#include "registry.h"

#include <errno.h>
#include <linux/aio_abi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Bytes per direct read: large enough for the disk to stream. */
#define READ_BLOCK ((size_t)1 << 20)
/* Blocks in flight ahead of the connection. */
#define READ_AHEAD 3
/* Smaller ranges are read through the page cache. */
#define DIRECT_MIN ((uint64_t)4 * READ_BLOCK)

struct read_slot {
    unsigned char *buf;  /* READ_BLOCK bytes, aligned */
    uint64_t at;         /* file offset of buf[0] */
    size_t got;          /* bytes in buf once ready */
    bool busy;           /* submitted, not yet reaped */
    bool ready;          /* buf holds [at, at + got) */
    struct iocb cb;
};

struct blob_reader {
    int fd;              /* read through the page cache */
    int direct_fd;       /* the same file, O_DIRECT; -1 once on plain reads */
    uint64_t start;      /* file offset of the body's first byte */
    uint64_t end;        /* file offset just past its last byte */
    aio_context_t aio;
    uint64_t next;       /* file offset of the next block to submit */
    struct read_slot slot[READ_AHEAD];
};

/* glibc has no wrappers for the kernel's AIO calls. */
static long aio_setup(unsigned nr, aio_context_t *ctx)
{
    return syscall(SYS_io_setup, nr, ctx);
}

static long aio_submit(aio_context_t ctx, long n, struct iocb **cbs)
{
    return syscall(SYS_io_submit, ctx, n, cbs);
}

static long aio_getevents(aio_context_t ctx, long min, long max, struct io_event *ev)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, NULL);
}

static void aio_teardown(aio_context_t ctx)
{
    (void)syscall(SYS_io_destroy, ctx); /* waits for reads in flight */
}

/* Leaves the direct path for good: every later read goes through fd. */
static void reader_go_plain(struct blob_reader *r)
{
    if (r->direct_fd < 0)
        return;
    if (r->aio != 0)
        aio_teardown(r->aio);
    r->aio = 0;
    close(r->direct_fd);
    r->direct_fd = -1;
}

static bool slot_submit(struct blob_reader *r, struct read_slot *s)
{
    s->at = r->next;
    s->got = 0;
    s->ready = false;
    memset(&s->cb, 0, sizeof(s->cb));
    s->cb.aio_data = (uint64_t)(uintptr_t)s;
    s->cb.aio_lio_opcode = IOCB_CMD_PREAD;
    s->cb.aio_fildes = (uint32_t)r->direct_fd;
    s->cb.aio_buf = (uint64_t)(uintptr_t)s->buf;
    s->cb.aio_nbytes = READ_BLOCK;
    s->cb.aio_offset = (int64_t)s->at;
    struct iocb *cbs[1] = {&s->cb};
    if (aio_submit(r->aio, 1, cbs) != 1)
        return false;
    s->busy = true;
    r->next += READ_BLOCK;
    return true;
}

/* Keeps every free slot reading the next block the body needs. */
static bool reader_fill(struct blob_reader *r)
{
    for (int i = 0; i < READ_AHEAD; i++) {
        struct read_slot *s = &r->slot[i];
        if (!s->busy && !s->ready && r->next < r->end && !slot_submit(r, s))
            return false;
    }
    return true;
}

/* Waits until slot s is read. */
static bool slot_wait(struct blob_reader *r, struct read_slot *s)
{
    while (s->busy) {
        struct io_event ev[READ_AHEAD];
        long n = aio_getevents(r->aio, 1, READ_AHEAD, ev);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        for (long k = 0; k < n; k++) {
            struct read_slot *done = (struct read_slot *)(uintptr_t)ev[k].data;
            done->busy = false;
            if (ev[k].res < 0)
                return false;
            done->got = (size_t)ev[k].res;
            done->ready = true;
        }
    }
    return true;
}

static struct read_slot *slot_holding(struct blob_reader *r, uint64_t at)
{
    for (int i = 0; i < READ_AHEAD; i++) {
        struct read_slot *s = &r->slot[i];
        if ((s->busy || s->ready) && at >= s->at && at - s->at < READ_BLOCK)
            return s;
    }
    return NULL;
}

/* Serves a read from the blocks read ahead; returns 0 if the direct path
 * cannot (the caller then reads plainly). */
static ssize_t reader_read_direct(struct blob_reader *r, uint64_t at, char *buf, size_t max)
{
    struct read_slot *s = slot_holding(r, at);
    if (s == NULL || !slot_wait(r, s) || at - s->at >= s->got)
        return 0;
    size_t n = s->got - (size_t)(at - s->at);
    if (n > max)
        n = max;
    if ((uint64_t)n > r->end - at)
        n = (size_t)(r->end - at);
    memcpy(buf, s->buf + (at - s->at), n);
    if (at + n == s->at + s->got)
        s->ready = false;
    return reader_fill(r) ? (ssize_t)n : 0;
}

ssize_t blob_reader_read(void *ctx, uint64_t pos, char *buf, size_t max)
{
    struct blob_reader *r = ctx;
    uint64_t at;
    if (__builtin_add_overflow(r->start, pos, &at) || at >= r->end || max == 0)
        return FF_EINVAL;
    if (r->direct_fd >= 0) {
        ssize_t n = reader_read_direct(r, at, buf, max);
        if (n > 0)
            return n;
        reader_go_plain(r);
    }
    if ((uint64_t)max > r->end - at)
        max = (size_t)(r->end - at);
    for (;;) {
        ssize_t n = pread(r->fd, buf, max, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        return n > 0 ? n : FF_EIO; /* the file shrank or failed under us */
    }
}

/* True if the page at offset is in the page cache. mincore rather than a
 * RWF_NOWAIT read, which would start read-ahead and so make the next pull
 * of the blob look cached. */
static bool page_cached(int fd, uint64_t offset)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return false;
    off_t at = (off_t)(offset - offset % (uint64_t)page);
    void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, at);
    if (p == MAP_FAILED)
        return false;
    unsigned char vec[1] = {0};
    bool cached = mincore(p, (size_t)page, vec) == 0 && (vec[0] & 1) != 0;
    munmap(p, (size_t)page);
    return cached;
}

/* Sets up the direct path; false if this blob is better read plainly. */
static bool reader_go_direct(struct blob_reader *r, struct blob_store *bs,
                             const struct ff_digest *d)
{
    if (r->end - r->start < DIRECT_MIN || page_cached(r->fd, r->start))
        return false;
    r->direct_fd = blob_store_open_direct(bs, d, r->fd);
    if (r->direct_fd < 0)
        return false;
    for (int i = 0; i < READ_AHEAD; i++) {
        void *b = NULL;
        if (posix_memalign(&b, BLOB_DIRECT_ALIGN, READ_BLOCK) != 0)
            return false;
        r->slot[i].buf = b;
    }
    if (aio_setup(READ_AHEAD, &r->aio) != 0) {
        r->aio = 0;
        return false;
    }
    r->next = r->start - r->start % BLOB_DIRECT_ALIGN;
    return reader_fill(r);
}

int blob_reader_new(struct blob_store *bs, const struct ff_digest *d, int fd, uint64_t offset,
                    uint64_t length, struct blob_reader **out)
{
    struct blob_reader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        close(fd);
        return FF_ENOMEM;
    }
    r->fd = fd;
    r->direct_fd = -1;
    r->start = offset;
    if (__builtin_add_overflow(offset, length, &r->end) || r->end > INT64_MAX) {
        blob_reader_free(r);
        return FF_EINVAL;
    }
    if (!reader_go_direct(r, bs, d))
        reader_go_plain(r);
    *out = r;
    return 0;
}

void blob_reader_free(void *ctx)
{
    struct blob_reader *r = ctx;
    if (r == NULL)
        return;
    reader_go_plain(r);
    for (int i = 0; i < READ_AHEAD; i++)
        free(r->slot[i].buf);
    close(r->fd);
    free(r);
}
