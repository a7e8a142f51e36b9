/* USER of a RUN step, resolved against the image's /etc/passwd and
 * /etc/group the way Docker (runc's libcontainer/user) does.
 *
 * Both files come from the image and are hostile: lines of any length,
 * missing fields, ids that are not numbers or do not fit in 32 bits, NUL
 * bytes, symlinks out of the rootfs, FIFOs. The parser works on bounded
 * buffers with explicit lengths and never on C strings of file content. */
#include "worker.h"

#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PASSWD_PATH "/etc/passwd"
#define GROUP_PATH "/etc/group"

/* passwd: name:password:uid:gid:gecos:home:shell; group:
 * name:password:gid:members. Only the first four fields matter; the fifth
 * takes the rest of the line. */
#define FIELDS_MAX 5

struct field {
    const char *p;
    size_t n;
};

/* Splits one line into up to FIELDS_MAX fields (the last keeps the rest)
 * and returns how many there were. */
static size_t split_fields(const char *line, size_t len, struct field *f)
{
    size_t count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && (line[i] != ':' || count == FIELDS_MAX - 1))
            continue;
        f[count].p = line + start;
        f[count].n = i - start;
        count++;
        start = i + 1;
        if (count == FIELDS_MAX)
            break;
    }
    return count;
}

struct line_iter {
    const char *p;
    const char *end;
    size_t lineno;
};

static bool line_next(struct line_iter *it, const char **line, size_t *len)
{
    if (it->p == NULL || it->p >= it->end)
        return false;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    const char *stop = nl != NULL ? nl : it->end;
    *line = it->p;
    *len = (size_t)(stop - it->p);
    it->p = nl != NULL ? nl + 1 : it->end;
    it->lineno++;
    return true;
}

/* A decimal id: FF_EINVAL when not all digits, FF_ERANGE above
 * PASSWD_ID_MAX. */
static int parse_id(const char *p, size_t n, uint32_t *out)
{
    if (n == 0)
        return FF_EINVAL;
    uint64_t v = 0;
    bool big = false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return FF_EINVAL;
        if (!big) {
            v = v * 10 + (uint64_t)(p[i] - '0');
            big = v > PASSWD_ID_MAX;
        }
    }
    if (big)
        return FF_ERANGE;
    *out = (uint32_t)v;
    return 0;
}

static bool field_is(const struct field *f, const char *s, size_t n)
{
    return f->n == n && memcmp(f->p, s, n) == 0;
}

static int bad_id(struct ff_err *err, int rc, const char *file, size_t lineno,
                  const char *what, const struct field *f)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(f->p, f->n, q);
    if (rc == FF_ERANGE)
        return ff_err_set(err, FF_ERANGE, "%s line %zu: %s \"%s\" is above %u", file, lineno,
                          what, q, PASSWD_ID_MAX);
    return ff_err_set(err, FF_EINVAL, "%s line %zu: %s \"%s\" is not a number", file, lineno,
                      what, q);
}

/* What passwd says about the user asked for. */
struct pw_match {
    bool found;
    uint32_t uid, gid;
    const char *name; /* borrowed from the passwd buffer */
    size_t name_len;
};

static int passwd_find_name(const char *buf, size_t len, const char *name, size_t name_len,
                            struct pw_match *m, struct ff_err *err)
{
    struct line_iter it = {buf, buf + len, 0};
    const char *line;
    size_t n;
    while (line_next(&it, &line, &n)) {
        struct field f[FIELDS_MAX];
        size_t nf = split_fields(line, n, f);
        if (!field_is(&f[0], name, name_len))
            continue;
        if (nf < 4) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(name, name_len, q);
            return ff_err_set(err, FF_EINVAL, PASSWD_PATH " line %zu: user \"%s\" has %zu "
                              "fields (expected name:password:uid:gid:…)", it.lineno, q, nf);
        }
        int rc = parse_id(f[2].p, f[2].n, &m->uid);
        if (rc != 0)
            return bad_id(err, rc, PASSWD_PATH, it.lineno, "uid", &f[2]);
        rc = parse_id(f[3].p, f[3].n, &m->gid);
        if (rc != 0)
            return bad_id(err, rc, PASSWD_PATH, it.lineno, "gid", &f[3]);
        m->found = true;
        m->name = f[0].p;
        m->name_len = f[0].n;
        return 0;
    }
    return 0;
}

/* The first well-formed line with this uid; malformed lines cannot be known
 * to be about it and are skipped. */
static void passwd_find_uid(const char *buf, size_t len, uint32_t uid, struct pw_match *m)
{
    struct line_iter it = {buf, buf + len, 0};
    const char *line;
    size_t n;
    while (line_next(&it, &line, &n)) {
        struct field f[FIELDS_MAX];
        uint32_t u, g;
        if (split_fields(line, n, f) < 4 || f[0].n == 0 || parse_id(f[2].p, f[2].n, &u) != 0 ||
            u != uid || parse_id(f[3].p, f[3].n, &g) != 0)
            continue;
        m->found = true;
        m->uid = u;
        m->gid = g;
        m->name = f[0].p;
        m->name_len = f[0].n;
        return;
    }
}

