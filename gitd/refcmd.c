/* The command list of a push, parsed strictly: it names the refs a client
 * wants to change, so nothing in it is taken on trust. */
#include "gitd.h"

#include "ff_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEX_ID_LEN ((size_t)40)

/* Parses exactly 40 lower-case hex digits (gitprotocol-common's HEXDIG). */
static int parse_id(const char *s, git_oid *out)
{
    for (size_t i = 0; i < HEX_ID_LEN; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return FF_EINVAL;
    }
    return git_oid_fromstrn(out, s, HEX_ID_LEN) == 0 ? 0 : FF_EINVAL;
}

static int parse_caps(const char *s, size_t len, size_t index, struct refcmd_caps *caps,
                      struct ff_err *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return ff_err_set(err, FF_EINVAL,
                              "command %zu: capabilities hold control character 0x%02x", index,
                              c);
    }
    size_t pos = 0;
    while (pos < len) {
        const char *tok = s + pos;
        const char *sp = memchr(tok, ' ', len - pos);
        size_t n = sp != NULL ? (size_t)(sp - tok) : len - pos;
        pos += n + 1;
        if (n == 0)
            continue;
#define IS(word) (n == sizeof(word) - 1 && memcmp(tok, word, n) == 0)
        if (IS("report-status"))
            caps->report_status = true;
        else if (IS("side-band-64k"))
            caps->side_band_64k = true;
        else if (IS("quiet"))
            caps->quiet = true;
        else if (IS("atomic"))
            caps->atomic = true;
        else if (IS("ofs-delta"))
            caps->ofs_delta = true;
        else if (IS("delete-refs"))
            caps->delete_refs = true;
        else if (!IS("object-format=sha1") && !(n > 6 && memcmp(tok, "agent=", 6) == 0)) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(tok, n, q);
            return ff_err_set(err, FF_EINVAL, "command %zu: capability \"%s\" was not advertised",
                              index, q);
        }
#undef IS
    }
    return 0;
}

/* Checks a ref name (len bytes, not NUL-terminated) and returns a copy. */
static int parse_ref(const char *s, size_t len, size_t index, char **out, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(s, len, q);
    if (len == 0)
        return ff_err_set(err, FF_EINVAL, "command %zu: empty ref name", index);
    if (len > REFCMD_NAME_MAX)
        return ff_err_set(err, FF_EINVAL, "command %zu: ref name \"%s\" is longer than %d bytes",
                          index, q, REFCMD_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return ff_err_set(err, FF_EINVAL,
                              "command %zu: ref name \"%s\" holds control character 0x%02x",
                              index, q, c);
    }
    char *ref = ff_strndup(s, len);
    if (ref == NULL)
        return ff_err_set(err, FF_ENOMEM, "command %zu: out of memory", index);
    int valid = 0;
    if (git_reference_name_is_valid(&valid, ref) != 0 || !valid) {
        free(ref);
        return ff_err_set(err, FF_EINVAL, "command %zu: \"%s\" is not a valid ref name", index,
                          q);
    }
    *out = ref;
    return 0;
}

int refcmd_list_add(struct refcmd_list *l, const char *line, size_t len, struct ff_err *err)
{
    size_t index = l->n + 1;
    if (l->n >= REFCMD_MAX)
        return ff_err_set(err, FF_ETOOBIG, "more than %d commands in one push", REFCMD_MAX);
    if (len > 0 && line[len - 1] == '\n')
        len--;
    const char *nul = memchr(line, '\0', len);
    size_t cmd_len = nul != NULL ? (size_t)(nul - line) : len;
    struct refcmd_caps caps = l->caps;
    if (nul != NULL) {
        if (l->n > 0)
            return ff_err_set(err, FF_EINVAL,
                              "command %zu: capabilities are allowed on the first command only",
                              index);
        int rc = parse_caps(nul + 1, len - cmd_len - 1, index, &caps, err);
        if (rc != 0)
            return rc;
    }

    /* "<old> <new> <ref>": two ids, two spaces, at least one byte of name */
    if (cmd_len < 2 * HEX_ID_LEN + 3 || line[HEX_ID_LEN] != ' ' ||
        line[2 * HEX_ID_LEN + 1] != ' ') {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(line, cmd_len, q);
        return ff_err_set(err, FF_EINVAL,
                          "command %zu: \"%s\" is not \"<old-id> <new-id> <ref>\"", index, q);
    }
    struct refcmd c = {0};
    if (parse_id(line, &c.old_id) != 0 || parse_id(line + HEX_ID_LEN + 1, &c.new_id) != 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(line, 2 * HEX_ID_LEN + 1, q);
        return ff_err_set(err, FF_EINVAL,
                          "command %zu: ids \"%s\" are not two 40-digit lower-case hex ids",
                          index, q);
    }
    if (git_oid_is_zero(&c.old_id) && git_oid_is_zero(&c.new_id))
        return ff_err_set(err, FF_EINVAL, "command %zu: old and new ids are both zero", index);
    const char *ref = line + 2 * HEX_ID_LEN + 2;
    int rc = parse_ref(ref, cmd_len - (size_t)(ref - line), index, &c.ref, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->cmds[i].ref, c.ref) == 0) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(c.ref, strlen(c.ref), q);
            free(c.ref);
            return ff_err_set(err, FF_EINVAL, "command %zu: ref \"%s\" is named twice", index,
                              q);
        }
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        struct refcmd *v = reallocarray(l->cmds, ncap, sizeof(*v));
        if (v == NULL) {
            free(c.ref);
            return ff_err_set(err, FF_ENOMEM, "command %zu: out of memory", index);
        }
        l->cmds = v;
        l->cap = ncap;
    }
    if (!ff_str_has_prefix(c.ref, "refs/heads/") && !ff_str_has_prefix(c.ref, "refs/tags/"))
        refcmd_reject(&c, "only refs/heads/ and refs/tags/ may be pushed");
    l->cmds[l->n++] = c;
    l->caps = caps;
    return 0;
}

void refcmd_list_release(struct refcmd_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->cmds[i].ref);
        free(l->cmds[i].reason);
    }
    free(l->cmds);
    memset(l, 0, sizeof(*l));
}

void refcmd_reject(struct refcmd *c, const char *fmt, ...)
{
    if (c->rejected)
        return;
    c->rejected = true;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&c->reason, fmt, ap) < 0)
        c->reason = NULL;
    va_end(ap);
    for (char *s = c->reason; s != NULL && *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
    }
}

bool refcmd_is_delete(const struct refcmd *c)
{
    return git_oid_is_zero(&c->new_id);
}
