/* receive-pack, in git's order of operations: advertise, read commands,
 * take the pack into a quarantine, check every command and every new tip,
 * ask the gate about the deploy branch, move the pack in, update refs with
 * compare-and-swap, report. Nothing on disk changes before the pack is
 * proven complete, and refs change only in the last step. */
#include "gitd.h"

#include "ff_log.h"
#include "ff_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Capabilities we advertise; refcmd.c accepts exactly these. */
#define RECEIVE_CAPS                                                                          \
    "report-status delete-refs side-band-64k quiet atomic ofs-delta object-format=sha1 "     \
    "agent=" GITD_AGENT

/* Largest report-status: one line per command, each at most one pkt-line
 * of a ref name and a reason. */
#define RECEIVE_REPORT_MAX ((size_t)REFCMD_MAX * (REFCMD_NAME_MAX + FF_ERR_MSG_MAX + 16) + 1024)

struct session {
    const struct receive_config *cfg;
    const char *path;
    struct pktline pkt;
    struct progress progress;      /* our own, silenced by quiet */
    struct progress gate_progress; /* the gate's, like hook output never silenced */
    git_repository *repo;
    int lock_fd;
    struct refcmd_list list;
    struct quarantine *q;
    git_repository *view; /* sees the quarantine; NULL for a delete-only push */
};

void receive_config_init(struct receive_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_pack_bytes = RECEIVE_MAX_PACK_BYTES_DEFAULT;
    cfg->max_objects = RECEIVE_MAX_OBJECTS_DEFAULT;
    cfg->deploy_branch = RECEIVE_DEPLOY_BRANCH_DEFAULT;
}

bool receive_is_deploy_ref(const struct receive_config *cfg, const char *ref)
{
    if (!ff_str_has_prefix(ref, "refs/heads/"))
        return false;
    const char *branch = ref + strlen("refs/heads/");
    return strcmp(branch, cfg->deploy_branch) == 0 ||
           (strcmp(cfg->deploy_branch, "main") == 0 && strcmp(branch, "master") == 0);
}

static int advertise(struct session *s, struct ff_err *err)
{
    struct repo_ref *refs = NULL;
    size_t n = 0;
    struct ff_buf b;
    ff_buf_init(&b, REPO_ADVERT_MAX);
    int rc = repo_refs(&refs, &n, s->repo, err);
    if (rc != 0)
        goto out;
    char hex[GIT_OID_HEXSZ + 1];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        git_oid_tostr(hex, sizeof(hex), &refs[i].id);
        if (i == 0)
            rc = pktline_buf_printf(&b, "%s %s%c%s\n", hex, refs[i].name, '\0', RECEIVE_CAPS);
        else
            rc = pktline_buf_printf(&b, "%s %s\n", hex, refs[i].name);
    }
    if (rc == 0 && n == 0)
        rc = pktline_buf_printf(&b, "%040d capabilities^{}%c%s\n", 0, '\0', RECEIVE_CAPS);
    if (rc == 0)
        rc = pktline_buf_flush(&b);
    if (rc != 0) {
        rc = ff_err_set(err, rc, "building the ref advertisement: %s", ff_err_name(rc));
        goto out;
    }
    rc = pktline_write_raw(&s->pkt, b.data, b.len, err);
out:
    repo_refs_free(refs, n);
    ff_buf_release(&b);
    return rc;
}

/* Reads commands up to the flush. An empty list (a lone flush, or the end
 * of input) means the client has nothing to push. */
static int read_commands(struct session *s, struct ff_err *err)
{
    for (;;) {
        enum pktline_kind kind;
        size_t len;
        int rc = pktline_read(&s->pkt, &kind, &len, err);
        if (rc != 0)
            return ff_err_wrap(err, "command list");
        switch (kind) {
        case PKTLINE_DATA:
            rc = refcmd_list_add(&s->list, s->pkt.line, len, err);
            if (rc != 0)
                return rc;
            break;
        case PKTLINE_FLUSH:
            return 0;
        case PKTLINE_EOF:
            if (s->list.n == 0)
                return 0;
            return ff_err_set(err, FF_EINVAL, "input ended inside the command list");
        default:
            return ff_err_set(err, FF_EINVAL,
                              "command list: unexpected delimiter or response-end pkt-line");
        }
    }
}

/* The pack runs to the end of input: git closes its side once the pack is
 * sent, and over SSH that is the channel's EOF. */