static int group_find_name(const char *buf, size_t len, const char *name, size_t name_len,
                           bool *found, uint32_t *gid, struct ff_err *err)
{
    struct line_iter it = {buf, buf + len, 0};
    const char *line;
    size_t n;
    while (line_next(&it, &line, &n)) {
        struct field f[FIELDS_MAX];
        size_t nf = split_fields(line, n, f);
        if (!field_is(&f[0], name, name_len))
            continue;
        if (nf < 3) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(name, name_len, q);
            return ff_err_set(err, FF_EINVAL, GROUP_PATH " line %zu: group \"%s\" has %zu "
                              "fields (expected name:password:gid:members)", it.lineno, q, nf);
        }
        int rc = parse_id(f[2].p, f[2].n, gid);
        if (rc != 0)
            return bad_id(err, rc, GROUP_PATH, it.lineno, "gid", &f[2]);
        *found = true;
        return 0;
    }
    *found = false;
    return 0;
}

static bool members_contain(const struct field *members, const char *name, size_t name_len)
{
    const char *p = members->p;
    const char *end = members->p + members->n;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma != NULL ? comma : end;
        if ((size_t)(stop - p) == name_len && memcmp(p, name, name_len) == 0)
            return true;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return false;
}

static int gids_add(struct passwd_ids *ids, uint32_t gid, struct ff_err *err)
{
    for (size_t i = 0; i < ids->n_gids; i++) {
        if (ids->gids[i] == gid)
            return 0;
    }
    if (ids->n_gids == PASSWD_GIDS_MAX)
        return ff_err_set(err, FF_ETOOBIG, GROUP_PATH ": user is in more than %d groups",
                          PASSWD_GIDS_MAX);
    if (ids->gids == NULL) {
        ids->gids = malloc(PASSWD_GIDS_MAX * sizeof(*ids->gids));
        if (ids->gids == NULL)
            return ff_err_set(err, FF_ENOMEM, "out of memory");
    }
    ids->gids[ids->n_gids++] = gid;
    return 0;
}

