/* A received pack waits in a quarantine directory until every new tip is
 * proven complete; only then does it join the repository. See gitd.h for
 * the layout and why a crash at any point leaves nothing visible. */
#include "gitd.h"

#include "ff_str.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* "PACK", version, object count: the part of a pack we read ourselves. */
#define PACK_HEADER_LEN 12

struct quarantine {
    char *objects;   /* the repository's objects directory */
    char *dir;       /* objects/incoming-XXXXXX */
    char *pack_dir;  /* dir/pack, where the indexer writes */
    git_odb *odb;    /* the repository's, completing thin packs */
    git_indexer *idx;
    git_indexer_progress stats;
    uint64_t bytes;
    uint64_t max_bytes;
    uint32_t max_objects;
    unsigned char header[PACK_HEADER_LEN];
    size_t header_len;
    uint32_t declared;
    bool failed;
    bool finished;
    bool migrated;
};

/* The indexer's complaint, with how far into the pack it came. */
static int pack_error(struct quarantine *q, struct ff_err *err)
{
    const git_error *e = git_error_last();
    q->failed = true;
    return ff_err_set(err, FF_EINVAL, "pack: %s (after %llu bytes)",
                      e != NULL && e->message != NULL ? e->message : "rejected by the indexer",
                      (unsigned long long)q->bytes);
}

int quarantine_new(struct quarantine **out, git_repository *repo, uint64_t max_bytes,
                   uint32_t max_objects, struct ff_err *err)
{
    int rc;
    struct quarantine *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    q->max_bytes = max_bytes;
    q->max_objects = max_objects;
    q->objects = ff_asprintf("%sobjects", git_repository_path(repo));
    q->dir = ff_asprintf("%sobjects/" QUARANTINE_PREFIX "XXXXXX", git_repository_path(repo));
    if (q->objects == NULL || q->dir == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto fail;
    }
    if (mkdtemp(q->dir) == NULL) {
        rc = ff_err_set(err, FF_EIO, "creating a quarantine in \"%s\": %s", q->objects,
                        strerror(errno));
        free(q->dir);
        q->dir = NULL;
        goto fail;
    }
    q->pack_dir = ff_asprintf("%s/pack", q->dir);
    if (q->pack_dir == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto fail;
    }
    if (mkdir(q->pack_dir, 0750) != 0) {
        rc = ff_err_set(err, FF_EIO, "creating \"%s\": %s", q->pack_dir, strerror(errno));
        goto fail;
    }
    if (git_repository_odb(&q->odb, repo) != 0) {
        rc = repo_git_error(err, FF_EIO, "opening the object database");
        goto fail;
    }
    git_indexer_options opts;
    if (git_indexer_options_init(&opts, GIT_INDEXER_OPTIONS_VERSION) != 0 ||
        git_indexer_new(&q->idx, q->pack_dir, 0, q->odb, &opts) != 0) {
        rc = repo_git_error(err, FF_EIO, "starting the pack indexer");
        goto fail;
    }
    *out = q;
    return 0;
fail:
    quarantine_free(q);
    return rc;
}

/* Reads the header as soon as its 12 bytes are in, so an oversized object
 * count is refused before any object is indexed. */
static int take_header(struct quarantine *q, const unsigned char *data, size_t len,
                       struct ff_err *err)
{
    size_t n = PACK_HEADER_LEN - q->header_len;
    if (n > len)
        n = len;
    memcpy(q->header + q->header_len, data, n);
    q->header_len += n;
    if (q->header_len < PACK_HEADER_LEN)
        return 0;
    const unsigned char *h = q->header;
    uint32_t version = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    q->declared = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
    q->failed = true;
    if (memcmp(h, "PACK", 4) != 0)
        return ff_err_set(err, FF_EINVAL, "data is not a pack (no \"PACK\" signature)");
    if (version != 2 && version != 3)
        return ff_err_set(err, FF_EINVAL, "pack version %u is not supported (expected 2 or 3)",
                          version);
    if (q->declared > q->max_objects)
        return ff_err_set(err, FF_ETOOBIG, "pack holds %u objects, the limit is %u",
                          q->declared, q->max_objects);
    q->failed = false;
    return 0;
}

int quarantine_append(struct quarantine *q, const void *data, size_t len, struct ff_err *err)
{
    if (q->failed || q->finished)
        FF_BUG("quarantine_append after failure or finish");
    uint64_t total;
    if (__builtin_add_overflow(q->bytes, (uint64_t)len, &total) || total > q->max_bytes) {
        q->failed = true;
        return ff_err_set(err, FF_ETOOBIG, "pack is larger than the limit of %llu bytes",
                          (unsigned long long)q->max_bytes);
    }
    q->bytes = total;
    if (q->header_len < PACK_HEADER_LEN) {
        int rc = take_header(q, data, len, err);
        if (rc != 0)
            return rc;
    }
    if (git_indexer_append(q->idx, data, len, &q->stats) != 0)
        return pack_error(q, err);
    return 0;
}