/* Pack bytes handed to the indexer at once. libgit2 1.5 drops and remaps
 * its whole window on the pack at every git_indexer_append, so feeding it
 * pipe-sized reads made munmap a quarter of a push's CPU (bench/gitd);
 * the pack size limit is then enforced up to this much late. */
#define RECEIVE_APPEND_CHUNK ((size_t)1 << 20)

/* Fills buf with up to cap pack bytes; *n is 0 only at the end of the pack. */
static int read_pack_chunk(struct session *s, unsigned char *buf, size_t cap, size_t *n,
                           struct ff_err *err)
{
    *n = 0;
    while (*n < cap) {
        size_t got = 0;
        int rc = pktline_read_raw(&s->pkt, buf + *n, cap - *n, &got, err);
        if (rc != 0)
            return rc;
        if (got == 0)
            break;
        *n += got;
    }
    return 0;
}

static int read_pack(struct session *s, struct ff_err *err)
{
    int rc = quarantine_new(&s->q, s->repo, s->cfg->max_pack_bytes, s->cfg->max_objects, err);
    if (rc != 0)
        return rc;
    unsigned char *buf = malloc(RECEIVE_APPEND_CHUNK);
    if (buf == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    for (;;) {
        size_t n;
        rc = read_pack_chunk(s, buf, RECEIVE_APPEND_CHUNK, &n, err);
        if (rc != 0 || n == 0)
            break;
        rc = quarantine_append(s->q, buf, n, err);
        if (rc != 0)
            break;
    }
    free(buf);
    if (rc == 0)
        rc = quarantine_finish(s->q, err);
    if (rc != 0)
        return rc;
    pktline_progress(&s->progress, "ff-gitd: received %u objects, checking them",
                     quarantine_object_count(s->q));
    return quarantine_open_view(&s->view, s->q, s->path, err);
}

static bool any_rejected(const struct refcmd_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->cmds[i].rejected)
            return true;
    }
    return false;
}

/* atomic: one failure fails every command. */
static void atomic_settle(struct session *s)
{
    if (!s->list.caps.atomic || !any_rejected(&s->list))
        return;
    for (size_t i = 0; i < s->list.n; i++)
        refcmd_reject(&s->list.cmds[i], "atomic push failure");
}

static int current_id(git_repository *repo, const char *ref, git_oid *out)
{
    int rc = git_reference_name_to_id(out, repo, ref);
    if (rc == GIT_ENOTFOUND) {
        memset(out, 0, sizeof(*out));
        return 0;
    }
    return rc;
}

/* Everything that can be decided before the gate: policy, the old value,
 * the new object's type and completeness. */
