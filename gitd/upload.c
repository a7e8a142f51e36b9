/* upload-pack, protocol v0, for clone and fetch: advertise, read wants
 * (each must be an advertised tip), negotiate without multi_ack (one ACK
 * for the first common commit, else NAK), and stream a pack that libgit2's
 * packbuilder makes from the wants minus the common history. */
#include "gitd.h"

#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_CAPS "side-band-64k ofs-delta no-progress object-format=sha1 agent=" GITD_AGENT

/* A growable list of ids with a cap. */
struct oidvec {
    git_oid *v;
    size_t n;
    size_t cap;
};

struct upload {
    struct pktline pkt;
    git_repository *repo;
    struct repo_ref *refs;
    size_t n_refs;
    struct oidvec tips;    /* advertised ids, sorted, for checking wants */
    struct oidvec wants;
    struct oidvec commons; /* haves we have too */
    size_t n_haves;
    bool no_progress;
    bool streaming;      /* the pack has started: errors go on band 3 */
};

static int oid_cmp(const void *a, const void *b)
{
    return git_oid_cmp(a, b);
}

static int oidvec_push(struct oidvec *vec, const git_oid *id, size_t max, struct ff_err *err)
{
    if (vec->n >= max)
        return ff_err_set(err, FF_ETOOBIG, "more than %zu ids", max);
    if (vec->n == vec->cap) {
        size_t ncap = vec->cap ? vec->cap * 2 : 16;
        git_oid *nv = reallocarray(vec->v, ncap, sizeof(git_oid));
        if (nv == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
        vec->v = nv;
        vec->cap = ncap;
    }
    vec->v[vec->n++] = *id;
    return 0;
}

static int advertise(struct upload *u, struct ff_err *err)
{
    struct ff_buf b;
    ff_buf_init(&b, REPO_ADVERT_MAX);
    git_reference *head = NULL, *resolved = NULL;
    char *caps = NULL;
    char hex[GIT_OID_HEXSZ + 1];
    int rc = repo_refs(&u->refs, &u->n_refs, u->repo, err);
    if (rc != 0)
        goto out;
    for (size_t i = 0; rc == 0 && i < u->n_refs; i++) {
        rc = oidvec_push(&u->tips, &u->refs[i].id, (size_t)2 * REPO_REFS_MAX, err);
        if (rc == 0 && u->refs[i].has_peeled)
            rc = oidvec_push(&u->tips, &u->refs[i].peeled, (size_t)2 * REPO_REFS_MAX, err);
    }
    if (rc != 0)
        goto out;
    if (u->tips.n > 1)
        qsort(u->tips.v, u->tips.n, sizeof(git_oid), oid_cmp);

    /* HEAD leads, naming its branch so a clone checks that one out. */
    if (git_reference_lookup(&head, u->repo, "HEAD") == 0 &&
        git_reference_type(head) == GIT_REFERENCE_SYMBOLIC &&
        git_reference_resolve(&resolved, head) == 0) {
        caps = ff_asprintf("%s symref=HEAD:%s", UPLOAD_CAPS, git_reference_name(resolved));
        if (caps == NULL) {
            rc = ff_err_set(err, FF_ENOMEM, "out of memory");
            goto out;
        }
        git_oid_tostr(hex, sizeof(hex), git_reference_target(resolved));
        rc = pktline_buf_printf(&b, "%s HEAD%c%s\n", hex, '\0', caps);
    }
    bool caps_sent = caps != NULL;
    for (size_t i = 0; rc == 0 && i < u->n_refs; i++) {
        git_oid_tostr(hex, sizeof(hex), &u->refs[i].id);
        if (!caps_sent)
            rc = pktline_buf_printf(&b, "%s %s%c%s\n", hex, u->refs[i].name, '\0', UPLOAD_CAPS);
        else
            rc = pktline_buf_printf(&b, "%s %s\n", hex, u->refs[i].name);
        caps_sent = true;
        if (rc == 0 && u->refs[i].has_peeled) {
            git_oid_tostr(hex, sizeof(hex), &u->refs[i].peeled);
            rc = pktline_buf_printf(&b, "%s %s^{}\n", hex, u->refs[i].name);
        }
    }
    if (rc == 0 && !caps_sent)
        rc = pktline_buf_printf(&b, "%040d capabilities^{}%c%s\n", 0, '\0', UPLOAD_CAPS);
    if (rc == 0)
        rc = pktline_buf_flush(&b);
    if (rc != 0) {
        rc = ff_err_set(err, rc, "building the ref advertisement: %s", ff_err_name(rc));
        goto out;
    }
    rc = pktline_write_raw(&u->pkt, b.data, b.len, err);
out:
    free(caps);
    git_reference_free(resolved);
    git_reference_free(head);
    ff_buf_release(&b);
    return rc;
}

static int parse_caps(struct upload *u, const char *s, struct ff_err *err)
{
    while (*s != '\0') {
        const char *sp = strchr(s, ' ');
        size_t n = sp != NULL ? (size_t)(sp - s) : strlen(s);
#define IS(word) (n == sizeof(word) - 1 && memcmp(s, word, n) == 0)
        if (IS("side-band-64k"))
            u->pkt.sideband = true;
        else if (IS("no-progress"))
            u->no_progress = true;
        else if (n > 0 && !IS("ofs-delta") && !IS("object-format=sha1") &&
                 !(n > 6 && memcmp(s, "agent=", 6) == 0)) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(s, n, q);
            return ff_err_set(err, FF_EINVAL, "capability \"%s\" was not advertised", q);
        }
#undef IS
        s += n;
        if (*s == ' ')
            s++;
    }
    return 0;
}

