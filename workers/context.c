/* COPY and ADD sources: resolving them inside a root, globbing, walking
 * them, and the digest of what they carry (see context.h).
 *
 * Paths are never handed to the kernel whole. Each component is opened
 * with openat(O_PATH|O_NOFOLLOW) from the descriptor of the one before,
 * symlinks are read and expanded here, and ".." pops our own stack of
 * descriptors. So the only way out of a root would be a symlink we chose
 * to follow, and those are checked: refused when they leave a build
 * context, kept inside a stage rootfs (RESOLVE_IN_ROOT semantics). A
 * component renamed or replaced while we walk can only change which file
 * inside the root we see. Walks open each directory with O_NOFOLLOW from
 * its parent's descriptor, and files are opened the same way and checked
 * against the inode the walk saw. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_file.h"
#include "ff_str.h"

#include <archive.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct context_root {
    int fd;
    enum context_root_kind kind;
    char *what;
    context_exclude_fn exclude;
    void *exclude_ctx;
};

const char *context_instr_name(enum context_instr instr)
{
    return instr == CONTEXT_ADD ? "ADD" : "COPY";
}

const char *context_root_what(const struct context_root *r)
{
    return r->what;
}

int context_root_fd(const struct context_root *r)
{
    return r->fd;
}

static int errno_code(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR: return FF_ENOTFOUND;
    case ENOMEM: return FF_ENOMEM;
    case ENAMETOOLONG:
    case ELOOP: return FF_ETOOBIG;
    default: return FF_EIO;
    }
}

/* Quoted path for a message: hostile names cannot break the quoting. */
static const char *quote(const char *s, char q[FF_STR_QUOTE_SIZE])
{
    ff_str_quote(s, strlen(s), q);
    return q;
}

int context_root_open(const char *dir, enum context_root_kind kind, const char *what,
                      context_exclude_fn exclude, void *exclude_ctx, struct context_root **out,
                      struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct context_root *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    r->fd = -1;
    r->what = strdup(what != NULL ? what : "the build context");
    if (r->what == NULL) {
        context_root_free(r);
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    }
    r->fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        context_root_free(r);
        return CONTEXT_FAIL(err, errno_code(e), "context: cannot open \"%s\": %s", quote(dir, q),
                            strerror(e));
    }
    r->kind = kind;
    r->exclude = exclude;
    r->exclude_ctx = exclude_ctx;
    *out = r;
    return 0;
}

void context_root_free(struct context_root *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        (void)close(r->fd);
    free(r->what);
    free(r);
}

/* ---- path cleaning ------------------------------------------------------ */

/* Drops the last component of the cleaned path in b (length *len). */
static void clean_pop(char *b, size_t *len)
{
    while (*len > 0 && b[*len - 1] != '/')
        (*len)--;
    if (*len > 0)
        (*len)--;
}

/* Whether the last component of the cleaned path in b is "..". */
static bool clean_last_is_dotdot(const char *b, size_t len)
{
    if (len < 2 || b[len - 1] != '.' || b[len - 2] != '.')
        return false;
    return len == 2 || b[len - 3] == '/';
}

int context_path_clean(const char *path, char **out, bool *escapes, struct ff_err *err)
{
    size_t n = strlen(path);
    if (n > CONTEXT_PATH_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "path longer than %d bytes", CONTEXT_PATH_MAX);
    char *b = calloc(n + 1, 1);
    if (b == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    bool rooted = path[0] == '/';
    size_t len = 0;
    *escapes = false;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && path[j] != '/')
            j++;
        size_t clen = j - i;
        const char *c = path + i;
        i = j + 1;
        if (clen == 0 || (clen == 1 && c[0] == '.'))
            continue;
        if (clen == 2 && c[0] == '.' && c[1] == '.') {
            if (len > 0 && !clean_last_is_dotdot(b, len)) {
                clean_pop(b, &len);
                continue;
            }
            if (rooted)
                continue;
            *escapes = true;
        }
        if (len > 0)
            b[len++] = '/';
        memcpy(b + len, c, clen);
        len += clen;
    }
    b[len] = '\0';
    *out = b;
    return 0;
}

/* ---- resolving a path inside a root -------------------------------------- */

struct res_frame {
    int fd;          /* O_PATH directory */
    size_t real_len; /* length of the real path up to and including it */
};

struct res {
    int flags;
    const struct context_res_opts *o;
    struct res_frame frames[CONTEXT_DEPTH_MAX + 1];
    size_t depth; /* frames[0] is the root, never closed here */
    char *todo;   /* components still to resolve */
    size_t todo_len;
    size_t pos;
    char real[CONTEXT_PATH_MAX + 2];
    size_t real_len;
    char link[CONTEXT_PATH_MAX + 2]; /* the last symlink followed, for messages */
    unsigned links;
};

/* Longest pending path while symlinks expand: each expansion adds at most
 * one target, and at most CONTEXT_SYMLINKS_MAX happen. */
#define RES_TODO_MAX ((size_t)(CONTEXT_SYMLINKS_MAX + 1) * CONTEXT_PATH_MAX)

static void res_pop(struct res *r)
{
    if (r->depth == 0)
        return;
    (void)close(r->frames[r->depth].fd);
    r->depth--;
    r->real_len = r->frames[r->depth].real_len;
    r->real[r->real_len] = '\0';
}

static void res_release(struct res *r)
{
    while (r->depth > 0)
        res_pop(r);
    free(r->todo);
    r->todo = NULL;
}

/* Next component of todo into *c (not NUL-terminated), length *clen;
 * false when none is left. *last says whether it is the final one. */
static bool res_next(struct res *r, const char **c, size_t *clen, bool *last)
{
    for (;;) {
        while (r->pos < r->todo_len && r->todo[r->pos] == '/')
            r->pos++;
        if (r->pos >= r->todo_len)
            return false;
        size_t j = r->pos;
        while (j < r->todo_len && r->todo[j] != '/')
            j++;
        *c = r->todo + r->pos;
        *clen = j - r->pos;
        r->pos = j;
        if (*clen == 1 && (*c)[0] == '.')
            continue;
        size_t k = j;
        *last = true;
        while (k < r->todo_len) {
            if (r->todo[k] != '/' &&
                !(r->todo[k] == '.' && (k + 1 == r->todo_len || r->todo[k + 1] == '/'))) {
                *last = false;
                break;
            }
            k++;
        }
        return true;
    }
}

/* Replaces the consumed part of todo by target, so that resolution goes
 * on through the link's target and then the rest. */