static int check_commands(struct session *s, struct ff_err *err)
{
    struct oidset *seen = NULL;
    git_odb *odb = NULL;
    int rc = 0;
    if (s->view != NULL && git_repository_odb(&odb, s->view) != 0)
        return repo_git_error(err, FF_EIO, "opening the object database");
    if (oidset_new(&seen) != 0) {
        rc = ff_err_set(err, FF_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->list.n; i++) {
        struct refcmd *c = &s->list.cmds[i];
        if (c->rejected)
            continue;
        if (refcmd_is_delete(c) && receive_is_deploy_ref(s->cfg, c->ref)) {
            refcmd_reject(c, "the deploy branch cannot be deleted");
            continue;
        }
        git_oid cur;
        if (current_id(s->repo, c->ref, &cur) != 0) {
            struct ff_err e;
            (void)repo_git_error(&e, FF_EIO, "reading the ref");
            refcmd_reject(c, "%s", e.msg);
            continue;
        }
        if (!git_oid_equal(&cur, &c->old_id)) {
            refcmd_reject(c, git_oid_is_zero(&c->old_id) ? "ref already exists"
                                                         : "old id does not match the ref");
            continue;
        }
        if (refcmd_is_delete(c))
            continue;
        size_t size;
        git_object_t type;
        if (git_odb_read_header(&size, &type, odb, &c->new_id) != 0) {
            refcmd_reject(c, "missing necessary objects");
            continue;
        }
        if (ff_str_has_prefix(c->ref, "refs/heads/") && type != GIT_OBJECT_COMMIT) {
            refcmd_reject(c, "a branch must point to a commit");
            continue;
        }
        struct ff_err e;
        rc = quarantine_check(s->view, &c->new_id, seen, &e);
        if (rc == FF_ENOMEM) {
            rc = ff_err_set(err, rc, "%s", e.msg);
            goto out;
        }
        if (rc != 0) {
            rc = 0;
            refcmd_reject(c, "%s", e.msg);
            /* seen may hold objects whose check did not finish */
            oidset_free(seen);
            seen = NULL;
            if (oidset_new(&seen) != 0) {
                rc = ff_err_set(err, FF_ENOMEM, "out of memory");
                goto out;
            }
        }
    }
out:
    oidset_free(seen);
    git_odb_free(odb);
    return rc;
}

static void run_gates(struct session *s)
{
    if (s->cfg->gate == NULL)
        return;
    for (size_t i = 0; i < s->list.n; i++) {
        struct refcmd *c = &s->list.cmds[i];
        if (c->rejected || refcmd_is_delete(c) || !receive_is_deploy_ref(s->cfg, c->ref))
            continue;
        char *reason = NULL;
        if (s->cfg->gate(s->cfg->gate_ctx, s->view, c->ref, &c->old_id, &c->new_id,
                         &s->gate_progress, &reason) != 0)
            refcmd_reject(c, "%s", reason != NULL ? reason : "build failed");
        free(reason);
        atomic_settle(s);
    }
}

/* Applies cmds in one libgit2 transaction: every ref is locked first, then
 * its value compared with the old id the client saw, then all are written.
 * A change by anyone else between advertisement and now fails the lot. */
static int apply(git_repository *repo, struct refcmd **cmds, size_t n, struct ff_err *err)
{
    git_transaction *tx = NULL;
    git_signature *sig = NULL;
    int rc = 0;
    if (git_transaction_new(&tx, repo) != 0 ||
        git_signature_now(&sig, "ff-gitd", "ff-gitd@localhost") != 0) {
        rc = repo_git_error(err, FF_EIO, "starting the ref update");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (git_transaction_lock_ref(tx, cmds[i]->ref) != 0) {
            rc = repo_git_error(err, FF_ECONFLICT, "failed to lock");
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        git_oid cur;
        if (current_id(repo, cmds[i]->ref, &cur) != 0) {
            rc = repo_git_error(err, FF_EIO, "reading the ref");
            goto out;
        }
        if (!git_oid_equal(&cur, &cmds[i]->old_id)) {
            rc = ff_err_set(err, FF_ECONFLICT, "ref changed during the push");
            goto out;
        }
        int set = refcmd_is_delete(cmds[i])
                      ? git_transaction_remove(tx, cmds[i]->ref)
                      : git_transaction_set_target(tx, cmds[i]->ref, &cmds[i]->new_id, sig, "push");
        if (set != 0) {
            rc = repo_git_error(err, FF_EIO, "updating the ref");
            goto out;
        }
    }
    if (git_transaction_commit(tx) != 0)
        rc = repo_git_error(err, FF_EIO, "updating the ref");
out:
    git_signature_free(sig);
    git_transaction_free(tx);
    return rc;
}

static int update_refs(struct session *s, struct ff_err *err)
{
    struct refcmd **todo = calloc(s->list.n, sizeof(struct refcmd *));
    if (todo == NULL)
        return ff_err_set(err, FF_ENOMEM, "updating refs: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < s->list.n; i++) {
        if (!s->list.cmds[i].rejected)
            todo[n++] = &s->list.cmds[i];
    }
    struct ff_err e;
    if (s->list.caps.atomic && n > 0) {
        if (apply(s->repo, todo, n, &e) != 0) {
            for (size_t i = 0; i < n; i++)
                refcmd_reject(todo[i], "%s", e.msg);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (apply(s->repo, &todo[i], 1, &e) != 0)
                refcmd_reject(todo[i], "%s", e.msg);
        }
    }
    free(todo);
    return 0;
}

static int report(struct session *s, const char *unpack_error, struct ff_err *err)
{
    if (!s->list.caps.report_status)
        return 0;
    struct ff_buf b;
    ff_buf_init(&b, RECEIVE_REPORT_MAX);
    int rc = pktline_buf_printf(&b, "unpack %s\n", unpack_error != NULL ? unpack_error : "ok");
    for (size_t i = 0; rc == 0 && i < s->list.n; i++) {
        const struct refcmd *c = &s->list.cmds[i];
        if (c->rejected)
            rc = pktline_buf_printf(&b, "ng %s %s\n", c->ref,
                                    c->reason != NULL ? c->reason : "rejected");
        else
            rc = pktline_buf_printf(&b, "ok %s\n", c->ref);
    }
    if (rc == 0)
        rc = pktline_buf_flush(&b);
    if (rc != 0)
        rc = ff_err_set(err, rc, "building the report: %s", ff_err_name(rc));
    else
        rc = pktline_band(&s->pkt, PKTLINE_BAND_DATA, b.data, b.len, err);
    ff_buf_release(&b);
    return rc;
}

static void log_results(const struct session *s, const char *unpack_error)
{
    if (unpack_error != NULL)
        ff_log_warn(s->cfg->reqid, "push.unpack", "repo=%s error=%s", s->path, unpack_error);
    char hex[GIT_OID_HEXSZ + 1];
    for (size_t i = 0; i < s->list.n; i++) {
        const struct refcmd *c = &s->list.cmds[i];
        git_oid_tostr(hex, sizeof(hex), &c->new_id);
        if (c->rejected)
            ff_log_info(s->cfg->reqid, "push.ref", "repo=%s ref=%s new=%s result=ng reason=%s",
                        s->path, c->ref, hex, c->reason != NULL ? c->reason : "rejected");
        else
            ff_log_info(s->cfg->reqid, "push.ref", "repo=%s ref=%s new=%s result=ok", s->path,
                        c->ref, hex);
    }
}

/* Message text for "unpack <error>": one line, no control characters. */
static void one_line(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
    }
}

static bool needs_pack(const struct refcmd_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!refcmd_is_delete(&l->cmds[i]))
            return true;
    }
    return false;
}

