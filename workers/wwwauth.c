/* WWW-Authenticate challenges as registries send them (RFC 9110 §11.6.1,
 * RFC 6750 §3): the value comes from whatever server we talked to, so the
 * parser is strict, bounded and never trusts a length it did not count.
 *
 *   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param  = token BWS "=" BWS ( token / quoted-string )
 *
 * Several challenges may share one header, separated by commas like the
 * parameters; a comma followed by "token =" continues the parameters, a
 * comma followed by a lone token starts the next challenge. */
#include "worker.h"

#include "ff_str.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cursor {
    const char *start;
    const char *p;
    const char *end;
};

/* One parsed parameter name (borrowed) for the duplicate check. */
struct param_name {
    const char *s;
    size_t len;
};

/* The challenge being parsed. */
struct pending {
    enum wwwauth_scheme scheme;
    struct wwwauth_challenge c;
    struct param_name names[WWWAUTH_PARAMS_MAX];
    size_t n_names;
};

static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_token68_char(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("-._~+/", ch) != NULL;
}

static size_t offset(const struct cursor *cur)
{
    return (size_t)(cur->p - cur->start);
}

static void skip_ows(struct cursor *cur)
{
    while (cur->p < cur->end && (*cur->p == ' ' || *cur->p == '\t'))
        cur->p++;
}

/* Skips blanks and empty list elements. Returns whether a comma was seen. */
static bool skip_separators(struct cursor *cur)
{
    bool comma = false;
    for (;;) {
        skip_ows(cur);
        if (cur->p < cur->end && *cur->p == ',') {
            comma = true;
            cur->p++;
            continue;
        }
        return comma;
    }
}

static size_t token_len(const struct cursor *cur)
{
    size_t n = 0;
    while (cur->p + n < cur->end && is_tchar((unsigned char)cur->p[n]))
        n++;
    return n;
}

/* True when a token68 starts at cur and is all there is up to the next
 * comma or the end. */
static bool token68_ahead(const struct cursor *cur, size_t *len)
{
    const char *q = cur->p;
    while (q < cur->end && is_token68_char((unsigned char)*q))
        q++;
    if (q == cur->p)
        return false;
    while (q < cur->end && *q == '=')
        q++;
    const char *after = q;
    while (after < cur->end && (*after == ' ' || *after == '\t'))
        after++;
    if (after != cur->end && *after != ',')
        return false;
    *len = (size_t)(q - cur->p);
    return true;
}

/* True when "token BWS =" starts at cur: a parameter, not a new scheme. */
static bool param_ahead(const struct cursor *cur)
{
    size_t n = token_len(cur);
    if (n == 0)
        return false;
    const char *q = cur->p + n;
    while (q < cur->end && (*q == ' ' || *q == '\t'))
        q++;
    return q < cur->end && *q == '=';
}

static int bad(const struct cursor *cur, const char *what, struct ff_err *err)
{
    return ff_err_set(err, FF_EINVAL, "www-authenticate: at byte %zu: %s", offset(cur), what);
}

/* Reads a quoted-string value into a new string (escapes resolved). */
static int quoted_read(struct cursor *cur, char **out, struct ff_err *err)
{
    cur->p++; /* opening quote */
    const char *q = cur->p;
    size_t n = 0;
    /* First pass: find the end and count the unescaped length. */
    for (;;) {
        if (q >= cur->end)
            return bad(cur, "unterminated quoted string", err);
        unsigned char ch = (unsigned char)*q;
        if (ch == '"')
            break;
        if (ch == '\\') {
            q++;
            if (q >= cur->end)
                return bad(cur, "unterminated quoted string", err);
            ch = (unsigned char)*q;
        }
        if ((ch < 0x20 && ch != '\t') || ch >= 0x7f)
            return ff_err_set(err, FF_EINVAL,
                              "www-authenticate: at byte %zu: byte 0x%02x in a quoted string, "
                              "expected printable ASCII",
                              (size_t)(q - cur->start), ch);
        if (ch == '\t')
            return ff_err_set(err, FF_EINVAL,
                              "www-authenticate: at byte %zu: tab in a quoted string",
                              (size_t)(q - cur->start));
        n++;
        q++;
        if (n > WWWAUTH_VALUE_MAX)
            return ff_err_set(err, FF_ETOOBIG,
                              "www-authenticate: a parameter value is longer than %d bytes",
                              WWWAUTH_VALUE_MAX);
    }
    char *s = malloc(n + 1);
    if (s == NULL)
        return ff_err_set(err, FF_ENOMEM, "www-authenticate: out of memory");
    size_t k = 0;
    while (cur->p < q) {
        if (*cur->p == '\\')
            cur->p++;
        s[k++] = *cur->p++;
    }
    s[k] = '\0';
    cur->p = q + 1; /* closing quote */
    *out = s;
    return 0;
}