static int res_splice(struct res *r, const char *target, size_t tlen, struct ff_err *err)
{
    size_t rest = r->todo_len - r->pos;
    if (tlen + 1 + rest > RES_TODO_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "symlinks expand to a path that is too long");
    char *n = malloc(tlen + 1 + rest + 1);
    if (n == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    memcpy(n, target, tlen);
    n[tlen] = '/';
    memcpy(n + tlen + 1, r->todo + r->pos, rest);
    n[tlen + 1 + rest] = '\0';
    free(r->todo);
    r->todo = n;
    r->todo_len = tlen + 1 + rest;
    r->pos = 0;
    return 0;
}

/* Follows the symlink open on fd, whose path is the real path so far:
 * the rest of the resolution goes through its target. */
static int res_symlink(struct res *r, int fd, size_t parent_len, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    memcpy(r->link, r->real, r->real_len + 1);
    if (++r->links > CONTEXT_SYMLINKS_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "\"%s\": more than %d symlinks", quote(r->link, q),
                            CONTEXT_SYMLINKS_MAX);
    char target[CONTEXT_PATH_MAX + 1];
    ssize_t n = readlinkat(fd, "", target, sizeof(target));
    if (n < 0)
        return CONTEXT_FAIL(err, FF_EIO, "\"%s\": cannot read symlink: %s", quote(r->link, q),
                            strerror(errno));
    if ((size_t)n >= sizeof(target))
        return CONTEXT_FAIL(err, FF_ETOOBIG, "\"%s\": symlink target too long", quote(r->link, q));
    target[n] = '\0';
    if (n == 0)
        return CONTEXT_FAIL(err, FF_ENOTFOUND, "\"%s\": empty symlink", quote(r->link, q));
    r->real_len = parent_len;
    r->real[parent_len] = '\0';
    if (target[0] == '/') {
        if (!(r->flags & CONTEXT_RES_IN_ROOT))
            return CONTEXT_FAIL(err, FF_EINVAL, "symlink \"%s\" points outside the root",
                                quote(r->link, q));
        while (r->depth > 0)
            res_pop(r);
    }
    return res_splice(r, target, (size_t)n, err);
}

static int res_mkdir(struct res *r, int dirfd, const char *name, const char *real,
                     struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    if (mkdirat(dirfd, name, 0700) != 0) {
        int e = errno;
        if (e == EEXIST)
            return 0;
        return CONTEXT_FAIL(err, errno_code(e), "cannot create directory \"/%s\": %s",
                            quote(real, q), strerror(e));
    }
    if (fchownat(dirfd, name, r->o->uid, r->o->gid, AT_SYMLINK_NOFOLLOW) != 0 ||
        fchmodat(dirfd, name, 0755, 0) != 0)
        return CONTEXT_FAIL(err, FF_EIO, "cannot set owner and mode of \"/%s\": %s", quote(real, q),
                            strerror(errno));
    return 0;
}

/* Asks the exclusion callback about real; *hidden when excluded and not
 * to be walked, *walk when excluded but to be walked. */
static int res_excluded(struct res *r, const char *real, bool is_dir, bool *hidden, bool *walk,
                        struct ff_err *err)
{
    *hidden = false;
    *walk = false;
    if (r->o->exclude == NULL)
        return 0;
    bool excluded = false;
    bool walk_anyway = false;
    int rc = r->o->exclude(r->o->exclude_ctx, real, is_dir, &excluded, &walk_anyway, err);
    if (rc != 0)
        return rc;
    if (excluded && is_dir && walk_anyway)
        *walk = true;
    else if (excluded)
        *hidden = true;
    return 0;
}

/* Sets the result for a missing last component name under the current
 * directory. */
static int res_missing(struct res *r, const char *name, struct context_resolved *out,
                       struct ff_err *err)
{
    out->parent_fd = fcntl(r->frames[r->depth].fd, F_DUPFD_CLOEXEC, 0);
    out->name = strdup(name);
    out->real = strdup(r->real);
    if (out->parent_fd < 0 || out->name == NULL || out->real == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    out->fd = -1;
    return 0;
}

static int res_found(struct res *r, int fd, const char *name, const struct stat *st,
                     struct context_resolved *out, struct ff_err *err)
{
    out->parent_fd = fcntl(r->frames[r->depth].fd, F_DUPFD_CLOEXEC, 0);
    out->fd = fd;
    out->st = *st;
    out->name = strdup(name);
    if (out->parent_fd < 0 || out->name == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    return 0;
}

/* Appends "/name" (or "name" at the top) to the real path. */
static int res_real_push(struct res *r, const char *name, size_t len, struct ff_err *err)
{
    size_t need = r->real_len + (r->real_len > 0 ? 1 : 0) + len;
    if (need > CONTEXT_PATH_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "path longer than %d bytes", CONTEXT_PATH_MAX);
    if (r->real_len > 0)
        r->real[r->real_len++] = '/';
    memcpy(r->real + r->real_len, name, len);
    r->real_len += len;
    r->real[r->real_len] = '\0';
    return 0;
}

/* Opens component name below the current directory, creating it when the
 * flags say so. Returns the O_PATH fd, or -1 with *rc set (and *missing
 * when it does not exist). */
static int res_open(struct res *r, const char *name, bool last, bool *missing, int *rc,
                    struct ff_err *err)
{
    int dirfd = r->frames[r->depth].fd;
    bool create = (r->flags & CONTEXT_RES_MKDIR) && (!last || (r->flags & CONTEXT_RES_MKDIR_LAST));
    *missing = false;
    *rc = 0;
    for (int tries = 0; tries < 2; tries++) {
        int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno != ENOENT || !create || tries > 0)
            break;
        *rc = res_mkdir(r, dirfd, name, r->real, err);
        if (*rc != 0)
            return -1;
    }
    char q[FF_STR_QUOTE_SIZE];
    int e = errno;
    if (e == ENOENT) {
        *missing = true;
        *rc = CONTEXT_FAIL(err, FF_ENOTFOUND, "\"%s\" not found", quote(r->real, q));
        return -1;
    }
    *rc =
        CONTEXT_FAIL(err, errno_code(e), "cannot open \"%s\": %s", quote(r->real, q), strerror(e));
    return -1;
}

static int res_step(struct res *r, const char *c, size_t clen, bool last,
                    struct context_resolved *out, bool *done, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    char name[NAME_MAX + 1];
    if (clen > NAME_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "a path component is longer than %d bytes", NAME_MAX);
    memcpy(name, c, clen);
    name[clen] = '\0';
    if (clen == 2 && c[0] == '.' && c[1] == '.') {
        /* Cleaned paths never start with "..": this came from a link. */
        if (r->depth == 0 && !(r->flags & CONTEXT_RES_IN_ROOT))
            return CONTEXT_FAIL(err, FF_EINVAL, "symlink \"%s\" points outside the root",
                                quote(r->link, q));
        res_pop(r);
        return 0;
    }
    size_t saved = r->real_len;
    int rc = res_real_push(r, name, clen, err);
    if (rc != 0)
        return rc;
    bool missing = false;
    int fd = res_open(r, name, last, &missing, &rc, err);
    if (fd < 0) {
        if (missing && last && (r->flags & CONTEXT_RES_MISSING_OK)) {
            ff_err_clear(err);
            *done = true;
            return res_missing(r, name, out, err);
        }
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        (void)close(fd);
        return CONTEXT_FAIL(err, FF_EIO, "cannot stat \"%s\": %s", quote(r->real, q),
                            strerror(errno));
    }
    bool hidden = false;
    bool walk = false;
    rc = res_excluded(r, r->real, S_ISDIR(st.st_mode), &hidden, &walk, err);
    if (rc == 0 && hidden) {
        if (last && (r->flags & CONTEXT_RES_MISSING_OK)) {
            (void)close(fd);
            *done = true;
            return res_missing(r, name, out, err);
        }
        rc = CONTEXT_FAIL(err, FF_ENOTFOUND, "\"%s\" not found (excluded)", quote(r->real, q));
    }
    if (rc != 0) {
        (void)close(fd);
        return rc;
    }
    if (S_ISLNK(st.st_mode) && (!last || (r->flags & CONTEXT_RES_FOLLOW_LAST))) {
        if (r->flags & CONTEXT_RES_NO_SYMLINKS)
            rc = CONTEXT_FAIL(err, FF_EINVAL, "\"%s\" is now a symlink", quote(r->real, q));
        else
            rc = res_symlink(r, fd, saved, err);
        (void)close(fd);
        return rc;
    }
    if (last) {
        out->excluded = walk;
        *done = true;
        return res_found(r, fd, name, &st, out, err);
    }
    if (!S_ISDIR(st.st_mode)) {
        (void)close(fd);
        return CONTEXT_FAIL(err, FF_ENOTFOUND, "\"%s\" is not a directory", quote(r->real, q));
    }
    if (r->depth >= CONTEXT_DEPTH_MAX) {
        (void)close(fd);
        return CONTEXT_FAIL(err, FF_ETOOBIG, "more than %d directory levels", CONTEXT_DEPTH_MAX);
    }
    r->depth++;
    r->frames[r->depth].fd = fd;
    r->frames[r->depth].real_len = r->real_len;
    return 0;
}

/* The end of the path when it names a directory already on the stack: the
 * root (an empty path), or where a link's ".." brought us. */
static int res_root(struct res *r, struct context_resolved *out, struct ff_err *err)
{
    int fd = r->frames[r->depth].fd;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return CONTEXT_FAIL(err, FF_EIO, "cannot stat the root: %s", strerror(errno));
    const char *slash = strrchr(r->real, '/');
    out->name = strdup(r->depth == 0 ? "" : slash != NULL ? slash + 1 : r->real);
    out->parent_fd = fcntl(r->frames[r->depth > 0 ? r->depth - 1 : 0].fd, F_DUPFD_CLOEXEC, 0);
    out->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    out->st = st;
    if (out->name == NULL || out->parent_fd < 0 || out->fd < 0)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of descriptors or memory");
    return 0;
}

int context_resolve_path(int rootfd, const char *path, const struct context_res_opts *o,
                         struct context_resolved *out, struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    out->parent_fd = -1;
    out->fd = -1;
    struct res *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    r->flags = o->flags;
    r->o = o;
    r->frames[0].fd = rootfd;
    r->todo = strdup(path);
    int rc = 0;
    if (r->todo == NULL) {
        rc = CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
        goto fail;
    }
    r->todo_len = strlen(path);
    bool done = false;
    while (!done) {
        const char *c = NULL;
        size_t clen = 0;
        bool last = false;
        if (!res_next(r, &c, &clen, &last)) {
            rc = res_root(r, out, err);
            break;
        }
        rc = res_step(r, c, clen, last, out, &done, err);
        if (rc != 0)
            break;
    }
    if (rc == 0 && out->real == NULL) {
        out->real = strdup(r->real);
        if (out->real == NULL)
            rc = CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    }
fail:
    res_release(r);
    free(r);
    if (rc != 0)
        context_resolved_release(out);
    return rc;
}

void context_resolved_release(struct context_resolved *out)
{
    if (out->parent_fd >= 0)
        (void)close(out->parent_fd);
    if (out->fd >= 0)
        (void)close(out->fd);
    free(out->name);
    free(out->real);
    memset(out, 0, sizeof(*out));
    out->parent_fd = -1;
    out->fd = -1;
}

/* ---- glob: Go's filepath.Match ------------------------------------------ */

/* One UTF-8 character as Go's utf8.DecodeRuneInString decodes it: an
 * invalid or truncated sequence is U+FFFD of width 1. */
#define RUNE_ERROR 0xFFFDu

static uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *w)
{
    *w = 1;
    if (n == 0)
        return RUNE_ERROR;
    unsigned c = s[0];
    if (c < 0x80)
        return c;
    size_t len;
    uint32_t r;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        r = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        r = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        r = c & 0x07;
        min = 0x10000;
    } else {
        return RUNE_ERROR;
    }
    if (n < len)
        return RUNE_ERROR;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return RUNE_ERROR;
        r = (r << 6) | (s[i] & 0x3F);
    }
    if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF))
        return RUNE_ERROR;
    *w = len;
    return r;
}

struct glob {
    const unsigned char *p; /* the current chunk */
    size_t plen;
    size_t steps;
};

/* Go's getEsc: one class character at *i, '\' escaping the next. */
static bool glob_get_esc(struct glob *g, size_t *i, uint32_t *r)
{
    if (*i >= g->plen || g->p[*i] == '-' || g->p[*i] == ']')
        return false;
    if (g->p[*i] == '\\') {
        (*i)++;
        if (*i >= g->plen)
            return false;
    }
    size_t w = 1;
    *r = utf8_decode(g->p + *i, g->plen - *i, &w);
    if (*r == RUNE_ERROR && w == 1)
        return false;
    *i += w;
    return *i < g->plen;
}

/* A character class starting at *ci (just past '['); r is the name's
 * character (meaningless when failed). Returns false on a bad pattern. */
static bool glob_class(struct glob *g, size_t *ci, uint32_t r, bool *failed)
{
    bool negated = false;
    if (*ci < g->plen && g->p[*ci] == '^') {
        negated = true;
        (*ci)++;
    }
    bool match = false;
    for (size_t nrange = 0;; nrange++) {
        g->steps++;
        if (*ci < g->plen && g->p[*ci] == ']' && nrange > 0) {
            (*ci)++;
            break;
        }
        uint32_t lo = 0;
        uint32_t hi = 0;
        if (!glob_get_esc(g, ci, &lo))
            return false;
        hi = lo;
        if (g->p[*ci] == '-') {
            (*ci)++;
            if (!glob_get_esc(g, ci, &hi))
                return false;
        }
        if (lo <= r && r <= hi)
            match = true;
    }
    if (match == negated)
        *failed = true;
    return true;
}