int quarantine_finish(struct quarantine *q, struct ff_err *err)
{
    if (q->failed || q->finished)
        FF_BUG("quarantine_finish after failure or finish");
    if (q->header_len < PACK_HEADER_LEN) {
        q->failed = true;
        return ff_err_set(err, FF_EINVAL, "pack is truncated (%llu bytes, no complete header)",
                          (unsigned long long)q->bytes);
    }
    if (git_indexer_commit(q->idx, &q->stats) != 0)
        return pack_error(q, err);
    q->finished = true;
    return 0;
}

uint32_t quarantine_object_count(const struct quarantine *q)
{
    return q->declared;
}

int quarantine_open_view(git_repository **out, const struct quarantine *q, const char *path,
                         struct ff_err *err)
{
    git_repository *view = NULL;
    git_odb *odb = NULL;
    int rc = 0;
    if (repo_open(&view, path, err) != 0)
        return ff_err_wrap(err, "opening a view with the quarantine");
    if (git_repository_odb(&odb, view) != 0 || git_odb_add_disk_alternate(odb, q->dir) != 0) {
        rc = repo_git_error(err, FF_EIO, "adding the quarantine to a view");
        git_repository_free(view);
        view = NULL;
    }
    git_odb_free(odb);
    *out = view;
    return rc;
}

/* ---- the connectivity check ---------------------------------------------- */

/* Open addressing over object ids, which are uniformly distributed, so the
 * first bytes are the hash. The all-zero id marks an empty slot and is
 * tracked apart. */
struct oidset {
    git_oid *slots;
    size_t cap; /* power of two */
    size_t n;
    bool has_zero;
};

/* Start size: a small push touches a few hundred objects. */
#define OIDSET_INITIAL 1024

int oidset_new(struct oidset **out)
{
    struct oidset *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return FF_ENOMEM;
    s->slots = calloc(OIDSET_INITIAL, sizeof(git_oid));
    if (s->slots == NULL) {
        free(s);
        return FF_ENOMEM;
    }
    s->cap = OIDSET_INITIAL;
    *out = s;
    return 0;
}

void oidset_free(struct oidset *s)
{
    if (s == NULL)
        return;
    free(s->slots);
    free(s);
}

static size_t oidset_slot(const git_oid *slots, size_t cap, const git_oid *id)
{
    size_t h;
    memcpy(&h, id->id, sizeof(h));
    size_t i = h & (cap - 1);
    while (!git_oid_is_zero(&slots[i]) && !git_oid_equal(&slots[i], id))
        i = (i + 1) & (cap - 1);
    return i;
}

static int oidset_grow(struct oidset *s)
{
    size_t ncap;
    if (__builtin_mul_overflow(s->cap, (size_t)2, &ncap))
        return FF_ENOMEM;
    git_oid *ns = calloc(ncap, sizeof(git_oid));
    if (ns == NULL)
        return FF_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        if (!git_oid_is_zero(&s->slots[i]))
            ns[oidset_slot(ns, ncap, &s->slots[i])] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->cap = ncap;
    return 0;
}

/* Adds id; *added tells whether it was new. Returns 0 or FF_ENOMEM. */
static int oidset_add(struct oidset *s, const git_oid *id, bool *added)
{
    if (git_oid_is_zero(id)) {
        *added = !s->has_zero;
        s->has_zero = true;
        return 0;
    }
    if (s->n + 1 > s->cap / 2 && oidset_grow(s) != 0)
        return FF_ENOMEM;
    size_t i = oidset_slot(s->slots, s->cap, id);
    *added = git_oid_is_zero(&s->slots[i]);
    if (*added) {
        s->slots[i] = *id;
        s->n++;
    }
    return 0;
}

static int add_seen(struct oidset *seen, const git_oid *id, bool *added, struct ff_err *err)
{
    if (oidset_add(seen, id, added) != 0)
        return ff_err_set(err, FF_ENOMEM, "connectivity check: out of memory");
    return 0;
}

/* A name a checkout could be tricked with: git refuses to write these. */
static bool entry_name_ok(const char *name)
{
    return name[0] != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           strcasecmp(name, ".git") != 0 && strchr(name, '/') == NULL;
}

/* Reads every tree under root not yet seen, checking entries and that
 * blobs exist. An explicit stack, because a hostile pack can nest trees
 * deeper than any C stack. */