static int value_read(struct cursor *cur, char **out, struct ff_err *err)
{
    if (cur->p < cur->end && *cur->p == '"')
        return quoted_read(cur, out, err);
    size_t n = token_len(cur);
    if (n == 0)
        return bad(cur, "expected a token or a quoted string after '='", err);
    if (n > WWWAUTH_VALUE_MAX)
        return ff_err_set(err, FF_ETOOBIG,
                          "www-authenticate: a parameter value is longer than %d bytes",
                          WWWAUTH_VALUE_MAX);
    *out = ff_strndup(cur->p, n);
    if (*out == NULL)
        return ff_err_set(err, FF_ENOMEM, "www-authenticate: out of memory");
    cur->p += n;
    return 0;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(want, name, len) == 0;
}

/* Where a parameter of interest is kept, or NULL to drop its value. */
static char **param_slot(struct pending *pc, const char *name, size_t len)
{
    if (name_is(name, len, "realm"))
        return &pc->c.realm;
    if (name_is(name, len, "service"))
        return &pc->c.service;
    if (name_is(name, len, "scope"))
        return &pc->c.scope;
    if (name_is(name, len, "error"))
        return &pc->c.error;
    return NULL;
}

static int param_read(struct cursor *cur, struct pending *pc, struct ff_err *err)
{
    const char *name = cur->p;
    size_t nlen = token_len(cur);
    for (size_t i = 0; i < pc->n_names; i++) {
        if (pc->names[i].len == nlen && strncasecmp(pc->names[i].s, name, nlen) == 0) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(name, nlen, q);
            return ff_err_set(err, FF_EINVAL,
                              "www-authenticate: at byte %zu: parameter \"%s\" repeated",
                              offset(cur), q);
        }
    }
    if (pc->n_names == WWWAUTH_PARAMS_MAX)
        return ff_err_set(err, FF_ETOOBIG,
                          "www-authenticate: more than %d parameters in one challenge",
                          WWWAUTH_PARAMS_MAX);
    pc->names[pc->n_names].s = name;
    pc->names[pc->n_names].len = nlen;
    pc->n_names++;
    cur->p += nlen;
    skip_ows(cur);
    cur->p++; /* '=', seen by param_ahead */
    skip_ows(cur);
    char *value = NULL;
    int rc = value_read(cur, &value, err);
    if (rc != 0)
        return rc;
    char **slot = param_slot(pc, name, nlen);
    if (slot != NULL)
        *slot = value;
    else
        free(value);
    return 0;
}

/* Parses the parameters (or token68) after a scheme; stops before the
 * next challenge's scheme or at the end. */