/* Go's matchChunk: the star-free chunk g->p against s. On a match *ok and
 * *rest (bytes of s consumed). Returns false on a bad pattern. */
static bool glob_chunk(struct glob *g, const unsigned char *s, size_t slen, size_t *rest, bool *ok)
{
    bool failed = false;
    size_t si = 0;
    g->steps++;
    for (size_t ci = 0; ci < g->plen;) {
        g->steps++;
        if (!failed && si == slen)
            failed = true;
        size_t w = 1;
        switch (g->p[ci]) {
        case '[': {
            uint32_t r = 0;
            if (!failed) {
                r = utf8_decode(s + si, slen - si, &w);
                si += w;
            }
            ci++;
            if (!glob_class(g, &ci, r, &failed))
                return false;
            break;
        }
        case '?':
            if (!failed) {
                if (s[si] == '/')
                    failed = true;
                (void)utf8_decode(s + si, slen - si, &w);
                si += w;
            }
            ci++;
            break;
        default:
            if (g->p[ci] == '\\') {
                ci++;
                if (ci >= g->plen)
                    return false;
            }
            if (!failed) {
                if (g->p[ci] != s[si])
                    failed = true;
                si++;
            }
            ci++;
            break;
        }
    }
    *ok = !failed;
    *rest = si;
    return true;
}

/* Go's scanChunk: stars first, then the chunk up to the next star outside
 * a class. */
static void glob_scan(const unsigned char *p, size_t plen, size_t *pos, bool *star, size_t *cstart,
                      size_t *clen)
{
    size_t i = *pos;
    *star = false;
    while (i < plen && p[i] == '*') {
        i++;
        *star = true;
    }
    *cstart = i;
    bool inrange = false;
    for (; i < plen; i++) {
        if (p[i] == '\\') {
            if (i + 1 < plen)
                i++;
        } else if (p[i] == '[') {
            inrange = true;
        } else if (p[i] == ']') {
            inrange = false;
        } else if (p[i] == '*' && !inrange) {
            break;
        }
    }
    *clen = i - *cstart;
    *pos = i;
}

static bool glob_valid(struct glob *g, const unsigned char *p, size_t plen)
{
    size_t pos = 0;
    while (pos < plen) {
        bool star = false;
        size_t cs = 0;
        size_t cl = 0;
        glob_scan(p, plen, &pos, &star, &cs, &cl);
        g->p = p + cs;
        g->plen = cl;
        size_t rest = 0;
        bool ok = false;
        if (!glob_chunk(g, (const unsigned char *)"", 0, &rest, &ok))
            return false;
    }
    return true;
}

/* The match proper, on a pattern known to be valid. */
static bool glob_run(struct glob *g, const unsigned char *p, size_t plen, const unsigned char *name,
                     size_t nlen)
{
    size_t pos = 0;
    size_t ni = 0;
    while (pos < plen) {
        bool star = false;
        size_t cs = 0;
        size_t cl = 0;
        glob_scan(p, plen, &pos, &star, &cs, &cl);
        if (star && cl == 0)
            return memchr(name + ni, '/', nlen - ni) == NULL;
        g->p = p + cs;
        g->plen = cl;
        size_t rest = 0;
        bool ok = false;
        (void)glob_chunk(g, name + ni, nlen - ni, &rest, &ok);
        if (ok && (ni + rest == nlen || pos < plen)) {
            ni += rest;
            continue;
        }
        if (!star)
            return false;
        bool found = false;
        for (size_t i = 0; ni + i < nlen && name[ni + i] != '/'; i++) {
            size_t off = ni + i + 1;
            (void)glob_chunk(g, name + off, nlen - off, &rest, &ok);
            if (ok && !(pos == plen && off + rest < nlen)) {
                ni = off + rest;
                found = true;
                break;
            }
        }
        if (!found)
            return false;
    }
    return ni == nlen;
}

int context_glob_match(const char *pattern, size_t plen, const char *name, size_t nlen, bool *match,
                       size_t *steps, struct ff_err *err)
{
    struct glob g = {NULL, 0, 0};
    const unsigned char *p = (const unsigned char *)pattern;
    *match = false;
    if (steps != NULL)
        *steps = 0;
    if (plen > CONTEXT_GLOB_SEGMENT_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "pattern longer than %d bytes",
                            CONTEXT_GLOB_SEGMENT_MAX);
    if (!glob_valid(&g, p, plen)) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(pattern, plen, q);
        if (steps != NULL)
            *steps = g.steps;
        return CONTEXT_FAIL(err, FF_EINVAL,
                            "bad pattern \"%s\", expected a complete [class] "
                            "and no trailing '\\'",
                            q);
    }
    *match = glob_run(&g, p, plen, (const unsigned char *)name, nlen);
    if (steps != NULL)
        *steps = g.steps;
    return 0;
}

bool context_glob_has_meta(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '*' || s[i] == '?' || s[i] == '[')
            return true;
    }
    return false;
}

/* ---- directory listings ------------------------------------------------- */

/* A directory's names, sorted by bytes: one arena, offsets into it. */
struct names {
    char *arena;
    size_t arena_len;
    size_t arena_cap;
    size_t *off;
    size_t n;
    size_t cap;
};

static void names_free(struct names *nm)
{
    free(nm->arena);
    free(nm->off);
    memset(nm, 0, sizeof(*nm));
}

static int names_cmp(const void *a, const void *b, void *arg)
{
    const char *arena = arg;
    return strcmp(arena + *(const size_t *)a, arena + *(const size_t *)b);
}

static int names_add(struct names *nm, const char *name, struct ff_err *err)
{
    size_t len = strlen(name) + 1;
    if (nm->n >= CONTEXT_ENTRIES_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "more than %u entries in a directory",
                            CONTEXT_ENTRIES_MAX);
    if (nm->n == nm->cap) {
        size_t cap = nm->cap ? nm->cap * 2 : 64;
        size_t *off = reallocarray(nm->off, cap, sizeof(*off));
        if (off == NULL)
            return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
        nm->off = off;
        nm->cap = cap;
    }
    if (nm->arena_cap - nm->arena_len < len) {
        size_t cap = nm->arena_cap ? nm->arena_cap * 2 : 4096;
        while (cap - nm->arena_len < len)
            cap *= 2;
        char *a = realloc(nm->arena, cap);
        if (a == NULL)
            return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
        nm->arena = a;
        nm->arena_cap = cap;
    }
    memcpy(nm->arena + nm->arena_len, name, len);
    nm->off[nm->n++] = nm->arena_len;
    nm->arena_len += len;
    return 0;
}

/* Reads the names in the directory open on dirfd (any open mode), "." and
 * ".." left out, sorted. real names it in messages. */
static int names_read(int dirfd, const char *real, struct names *nm, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    memset(nm, 0, sizeof(*nm));
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (fd >= 0)
            (void)close(fd);
        return CONTEXT_FAIL(err, errno_code(e), "cannot read directory \"%s\": %s", quote(real, q),
                            strerror(e));
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        const struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                rc = CONTEXT_FAIL(err, FF_EIO, "cannot read directory \"%s\": %s", quote(real, q),
                                  strerror(errno));
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = names_add(nm, de->d_name, err);
        if (rc != 0)
            break;
    }
    (void)closedir(d);
    if (rc != 0) {
        names_free(nm);
        return rc;
    }
    if (nm->n > 1)
        qsort_r(nm->off, nm->n, sizeof(*nm->off), names_cmp, nm->arena);
    return 0;
}

static const char *names_at(const struct names *nm, size_t i)
{
    return nm->arena + nm->off[i];
}

/* "a" + "/" + "b", or "b" when a is empty, into out (CONTEXT_PATH_MAX+1). */
static int path_join(const char *a, const char *b, char *out, struct ff_err *err)
{
    int n = snprintf(out, CONTEXT_PATH_MAX + 1, "%s%s%s", a, a[0] != '\0' ? "/" : "", b);
    if (n < 0 || n > CONTEXT_PATH_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "path longer than %d bytes", CONTEXT_PATH_MAX);
    return 0;
}

/* ---- sources ------------------------------------------------------------ */

struct rs {
    const struct context_root *root;
    struct context_sources *s;
    size_t cap;
    const char *instr;
    const char *spec; /* the source being resolved, as written */
    const char *checksum;
};

static void source_release(struct context_source *src)
{
    free(src->spec);
    free(src->path);
    free(src->name);
    free(src->url);
}

void context_sources_free(struct context_sources *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        source_release(&s->v[i]);
    free(s->v);
    free(s);
}

/* Appends src (taking its strings) to the list. */
static int rs_add(struct rs *r, struct context_source *src, struct ff_err *err)
{
    struct context_sources *s = r->s;
    if (s->n >= CONTEXT_ENTRIES_MAX) {
        source_release(src);
        return CONTEXT_FAIL(err, FF_ETOOBIG, "%s: more than %u sources", r->instr,
                            CONTEXT_ENTRIES_MAX);
    }
    if (s->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct context_source *v = reallocarray(s->v, cap, sizeof(*v));
        if (v == NULL) {
            source_release(src);
            return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
        }
        s->v = v;
        r->cap = cap;
    }
    s->v[s->n++] = *src;
    return 0;
}

static int rs_not_found(struct rs *r, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    return CONTEXT_FAIL(err, FF_ENOTFOUND, "%s: source \"%s\" not found in %s", r->instr,
                        quote(r->spec, q), r->root->what);
}

static int rs_res_opts(const struct rs *r, int flags, struct context_res_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->flags = flags | (r->root->kind == CONTEXT_ROOT_STAGE ? CONTEXT_RES_IN_ROOT : 0);
    o->exclude = r->root->exclude;
    o->exclude_ctx = r->root->exclude_ctx;
    return 0;
}

/* Checks the type of a resolved source: files, directories and fifos are
 * copied, a socket does not exist for us, a device node is refused. */