static int check_tree(git_repository *view, git_odb *odb, const git_oid *root,
                      struct oidset *seen, struct ff_err *err)
{
    bool added = false;
    int rc = add_seen(seen, root, &added, err);
    if (rc != 0 || !added)
        return rc;
    git_oid *stack = malloc(sizeof(git_oid) * 64);
    size_t n = 0, cap = 64;
    if (stack == NULL)
        return ff_err_set(err, FF_ENOMEM, "connectivity check: out of memory");
    stack[n++] = *root;
    while (rc == 0 && n > 0) {
        git_oid id = stack[--n];
        char hex[GIT_OID_HEXSZ + 1];
        git_oid_tostr(hex, sizeof(hex), &id);
        git_tree *tree = NULL;
        if (git_tree_lookup(&tree, view, &id) != 0) {
            rc = repo_git_error(err, FF_EINVAL, "tree %s", hex);
            break;
        }
        size_t count = git_tree_entrycount(tree);
        for (size_t i = 0; rc == 0 && i < count; i++) {
            const git_tree_entry *e = git_tree_entry_byindex(tree, i);
            const char *name = git_tree_entry_name(e);
            const git_oid *eid = git_tree_entry_id(e);
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(name, strlen(name), q);
            if (!entry_name_ok(name)) {
                rc = ff_err_set(err, FF_EINVAL, "tree %s: entry name \"%s\" is not allowed", hex,
                                q);
                break;
            }
            switch ((unsigned)git_tree_entry_filemode_raw(e)) {
            case 0040000:
                rc = add_seen(seen, eid, &added, err);
                if (rc != 0 || !added)
                    break;
                if (n == cap) {
                    git_oid *ns = reallocarray(stack, cap * 2, sizeof(git_oid));
                    if (ns == NULL) {
                        rc = ff_err_set(err, FF_ENOMEM, "connectivity check: out of memory");
                        break;
                    }
                    stack = ns;
                    cap *= 2;
                }
                stack[n++] = *eid;
                break;
            case 0100644:
            case 0100755:
            case 0100664: /* written by git before 2005, still valid */
            case 0120000:
                rc = add_seen(seen, eid, &added, err);
                if (rc == 0 && added && !git_odb_exists(odb, eid)) {
                    char bhex[GIT_OID_HEXSZ + 1];
                    git_oid_tostr(bhex, sizeof(bhex), eid);
                    rc = ff_err_set(err, FF_EINVAL, "tree %s: entry \"%s\": blob %s is missing",
                                    hex, q, bhex);
                }
                break;
            case 0160000:
                /* a submodule's commit lives in another repository */
                break;
            default:
                rc = ff_err_set(err, FF_EINVAL, "tree %s: entry \"%s\" has unknown mode %06o",
                                hex, q, (unsigned)git_tree_entry_filemode_raw(e));
                break;
            }
        }
        git_tree_free(tree);
    }
    free(stack);
    return rc;
}

/* Hides every commit the repository's refs reach: history below them is
 * complete already (what git's `rev-list --not --all` assumes too). */
static int hide_refs(git_repository *view, git_revwalk *walk, struct ff_err *err)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    int rc;
    if (git_reference_iterator_new(&it, view) != 0)
        return repo_git_error(err, FF_EIO, "listing refs");
    while ((rc = git_reference_next(&ref, it)) == 0) {
        git_object *commit = NULL;
        if (git_reference_peel(&commit, ref, GIT_OBJECT_COMMIT) == 0) {
            rc = git_revwalk_hide(walk, git_object_id(commit));
            git_object_free(commit);
        }
        git_reference_free(ref);
        if (rc != 0)
            break;
    }
    git_reference_iterator_free(it);
    if (rc != GIT_ITEROVER)
        return repo_git_error(err, FF_EIO, "hiding existing history");
    return 0;
}