static bool needs_migration(const struct refcmd_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (!l->cmds[i].rejected && !refcmd_is_delete(&l->cmds[i]))
            return true;
    }
    return false;
}

static int serve(struct session *s, struct ff_err *err)
{
    int rc = repo_open_locked(&s->repo, &s->lock_fd, s->path, true, s->cfg->deploy_branch,
                              &s->progress, err);
    if (rc == 0)
        rc = advertise(s, err);
    if (rc == 0)
        rc = read_commands(s, err);
    if (rc != 0 || s->list.n == 0)
        return rc;
    s->pkt.sideband = s->list.caps.side_band_64k;
    s->progress.quiet = s->list.caps.quiet;

    struct ff_err unpack;
    ff_err_clear(&unpack);
    const char *unpack_error = NULL;
    if (needs_pack(&s->list) && read_pack(s, &unpack) != 0) {
        one_line(unpack.msg);
        unpack_error = unpack.msg;
        for (size_t i = 0; i < s->list.n; i++)
            refcmd_reject(&s->list.cmds[i], "unpacker error");
    }
    if (unpack_error == NULL) {
        rc = check_commands(s, err);
        if (rc != 0)
            return rc;
        atomic_settle(s);
        run_gates(s);
        if (needs_migration(&s->list)) {
            struct ff_err e;
            if (quarantine_migrate(s->q, s->repo, &e) != 0) {
                ff_log_error(s->cfg->reqid, "push.migrate", "repo=%s error=%s", s->path, e.msg);
                for (size_t i = 0; i < s->list.n; i++) {
                    if (s->list.caps.atomic || !refcmd_is_delete(&s->list.cmds[i]))
                        refcmd_reject(&s->list.cmds[i], "failed to store the pack");
                }
            }
        }
        rc = update_refs(s, err);
        if (rc != 0)
            return rc;
    }
    log_results(s, unpack_error);
    rc = report(s, unpack_error, err);
    if (rc == 0 && s->pkt.sideband)
        rc = pktline_flush(&s->pkt, err);
    return rc;
}

int receive_pack(const struct gitd_stream *stream, const char *path,
                 const struct receive_config *cfg, struct ff_err *err)
{
    struct session s;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    s.path = path;
    s.lock_fd = -1;
    s.progress.pkt = &s.pkt;
    s.gate_progress.pkt = &s.pkt;
    struct ff_err e;
    ff_err_clear(&e);
    int rc = pktline_init(&s.pkt, stream, &e);
    if (rc == 0) {
        rc = serve(&s, &e);
        if (rc != 0)
            pktline_fatal(&s.pkt, e.msg);
    }
    git_repository_free(s.view);
    quarantine_free(s.q);
    refcmd_list_release(&s.list);
    git_repository_free(s.repo);
    if (s.lock_fd >= 0)
        (void)close(s.lock_fd);
    pktline_release(&s.pkt);
    if (rc != 0 && err != NULL)
        *err = e;
    return rc;
}