static int params_read(struct cursor *cur, struct pending *pc, struct ff_err *err)
{
    if (cur->p == cur->end || *cur->p == ',')
        return 0; /* a scheme alone */
    if (*cur->p != ' ')
        return bad(cur, "expected a space after the scheme", err);
    skip_ows(cur);
    size_t t68 = 0;
    if (!param_ahead(cur) && token68_ahead(cur, &t68)) {
        cur->p += t68;
        return 0;
    }
    for (;;) {
        if (!param_ahead(cur))
            return bad(cur, "expected name=value", err);
        int rc = param_read(cur, pc, err);
        if (rc != 0)
            return rc;
        skip_ows(cur);
        if (cur->p == cur->end)
            return 0;
        if (*cur->p != ',')
            return bad(cur, "expected ',' or the end after a parameter", err);
        const char *before = cur->p;
        (void)skip_separators(cur);
        if (cur->p == cur->end)
            return 0;
        if (!param_ahead(cur)) {
            /* The next challenge begins; leave the comma for the caller. */
            cur->p = before;
            return 0;
        }
    }
}

static enum wwwauth_scheme scheme_of(const char *s, size_t len)
{
    if (len == 6 && strncasecmp(s, "Bearer", 6) == 0)
        return WWWAUTH_BEARER;
    if (len == 5 && strncasecmp(s, "Basic", 5) == 0)
        return WWWAUTH_BASIC;
    return WWWAUTH_NONE;
}

void wwwauth_challenge_release(struct wwwauth_challenge *c)
{
    if (c == NULL)
        return;
    free(c->realm);
    free(c->service);
    free(c->scope);
    free(c->error);
    memset(c, 0, sizeof(*c));
}

/* Keeps pc as the answer if it beats what *best holds. */
static void challenge_offer(struct pending *pc, struct wwwauth_challenge *best)
{
    bool better = pc->scheme == WWWAUTH_BEARER ? best->scheme != WWWAUTH_BEARER
                                               : pc->scheme == WWWAUTH_BASIC &&
                                                     best->scheme == WWWAUTH_NONE;
    if (!better) {
        wwwauth_challenge_release(&pc->c);
        return;
    }
    wwwauth_challenge_release(best);
    *best = pc->c;
    best->scheme = pc->scheme;
    memset(&pc->c, 0, sizeof(pc->c));
}

int wwwauth_parse(const char *value, size_t len, struct wwwauth_challenge *out,
                  struct ff_err *err)
{
    memset(out, 0, sizeof(*out));
    if (len > WWWAUTH_HEADER_MAX)
        return ff_err_set(err, FF_ETOOBIG, "www-authenticate: %zu bytes, limit is %d", len,
                          WWWAUTH_HEADER_MAX);
    struct cursor cur = {.start = value, .p = value, .end = value + len};
    struct wwwauth_challenge best;
    memset(&best, 0, sizeof(best));
    struct pending pc;
    size_t n_challenges = 0;
    int rc = 0;
    for (;;) {
        (void)skip_separators(&cur);
        if (cur.p == cur.end)
            break;
        size_t slen = token_len(&cur);
        if (slen == 0) {
            rc = bad(&cur, "expected an authentication scheme", err);
            goto fail;
        }
        if (++n_challenges > WWWAUTH_CHALLENGES_MAX) {
            rc = ff_err_set(err, FF_ETOOBIG, "www-authenticate: more than %d challenges",
                            WWWAUTH_CHALLENGES_MAX);
            goto fail;
        }
        memset(&pc, 0, sizeof(pc));
        pc.scheme = scheme_of(cur.p, slen);
        cur.p += slen;
        rc = params_read(&cur, &pc, err);
        if (rc != 0) {
            wwwauth_challenge_release(&pc.c);
            goto fail;
        }
        challenge_offer(&pc, &best);
    }
    if (best.scheme == WWWAUTH_NONE) {
        rc = ff_err_set(err, FF_ENOTFOUND,
                        "www-authenticate: no Bearer or Basic challenge among %zu", n_challenges);
        goto fail;
    }
    if (best.scheme == WWWAUTH_BEARER && (best.realm == NULL || best.realm[0] == '\0')) {
        rc = ff_err_set(err, FF_EINVAL, "www-authenticate: Bearer challenge without a realm");
        goto fail;
    }
    *out = best;
    return 0;
fail:
    wwwauth_challenge_release(&best);
    return rc;
}