static int rs_type_check(struct rs *r, const char *real, mode_t mode, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    if (S_ISREG(mode) || S_ISDIR(mode) || S_ISFIFO(mode))
        return 0;
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return CONTEXT_FAIL(err, FF_EINVAL,
                            "%s: \"%s\" in %s is a device node, which is not "
                            "copied",
                            r->instr, quote(real, q), r->root->what);
    return rs_not_found(r, err);
}

/* Resolves the cleaned path (following a final symlink) into a source
 * named name. */
static int rs_add_path(struct rs *r, const char *path, const char *name, bool want_dir,
                       struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct context_res_opts o;
    (void)rs_res_opts(r, CONTEXT_RES_FOLLOW_LAST, &o);
    struct context_resolved res;
    int rc = context_resolve_path(r->root->fd, path, &o, &res, err);
    if (rc == FF_ENOTFOUND)
        return rs_not_found(r, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s: source \"%s\" in %s", r->instr, quote(r->spec, q),
                           r->root->what);
    rc = rs_type_check(r, res.real, res.st.st_mode, err);
    if (rc == 0 && want_dir && !S_ISDIR(res.st.st_mode))
        rc = rs_not_found(r, err);
    struct context_source src;
    memset(&src, 0, sizeof(src));
    if (rc == 0) {
        src.kind = CONTEXT_SRC_PATH;
        src.type = res.st.st_mode & S_IFMT;
        src.walk_only = res.excluded;
        src.spec = strdup(r->spec);
        src.name = strdup(name);
        src.path = res.real;
        res.real = NULL;
        if (src.spec == NULL || src.name == NULL || src.path == NULL) {
            source_release(&src);
            rc = CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
        } else {
            rc = rs_add(r, &src, err);
        }
    }
    context_resolved_release(&res);
    return rc;
}

/* A glob's segments: the literal directory before the first segment with a
 * wildcard, then one pattern per segment. */
struct glob_segs {
    const char *seg[CONTEXT_DEPTH_MAX];
    size_t len[CONTEXT_DEPTH_MAX];
    size_t n;
};

static int rs_glob_level(struct rs *r, const struct glob_segs *gs, size_t k, int dirfd,
                         const char *real, size_t *matched, struct ff_err *err);

/* A name that matched segment k of the glob: the last segment makes it a
 * source, an earlier one is descended into when it is a real directory. */
static int rs_glob_hit(struct rs *r, const struct glob_segs *gs, size_t k, int dirfd,
                       const char *name, const char *child, size_t *matched, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0
                               : CONTEXT_FAIL(err, FF_EIO, "%s: cannot stat \"%s\": %s", r->instr,
                                              quote(child, q), strerror(errno));
    if (r->root->exclude != NULL) {
        bool excluded = false;
        bool walk = false;
        int rc = r->root->exclude(r->root->exclude_ctx, child, S_ISDIR(st.st_mode), &excluded,
                                  &walk, err);
        if (rc != 0)
            return rc;
        if (excluded && !(walk && S_ISDIR(st.st_mode)))
            return 0;
    }
    if (k + 1 == gs->n) {
        if (S_ISSOCK(st.st_mode))
            return 0;
        (*matched)++;
        return rs_add_path(r, child, name, false, err);
    }
    if (!S_ISDIR(st.st_mode))
        return 0;
    int fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : CONTEXT_FAIL(err, FF_EIO, "%s: cannot open \"%s\": %s", r->instr,
                                              quote(child, q), strerror(errno));
    int rc = rs_glob_level(r, gs, k + 1, fd, child, matched, err);
    (void)close(fd);
    return rc;
}

