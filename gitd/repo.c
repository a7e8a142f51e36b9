/* Bare repositories: libgit2's process-wide settings, opening (and creating
 * on the first push), the per-repository push lock, and the removal of what
 * a killed push left behind. */
#include "gitd.h"

#include "ff_str.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest object (inflated) accepted in a pack. libgit2 holds a delta's
 * result in memory, so this bounds memory per object; a 512 MiB file in an
 * application repository belongs in a registry, not in git. */
#define REPO_OBJECT_SIZE_MAX ((size_t)512 << 20)

/* Descriptors nftw may hold open while it walks. */
#define REPO_WALK_FDS 16

int repo_git_error(struct ff_err *err, int code, const char *fmt, ...)
{
    const git_error *e = git_error_last();
    char what[FF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return ff_err_set(err, code, "%s: %s", what,
                      e != NULL && e->message != NULL ? e->message : "unknown libgit2 error");
}

int repo_lib_init(struct ff_err *err)
{
    if (git_libgit2_init() < 0)
        return repo_git_error(err, FF_EIO, "libgit2 init");
    /* Repositories must not depend on whoever runs the daemon: no
     * ~/.gitconfig, no /etc/gitconfig. */
    static const int levels[] = {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                                 GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, levels[i], "") < 0)
            return repo_git_error(err, FF_EIO, "libgit2 config search path");
    }
    /* A push is acknowledged only once its pack, index and refs are on disk. */
    if (git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1) < 0 ||
        git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 1) < 0 ||
        git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 1) < 0 ||
        git_libgit2_opts(GIT_OPT_SET_PACK_MAX_OBJECT_SIZE, REPO_OBJECT_SIZE_MAX) < 0)
        return repo_git_error(err, FF_EIO, "libgit2 options");
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int repo_remove_tree(const char *path, struct ff_err *err)
{
    if (nftw(path, remove_entry, REPO_WALK_FDS, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return ff_err_set(err, FF_EIO, "removing \"%s\": %s", path, strerror(errno));
    return 0;
}

/* A ref lock file ("refs/heads/main.lock", written by libgit2 before it
 * renames it over the ref) left by a killed push. */
static int remove_lock(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    size_t n = strlen(path + ftw->base);
    if (flag == FTW_F && n > 5 && strcmp(path + ftw->base + n - 5, ".lock") == 0 &&
        unlink(path) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

/* Only pushes write a repository and each holds the push lock, so with the
 * lock held every *.lock file is debris of a killed push; left in place it
 * would block that ref forever. */
static int sweep_locks(const char *path, struct ff_err *err)
{
    char *refs = ff_asprintf("%s/refs", path);
    if (refs == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    if (nftw(refs, remove_lock, REPO_WALK_FDS, FTW_PHYS) != 0 && errno != ENOENT)
        rc = ff_err_set(err, FF_EIO, "removing stale ref locks in \"%s\": %s", refs,
                        strerror(errno));
    free(refs);
    static const char *const top[] = {"packed-refs.lock", "HEAD.lock", "config.lock"};
    for (size_t i = 0; rc == 0 && i < sizeof(top) / sizeof(top[0]); i++) {
        char *f = ff_asprintf("%s/%s", path, top[i]);
        if (f == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
        if (unlink(f) != 0 && errno != ENOENT)
            rc = ff_err_set(err, FF_EIO, "removing \"%s\": %s", f, strerror(errno));
        free(f);
    }
    return rc;
}

static int lock_repo(const char *path, bool create, struct progress *p, int *out,
                     struct ff_err *err)
{
    if (create && mkdir(path, 0750) != 0 && errno != EEXIST)
        return ff_err_set(err, FF_EIO, "creating repository \"%s\": %s", path, strerror(errno));
    char *lock = ff_asprintf("%s/%s", path, REPO_LOCK_FILE);
    if (lock == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int saved = errno;
    free(lock);
    if (fd < 0 && saved == ENOENT)
        return ff_err_set(err, FF_ENOTFOUND, "repository \"%s\" does not exist", path);
    if (fd < 0)
        return ff_err_set(err, FF_EIO, "opening the lock of \"%s\": %s", path, strerror(saved));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) {
            saved = errno;
            (void)close(fd);
            return ff_err_set(err, FF_EIO, "locking \"%s\": %s", path, strerror(saved));
        }
        pktline_progress(p, "%s", REPO_WAIT_MESSAGE);
        while (flock(fd, LOCK_EX) != 0) {
            if (errno != EINTR) {
                saved = errno;
                (void)close(fd);
                return ff_err_set(err, FF_EIO, "locking \"%s\": %s", path, strerror(saved));
            }
        }
    }
    *out = fd;
    return 0;
}

static int open_bare(git_repository **out, const char *path)
{
    return git_repository_open_ext(out, path,
                                   GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_BARE |
                                       GIT_REPOSITORY_OPEN_NO_DOTGIT,
                                   NULL);
}

int repo_open_locked(git_repository **out, int *lock_fd, const char *path, bool create,
                     const char *branch, struct progress *p, struct ff_err *err)
{
    int fd = -1;
    git_repository *repo = NULL;
    char *head = NULL;
    int rc = lock_repo(path, create, p, &fd, err);
    if (rc != 0)
        return rc;
    if (open_bare(&repo, path) != 0) {
        if (!create) {
            rc = ff_err_set(err, FF_ENOTFOUND, "\"%s\" is not a repository", path);
            goto fail;
        }
        /* Also completes a repository whose creation was interrupted. */
        head = ff_asprintf("refs/heads/%s", branch);
        if (head == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
            goto fail;
        }
        git_repository_init_options opts;
        if (git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION) != 0) {
            rc = repo_git_error(err, FF_EIO, "creating the repository");
            goto fail;
        }
        opts.flags = GIT_REPOSITORY_INIT_BARE;
        opts.initial_head = head;
        if (git_repository_init_ext(&repo, path, &opts) != 0) {
            rc = repo_git_error(err, FF_EIO, "creating the repository");
            goto fail;
        }
    }
    rc = quarantine_sweep(path, err);
    if (rc == 0)
        rc = sweep_locks(path, err);
    if (rc != 0)
        goto fail;
    free(head);
    *out = repo;
    *lock_fd = fd;
    return 0;
fail:
    free(head);
    git_repository_free(repo);
    (void)close(fd);
    return rc;
}

int repo_open(git_repository **out, const char *path, struct ff_err *err)
{
    int rc = open_bare(out, path);
    if (rc == GIT_ENOTFOUND)
        return ff_err_set(err, FF_ENOTFOUND, "repository \"%s\" does not exist", path);
    if (rc != 0)
        return repo_git_error(err, FF_EIO, "opening the repository");
    return 0;
}

void repo_refs_free(struct repo_ref *refs, size_t n)
{
    for (size_t i = 0; refs != NULL && i < n; i++)
        free(refs[i].name);
    free(refs);
}

static int ref_cmp(const void *a, const void *b)
{
    const struct repo_ref *x = a, *y = b;
    return strcmp(x->name, y->name);
}

int repo_refs(struct repo_ref **out, size_t *n, git_repository *repo, struct ff_err *err)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    struct repo_ref *v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0, next;
    if (git_reference_iterator_new(&it, repo) != 0)
        return repo_git_error(err, FF_EIO, "listing refs");
    while ((next = git_reference_next(&ref, it)) == 0) {
        if (git_reference_type(ref) != GIT_REFERENCE_DIRECT) {
            git_reference_free(ref);
            continue;
        }
        if (len == REPO_REFS_MAX) {
            rc = ff_err_set(err, FF_ETOOBIG, "more than %d refs", REPO_REFS_MAX);
            break;
        }
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct repo_ref *nv = reallocarray(v, ncap, sizeof(*nv));
            if (nv == NULL) {
                rc = ff_err_set(err, FF_ENOMEM, "listing refs: out of memory");
                break;
            }
            v = nv;
            cap = ncap;
        }
        struct repo_ref *r = &v[len];
        memset(r, 0, sizeof(*r));
        r->name = strdup(git_reference_name(ref));
        if (r->name == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "listing refs: out of memory");
            break;
        }
        r->id = *git_reference_target(ref);
        git_object *target = NULL;
        if (ff_str_has_prefix(r->name, "refs/tags/") &&
            git_reference_peel(&target, ref, GIT_OBJECT_ANY) == 0) {
            if (!git_oid_equal(git_object_id(target), &r->id)) {
                r->has_peeled = true;
                r->peeled = *git_object_id(target);
            }
            git_object_free(target);
        }
        len++;
        git_reference_free(ref);
        ref = NULL;
    }
    git_reference_free(ref);
    git_reference_iterator_free(it);
    if (rc == 0 && next != GIT_ITEROVER)
        rc = repo_git_error(err, FF_EIO, "listing refs");
    if (rc != 0) {
        repo_refs_free(v, len);
        return rc;
    }
    if (len > 1)
        qsort(v, len, sizeof(*v), ref_cmp);
    *out = v;
    *n = len;
    return 0;
}