/* The groups that list name as a member. */
static int group_members_of(const char *buf, size_t len, const char *name, size_t name_len,
                            struct passwd_ids *ids, struct ff_err *err)
{
    struct line_iter it = {buf, buf + len, 0};
    const char *line;
    size_t n;
    while (line_next(&it, &line, &n)) {
        struct field f[FIELDS_MAX];
        uint32_t gid;
        if (split_fields(line, n, f) < 4 || parse_id(f[2].p, f[2].n, &gid) != 0 ||
            !members_contain(&f[3], name, name_len))
            continue;
        int rc = gids_add(ids, gid, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static int resolve_user(const char *user, size_t user_len, const char *passwd,
                        size_t passwd_len, struct pw_match *m, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(user, user_len, q);
    if (all_digits(user, user_len)) {
        uint32_t uid;
        if (parse_id(user, user_len, &uid) != 0)
            return ff_err_set(err, FF_ERANGE, "user \"%s\": uid is above %u", q, PASSWD_ID_MAX);
        passwd_find_uid(passwd, passwd_len, uid, m);
        if (!m->found) {
            m->uid = uid;
            m->gid = 0;
        }
        return 0;
    }
    if (passwd == NULL)
        return ff_err_set(err, FF_ENOTFOUND, "user \"%s\" not found: the image has no "
                          PASSWD_PATH, q);
    int rc = passwd_find_name(passwd, passwd_len, user, user_len, m, err);
    if (rc != 0)
        return rc;
    if (!m->found)
        return ff_err_set(err, FF_ENOTFOUND, "user \"%s\" not found in " PASSWD_PATH, q);
    return 0;
}

static int resolve_group(const char *grp, size_t grp_len, const char *group, size_t group_len,
                         uint32_t *gid, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(grp, grp_len, q);
    if (all_digits(grp, grp_len)) {
        if (parse_id(grp, grp_len, gid) != 0)
            return ff_err_set(err, FF_ERANGE, "group \"%s\": gid is above %u", q, PASSWD_ID_MAX);
        return 0;
    }
    if (group == NULL)
        return ff_err_set(err, FF_ENOTFOUND, "group \"%s\" not found: the image has no "
                          GROUP_PATH, q);
    bool found = false;
    int rc = group_find_name(group, group_len, grp, grp_len, &found, gid, err);
    if (rc != 0)
        return rc;
    if (!found)
        return ff_err_set(err, FF_ENOTFOUND, "group \"%s\" not found in " GROUP_PATH, q);
    return 0;
}

static int check_spec(const char *spec, size_t len, const char *colon, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(spec, len, q);
    if (len > PASSWD_SPEC_MAX)
        return ff_err_set(err, FF_EINVAL, "USER \"%s\": longer than %d bytes", q,
                          PASSWD_SPEC_MAX);
    if (len == 0 || colon == spec || (colon != NULL && colon[1] == '\0'))
        return ff_err_set(err, FF_EINVAL, "USER \"%s\": expected user[:group]", q);
    if (colon != NULL && strchr(colon + 1, ':') != NULL)
        return ff_err_set(err, FF_EINVAL, "USER \"%s\": more than one ':'", q);
    return 0;
}

int passwd_resolve_buf(const char *spec, const char *passwd, size_t passwd_len,
                       const char *group, size_t group_len, struct passwd_ids *out,
                       struct ff_err *err)
{
    size_t len = strlen(spec);
    const char *colon = strchr(spec, ':');
    int rc = check_spec(spec, len, colon, err);
    if (rc != 0)
        return rc;
    size_t user_len = colon != NULL ? (size_t)(colon - spec) : len;
    struct pw_match m = {0};
    rc = resolve_user(spec, user_len, passwd, passwd_len, &m, err);
    if (rc != 0)
        return rc;
    struct passwd_ids ids = {.uid = m.uid, .gid = m.gid};
    if (colon != NULL)
        rc = resolve_group(colon + 1, strlen(colon + 1), group, group_len, &ids.gid, err);
    else if (m.found && group != NULL)
        rc = group_members_of(group, group_len, m.name, m.name_len, &ids, err);
    if (rc != 0) {
        passwd_ids_release(&ids);
        return rc;
    }
    if (ids.n_gids == 0) {
        free(ids.gids);
        ids.gids = NULL;
    }
    *out = ids;
    return 0;
}

/* Opens rel inside the rootfs as a chroot would see it, without following
 * anything out of it and without opening anything but a regular file (a
 * FIFO would block, a device node would be the host's device). */
static int open_in_root(int root_fd, const char *rel, int *out, struct ff_err *err)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    int pfd = (int)syscall(SYS_openat2, root_fd, rel, &how, sizeof(how));
    if (pfd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            *out = -1;
            return 0;
        }
        return ff_err_set(err, FF_EIO, "opening /%s in the rootfs failed: %s", rel,
                          strerror(errno));
    }
    struct stat st;
    int rc = 0;
    if (fstat(pfd, &st) != 0) {
        rc = ff_err_set(err, FF_EIO, "stat of /%s in the rootfs failed: %s", rel,
                        strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = ff_err_set(err, FF_EINVAL, "/%s in the rootfs is not a regular file", rel);
    } else if ((uint64_t)st.st_size > PASSWD_FILE_MAX) {
        rc = ff_err_set(err, FF_ETOOBIG, "/%s in the rootfs is %lld bytes (at most %zu)", rel,
                        (long long)st.st_size, PASSWD_FILE_MAX);
    }
    if (rc == 0) {
        char proc[64];
        (void)snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
        *out = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (*out < 0)
            rc = ff_err_set(err, FF_EIO, "opening /%s in the rootfs failed: %s", rel,
                            strerror(errno));
    }
    (void)close(pfd);
    return rc;
}

static int read_capped(int fd, const char *rel, char **out, size_t *out_len, struct ff_err *err)
{
    char *buf = malloc(PASSWD_FILE_MAX + 1);
    if (buf == NULL)
        return ff_err_set(err, FF_ENOMEM, "out of memory");
    size_t len = 0;
    while (len <= PASSWD_FILE_MAX) {
        ssize_t n = read(fd, buf + len, PASSWD_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return ff_err_set(err, FF_EIO, "reading /%s in the rootfs failed: %s", rel,
                              strerror(errno));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > PASSWD_FILE_MAX) {
        free(buf);
        return ff_err_set(err, FF_ETOOBIG, "/%s in the rootfs is larger than %zu bytes", rel,
                          PASSWD_FILE_MAX);
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* *out stays NULL when the file does not exist. */
static int read_in_root(int root_fd, const char *rel, char **out, size_t *out_len,
                        struct ff_err *err)
{
    int fd = -1;
    int rc = open_in_root(root_fd, rel, &fd, err);
    if (rc != 0 || fd < 0)
        return rc;
    rc = read_capped(fd, rel, out, out_len, err);
    (void)close(fd);
    return rc;
}

int passwd_resolve(int rootfs_fd, const char *spec, struct passwd_ids *out, struct ff_err *err)
{
    if (spec == NULL || spec[0] == '\0') {
        *out = (struct passwd_ids){0};
        return 0;
    }
    char *pw = NULL, *gr = NULL;
    size_t pw_len = 0, gr_len = 0;
    int rc = read_in_root(rootfs_fd, "etc/passwd", &pw, &pw_len, err);
    if (rc == 0)
        rc = read_in_root(rootfs_fd, "etc/group", &gr, &gr_len, err);
    if (rc == 0)
        rc = passwd_resolve_buf(spec, pw, pw_len, gr, gr_len, out, err);
    free(pw);
    free(gr);
    return rc;
}

void passwd_ids_release(struct passwd_ids *ids)
{
    if (ids == NULL)
        return;
    free(ids->gids);
    ids->gids = NULL;
    ids->n_gids = 0;
}