int quarantine_check(git_repository *view, const git_oid *tip, struct oidset *seen,
                     struct ff_err *err)
{
    git_odb *odb = NULL;
    git_revwalk *walk = NULL;
    git_oid id = *tip;
    char hex[GIT_OID_HEXSZ + 1];
    int rc;
    if (git_repository_odb(&odb, view) != 0)
        return repo_git_error(err, FF_EIO, "opening the object database");
    /* Follow tags down to what they name. */
    for (;;) {
        size_t size;
        git_object_t type;
        git_oid_tostr(hex, sizeof(hex), &id);
        if (git_odb_read_header(&size, &type, odb, &id) != 0) {
            rc = ff_err_set(err, FF_EINVAL, "object %s is missing", hex);
            goto out;
        }
        if (type == GIT_OBJECT_COMMIT)
            break;
        if (type != GIT_OBJECT_TAG) {
            /* a tree is read like a commit's; a blob is complete by itself */
            rc = type == GIT_OBJECT_TREE ? check_tree(view, odb, &id, seen, err) : 0;
            goto out;
        }
        bool added = false;
        rc = add_seen(seen, &id, &added, err);
        if (rc != 0 || !added)
            goto out;
        git_tag *tag = NULL;
        if (git_tag_lookup(&tag, view, &id) != 0) {
            rc = repo_git_error(err, FF_EINVAL, "tag %s", hex);
            goto out;
        }
        id = *git_tag_target_id(tag);
        git_tag_free(tag);
    }
    if (git_revwalk_new(&walk, view) != 0) {
        rc = repo_git_error(err, FF_EIO, "starting a history walk");
        goto out;
    }
    rc = hide_refs(view, walk, err);
    if (rc != 0)
        goto out;
    if (git_revwalk_push(walk, &id) != 0) {
        rc = repo_git_error(err, FF_EINVAL, "commit %s", hex);
        goto out;
    }
    git_oid cid;
    int walk_rc;
    while ((walk_rc = git_revwalk_next(&cid, walk)) == 0) {
        bool added = false;
        rc = add_seen(seen, &cid, &added, err);
        if (rc != 0)
            goto out;
        if (!added)
            continue; /* checked for an earlier tip of this push */
        git_commit *commit = NULL;
        git_oid_tostr(hex, sizeof(hex), &cid);
        if (git_commit_lookup(&commit, view, &cid) != 0) {
            rc = repo_git_error(err, FF_EINVAL, "commit %s", hex);
            goto out;
        }
        git_oid tree = *git_commit_tree_id(commit);
        git_commit_free(commit);
        rc = check_tree(view, odb, &tree, seen, err);
        if (rc != 0) {
            (void)ff_err_wrap(err, "commit %s", hex);
            goto out;
        }
    }
    if (walk_rc != GIT_ITEROVER)
        rc = repo_git_error(err, FF_EINVAL, "history below the pushed commits is incomplete");
out:
    git_revwalk_free(walk);
    git_odb_free(odb);
    return rc;
}

/* ---- moving in, or throwing away ------------------------------------------ */

static int fsync_dir(const char *path, struct ff_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int saved = errno;
        if (fd >= 0)
            (void)close(fd);
        return ff_err_set(err, FF_EIO, "syncing \"%s\": %s", path, strerror(saved));
    }
    (void)close(fd);
    return 0;
}

int quarantine_migrate(struct quarantine *q, git_repository *repo, struct ff_err *err)
{
    if (!q->finished || q->migrated)
        FF_BUG("quarantine_migrate of an unfinished or migrated pack");
    if (q->declared == 0)
        return 0;
    static const char *const exts[] = {"pack", "idx"};
    const char *name = git_indexer_name(q->idx);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(exts) / sizeof(exts[0]); i++) {
        char *from = ff_asprintf("%s/pack-%s.%s", q->pack_dir, name, exts[i]);
        char *to = ff_asprintf("%s/pack/pack-%s.%s", q->objects, name, exts[i]);
        if (from == NULL || to == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        else if (rename(from, to) != 0)
            rc = ff_err_set(err, FF_EIO, "moving \"%s\" to \"%s\": %s", from, to,
                            strerror(errno));
        free(from);
        free(to);
    }
    char *pack = ff_asprintf("%s/pack", q->objects);
    if (rc == 0)
        rc = pack != NULL ? fsync_dir(pack, err) : ff_err_set(err, FF_ENOMEM, "out of memory");
    free(pack);
    if (rc != 0)
        return rc;
    q->migrated = true;
    git_odb *odb = NULL;
    if (git_repository_odb(&odb, repo) != 0 || git_odb_refresh(odb) != 0)
        rc = repo_git_error(err, FF_EIO, "reloading the object database");
    git_odb_free(odb);
    return rc;
}

void quarantine_free(struct quarantine *q)
{
    if (q == NULL)
        return;
    git_indexer_free(q->idx);
    git_odb_free(q->odb);
    /* After a migration only the emptied directory is left. */
    if (q->dir != NULL)
        (void)repo_remove_tree(q->dir, NULL);
    free(q->pack_dir);
    free(q->dir);
    free(q->objects);
    free(q);
}

int quarantine_sweep(const char *path, struct ff_err *err)
{
    char *objects = ff_asprintf("%s/objects", path);
    if (objects == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    int rc = 0;
    DIR *d = opendir(objects);
    if (d == NULL) {
        if (errno != ENOENT)
            rc = ff_err_set(err, FF_EIO, "listing \"%s\": %s", objects, strerror(errno));
        free(objects);
        return rc;
    }
    const struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!ff_str_has_prefix(e->d_name, QUARANTINE_PREFIX))
            continue;
        char *dir = ff_asprintf("%s/%s", objects, e->d_name);
        if (dir == NULL)
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        else
            rc = repo_remove_tree(dir, err);
        free(dir);
    }
    (void)closedir(d);
    free(objects);
    return rc;
}