static int rs_glob_level(struct rs *r, const struct glob_segs *gs, size_t k, int dirfd,
                         const char *real, size_t *matched, struct ff_err *err)
{
    struct names nm;
    int rc = names_read(dirfd, real, &nm, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s", r->instr);
    char *child = malloc(CONTEXT_PATH_MAX + 1);
    if (child == NULL) {
        names_free(&nm);
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    }
    for (size_t i = 0; i < nm.n && rc == 0; i++) {
        const char *name = names_at(&nm, i);
        bool match = false;
        rc = context_glob_match(gs->seg[k], gs->len[k], name, strlen(name), &match, NULL, err);
        if (rc != 0 || !match)
            continue;
        rc = path_join(real, name, child, err);
        if (rc == 0)
            rc = rs_glob_hit(r, gs, k, dirfd, name, child, matched, err);
    }
    free(child);
    names_free(&nm);
    return rc;
}

static int rs_glob_split(struct rs *r, const char *cleaned, struct glob_segs *gs, size_t *first,
                         struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    gs->n = 0;
    *first = SIZE_MAX;
    for (const char *p = cleaned; *p != '\0';) {
        const char *slash = strchr(p, '/');
        size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (gs->n == CONTEXT_DEPTH_MAX)
            return CONTEXT_FAIL(err, FF_ETOOBIG, "%s: source \"%s\": more than %d levels", r->instr,
                                quote(r->spec, q), CONTEXT_DEPTH_MAX);
        if (*first == SIZE_MAX && context_glob_has_meta(p, len))
            *first = gs->n;
        gs->seg[gs->n] = p;
        gs->len[gs->n] = len;
        gs->n++;
        p += len;
        if (*p == '/')
            p++;
    }
    for (size_t k = *first; k < gs->n; k++) {
        bool m = false;
        int rc = context_glob_match(gs->seg[k], gs->len[k], "", 0, &m, NULL, err);
        if (rc != 0)
            return ff_err_wrap(err, "%s: source \"%s\"", r->instr, quote(r->spec, q));
    }
    return 0;
}

static int rs_glob(struct rs *r, const char *cleaned, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct glob_segs *gs = malloc(sizeof(*gs));
    char *dir = strdup(cleaned);
    int rc = 0;
    struct context_resolved res;
    memset(&res, 0, sizeof(res));
    res.fd = -1;
    res.parent_fd = -1;
    if (gs == NULL || dir == NULL) {
        rc = CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
        goto out;
    }
    size_t first = 0;
    rc = rs_glob_split(r, cleaned, gs, &first, err);
    if (rc != 0)
        goto out;
    if (first >= gs->n)
        FF_BUG("rs_glob on a path without a wildcard");
    dir[first == 0 ? 0 : (size_t)(gs->seg[first] - cleaned) - 1] = '\0';
    struct context_res_opts o;
    (void)rs_res_opts(r, CONTEXT_RES_FOLLOW_LAST, &o);
    size_t matched = 0;
    rc = context_resolve_path(r->root->fd, dir, &o, &res, err);
    if (rc == 0 && S_ISDIR(res.st.st_mode))
        rc = rs_glob_level(r, gs, first, res.fd, res.real, &matched, err);
    else if (rc == FF_ENOTFOUND)
        rc = 0;
    else if (rc != 0)
        rc =
            ff_err_wrap(err, "%s: source \"%s\" in %s", r->instr, quote(r->spec, q), r->root->what);
    if (rc == 0 && matched == 0)
        rc = CONTEXT_FAIL(err, FF_ENOTFOUND, "%s: no source files match \"%s\" in %s", r->instr,
                          quote(r->spec, q), r->root->what);
out:
    context_resolved_release(&res);
    free(dir);
    free(gs);
    return rc;
}

/* Whether spec names a directory by its form: a trailing "/" or "/.". */
static bool spec_wants_dir(const char *spec)
{
    size_t n = strlen(spec);
    return (n > 0 && spec[n - 1] == '/') || (n > 1 && spec[n - 1] == '.' && spec[n - 2] == '/');
}

static int rs_local(struct rs *r, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    if (r->checksum != NULL)
        return CONTEXT_FAIL(err, FF_EINVAL, "%s: --checksum is only for a URL source, not \"%s\"",
                            r->instr, quote(r->spec, q));
    char *cleaned = NULL;
    bool escapes = false;
    int rc = context_path_clean(r->spec, &cleaned, &escapes, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s: source \"%s\"", r->instr, quote(r->spec, q));
    if (escapes) {
        rc = CONTEXT_FAIL(err, FF_EINVAL, "%s: forbidden path outside %s: %s", r->instr,
                          r->root->what, quote(cleaned, q));
    } else if (context_glob_has_meta(cleaned, strlen(cleaned))) {
        rc = rs_glob(r, cleaned, err);
    } else {
        const char *slash = strrchr(cleaned, '/');
        rc = rs_add_path(r, cleaned, slash != NULL ? slash + 1 : cleaned, spec_wants_dir(r->spec),
                         err);
    }
    free(cleaned);
    return rc;
}

static int rs_url(struct rs *r, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    if (strncasecmp(r->spec, "https://", 8) != 0)
        return CONTEXT_FAIL(err, FF_EINVAL, "ADD: \"%s\": only https URLs are fetched",
                            quote(r->spec, q));
    if (r->checksum == NULL)
        return CONTEXT_FAIL(err, FF_EINVAL, "ADD from a URL needs --checksum (source \"%s\")",
                            quote(r->spec, q));
    if (strlen(r->spec) > FF_HTTP_URL_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "ADD: URL longer than %u bytes", FF_HTTP_URL_MAX);
    struct context_source src;
    memset(&src, 0, sizeof(src));
    src.kind = CONTEXT_SRC_URL;
    src.type = S_IFREG;
    int rc = ff_digest_parse_str(r->checksum, &src.checksum, err);
    if (rc != 0)
        return ff_err_wrap(err, "ADD: --checksum \"%s\"", quote(r->checksum, q));
    src.spec = strdup(r->spec);
    src.url = strdup(r->spec);
    src.name = NULL;
    rc = fetch_url_file_name(r->spec, &src.name, err);
    if (rc == FF_EINVAL) {
        /* No usable name: fine as long as dest names the file. */
        ff_err_clear(err);
        src.name = strdup("");
        rc = 0;
    }
    if (rc == 0 && (src.spec == NULL || src.url == NULL || src.name == NULL))
        rc = CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    if (rc != 0) {
        source_release(&src);
        return rc;
    }
    return rs_add(r, &src, err);
}

int context_resolve(const struct context_root *root, enum context_instr instr,
                    const char *const *srcs, size_t n, const char *checksum,
                    struct context_sources **out, struct ff_err *err)
{
    struct rs r;
    memset(&r, 0, sizeof(r));
    r.root = root;
    r.instr = context_instr_name(instr);
    r.checksum = checksum;
    r.s = calloc(1, sizeof(*r.s));
    if (r.s == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    r.s->root = root;
    r.s->instr = instr;
    int rc = 0;
    if (n == 0)
        rc = CONTEXT_FAIL(err, FF_EINVAL, "%s: no source given", r.instr);
    else if (checksum != NULL && n > 1)
        rc = CONTEXT_FAIL(err, FF_EINVAL, "%s: --checksum takes a single source, got %zu", r.instr,
                          n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        r.spec = srcs[i];
        if (instr == CONTEXT_ADD && fetch_is_url(srcs[i]))
            rc = rs_url(&r, err);
        else
            rc = rs_local(&r, err);
    }
    if (rc != 0) {
        context_sources_free(r.s);
        return rc;
    }
    *out = r.s;
    return 0;
}

/* ---- walking a source ---------------------------------------------------- */

/* First link seen of each multiply-linked file, by (device, inode). */
struct ino_ent {
    dev_t dev;
    ino_t ino;
    size_t source;
    char *rel; /* NULL: free slot */
};

struct inomap {
    struct ino_ent *v;
    size_t cap; /* a power of two, or 0 */
    size_t n;
};

static size_t ino_slot(const struct inomap *m, dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ULL ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 29;
    size_t i = (size_t)h & (m->cap - 1);
    while (m->v[i].rel != NULL && !(m->v[i].dev == dev && m->v[i].ino == ino))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static const struct ino_ent *inomap_get(const struct inomap *m, dev_t dev, ino_t ino)
{
    if (m->cap == 0)
        return NULL;
    const struct ino_ent *e = &m->v[ino_slot(m, dev, ino)];
    return e->rel != NULL ? e : NULL;
}

static int inomap_grow(struct inomap *m, struct ff_err *err)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct inomap bigger = {calloc(cap, sizeof(struct ino_ent)), cap, m->n};
    if (bigger.v == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    for (size_t i = 0; i < m->cap; i++) {
        if (m->v[i].rel != NULL)
            bigger.v[ino_slot(&bigger, m->v[i].dev, m->v[i].ino)] = m->v[i];
    }
    free(m->v);
    *m = bigger;
    return 0;
}

static int inomap_put(struct inomap *m, dev_t dev, ino_t ino, size_t source, const char *rel,
                      struct ff_err *err)
{
    if ((m->n + 1) * 2 > m->cap) {
        int rc = inomap_grow(m, err);
        if (rc != 0)
            return rc;
    }
    struct ino_ent *e = &m->v[ino_slot(m, dev, ino)];
    e->rel = strdup(rel);
    if (e->rel == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    e->dev = dev;
    e->ino = ino;
    e->source = source;
    m->n++;
    return 0;
}

static void inomap_free(struct inomap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].rel);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* A directory on the walk's stack. */
struct walk_dir {
    int fd;        /* O_RDONLY|O_DIRECTORY */
    int parent_fd; /* borrowed */
    struct stat st;
    char *name;
    size_t rel_len; /* the walk's rel and real paths up to this directory */
    size_t real_len;
    bool entered; /* reported; false while an excluded one is pending */
};

struct context_walk {
    const struct context_sources *s;
    struct inomap links;
    context_visit_fn fn;
    void *ctx;
    size_t source;
    uint64_t entries;
    char rel[CONTEXT_PATH_MAX + 2];
    size_t rel_len;
    char real[CONTEXT_PATH_MAX + 2];
    size_t real_len;
    char link[CONTEXT_PATH_MAX + 1];
    struct walk_dir dirs[CONTEXT_DEPTH_MAX + 1];
    size_t depth; /* directories on the stack */
};

int context_walk_new(const struct context_sources *s, struct context_walk **out, struct ff_err *err)
{
    struct context_walk *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    w->s = s;
    *out = w;
    return 0;
}

void context_walk_free(struct context_walk *w)
{
    if (w == NULL)
        return;
    inomap_free(&w->links);
    free(w);
}

/* Appends "/name" to both paths; undone by walk_path_pop. */
static int walk_path_push(struct context_walk *w, const char *name, struct ff_err *err)
{
    size_t len = strlen(name);
    size_t rel_need = w->rel_len + (w->rel_len > 0) + len;
    size_t real_need = w->real_len + (w->real_len > 0) + len;
    if (rel_need > CONTEXT_PATH_MAX || real_need > CONTEXT_PATH_MAX) {
        char q[FF_STR_QUOTE_SIZE];
        return CONTEXT_FAIL(err, FF_ETOOBIG, "%s: \"%s/%s\": path longer than %d bytes",
                            context_instr_name(w->s->instr), quote(w->real, q), name,
                            CONTEXT_PATH_MAX);
    }
    if (w->rel_len > 0)
        w->rel[w->rel_len++] = '/';
    memcpy(w->rel + w->rel_len, name, len + 1);
    w->rel_len += len;
    if (w->real_len > 0)
        w->real[w->real_len++] = '/';
    memcpy(w->real + w->real_len, name, len + 1);
    w->real_len += len;
    return 0;
}

static void walk_path_set(struct context_walk *w, size_t rel_len, size_t real_len)
{
    w->rel_len = rel_len;
    w->rel[rel_len] = '\0';
    w->real_len = real_len;
    w->real[real_len] = '\0';
}

static void walk_entry_init(struct context_walk *w, struct context_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->source = w->source;
    e->rel = w->rel;
    e->real = w->real;
    e->fd = -1;
}

static int walk_dir_event(struct context_walk *w, size_t i, enum context_visit v,
                          struct ff_err *err)
{
    const struct walk_dir *d = &w->dirs[i];
    size_t rel_len = w->rel_len;
    size_t real_len = w->real_len;
    char rel_c = w->rel[d->rel_len];
    char real_c = w->real[d->real_len];
    /* Report the directory with the paths cut back to it. */
    w->rel[d->rel_len] = '\0';
    w->real[d->real_len] = '\0';
    struct context_entry e;
    walk_entry_init(w, &e);
    e.dirfd = d->parent_fd;
    e.name = d->name;
    e.fd = d->fd;
    e.st = d->st;
    e.top = i == 0;
    int rc = w->fn(w->ctx, &e, v, err);
    w->rel[d->rel_len] = rel_c;
    w->real[d->real_len] = real_c;
    w->rel_len = rel_len;
    w->real_len = real_len;
    return rc;
}

/* Reports every pending (excluded but walked) directory on the stack, now
 * that something inside it is copied. */
static int walk_flush(struct context_walk *w, struct ff_err *err)
{
    for (size_t i = 0; i < w->depth; i++) {
        if (w->dirs[i].entered)
            continue;
        w->dirs[i].entered = true;
        int rc = walk_dir_event(w, i, CONTEXT_VISIT_ENTRY, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int walk_children(struct context_walk *w, struct ff_err *err);

static int walk_push_dir(struct context_walk *w, int parent_fd, const char *name, int fd,
                         const struct stat *st, bool pending, struct ff_err *err)
{
    if (w->depth > CONTEXT_DEPTH_MAX) {
        (void)close(fd);
        return CONTEXT_FAIL(err, FF_ETOOBIG, "%s: more than %d directory levels",
                            context_instr_name(w->s->instr), CONTEXT_DEPTH_MAX);
    }
    struct walk_dir *d = &w->dirs[w->depth];
    memset(d, 0, sizeof(*d));
    d->fd = fd;
    d->parent_fd = parent_fd;
    d->st = *st;
    d->rel_len = w->rel_len;
    d->real_len = w->real_len;
    d->name = strdup(name);
    w->depth++;
    if (d->name == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    return pending ? 0 : walk_flush(w, err);
}

static void walk_pop_dir(struct context_walk *w)
{
    struct walk_dir *d = &w->dirs[--w->depth];
    (void)close(d->fd);
    free(d->name);
    d->name = NULL;
}

/* Walks one directory: its entries, then its leave event if reported. */
static int walk_dir(struct context_walk *w, int parent_fd, const char *name, int fd,
                    const struct stat *st, bool pending, struct ff_err *err)
{
    int rc = walk_push_dir(w, parent_fd, name, fd, st, pending, err);
    if (rc == 0)
        rc = walk_children(w, err);
    size_t i = w->depth - 1;
    if (rc == 0 && w->dirs[i].entered)
        rc = walk_dir_event(w, i, CONTEXT_VISIT_LEAVE, err);
    walk_pop_dir(w);
    return rc;
}

static int walk_changed(struct context_walk *w, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    return CONTEXT_FAIL(err, FF_EINVAL, "%s: \"%s\" changed while it was read",
                        context_instr_name(w->s->instr), quote(w->real, q));
}

/* A non-directory entry (or a file top): hard links, link targets, then
 * the visitor. */
static int walk_leaf(struct context_walk *w, int dirfd, const char *name, const struct stat *st,
                     bool top, struct ff_err *err)
{
    struct context_entry e;
    walk_entry_init(w, &e);
    e.dirfd = dirfd;
    e.name = name;
    e.st = *st;
    e.top = top;
    if (S_ISLNK(st->st_mode)) {
        ssize_t n = readlinkat(dirfd, name, w->link, sizeof(w->link));
        if (n < 0 || (size_t)n >= sizeof(w->link))
            return n < 0 ? walk_changed(w, err)
                         : CONTEXT_FAIL(err, FF_ETOOBIG, "%s: symlink target too long",
                                        context_instr_name(w->s->instr));
        w->link[n] = '\0';
        e.link = w->link;
    } else if (S_ISREG(st->st_mode) && st->st_nlink > 1) {
        const struct ino_ent *first = inomap_get(&w->links, st->st_dev, st->st_ino);
        if (first != NULL) {
            e.hardlink = first->rel;
            e.hardlink_source = first->source;
        } else {
            int rc = inomap_put(&w->links, st->st_dev, st->st_ino, w->source, w->rel, err);
            if (rc != 0)
                return rc;
        }
    }
    int rc = walk_flush(w, err);
    return rc != 0 ? rc : w->fn(w->ctx, &e, CONTEXT_VISIT_ENTRY, err);
}

static int walk_excluded(struct context_walk *w, bool is_dir, bool *hidden, bool *walk,
                         struct ff_err *err)
{
    const struct context_root *root = w->s->root;
    *hidden = false;
    *walk = false;
    if (root->exclude == NULL)
        return 0;
    bool excluded = false;
    bool walk_anyway = false;
    int rc = root->exclude(root->exclude_ctx, w->real, is_dir, &excluded, &walk_anyway, err);
    if (rc != 0)
        return rc;
    *walk = excluded && is_dir && walk_anyway;
    *hidden = excluded && !*walk;
    return 0;
}

static int walk_child(struct context_walk *w, int dirfd, const char *name, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : walk_changed(w, err);
    bool hidden = false;
    bool pending = false;
    int rc = walk_excluded(w, S_ISDIR(st.st_mode), &hidden, &pending, err);
    if (rc != 0 || hidden || S_ISSOCK(st.st_mode))
        return rc;
    if (++w->entries > CONTEXT_ENTRIES_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "%s: more than %u entries to copy",
                            context_instr_name(w->s->instr), CONTEXT_ENTRIES_MAX);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
        return CONTEXT_FAIL(err, FF_EINVAL,
                            "%s: \"%s\" in %s is a device node, which is not "
                            "copied",
                            context_instr_name(w->s->instr), quote(w->real, q), w->s->root->what);
    if (!S_ISDIR(st.st_mode))
        return walk_leaf(w, dirfd, name, &st, false, err);
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat dst;
    if (fd < 0 || fstat(fd, &dst) != 0 || dst.st_ino != st.st_ino || dst.st_dev != st.st_dev) {
        if (fd >= 0)
            (void)close(fd);
        return walk_changed(w, err);
    }
    return walk_dir(w, dirfd, name, fd, &dst, pending, err);
}

static int walk_children(struct context_walk *w, struct ff_err *err)
{
    const struct walk_dir *d = &w->dirs[w->depth - 1];
    int dirfd = d->fd;
    struct names nm;
    int rc = names_read(dirfd, w->real, &nm, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s", context_instr_name(w->s->instr));
    size_t rel_len = w->rel_len;
    size_t real_len = w->real_len;
    for (size_t i = 0; i < nm.n && rc == 0; i++) {
        rc = walk_path_push(w, names_at(&nm, i), err);
        if (rc == 0)
            rc = walk_child(w, dirfd, names_at(&nm, i), err);
        walk_path_set(w, rel_len, real_len);
    }
    names_free(&nm);
    return rc;
}

static int walk_top(struct context_walk *w, const struct context_source *src,
                    const struct context_resolved *res, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    if ((res->st.st_mode & S_IFMT) != src->type)
        return walk_changed(w, err);
    if (!S_ISDIR(res->st.st_mode))
        return walk_leaf(w, res->parent_fd, res->name, &res->st, true, err);
    int fd = openat(res->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != res->st.st_ino) {
        if (fd >= 0)
            (void)close(fd);
        return walk_changed(w, err);
    }
    int rc = walk_dir(w, res->parent_fd, res->name, fd, &st, res->excluded, err);
    if (rc == 0 && res->excluded && !w->dirs[0].entered)
        rc = CONTEXT_FAIL(err, FF_ENOTFOUND, "%s: source \"%s\" not found in %s",
                          context_instr_name(w->s->instr), quote(src->spec, q), w->s->root->what);
    return rc;
}

int context_walk_source(struct context_walk *w, size_t i, context_visit_fn fn, void *ctx,
                        struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    const struct context_source *src = &w->s->v[i];
    if (src->kind != CONTEXT_SRC_PATH)
        FF_BUG("context_walk_source on a URL source");
    w->fn = fn;
    w->ctx = ctx;
    w->source = i;
    w->depth = 0;
    w->dirs[0].entered = false;
    struct context_res_opts o;
    memset(&o, 0, sizeof(o));
    o.flags = CONTEXT_RES_NO_SYMLINKS;
    o.exclude = w->s->root->exclude;
    o.exclude_ctx = w->s->root->exclude_ctx;
    struct context_resolved res;
    int rc = context_resolve_path(w->s->root->fd, src->path, &o, &res, err);
    if (rc != 0)
        return ff_err_wrap(err, "%s: source \"%s\" changed since it was resolved",
                           context_instr_name(w->s->instr), quote(src->spec, q));
    walk_path_set(w, 0, 0);
    size_t n = strlen(src->path);
    if (n > CONTEXT_PATH_MAX) {
        rc = CONTEXT_FAIL(err, FF_ETOOBIG, "path longer than %d bytes", CONTEXT_PATH_MAX);
    } else {
        memcpy(w->real, src->path, n + 1);
        w->real_len = n;
        rc = walk_top(w, src, &res, err);
    }
    context_resolved_release(&res);
    return rc;
}

int context_entry_open(const struct context_entry *e, struct stat *st, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    int fd = openat(e->dirfd, e->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, st) == 0 && S_ISREG(st->st_mode) && st->st_ino == e->st.st_ino &&
        st->st_dev == e->st.st_dev)
        return fd;
    int e_no = errno;
    if (fd >= 0)
        (void)close(fd);
    return CONTEXT_FAIL(err, fd >= 0 || e_no == ENOENT || e_no == ELOOP ? FF_EINVAL : FF_EIO,
                        "\"%s\" changed while it was read%s%s", quote(e->real, q),
                        fd >= 0 ? "" : ": ", fd >= 0 ? "" : strerror(e_no));
}

void context_entry_owner(const struct context_sources *s, const struct context_attrs *a,
                         const struct stat *st, uid_t *uid, gid_t *gid)
{
    if (a != NULL && a->chown) {
        *uid = a->uid;
        *gid = a->gid;
    } else if (s->root->kind == CONTEXT_ROOT_STAGE) {
        *uid = st->st_uid;
        *gid = st->st_gid;
    } else {
        *uid = 0;
        *gid = 0;
    }
}

mode_t context_entry_mode(const struct context_attrs *a, const struct stat *st)
{
    if (a != NULL && a->chmod >= 0)
        return (mode_t)a->chmod & 07777;
    return st->st_mode & 07777;
}

/* ---- memo of content digests --------------------------------------------- */

struct memo_ent {
    char *path;    /* NULL: free slot */
    uint64_t hash; /* path_hash(path): probes compare it before the path */
    uint64_t dev;
    uint64_t ino;
    uint64_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
    struct ff_digest d;
    bool used;
};

struct context_memo {
    char *path; /* where it is saved; NULL: nowhere */
    struct memo_ent *v;
    size_t cap; /* a power of two, or 0 */
    size_t n;
    bool dirty;
    bool any_used;
    int64_t settle_ns;
};

static const unsigned char MEMO_MAGIC[8] = {'F', 'F', 'C', 'T', 'X', 'M', 'M', '1'};
/* Fixed part of a record after its path: dev, ino, size, mtime, ctime. */
#define MEMO_REC_FIXED (5 * 8 + FF_DIGEST_SIZE)

/* FNV-1a, then a final mix: FNV's low bits (the table index) depend only
 * on the low bits of each step, so paths differing in a digit or two
 * would otherwise pile up in long probe chains. */
static uint64_t path_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

static size_t memo_slot(const struct context_memo *m, const char *path, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);
    while (m->v[i].path != NULL && (m->v[i].hash != h || strcmp(m->v[i].path, path) != 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static struct memo_ent *memo_find(struct context_memo *m, const char *path, uint64_t h)
{
    if (m->cap == 0)
        return NULL;
    struct memo_ent *e = &m->v[memo_slot(m, path, h)];
    return e->path != NULL ? e : NULL;
}

/* Makes room for n entries with the table at most half full. */
static int memo_reserve(struct context_memo *m, size_t n, struct ff_err *err)
{
    size_t cap = m->cap ? m->cap : 1024;
    while (n * 2 > cap)
        cap *= 2;
    if (cap == m->cap)
        return 0;
    struct memo_ent *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
    struct memo_ent *old = m->v;
    size_t old_cap = m->cap;
    m->v = v;
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].path != NULL)
            m->v[memo_slot(m, old[i].path, old[i].hash)] = old[i];
    }
    free(old);
    return 0;
}

/* Inserts or replaces the entry for val->path (copied). Over the cap the
 * entry is simply not remembered. */
static int memo_set(struct context_memo *m, const struct memo_ent *val, struct ff_err *err)
{
    uint64_t h = path_hash(val->path);
    struct memo_ent *e = memo_find(m, val->path, h);
    if (e == NULL) {
        if (m->n >= CONTEXT_MEMO_ENTRIES_MAX)
            return 0;
        int rc = memo_reserve(m, m->n + 1, err);
        if (rc != 0)
            return rc;
        e = &m->v[memo_slot(m, val->path, h)];
        char *path = strdup(val->path);
        if (path == NULL)
            return CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
        m->n++;
        *e = *val;
        e->path = path;
    } else {
        char *path = e->path;
        *e = *val;
        e->path = path;
    }
    e->hash = h;
    m->dirty = true;
    return 0;
}

static void memo_clear(struct context_memo *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].path);
    free(m->v);
    m->v = NULL;
    m->cap = 0;
    m->n = 0;
}

void context_memo_free(struct context_memo *m)
{
    if (m == NULL)
        return;
    memo_clear(m);
    free(m->path);
    free(m);
}

size_t context_memo_count(const struct context_memo *m)
{
    return m->n;
}

void context_memo_set_settle(struct context_memo *m, int64_t ns)
{
    m->settle_ns = ns;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* Parses the records of a checked image; false when malformed. */
static bool memo_parse_records(struct context_memo *m, const unsigned char *p, size_t len, int *rc,
                               struct ff_err *err)
{
    if (len < sizeof(MEMO_MAGIC) + 8 || memcmp(p, MEMO_MAGIC, sizeof(MEMO_MAGIC)) != 0)
        return false;
    uint64_t count = get_u64(p + sizeof(MEMO_MAGIC));
    size_t off = sizeof(MEMO_MAGIC) + 8;
    /* Each record takes more than MEMO_REC_FIXED bytes: a count the data
     * cannot hold is refused before it sizes the table. */
    if (count > CONTEXT_MEMO_ENTRIES_MAX || count > (len - off) / MEMO_REC_FIXED)
        return false;
    *rc = memo_reserve(m, (size_t)count, err);
    if (*rc != 0)
        return false;
    char *path = malloc(CONTEXT_PATH_MAX + 1);
    if (path == NULL) {
        *rc = CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
        return false;
    }
    bool ok = true;
    for (uint64_t i = 0; i < count && ok && *rc == 0; i++) {
        size_t plen = len - off >= 2 ? ((size_t)p[off] << 8 | p[off + 1]) : 0;
        ok = plen > 0 && plen <= CONTEXT_PATH_MAX && len - off - 2 >= plen + MEMO_REC_FIXED &&
             memchr(p + off + 2, '\0', plen) == NULL;
        if (!ok)
            break;
        memcpy(path, p + off + 2, plen);
        path[plen] = '\0';
        const unsigned char *f = p + off + 2 + plen;
        struct memo_ent e = {.path = path,
                             .dev = get_u64(f),
                             .ino = get_u64(f + 8),
                             .size = get_u64(f + 16),
                             .mtime_ns = (int64_t)get_u64(f + 24),
                             .ctime_ns = (int64_t)get_u64(f + 32)};
        memcpy(e.d.bytes, f + 40, FF_DIGEST_SIZE);
        *rc = memo_set(m, &e, err);
        off += 2 + plen + MEMO_REC_FIXED;
    }
    free(path);
    return ok && *rc == 0 && off == len;
}

int context_memo_parse(const void *data, size_t len, struct context_memo **out, struct ff_err *err)
{
    struct context_memo *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
    m->settle_ns = CONTEXT_MEMO_SETTLE_NS;
    const unsigned char *p = data;
    int rc = 0;
    bool ok = false;
    if (len >= FF_DIGEST_SIZE && len <= CONTEXT_MEMO_FILE_MAX) {
        struct ff_digest d;
        size_t body = len - FF_DIGEST_SIZE;
        rc = ff_digest_buffer(p, body, &d, err);
        if (rc == 0 && memcmp(d.bytes, p + body, FF_DIGEST_SIZE) == 0)
            ok = memo_parse_records(m, p, body, &rc, err);
    }
    if (rc != 0) {
        context_memo_free(m);
        return rc;
    }
    if (!ok)
        memo_clear(m);
    m->dirty = false;
    *out = m;
    return 0;
}

int context_memo_open(const char *path, struct context_memo **out, struct ff_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = ff_file_read(path, CONTEXT_MEMO_FILE_MAX, FF_FILE_NOFOLLOW, &data, &len, err);
    /* The memo only saves work: one that is missing, too big or not a
     * plain file is started afresh. */
    if (rc == FF_ENOTFOUND || rc == FF_ETOOBIG || rc == FF_EINVAL)
        rc = 0;
    if (rc != 0)
        return ff_err_wrap(err, "context memo");
    struct context_memo *m = NULL;
    rc = context_memo_parse(data, len, &m, err);
    free(data);
    if (rc != 0)
        return rc;
    m->path = strdup(path);
    if (m->path == NULL) {
        context_memo_free(m);
        return CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
    }
    *out = m;
    return 0;
}

static bool memo_keep(const struct context_memo *m, const struct memo_ent *e)
{
    return e->path != NULL && (!m->any_used || e->used);
}

int context_memo_image(struct context_memo *m, void **out, size_t *len, struct ff_err *err)
{
    size_t total = sizeof(MEMO_MAGIC) + 8 + FF_DIGEST_SIZE;
    uint64_t count = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (memo_keep(m, &m->v[i])) {
            total += 2 + strlen(m->v[i].path) + MEMO_REC_FIXED;
            count++;
        }
    }
    if (total > CONTEXT_MEMO_FILE_MAX)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "context memo: larger than %zu bytes",
                            CONTEXT_MEMO_FILE_MAX);
    unsigned char *b = malloc(total);
    if (b == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
    memcpy(b, MEMO_MAGIC, sizeof(MEMO_MAGIC));
    put_u64(b + sizeof(MEMO_MAGIC), count);
    size_t off = sizeof(MEMO_MAGIC) + 8;
    for (size_t i = 0; i < m->cap; i++) {
        const struct memo_ent *e = &m->v[i];
        if (!memo_keep(m, e))
            continue;
        size_t plen = strlen(e->path);
        b[off] = (unsigned char)(plen >> 8);
        b[off + 1] = (unsigned char)(plen & 0xff);
        memcpy(b + off + 2, e->path, plen);
        unsigned char *f = b + off + 2 + plen;
        put_u64(f, e->dev);
        put_u64(f + 8, e->ino);
        put_u64(f + 16, e->size);
        put_u64(f + 24, (uint64_t)e->mtime_ns);
        put_u64(f + 32, (uint64_t)e->ctime_ns);
        memcpy(f + 40, e->d.bytes, FF_DIGEST_SIZE);
        off += 2 + plen + MEMO_REC_FIXED;
    }
    struct ff_digest d;
    int rc = ff_digest_buffer(b, off, &d, err);
    if (rc != 0) {
        free(b);
        return rc;
    }
    memcpy(b + off, d.bytes, FF_DIGEST_SIZE);
    *out = b;
    *len = total;
    return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int context_memo_save(struct context_memo *m, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    bool pruned = false;
    for (size_t i = 0; i < m->cap && m->any_used && !pruned; i++)
        pruned = m->v[i].path != NULL && !m->v[i].used;
    if (m->path == NULL || (!m->dirty && !pruned))
        return 0;
    void *img = NULL;
    size_t len = 0;
    int rc = context_memo_image(m, &img, &len, err);
    if (rc != 0)
        return rc;
    char *tmp = ff_asprintf("%s.tmp.%ld", m->path, (long)getpid());
    int fd =
        tmp != NULL ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600) : -1;
    if (tmp == NULL) {
        rc = CONTEXT_FAIL(err, FF_ENOMEM, "context memo: out of memory");
    } else if (fd < 0 || write_all(fd, img, len) != 0 || close(fd) != 0 ||
               rename(tmp, m->path) != 0) {
        rc = CONTEXT_FAIL(err, FF_EIO, "context memo: cannot write \"%s\": %s", quote(m->path, q),
                          strerror(errno));
        if (fd >= 0)
            (void)unlink(tmp);
    } else {
        m->dirty = false;
    }
    free(tmp);
    free(img);
    return rc;
}

/* ---- digest --------------------------------------------------------------- */

/* Largest record: two paths plus fixed fields. */
#define DG_REC_MAX (2 * (CONTEXT_PATH_MAX + 8) + 128)

struct dg {
    const struct context_sources *s;
    const struct context_attrs *a;
    struct context_memo *memo;
    struct context_stats *stats;
    struct ff_digest_ctx *outer;
    struct ff_digest_ctx *inner;
    unsigned char *buf;
    int64_t settle_before;
    size_t len;
    unsigned char rec[DG_REC_MAX];
};

static void rec_u8(struct dg *g, unsigned v)
{
    g->rec[g->len++] = (unsigned char)v;
}

static void rec_u64(struct dg *g, uint64_t v)
{
    put_u64(g->rec + g->len, v);
    g->len += 8;
}

static void rec_bytes(struct dg *g, const void *p, size_t n)
{
    memcpy(g->rec + g->len, p, n);
    g->len += n;
}

/* Strings are length-prefixed, so no two records share an encoding. */
static void rec_str(struct dg *g, const char *s)
{
    size_t n = strlen(s);
    rec_u64(g, n);
    rec_bytes(g, s, n);
}

static int rec_flush(struct dg *g, struct ff_err *err)
{
    int rc = ff_digest_ctx_update(g->outer, g->rec, g->len, err);
    g->len = 0;
    return rc;
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static bool memo_valid(const struct memo_ent *m, const struct stat *st)
{
    return m->dev == (uint64_t)st->st_dev && m->ino == (uint64_t)st->st_ino &&
           m->size == (uint64_t)st->st_size && m->mtime_ns == ts_ns(&st->st_mtim) &&
           m->ctime_ns == ts_ns(&st->st_ctim);
}

/* Hashes the file on fd, of expect bytes when it was opened: reading
 * stops there (saving the read that would see the end), so a file growing
 * meanwhile is hashed as it was. */
static int dg_hash_fd(struct dg *g, int fd, const char *real, uint64_t expect, uint64_t *size,
                      struct ff_digest *d, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    uint64_t total = 0;
    while (total < expect) {
        size_t want = expect - total < CONTEXT_IO_BUF ? (size_t)(expect - total) : CONTEXT_IO_BUF;
        ssize_t n = read(fd, g->buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return CONTEXT_FAIL(err, FF_EIO, "cannot read \"%s\": %s", quote(real, q),
                                strerror(errno));
        if (n == 0)
            break;
        int rc = ff_digest_ctx_update(g->inner, g->buf, (size_t)n, err);
        if (rc != 0)
            return rc;
        total += (uint64_t)n;
    }
    *size = total;
    return ff_digest_ctx_final(g->inner, d, err);
}

/* Content digest of a regular file: from the memo when its stamps are
 * unchanged, else read, and memoised when it has settled. A write during
 * the read moves ctime past the settle line, so the entry stored here,
 * keyed by the stamps from before the read, can never match again. */
static int dg_content(struct dg *g, const struct context_entry *e, uint64_t *size,
                      struct ff_digest *d, struct ff_err *err)
{
    struct memo_ent *m = g->memo != NULL ? memo_find(g->memo, e->real, path_hash(e->real)) : NULL;
    if (m != NULL && memo_valid(m, &e->st)) {
        *d = m->d;
        *size = m->size;
        m->used = true;
        g->memo->any_used = true;
        if (g->stats != NULL)
            g->stats->memo_hits++;
        return 0;
    }
    struct stat st;
    int fd = context_entry_open(e, &st, err);
    if (fd < 0)
        return ff_err_wrap(err, "%s", context_instr_name(g->s->instr));
    int rc = dg_hash_fd(g, fd, e->real, (uint64_t)st.st_size, size, d, err);
    (void)close(fd);
    if (g->stats != NULL)
        g->stats->bytes_read += *size;
    if (rc != 0 || g->memo == NULL || *size != (uint64_t)st.st_size ||
        ts_ns(&st.st_ctim) >= g->settle_before)
        return rc;
    struct memo_ent val = {.path = (char *)e->real,
                           .dev = (uint64_t)st.st_dev,
                           .ino = (uint64_t)st.st_ino,
                           .size = *size,
                           .mtime_ns = ts_ns(&st.st_mtim),
                           .ctime_ns = ts_ns(&st.st_ctim),
                           .d = *d,
                           .used = true};
    g->memo->any_used = true;
    return memo_set(g->memo, &val, err);
}

static unsigned type_char(mode_t mode)
{
    if (S_ISDIR(mode))
        return 'd';
    if (S_ISLNK(mode))
        return 'l';
    if (S_ISFIFO(mode))
        return 'p';
    return 'f';
}

static int dg_visit(void *ctx, const struct context_entry *e, enum context_visit v,
                    struct ff_err *err)
{
    struct dg *g = ctx;
    if (v == CONTEXT_VISIT_LEAVE)
        return 0;
    if (g->stats != NULL)
        g->stats->entries++;
    rec_u8(g, 'E');
    rec_str(g, e->rel);
    rec_u8(g, type_char(e->st.st_mode));
    if (e->top && S_ISDIR(e->st.st_mode))
        return rec_flush(g, err);
    uid_t uid = 0;
    gid_t gid = 0;
    context_entry_owner(g->s, g->a, &e->st, &uid, &gid);
    rec_u64(g, context_entry_mode(g->a, &e->st));
    rec_u64(g, uid);
    rec_u64(g, gid);
    if (e->link != NULL) {
        rec_str(g, e->link);
    } else if (e->hardlink != NULL) {
        rec_u8(g, 'h');
        rec_u64(g, e->hardlink_source);
        rec_str(g, e->hardlink);
    } else if (S_ISREG(e->st.st_mode)) {
        uint64_t size = 0;
        struct ff_digest d;
        int rc = dg_content(g, e, &size, &d, err);
        if (rc != 0)
            return rc;
        rec_u64(g, size);
        rec_bytes(g, d.bytes, sizeof(d.bytes));
        if (g->stats != NULL) {
            g->stats->files++;
            g->stats->bytes += size;
        }
    }
    return rec_flush(g, err);
}

static int dg_source(struct dg *g, struct context_walk *w, size_t i, struct ff_err *err)
{
    const struct context_source *src = &g->s->v[i];
    rec_u8(g, 'S');
    rec_u64(g, i);
    rec_u8(g, src->kind == CONTEXT_SRC_URL ? 'U' : 'P');
    rec_u8(g, type_char(src->type));
    /* A directory's own name does not reach the image: its contents do. */
    if (src->type != S_IFDIR)
        rec_str(g, src->name != NULL ? src->name : "");
    if (src->kind == CONTEXT_SRC_URL) {
        rec_str(g, src->url);
        rec_bytes(g, src->checksum.bytes, sizeof(src->checksum.bytes));
    }
    int rc = rec_flush(g, err);
    if (rc == 0 && src->kind == CONTEXT_SRC_PATH)
        rc = context_walk_source(w, i, dg_visit, g, err);
    return rc;
}

static const char DG_VERSION[] = "fleetforge context digest v1\n";

int context_digest(const struct context_sources *s, const struct context_attrs *attrs,
                   struct context_memo *memo, struct ff_digest *out, struct context_stats *stats,
                   struct ff_err *err)
{
    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    struct dg *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory");
    struct context_walk *w = NULL;
    g->s = s;
    g->a = attrs;
    g->memo = memo;
    g->stats = stats;
    struct timespec now;
    (void)clock_gettime(CLOCK_REALTIME, &now);
    g->settle_before = ts_ns(&now) - (memo != NULL ? memo->settle_ns : 0);
    g->buf = malloc(CONTEXT_IO_BUF);
    int rc = g->buf == NULL ? CONTEXT_FAIL(err, FF_ENOMEM, "context: out of memory") : 0;
    if (rc == 0)
        rc = ff_digest_ctx_new(&g->outer, err);
    if (rc == 0)
        rc = ff_digest_ctx_new(&g->inner, err);
    if (rc == 0)
        rc = context_walk_new(s, &w, err);
    if (rc == 0)
        rc = ff_digest_ctx_update(g->outer, DG_VERSION, sizeof(DG_VERSION) - 1, err);
    for (size_t i = 0; i < s->n && rc == 0; i++)
        rc = dg_source(g, w, i, err);
    if (rc == 0)
        rc = ff_digest_ctx_final(g->outer, out, err);
    context_walk_free(w);
    ff_digest_ctx_free(g->outer);
    ff_digest_ctx_free(g->inner);
    free(g->buf);
    free(g);
    return rc;
}

/* ---- archives ------------------------------------------------------------ */

const char *context_archive_name(enum context_archive kind)
{
    switch (kind) {
    case CONTEXT_ARCHIVE_TAR: return "tar";
    case CONTEXT_ARCHIVE_GZIP: return "gzip";
    case CONTEXT_ARCHIVE_BZIP2: return "bzip2";
    case CONTEXT_ARCHIVE_XZ: return "xz";
    case CONTEXT_ARCHIVE_ZSTD: return "zstd";
    default: return "none";
    }
}

#define TAR_BLOCK 512
/* Compressed bytes read while looking for the first tar header: a real
 * archive shows one in the first few KiB; a stream that needs more (empty
 * deflate blocks, say) is not worth extracting and is copied as a file. */
#define ARCHIVE_PROBE_MAX ((off_t)16 << 20)

static bool tar_header_ok(const unsigned char *h)
{
    if (memcmp(h + 257, "ustar", 5) != 0)
        return false;
    uint64_t stored = 0;
    size_t i = 148;
    while (i < 156 && (h[i] == ' ' || h[i] == '\0'))
        i++;
    size_t digits = 0;
    for (; i < 156 && h[i] >= '0' && h[i] <= '7'; i++, digits++)
        stored = stored * 8 + (uint64_t)(h[i] - '0');
    if (digits == 0)
        return false;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (size_t k = 0; k < TAR_BLOCK; k++) {
        unsigned char c = (k >= 148 && k < 156) ? ' ' : h[k];
        usum += c;
        ssum += (signed char)c;
    }
    return stored == usum || (int64_t)stored == ssum;
}

struct probe {
    int fd;
    off_t off;
    unsigned char buf[65536];
};

static la_ssize_t probe_read(struct archive *a, void *ctx, const void **out)
{
    (void)a;
    struct probe *p = ctx;
    if (p->off >= ARCHIVE_PROBE_MAX)
        return -1;
    ssize_t n;
    do {
        n = pread(p->fd, p->buf, sizeof(p->buf), p->off);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    p->off += n;
    *out = p->buf;
    return n;
}

/* Whether the compressed stream on fd decompresses to a tar header. */
static bool probe_compressed_tar(int fd, enum context_archive kind)
{
    struct archive *a = archive_read_new();
    struct probe *p = malloc(sizeof(*p));
    bool tar = false;
    if (a == NULL || p == NULL)
        goto out;
    p->fd = fd;
    p->off = 0;
    int frc = ARCHIVE_FATAL;
    switch (kind) {
    case CONTEXT_ARCHIVE_GZIP: frc = archive_read_support_filter_gzip(a); break;
    case CONTEXT_ARCHIVE_BZIP2: frc = archive_read_support_filter_bzip2(a); break;
    case CONTEXT_ARCHIVE_XZ: frc = archive_read_support_filter_xz(a); break;
    default: frc = archive_read_support_filter_zstd(a); break;
    }
    /* ARCHIVE_WARN means an external program would decompress: no. */
    if (frc != ARCHIVE_OK || archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_open(a, p, NULL, probe_read, NULL) != ARCHIVE_OK)
        goto out;
    struct archive_entry *entry = NULL;
    int rc = archive_read_next_header(a, &entry);
    tar = rc == ARCHIVE_OK || rc == ARCHIVE_WARN;
out:
    if (a != NULL)
        archive_read_free(a);
    free(p);
    return tar;
}

int context_archive_detect(int fd, enum context_archive *kind, struct ff_err *err)
{
    unsigned char h[TAR_BLOCK];
    size_t n = 0;
    *kind = CONTEXT_ARCHIVE_NONE;
    while (n < sizeof(h)) {
        ssize_t r = pread(fd, h + n, sizeof(h) - n, (off_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return CONTEXT_FAIL(err, FF_EIO, "cannot read a source: %s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    enum context_archive k = CONTEXT_ARCHIVE_NONE;
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b)
        k = CONTEXT_ARCHIVE_GZIP;
    else if (n >= 3 && memcmp(h, "BZh", 3) == 0)
        k = CONTEXT_ARCHIVE_BZIP2;
    else if (n >= 6 && memcmp(h,
                              "\xfd"
                              "7zXZ\0",
                              6) == 0)
        k = CONTEXT_ARCHIVE_XZ;
    else if (n >= 4 && memcmp(h, "\x28\xb5\x2f\xfd", 4) == 0)
        k = CONTEXT_ARCHIVE_ZSTD;
    else if (n == TAR_BLOCK && tar_header_ok(h))
        *kind = CONTEXT_ARCHIVE_TAR;
    if (k != CONTEXT_ARCHIVE_NONE && probe_compressed_tar(fd, k))
        *kind = k;
    return 0;
}