/* Parses "<prefix><40 lower-case hex>" at the start of line. */
static int parse_id_after(const char *line, size_t len, const char *prefix, git_oid *out)
{
    size_t plen = strlen(prefix);
    if (len < plen + GIT_OID_HEXSZ || memcmp(line, prefix, plen) != 0)
        return FF_EINVAL;
    for (size_t i = plen; i < plen + GIT_OID_HEXSZ; i++) {
        char c = line[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return FF_EINVAL;
    }
    return git_oid_fromstrn(out, line + plen, GIT_OID_HEXSZ) == 0 ? 0 : FF_EINVAL;
}

/* The text of the last pkt-line without its LF; NULs are refused. */
static int line_text(struct upload *u, size_t *len, struct ff_err *err)
{
    if (*len > 0 && u->pkt.line[*len - 1] == '\n')
        u->pkt.line[--*len] = '\0';
    if (memchr(u->pkt.line, '\0', *len) != NULL)
        return ff_err_set(err, FF_EINVAL, "NUL byte in a line of the fetch request");
    return 0;
}

static int read_wants(struct upload *u, struct ff_err *err)
{
    for (;;) {
        enum pktline_kind kind;
        size_t len;
        int rc = pktline_read(&u->pkt, &kind, &len, err);
        if (rc != 0)
            return ff_err_wrap(err, "want list");
        if (kind == PKTLINE_FLUSH || (kind == PKTLINE_EOF && u->wants.n == 0))
            return 0;
        if (kind != PKTLINE_DATA)
            return ff_err_set(err, FF_EINVAL, "want list: unexpected end or special pkt-line");
        rc = line_text(u, &len, err);
        if (rc != 0)
            return rc;
        const char *line = u->pkt.line;
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(line, len, q);
        if (ff_str_has_prefix(line, "shallow ") || ff_str_has_prefix(line, "deepen"))
            return ff_err_set(err, FF_EINVAL, "shallow fetches are not supported");
        git_oid id;
        if (parse_id_after(line, len, "want ", &id) != 0)
            return ff_err_set(err, FF_EINVAL, "\"%s\" is not \"want <id>\"", q);
        const char *rest = line + strlen("want ") + (size_t)GIT_OID_HEXSZ;
        if (*rest != '\0') {
            if (*rest != ' ' || u->wants.n > 0)
                return ff_err_set(err, FF_EINVAL, "\"%s\" is not \"want <id>\"", q);
            rc = parse_caps(u, rest + 1, err);
            if (rc != 0)
                return rc;
        }
        if (bsearch(&id, u->tips.v, u->tips.n, sizeof(git_oid), oid_cmp) == NULL) {
            char hex[GIT_OID_HEXSZ + 1];
            git_oid_tostr(hex, sizeof(hex), &id);
            return ff_err_set(err, FF_EINVAL, "upload-pack: not our ref %s", hex);
        }
        rc = oidvec_push(&u->wants, &id, UPLOAD_WANTS_MAX, err);
        if (rc != 0)
            return ff_err_wrap(err, "want list");
    }
}

/* Without multi_ack (gitprotocol-pack): ACK the first common commit at
 * once; NAK each flush while none is known, and "done" when none was found. */
static int negotiate(struct upload *u, struct ff_err *err)
{
    for (;;) {
        enum pktline_kind kind;
        size_t len;
        int rc = pktline_read(&u->pkt, &kind, &len, err);
        if (rc != 0)
            return ff_err_wrap(err, "have list");
        if (kind == PKTLINE_FLUSH) {
            if (u->commons.n == 0 && (rc = pktline_printf(&u->pkt, err, "NAK\n")) != 0)
                return rc;
            continue;
        }
        if (kind != PKTLINE_DATA)
            return ff_err_set(err, FF_EINVAL, "have list: input ended before \"done\"");
        rc = line_text(u, &len, err);
        if (rc != 0)
            return rc;
        if (strcmp(u->pkt.line, "done") == 0) {
            if (u->commons.n == 0)
                return pktline_printf(&u->pkt, err, "NAK\n");
            return 0;
        }
        git_oid id;
        if (parse_id_after(u->pkt.line, len, "have ", &id) != 0 || len != 5 + GIT_OID_HEXSZ) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(u->pkt.line, len, q);
            return ff_err_set(err, FF_EINVAL, "\"%s\" is not \"have <id>\" or \"done\"", q);
        }
        if (++u->n_haves > UPLOAD_HAVES_MAX)
            return ff_err_set(err, FF_ETOOBIG, "more than %d haves", UPLOAD_HAVES_MAX);
        git_odb *odb = NULL;
        size_t size;
        git_object_t type;
        bool common = git_repository_odb(&odb, u->repo) == 0 &&
                      git_odb_read_header(&size, &type, odb, &id) == 0 &&
                      type == GIT_OBJECT_COMMIT;
        git_odb_free(odb);
        if (!common)
            continue;
        rc = oidvec_push(&u->commons, &id, UPLOAD_HAVES_MAX, err);
        if (rc == 0 && u->commons.n == 1) {
            char hex[GIT_OID_HEXSZ + 1];
            git_oid_tostr(hex, sizeof(hex), &id);
            rc = pktline_printf(&u->pkt, err, "ACK %s\n", hex);
        }
        if (rc != 0)
            return rc;
    }
}

static int send_chunk(void *buf, size_t size, void *payload)
{
    struct upload *u = payload;
    return pktline_band(&u->pkt, PKTLINE_BAND_DATA, buf, size, NULL) == 0 ? 0 : -1;
}

/* Puts what a want names into the pack: tags themselves and what they
 * name, commits through the walk (so common history is left out). */
static int add_want(struct upload *u, git_packbuilder *pb, git_revwalk *walk, git_oid id,
                    struct ff_err *err)
{
    for (;;) {
        git_object *obj = NULL;
        if (git_object_lookup(&obj, u->repo, &id, GIT_OBJECT_ANY) != 0)
            return repo_git_error(err, FF_EIO, "reading a wanted object");
        git_object_t type = git_object_type(obj);
        int rc = 0;
        if (type == GIT_OBJECT_TAG) {
            rc = git_packbuilder_insert(pb, &id, NULL);
            id = *git_tag_target_id((git_tag *)obj);
        } else if (type == GIT_OBJECT_COMMIT) {
            rc = git_revwalk_push(walk, &id);
        } else if (type == GIT_OBJECT_TREE) {
            rc = git_packbuilder_insert_tree(pb, &id);
        } else {
            rc = git_packbuilder_insert(pb, &id, NULL);
        }
        git_object_free(obj);
        if (rc != 0)
            return repo_git_error(err, FF_EIO, "adding a wanted object to the pack");
        if (type != GIT_OBJECT_TAG)
            return 0;
    }
}

static int send_pack(struct upload *u, struct ff_err *err)
{
    git_packbuilder *pb = NULL;
    git_revwalk *walk = NULL;
    int rc = 0;
    if (git_packbuilder_new(&pb, u->repo) != 0 || git_revwalk_new(&walk, u->repo) != 0) {
        rc = repo_git_error(err, FF_EIO, "starting the pack");
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < u->wants.n; i++)
        rc = add_want(u, pb, walk, u->wants.v[i], err);
    for (size_t i = 0; rc == 0 && i < u->commons.n; i++) {
        if (git_revwalk_hide(walk, &u->commons.v[i]) != 0)
            rc = repo_git_error(err, FF_EIO, "leaving out common history");
    }
    if (rc == 0 && git_packbuilder_insert_walk(pb, walk) != 0)
        rc = repo_git_error(err, FF_EIO, "collecting objects");
    if (rc != 0)
        goto out;
    u->streaming = true;
    struct progress p = {.pkt = &u->pkt, .quiet = u->no_progress};
    pktline_progress(&p, "ff-gitd: sending %zu objects", git_packbuilder_object_count(pb));
    if (git_packbuilder_foreach(pb, send_chunk, u) != 0) {
        rc = u->pkt.out_failed ? ff_err_set(err, FF_EIO, "the client is gone")
                               : repo_git_error(err, FF_EIO, "writing the pack");
        goto out;
    }
    if (u->pkt.sideband)
        rc = pktline_flush(&u->pkt, err);
out:
    git_revwalk_free(walk);
    git_packbuilder_free(pb);
    return rc;
}

static int serve(struct upload *u, const char *path, struct ff_err *err)
{
    int rc = repo_open(&u->repo, path, err);
    if (rc != 0)
        return rc;
    rc = advertise(u, err);
    if (rc == 0)
        rc = read_wants(u, err);
    if (rc != 0 || u->wants.n == 0)
        return rc;
    rc = negotiate(u, err);
    if (rc == 0)
        rc = send_pack(u, err);
    return rc;
}

int upload_pack(const struct gitd_stream *stream, const char *path, struct ff_err *err)
{
    struct upload u;
    memset(&u, 0, sizeof(u));
    struct ff_err e;
    ff_err_clear(&e);
    int rc = pktline_init(&u.pkt, stream, &e);
    if (rc == 0) {
        rc = serve(&u, path, &e);
        if (rc != 0 && u.streaming)
            pktline_fatal(&u.pkt, e.msg);
        else if (rc != 0)
            (void)pktline_printf(&u.pkt, NULL, "ERR %s\n", e.msg);
    }
    free(u.wants.v);
    free(u.commons.v);
    free(u.tips.v);
    repo_refs_free(u.refs, u.n_refs);
    git_repository_free(u.repo);
    pktline_release(&u.pkt);
    if (rc != 0 && err != NULL)
        *err = e;
    return rc;
}
