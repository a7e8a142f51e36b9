/* Docker's variable substitution and the ARG/ENV scopes of a build.
 *
 * The lexer is BuildKit's frontend/dockerfile/shell (ProcessWord and
 * ProcessWords) re-done in C: it walks the word once, removes quotes,
 * honours the escape character and substitutes $NAME and ${...} forms,
 * recursing for the word inside ${NAME:-word}. Pattern forms (${NAME#p},
 * ${NAME%p}, ${NAME/p/r}) are refused with a message; BuildKit only added
 * them recently and recipes do not use them.
 *
 * Scopes follow BuildKit's dockerfile2llb: global ARGs are evaluated once,
 * in order, with --build-arg values replacing defaults; a stage starts from
 * its base image's ENV (or the end state of its base stage); ARG and ENV
 * change it step by step; ENV pairs on one line all expand against the
 * state before the line, ARG pairs one after the other. Variables live in
 * an insertion-ordered table with a hash index, so a recipe with thousands
 * of ENV pairs stays linear. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_str.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR(x) #x
#define XSTR(x) STR(x)

/* Longest canonical text of one expanded instruction: its expanded words
 * (at most RECIPE_EXPAND_MAX together) with quoting, which can at worst
 * multiply a byte by six (\u00XX). */
#define STEP_TEXT_MAX (6 * RECIPE_EXPAND_MAX + 4096)
/* Bytes charged per variable on top of name and value, so that the
 * RECIPE_SCOPE_MAX cap also bounds how many variables a scope holds. */
#define VAR_OVERHEAD 32

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* ---- the lexer -------------------------------------------------------------- */

/* Words of ProcessWords: blanks split them unless they come from quotes or
 * escapes; empty words are dropped. */
struct words {
    struct recipe_strv list;
    struct ff_buf cur;
    bool in_word;
};

struct xp {
    const char *s;
    size_t n;
    size_t i;
    char escape;
    recipe_lookup_fn lookup;
    void *ctx;
    unsigned depth;
    struct ff_err *err;
};

static int words_flush(struct words *w)
{
    if (w->cur.len == 0)
        return 0;
    char *s = ff_buf_steal(&w->cur);
    w->in_word = false;
    return recipe_strv_take(&w->list, s);
}

static int words_raw(struct words *w, const char *s, size_t n)
{
    if (w == NULL)
        return 0;
    w->in_word = true;
    return ff_buf_append(&w->cur, s, n);
}

/* Text whose blanks split words (unquoted characters, $NAME results). */
static int words_split(struct words *w, const char *s, size_t n)
{
    if (w == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int rc = 0;
        if (is_blank(s[i]) && w->in_word)
            rc = words_flush(w);
        else if (!is_blank(s[i]))
            rc = words_raw(w, s + i, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int xp_fail(struct xp *x, int code, const char *what, const char *expected)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(x->s, x->n, q);
    return RECIPE_ERR(x->err, code, "%s in \"%s\", expected %s", what, q, expected);
}

static int xp_append(struct xp *x, struct ff_buf *b, const char *s, size_t n)
{
    int rc = ff_buf_append(b, s, n);
    if (rc == FF_ETOOBIG) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(x->s, x->n, q);
        return RECIPE_ERR(x->err, rc, "substituting \"%s\" gives more than %zu bytes, expected "
                                      "less",
                          q, RECIPE_EXPAND_MAX);
    }
    if (rc != 0)
        return RECIPE_ERR(x->err, rc, "substitution: out of memory");
    return 0;
}

/* Turns a words_* result into a message. */
static int xp_words(struct xp *x, int rc)
{
    if (rc == 0)
        return 0;
    if (rc == FF_ETOOBIG)
        return xp_fail(x, rc, "a word longer than 1 MiB", "shorter words");
    return RECIPE_ERR(x->err, rc, "substitution: out of memory");
}

static int xp_run(struct xp *x, int stop, struct ff_buf *res, struct words *w);

/* BuildKit's processName: digits, or one special parameter, or a run of
 * letters, digits and '_'. */
static size_t xp_name(struct xp *x)
{
    size_t start = x->i;
    if (x->i < x->n && x->s[x->i] >= '0' && x->s[x->i] <= '9') {
        while (x->i < x->n && x->s[x->i] >= '0' && x->s[x->i] <= '9')
            x->i++;
        return x->i - start;
    }
    if (x->i < x->n && strchr("@*#?-$!", x->s[x->i]) != NULL && x->s[x->i] != '\0') {
        x->i++;
        return 1;
    }
    while (x->i < x->n && is_name_char(x->s[x->i]))
        x->i++;
    return x->i - start;
}

static const char *xp_get(struct xp *x, size_t name, size_t len)
{
    const char *v = NULL;
    if (x->lookup != NULL && len > 0 && !x->lookup(x->ctx, x->s + name, len, &v))
        v = NULL;
    return v;
}

/* ${NAME<op>word}: op is '-', '+' or '?', null_unset for the ':' forms. */
static int xp_modifier(struct xp *x, size_t name, size_t len, char op, bool null_unset,
                       struct ff_buf *res)
{
    struct ff_buf word;
    ff_buf_init(&word, RECIPE_EXPAND_MAX);
    int rc = xp_run(x, '}', &word, NULL);
    if (rc != 0) {
        ff_buf_release(&word);
        return rc;
    }
    const char *v = xp_get(x, name, len);
    bool unset = v == NULL || (null_unset && v[0] == '\0');
    const char *w = word.len > 0 ? word.data : "";
    if (op == '-')
        rc = xp_append(x, res, unset ? w : v, strlen(unset ? w : v));
    else if (op == '+')
        rc = unset ? 0 : xp_append(x, res, w, word.len);
    else if (unset) {
        char qn[FF_STR_QUOTE_SIZE], qw[FF_STR_QUOTE_SIZE];
        ff_str_quote(x->s + name, len, qn);
        ff_str_quote(w, word.len, qw);
        rc = RECIPE_ERR(x->err, FF_EINVAL, "%s: %s", qn,
                        word.len > 0 ? qw
                                     : (v == NULL ? "is not allowed to be unset"
                                                  : "is not allowed to be empty"));
    } else {
        rc = xp_append(x, res, v, strlen(v));
    }
    ff_buf_release(&word);
    return rc;
}

static int xp_braced(struct xp *x, struct ff_buf *res)
{
    static const char expected[] = "${NAME}, ${NAME:-default} or ${NAME:+alternative}";
    x->i++;
    if (x->i >= x->n)
        return xp_fail(x, FF_EINVAL, "missing '}'", expected);
    if (x->s[x->i] == '{' || x->s[x->i] == '}' || x->s[x->i] == ':')
        return xp_fail(x, FF_EINVAL, "bad substitution", expected);
    size_t name = x->i;
    size_t len = xp_name(x);
    if (x->i >= x->n)
        return xp_fail(x, FF_EINVAL, "missing '}'", expected);
    char ch = x->s[x->i++];
    bool null_unset = false;
    if (ch == '}') {
        const char *v = xp_get(x, name, len);
        return v != NULL ? xp_append(x, res, v, strlen(v)) : 0;
    }
    if (ch == ':') {
        if (x->i >= x->n)
            return xp_fail(x, FF_EINVAL, "missing '}'", expected);
        null_unset = true;
        ch = x->s[x->i++];
    }
    if (ch != '-' && ch != '+' && ch != '?') {
        char what[64];
        (void)snprintf(what, sizeof(what), "unsupported modifier '%s%c'", null_unset ? ":" : "",
                       (unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f ? ch : '?');
        return xp_fail(x, FF_EINVAL, what, expected);
    }
    return xp_modifier(x, name, len, ch, null_unset, res);
}

static int xp_dollar(struct xp *x, struct ff_buf *res)
{
    x->i++;
    int rc;
    if (x->i < x->n && x->s[x->i] == '{') {
        rc = xp_braced(x, res);
    } else {
        size_t name = x->i;
        size_t len = xp_name(x);
        const char *v = xp_get(x, name, len);
        if (len == 0)
            rc = xp_append(x, res, "$", 1);
        else
            rc = v != NULL ? xp_append(x, res, v, strlen(v)) : 0;
    }
    return rc;
}

static int xp_single(struct xp *x, struct ff_buf *res)
{
    x->i++;
    size_t start = x->i;
    while (x->i < x->n && x->s[x->i] != '\'')
        x->i++;
    if (x->i >= x->n)
        return xp_fail(x, FF_EINVAL, "unterminated single quote", "a closing '");
    int rc = xp_append(x, res, x->s + start, x->i - start);
    x->i++;
    return rc;
}

static int xp_double(struct xp *x, struct ff_buf *res)
{
    x->i++;
    for (;;) {
        if (x->i >= x->n)
            return xp_fail(x, FF_EINVAL, "unterminated double quote", "a closing \"");
        char ch = x->s[x->i];
        if (ch == '"') {
            x->i++;
            return 0;
        }
        int rc;
        if (ch == '$') {
            rc = xp_dollar(x, res);
        } else {
            x->i++;
            if (ch == x->escape && x->i < x->n &&
                (x->s[x->i] == '"' || x->s[x->i] == '$' || x->s[x->i] == x->escape))
                ch = x->s[x->i++];
            else if (ch == x->escape && x->i >= x->n)
                continue;
            rc = xp_append(x, res, &ch, 1);
        }
        if (rc != 0)
            return rc;
    }
}

/* Every recursion (a quote or ${...} inside ${NAME:-...}) passes here, so
 * the depth cap here stops a hostile word from exhausting the stack. */
static int xp_quoted(struct xp *x, char ch, struct ff_buf *res, struct words *w)
{
    if (++x->depth > RECIPE_EXPAND_DEPTH_MAX)
        return xp_fail(x, FF_ETOOBIG, "substitutions nested too deep",
                       "at most " XSTR(RECIPE_EXPAND_DEPTH_MAX) " levels");
    struct ff_buf tmp;
    ff_buf_init(&tmp, RECIPE_EXPAND_MAX);
    int rc;
    if (ch == '$')
        rc = xp_dollar(x, &tmp);
    else if (ch == '\'')
        rc = xp_single(x, &tmp);
    else
        rc = xp_double(x, &tmp);
    const char *t = tmp.len > 0 ? tmp.data : "";
    if (rc == 0)
        rc = xp_append(x, res, t, tmp.len);
    if (rc == 0)
        rc = xp_words(x, ch == '$' ? words_split(w, t, tmp.len) : words_raw(w, t, tmp.len));
    ff_buf_release(&tmp);
    x->depth--;
    return rc;
}

/* BuildKit's processStopOn: up to stop ('}' or -1 for the end). */
static int xp_run(struct xp *x, int stop, struct ff_buf *res, struct words *w)
{
    while (x->i < x->n) {
        char ch = x->s[x->i];
        int rc;
        if (stop >= 0 && ch == (char)stop) {
            x->i++;
            return 0;
        }
        if (ch == '$' || ch == '\'' || ch == '"') {
            rc = xp_quoted(x, ch, res, w);
        } else {
            x->i++;
            bool raw = false;
            if (ch == x->escape) {
                if (x->i >= x->n)
                    break;
                ch = x->s[x->i++];
                raw = true;
            }
            rc = xp_append(x, res, &ch, 1);
            if (rc == 0)
                rc = xp_words(x, raw ? words_raw(w, &ch, 1) : words_split(w, &ch, 1));
        }
        if (rc != 0)
            return rc;
    }
    if (stop >= 0)
        return xp_fail(x, FF_EINVAL, "missing '}'",
                       "${NAME}, ${NAME:-default} or ${NAME:+alternative}");
    return 0;
}

static int expand(const char *word, char escape, recipe_lookup_fn lookup, void *ctx,
                  struct ff_buf *res, struct words *w, struct ff_err *err)
{
    struct xp x = {.s = word, .n = strlen(word), .escape = escape, .lookup = lookup,
                   .ctx = ctx, .err = err};
    return xp_run(&x, -1, res, w);
}

int recipe_expand_word(const char *word, char escape, recipe_lookup_fn lookup, void *ctx,
                       char **out, struct ff_err *err)
{
    struct ff_buf res;
    ff_buf_init(&res, RECIPE_EXPAND_MAX);
    int rc = expand(word, escape, lookup, ctx, &res, NULL, err);
    if (rc != 0) {
        ff_buf_release(&res);
        return rc;
    }
    char *s = ff_buf_steal(&res);
    if (s == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, "substitution: out of memory");
    *out = s;
    return 0;
}

int recipe_expand_words(const char *word, char escape, recipe_lookup_fn lookup, void *ctx,
                        char ***out, size_t *n_out, struct ff_err *err)
{
    struct ff_buf res;
    ff_buf_init(&res, RECIPE_EXPAND_MAX);
    struct words w = {.in_word = false};
    ff_buf_init(&w.cur, RECIPE_EXPAND_MAX);
    int rc = expand(word, escape, lookup, ctx, &res, &w, err);
    if (rc == 0 && words_flush(&w) != 0)
        rc = RECIPE_ERR(err, FF_ENOMEM, "substitution: out of memory");
    ff_buf_release(&res);
    ff_buf_release(&w.cur);
    if (rc != 0) {
        recipe_strv_release(&w.list);
        return rc;
    }
    *out = w.list.v;
    *n_out = w.list.n;
    return 0;
}

/* ---- variable tables ---------------------------------------------------------- */

struct var {
    char *name;
    char *value;
};

struct vars {
    struct var *v;
    size_t n;
    size_t cap;
    size_t bytes;   /* charged against RECIPE_SCOPE_MAX */
    uint32_t *slot; /* hash index: 0 empty, else index + 1 */
    size_t n_slots; /* power of two, at least twice n */
};

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static void vars_release(struct vars *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        free(vs->v[i].name);
        free(vs->v[i].value);
    }
    free(vs->v);
    free(vs->slot);
    *vs = (struct vars){0};
}

/* The entry of name in vs, or NULL. */
static struct var *vars_hit(const struct vars *vs, const char *name, size_t len)
{
    if (vs->n_slots == 0 || vs->v == NULL)
        return NULL;
    size_t mask = vs->n_slots - 1;
    for (size_t h = name_hash(name, len) & mask;; h = (h + 1) & mask) {
        uint32_t s = vs->slot[h];
        if (s == 0 || s > vs->n)
            return NULL;
        struct var *v = &vs->v[s - 1];
        if (v->name != NULL && strncmp(v->name, name, len) == 0 && v->name[len] == '\0')
            return v;
    }
}

static const char *vars_get(const struct vars *vs, const char *name, size_t len)
{
    const struct var *hit = vars_hit(vs, name, len);
    return hit != NULL ? hit->value : NULL;
}

static int vars_reindex(struct vars *vs, size_t n_slots)
{
    uint32_t *slot = calloc(n_slots, sizeof(uint32_t));
    if (slot == NULL)
        return FF_ENOMEM;
    for (size_t i = 0; i < vs->n; i++) {
        size_t h = name_hash(vs->v[i].name, strlen(vs->v[i].name)) & (n_slots - 1);
        while (slot[h] != 0)
            h = (h + 1) & (n_slots - 1);
        slot[h] = (uint32_t)(i + 1);
    }
    free(vs->slot);
    vs->slot = slot;
    vs->n_slots = n_slots;
    return 0;
}

/* Sets name (len bytes) to value, keeping its first position. Returns 0,
 * FF_ETOOBIG (the table would pass RECIPE_SCOPE_MAX; unchanged) or
 * FF_ENOMEM (unchanged). */
static int vars_set(struct vars *vs, const char *name, size_t len, const char *value)
{
    struct var *hit = vars_hit(vs, name, len);
    size_t vlen = strlen(value);
    size_t old = hit != NULL ? strlen(hit->value) : 0;
    size_t add = hit != NULL ? 0 : len + VAR_OVERHEAD;
    if (vs->bytes - old + vlen + add > RECIPE_SCOPE_MAX)
        return FF_ETOOBIG;
    char *v = strdup(value);
    if (v == NULL)
        return FF_ENOMEM;
    if (hit != NULL) {
        free(hit->value);
        hit->value = v;
        vs->bytes = vs->bytes - old + vlen;
        return 0;
    }
    char *nm = ff_strndup(name, len);
    struct var *arr = nm != NULL ? recipe_grow(vs->v, &vs->cap, vs->n + 1, sizeof(struct var)) : NULL;
    if (arr == NULL) {
        free(nm);
        free(v);
        return FF_ENOMEM;
    }
    vs->v = arr;
    arr[vs->n].name = nm;
    arr[vs->n].value = v;
    vs->n++;
    if (vs->n * 2 > vs->n_slots) {
        /* The new table indexes every entry, the new one included. */
        if (vars_reindex(vs, vs->n_slots ? vs->n_slots * 2 : 16) != 0) {
            vs->n--;
            free(nm);
            free(v);
            return FF_ENOMEM;
        }
    } else {
        size_t mask = vs->n_slots - 1;
        size_t h = name_hash(nm, len) & mask;
        while (vs->slot[h] != 0)
            h = (h + 1) & mask;
        vs->slot[h] = (uint32_t)vs->n;
    }
    vs->bytes += vlen + add;
    return 0;
}

static int vars_copy(struct vars *dst, const struct vars *src)
{
    *dst = (struct vars){0};
    if (src->n == 0)
        return 0;
    dst->v = calloc(src->n, sizeof(struct var));
    if (dst->v == NULL)
        return FF_ENOMEM;
    dst->cap = src->n;
    for (size_t i = 0; i < src->n; i++) {
        dst->v[i].name = strdup(src->v[i].name);
        dst->v[i].value = strdup(src->v[i].value);
        dst->n = i + 1;
        if (dst->v[i].name == NULL || dst->v[i].value == NULL) {
            vars_release(dst);
            return FF_ENOMEM;
        }
    }
    dst->bytes = src->bytes;
    if (vars_reindex(dst, src->n_slots) != 0) {
        vars_release(dst);
        return FF_ENOMEM;
    }
    return 0;
}

/* ---- changing a table all or nothing ----------------------------------------
 *
 * ARG and ENV change a stage's tables as one step: everything the change
 * needs is allocated first, then each entry is set and recorded, so that
 * passing RECIPE_SCOPE_MAX part-way is rolled back without allocating and
 * a step costs what it changes, not the size of the table. */

struct change {
    char *name;   /* owned by the change until it is made */
    char *value;  /* likewise */
    char *old;    /* the value it replaced, owned by the change once made */
    size_t index; /* the entry changed */
    bool added;   /* the entry was appended */
};

static void change_release(struct change *c)
{
    free(c->name);
    free(c->value);
    free(c->old);
}

/* Makes room for extra more entries, in the array and in the index. */
static int vars_reserve(struct vars *vs, size_t extra)
{
    size_t need;
    if (extra == 0)
        return 0;
    if (__builtin_add_overflow(vs->n, extra, &need) || need > UINT32_MAX / 4)
        return FF_ENOMEM;
    struct var *arr = recipe_grow(vs->v, &vs->cap, need, sizeof(struct var));
    if (arr == NULL)
        return FF_ENOMEM;
    vs->v = arr;
    size_t slots = vs->n_slots ? vs->n_slots : 16;
    while (slots < need * 2)
        slots *= 2;
    return slots != vs->n_slots ? vars_reindex(vs, slots) : 0;
}

static void slot_insert(struct vars *vs, size_t index)
{
    size_t mask = vs->n_slots - 1;
    const char *nm = vs->v[index].name;
    size_t h = name_hash(nm, strlen(nm)) & mask;
    while (vs->slot[h] != 0)
        h = (h + 1) & mask;
    vs->slot[h] = (uint32_t)(index + 1);
}

/* Drops the last entry from the index; with linear probing, the entries
 * after it in its run are inserted again so that none becomes
 * unreachable. */
static void slot_remove_last(struct vars *vs)
{
    size_t mask = vs->n_slots - 1;
    const char *nm = vs->v[vs->n - 1].name;
    size_t h = name_hash(nm, strlen(nm)) & mask;
    while (vs->slot[h] != vs->n)
        h = (h + 1) & mask;
    vs->slot[h] = 0;
    for (size_t j = (h + 1) & mask; vs->slot[j] != 0; j = (j + 1) & mask) {
        uint32_t e = vs->slot[j];
        vs->slot[j] = 0;
        slot_insert(vs, e - 1);
    }
}

/* Makes change c in vs (reserved for it). Returns FF_ETOOBIG, with
 * nothing done, when the table would pass RECIPE_SCOPE_MAX. */
static int change_apply(struct vars *vs, struct change *c)
{
    size_t len = strlen(c->name);
    struct var *hit = vars_hit(vs, c->name, len);
    size_t vlen = strlen(c->value);
    size_t old = hit != NULL ? strlen(hit->value) : 0;
    size_t add = hit != NULL ? 0 : len + VAR_OVERHEAD;
    if (vs->bytes - old + vlen + add > RECIPE_SCOPE_MAX)
        return FF_ETOOBIG;
    vs->bytes = vs->bytes - old + vlen + add;
    if (hit != NULL) {
        c->index = (size_t)(hit - vs->v);
        c->old = hit->value;
        hit->value = c->value;
        c->value = NULL;
        return 0;
    }
    c->added = true;
    c->index = vs->n;
    vs->v[vs->n].name = c->name;
    vs->v[vs->n].value = c->value;
    c->name = NULL;
    c->value = NULL;
    vs->n++;
    slot_insert(vs, vs->n - 1);
    return 0;
}

/* Undoes change_apply; changes are undone newest first. */
static void change_undo(struct vars *vs, struct change *c)
{
    struct var *v = &vs->v[c->index];
    if (c->added) {
        slot_remove_last(vs);
        vs->bytes -= strlen(v->name) + VAR_OVERHEAD + strlen(v->value);
        c->name = v->name;
        c->value = v->value;
        vs->n--;
        c->added = false;
        return;
    }
    vs->bytes = vs->bytes - strlen(v->value) + strlen(c->old);
    c->value = v->value;
    v->value = c->old;
    c->old = NULL;
}

/* The changes one instruction makes to one table. */
struct batch {
    struct change *cs;
    size_t n;    /* prepared */
    size_t done; /* made */
};

static void batch_release(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        change_release(&b->cs[i]);
    free(b->cs);
    *b = (struct batch){0};
}

/* Allocates every change that setting the pairs of kvs with a value
 * needs, and room for them in vs. Returns 0 or FF_ENOMEM. */
static int batch_prepare(struct vars *vs, const struct recipe_kv *kvs, size_t n, struct batch *b)
{
    *b = (struct batch){0};
    b->cs = calloc(n + 1, sizeof(struct change));
    if (b->cs == NULL)
        return FF_ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (kvs[i].value == NULL)
            continue;
        struct change *c = &b->cs[b->n++];
        c->name = strdup(kvs[i].key);
        c->value = strdup(kvs[i].value);
        rc = c->name == NULL || c->value == NULL ? FF_ENOMEM : 0;
    }
    return rc == 0 ? vars_reserve(vs, b->n) : rc;
}

/* Undoes the changes made, newest first. */
static void batch_undo(struct vars *vs, struct batch *b)
{
    while (b->done > 0)
        change_undo(vs, &b->cs[--b->done]);
}

/* Makes the changes in order; on FF_ETOOBIG undoes those made. */
static int batch_apply(struct vars *vs, struct batch *b)
{
    while (b->done < b->n) {
        int rc = change_apply(vs, &b->cs[b->done]);
        if (rc != 0) {
            batch_undo(vs, b);
            return rc;
        }
        b->done++;
    }
    return 0;
}

static int vars_env(const struct vars *vs, char ***out, size_t *n_out, struct ff_err *err)
{
    struct recipe_strv sv = {0};
    for (size_t i = 0; i < vs->n; i++) {
        if (recipe_strv_take(&sv, ff_asprintf("%s=%s", vs->v[i].name, vs->v[i].value)) != 0) {
            recipe_strv_release(&sv);
            return RECIPE_ERR(err, FF_ENOMEM, "environment: out of memory");
        }
    }
    *out = sv.v;
    *n_out = sv.n;
    return 0;
}

/* ---- scopes ---------------------------------------------------------------- */

struct recipe_scope {
    const struct recipe *r;
    struct recipe_scope *global; /* NULL in the global scope */
    size_t stage;
    struct vars state; /* ARGs and ENVs: what substitution and RUN see */
    struct vars image; /* ENVs only: the image config's */
    /* Global scope only: --build-arg values and whether an ARG used each. */
    struct vars build_args;
    bool *used;
};

/* Variables Docker defines for every build without an ARG (and keeps out
 * of the unused-build-arg warning). */
static const char *const proxy_args[] = {
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
    "ftp_proxy",  "NO_PROXY",   "no_proxy",    "ALL_PROXY",   "all_proxy",
};

void recipe_scope_free(struct recipe_scope *scope)
{
    if (scope == NULL)
        return;
    vars_release(&scope->state);
    vars_release(&scope->image);
    vars_release(&scope->build_args);
    free(scope->used);
    free(scope);
}

bool recipe_scope_lookup(void *ctx, const char *name, size_t name_len, const char **value)
{
    const struct recipe_scope *sc = ctx;
    const char *v = vars_get(&sc->state, name, name_len);
    if (v != NULL)
        *value = v;
    return v != NULL;
}

static const char *scope_build_arg(struct recipe_scope *global, const char *name)
{
    const struct var *hit = vars_hit(&global->build_args, name, strlen(name));
    if (hit == NULL)
        return NULL;
    global->used[hit - global->build_args.v] = true;
    return hit->value;
}

static bool arch_ok(const char *arch)
{
    return arch != NULL && (strcmp(arch, "amd64") == 0 || strcmp(arch, "arm64") == 0 ||
                            strcmp(arch, "armv7") == 0);
}

/* The platform ARGs for one of our arch names. */
static int set_platform(struct vars *vs, const char *prefix, const char *arch)
{
    const char *a = arch, *variant = "", *platform = NULL;
    if (strcmp(arch, "amd64") == 0) {
        platform = "linux/amd64";
    } else if (strcmp(arch, "arm64") == 0) {
        platform = "linux/arm64";
    } else if (strcmp(arch, "armv7") == 0) {
        a = "arm";
        variant = "v7";
        platform = "linux/arm/v7";
    }
    if (platform == NULL)
        return FF_EINVAL;
    static const char *const suffix[] = {"PLATFORM", "OS", "ARCH", "VARIANT"};
    const char *value[] = {platform, "linux", a, variant};
    for (size_t i = 0; i < 4; i++) {
        char name[32];
        (void)snprintf(name, sizeof(name), "%s%s", prefix, suffix[i]);
        int rc = vars_set(vs, name, strlen(name), value[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int scope_err(struct ff_err *err, int rc, const char *what)
{
    if (rc == FF_ETOOBIG)
        return RECIPE_ERR(err, rc, "%s: variables larger than %zu bytes, expected less", what,
                          RECIPE_SCOPE_MAX);
    return RECIPE_ERR(err, rc, "%s: out of memory", what);
}

static int add_build_args(struct recipe_scope *g, const char *const *args, size_t n,
                          struct ff_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = args[i] != NULL ? strchr(args[i], '=') : NULL;
        if (eq == NULL || eq == args[i]) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(args[i] != NULL ? args[i] : "", args[i] != NULL ? strlen(args[i]) : 0,
                         q);
            return RECIPE_ERR(err, FF_EINVAL, "build arg \"%s\" is not NAME=value, expected "
                                              "--build-arg NAME=value",
                              q);
        }
        int rc = vars_set(&g->build_args, args[i], (size_t)(eq - args[i]), eq + 1);
        if (rc != 0)
            return scope_err(err, rc, "build args");
    }
    g->used = calloc(g->build_args.n + 1, sizeof(bool));
    return g->used == NULL ? scope_err(err, FF_ENOMEM, "build args") : 0;
}

/* Expands word in sc, wrapping errors as "<file>:<line>: <INSTR>: ...". */
static int scope_expand(const struct recipe_scope *sc, const char *word, unsigned line,
                        const char *instr, char **out, struct ff_err *err)
{
    struct ff_err e;
    ff_err_clear(&e);
    int rc = recipe_expand_word(word, sc->r->escape, recipe_scope_lookup, (void *)sc, out, &e);
    if (rc != 0)
        return RECIPE_ERR_AT(err, rc, sc->r->file, line, instr, "%s", e.msg);
    return 0;
}

static int global_args(struct recipe_scope *g, struct ff_err *err)
{
    for (size_t i = 0; i < g->r->n_args; i++) {
        const struct recipe_instr *in = &g->r->args[i];
        for (size_t k = 0; k < in->n_kvs; k++) {
            const struct recipe_kv *kv = &in->kvs[k];
            const char *given = scope_build_arg(g, kv->key);
            char *value = NULL;
            if (given == NULL && kv->value != NULL) {
                int rc = scope_expand(g, kv->value, in->line, "ARG", &value, err);
                if (rc != 0)
                    return rc;
            }
            const char *v = given != NULL ? given : value;
            int rc = v != NULL ? vars_set(&g->state, kv->key, strlen(kv->key), v) : 0;
            free(value);
            if (rc != 0)
                return RECIPE_ERR_AT(err, rc, g->r->file, in->line, "ARG", "%s",
                                     rc == FF_ETOOBIG ? "variables larger than 1 MiB, expected "
                                                        "less"
                                                      : "out of memory");
        }
    }
    return 0;
}

int recipe_scope_global_new(const struct recipe *r, const char *const *build_args,
                            size_t n_build_args, const char *target_arch,
                            const char *build_arch, struct recipe_scope **out,
                            struct ff_err *err)
{
    const char *bad = !arch_ok(target_arch) ? target_arch : build_arch;
    if (!arch_ok(target_arch) || !arch_ok(build_arch)) {
        bad = bad != NULL ? bad : "";
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(bad, strlen(bad), q);
        return RECIPE_ERR(err, FF_EINVAL, "arch \"%s\" is not supported, expected amd64, arm64 "
                                          "or armv7",
                          q);
    }
    struct recipe_scope *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return scope_err(err, FF_ENOMEM, "scope");
    g->r = r;
    g->stage = SIZE_MAX;
    int rc = add_build_args(g, build_args, n_build_args, err);
    if (rc == 0) {
        rc = set_platform(&g->state, "TARGET", target_arch);
        if (rc == 0)
            rc = set_platform(&g->state, "BUILD", build_arch);
        if (rc != 0)
            rc = scope_err(err, rc, "scope");
    }
    if (rc == 0)
        rc = global_args(g, err);
    if (rc != 0) {
        recipe_scope_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

static int stage_check(const struct recipe_scope *global, size_t stage, struct ff_err *err)
{
    if (global == NULL || global->global != NULL)
        return RECIPE_ERR(err, FF_EINVAL, "scope: not a global scope");
    if (stage >= global->r->n_stages)
        return RECIPE_ERR(err, FF_EINVAL, "scope: stage %zu out of range, expected below %zu",
                          stage, global->r->n_stages);
    return 0;
}

/* Safe bytes in canonical text without quotes; '=' is left out of names. */
static bool plain_char(char c, bool name)
{
    return is_name_char(c) || (c != '\0' && strchr(name ? "./:@%+,^~-" : "./:@%+,=^~-", c));
}

/* Appends s as it is when plain, else as a JSON string. */
static int text_quoted(struct ff_buf *b, const char *s, bool name, bool force)
{
    bool plain = !force && s[0] != '\0';
    for (const char *p = s; plain && *p != '\0'; p++)
        plain = plain_char(*p, name);
    if (plain)
        return ff_buf_append_str(b, s);
    int rc = ff_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            rc = ff_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            rc = ff_buf_printf(b, "\\u%04x", *p);
        else
            rc = ff_buf_append(b, p, 1);
    }
    return rc == 0 ? ff_buf_append(b, "\"", 1) : rc;
}

static int text_array(struct ff_buf *b, char *const *v, size_t n)
{
    int rc = ff_buf_append(b, "[", 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0)
            rc = ff_buf_append(b, ",", 1);
        if (rc == 0)
            rc = text_quoted(b, v[i], false, true);
    }
    return rc == 0 ? ff_buf_append(b, "]", 1) : rc;
}

static int from_text(struct recipe_from *f)
{
    struct ff_buf b;
    ff_buf_init(&b, STEP_TEXT_MAX);
    int rc = ff_buf_append_str(&b, "FROM ");
    if (rc == 0 && f->platform != NULL) {
        rc = ff_buf_append_str(&b, "--platform=");
        if (rc == 0)
            rc = text_quoted(&b, f->platform, false, false);
        if (rc == 0)
            rc = ff_buf_append(&b, " ", 1);
    }
    if (rc == 0)
        rc = text_quoted(&b, f->image, false, false);
    if (rc == 0 && f->name != NULL)
        rc = ff_buf_printf(&b, " AS %s", f->name);
    if (rc == 0) {
        f->text = ff_buf_steal(&b);
        rc = f->text == NULL ? FF_ENOMEM : 0;
    }
    ff_buf_release(&b);
    return rc;
}

int recipe_scope_from(struct recipe_scope *global, size_t stage, struct recipe_from **out,
                      struct ff_err *err)
{
    int rc = stage_check(global, stage, err);
    if (rc != 0)
        return rc;
    const struct recipe *r = global->r;
    const struct recipe_from *src = &r->stages[stage].from;
    struct recipe_from *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return scope_err(err, FF_ENOMEM, "FROM");
    f->line = src->line;
    f->base_stage = -1;
    rc = scope_expand(global, src->image, src->line, "FROM", &f->image, err);
    if (rc == 0 && src->platform != NULL)
        rc = scope_expand(global, src->platform, src->line, "FROM", &f->platform, err);
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(src->image, strlen(src->image), q);
    if (rc == 0 && f->image[0] == '\0')
        rc = RECIPE_ERR_AT(err, FF_EINVAL, r->file, src->line, "FROM",
                           "base \"%s\" is empty after substitution, expected an image", q);
    if (rc == 0 && f->platform != NULL && f->platform[0] == '\0')
        rc = RECIPE_ERR_AT(err, FF_EINVAL, r->file, src->line, "FROM",
                           "--platform is empty after substitution, expected a platform");
    if (rc == 0) {
        int idx = recipe_stage_find(r, f->image, r->n_stages);
        if (idx >= 0 && (size_t)idx > stage)
            rc = RECIPE_ERR_AT(err, FF_EINVAL, r->file, src->line, "FROM",
                               "base \"%s\" names a later stage (line %u), expected an image "
                               "or an earlier stage",
                               q, r->stages[idx].from.line);
        else if (idx >= 0 && (size_t)idx < stage)
            f->base_stage = idx;
        f->scratch = f->base_stage < 0 && strcmp(f->image, "scratch") == 0;
    }
    if (rc == 0 && src->name != NULL && (f->name = strdup(src->name)) == NULL)
        rc = scope_err(err, FF_ENOMEM, "FROM");
    if (rc == 0 && from_text(f) != 0)
        rc = RECIPE_ERR_AT(err, FF_ETOOBIG, r->file, src->line, "FROM",
                           "expanded line too long or out of memory");
    if (rc != 0) {
        recipe_from_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

static int image_env_set(struct recipe_scope *sc, const char *const *env, size_t n,
                         struct ff_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = env[i] != NULL ? strchr(env[i], '=') : NULL;
        if (eq == NULL || eq == env[i]) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(env[i] != NULL ? env[i] : "", env[i] != NULL ? strlen(env[i]) : 0, q);
            return RECIPE_ERR(err, FF_EINVAL, "base image env entry %zu \"%s\" is not "
                                              "NAME=value, expected NAME=value",
                              i + 1, q);
        }
        size_t len = (size_t)(eq - env[i]);
        int rc = vars_set(&sc->state, env[i], len, eq + 1);
        if (rc == 0)
            rc = vars_set(&sc->image, env[i], len, eq + 1);
        if (rc != 0)
            return scope_err(err, rc, "base image env");
    }
    return 0;
}

int recipe_scope_stage_new(struct recipe_scope *global, size_t stage,
                           const struct recipe_scope *base, const char *const *image_env,
                           size_t n_image_env, struct recipe_scope **out,
                           struct ff_err *err)
{
    int rc = stage_check(global, stage, err);
    if (rc != 0)
        return rc;
    if (base != NULL && n_image_env > 0)
        return RECIPE_ERR(err, FF_EINVAL, "scope: a base stage and image env both given, "
                                          "expected one");
    struct recipe_scope *sc = calloc(1, sizeof(*sc));
    if (sc == NULL)
        return scope_err(err, FF_ENOMEM, "scope");
    sc->r = global->r;
    sc->global = global;
    sc->stage = stage;
    if (base != NULL) {
        rc = vars_copy(&sc->state, &base->state);
        if (rc == 0)
            rc = vars_copy(&sc->image, &base->image);
        if (rc != 0)
            rc = scope_err(err, rc, "scope");
    } else {
        rc = image_env_set(sc, image_env, n_image_env, err);
    }
    if (rc != 0) {
        recipe_scope_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}

/* ---- stepping through instructions ----------------------------------------- */

struct step {
    struct recipe_scope *sc;
    const struct recipe_instr *in;
    struct recipe_instr *e;
    const char *name;
    size_t total; /* bytes substituted so far, capped at RECIPE_EXPAND_MAX */
    struct ff_err *err;
};

static int step_err(struct step *st, int code, const char *msg)
{
    return RECIPE_ERR_AT(st->err, code, st->sc->r->file, st->in->line, st->name, "%s", msg);
}

static int step_oom(struct step *st)
{
    return step_err(st, FF_ENOMEM, "out of memory");
}

/* Expands word with lookup and counts the result against the cap. */
static int step_expand_with(struct step *st, const char *word, recipe_lookup_fn lookup,
                            void *ctx, char **out)
{
    struct ff_err e;
    ff_err_clear(&e);
    int rc = recipe_expand_word(word, st->sc->r->escape, lookup, ctx, out, &e);
    if (rc != 0)
        return step_err(st, rc, e.msg);
    st->total += strlen(*out);
    if (st->total > RECIPE_EXPAND_MAX) {
        free(*out);
        *out = NULL;
        return step_err(st, FF_ETOOBIG, "substituted instruction longer than 1 MiB, expected "
                                        "less");
    }
    return 0;
}

static int step_expand(struct step *st, const char *word, char **out)
{
    return step_expand_with(st, word, recipe_scope_lookup, st->sc, out);
}

/* Expands an optional flag value (NULL stays NULL). */
static int step_flag(struct step *st, const char *v, struct recipe_scope *sc, char **out)
{
    if (v == NULL)
        return 0;
    return step_expand_with(st, v, recipe_scope_lookup, sc, out);
}

static int step_words(struct step *st)
{
    const struct recipe_instr *in = st->in;
    st->e->args = calloc(in->n_args + 1, sizeof(char *));
    if (st->e->args == NULL)
        return step_oom(st);
    for (size_t i = 0; i < in->n_args; i++) {
        int rc = step_expand(st, in->args[i], &st->e->args[i]);
        if (rc != 0)
            return rc;
        st->e->n_args = i + 1;
    }
    return 0;
}

static int step_copy_args(struct step *st)
{
    const struct recipe_instr *in = st->in;
    st->e->args = calloc(in->n_args + 1, sizeof(char *));
    if (st->e->args == NULL)
        return step_oom(st);
    for (size_t i = 0; i < in->n_args; i++) {
        if ((st->e->args[i] = strdup(in->args[i])) == NULL)
            return step_oom(st);
        st->e->n_args = i + 1;
    }
    return 0;
}

static int step_expose(struct step *st)
{
    struct recipe_strv all = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < st->in->n_args; i++) {
        char **w = NULL;
        size_t n = 0;
        struct ff_err e;
        ff_err_clear(&e);
        rc = recipe_expand_words(st->in->args[i], st->sc->r->escape, recipe_scope_lookup,
                                 st->sc, &w, &n, &e);
        if (rc != 0) {
            rc = step_err(st, rc, e.msg);
            break;
        }
        for (size_t k = 0; k < n; k++) {
            if (rc == 0)
                rc = recipe_strv_take(&all, w[k]) != 0 ? step_oom(st) : 0;
            else
                free(w[k]);
        }
        free(w);
    }
    if (rc == 0 && all.n == 0)
        rc = step_err(st, FF_EINVAL, "no port after substitution, expected EXPOSE "
                                     "<port>[/<protocol>]...");
    st->e->args = all.v;
    st->e->n_args = all.n;
    return rc;
}

/* Lookup for ARG: the pairs already evaluated on this line come first. */
struct arg_ctx {
    const struct recipe_scope *sc;
    const struct recipe_kv *kvs;
    size_t n;
};

static bool arg_lookup(void *ctx, const char *name, size_t len, const char **value)
{
    const struct arg_ctx *a = ctx;
    for (size_t i = a->n; i-- > 0;) {
        const struct recipe_kv *kv = &a->kvs[i];
        if (kv->value != NULL && strncmp(kv->key, name, len) == 0 && kv->key[len] == '\0') {
            *value = kv->value;
            return true;
        }
    }
    return recipe_scope_lookup((void *)a->sc, name, len, value);
}

static int step_kvs_alloc(struct step *st)
{
    st->e->kvs = calloc(st->in->n_kvs + 1, sizeof(struct recipe_kv));
    return st->e->kvs == NULL ? step_oom(st) : 0;
}

/* ARG NAME[=default]: the --build-arg value, else the expanded default,
 * else the global ARG's value (BuildKit's dispatchArg). */
static int step_arg(struct step *st)
{
    int rc = step_kvs_alloc(st);
    struct recipe_scope *g = st->sc->global;
    for (size_t i = 0; rc == 0 && i < st->in->n_kvs; i++) {
        const struct recipe_kv *kv = &st->in->kvs[i];
        struct recipe_kv *o = &st->e->kvs[i];
        if ((o->key = strdup(kv->key)) == NULL)
            return step_oom(st);
        st->e->n_kvs = i + 1;
        const char *given = scope_build_arg(g, kv->key);
        const char *global = vars_get(&g->state, kv->key, strlen(kv->key));
        if (given != NULL || (kv->value == NULL && global != NULL)) {
            o->value = strdup(given != NULL ? given : global);
            if (o->value == NULL)
                rc = step_oom(st);
        } else if (kv->value != NULL) {
            struct arg_ctx a = {st->sc, st->e->kvs, i};
            rc = step_expand_with(st, kv->value, arg_lookup, &a, &o->value);
        }
    }
    return rc;
}

static int step_env(struct step *st)
{
    int rc = step_kvs_alloc(st);
    for (size_t i = 0; rc == 0 && i < st->in->n_kvs; i++) {
        struct recipe_kv *o = &st->e->kvs[i];
        rc = step_expand(st, st->in->kvs[i].key, &o->key);
        if (rc == 0)
            rc = step_expand(st, st->in->kvs[i].value, &o->value);
        if (o->key != NULL)
            st->e->n_kvs = i + 1;
    }
    return rc;
}

static int step_copy(struct step *st)
{
    const struct recipe_instr *in = st->in;
    struct recipe_instr *e = st->e;
    e->link = in->link;
    int rc = step_flag(st, in->from, st->sc->global, &e->from);
    if (rc == 0)
        rc = step_flag(st, in->chown, st->sc, &e->chown);
    if (rc == 0)
        rc = step_flag(st, in->chmod, st->sc, &e->chmod);
    if (rc == 0)
        rc = step_flag(st, in->checksum, st->sc, &e->checksum);
    if (rc == 0)
        rc = step_words(st);
    return rc;
}

static int text_kvs(struct ff_buf *b, const struct recipe_instr *e)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < e->n_kvs; i++) {
        rc = ff_buf_append(b, " ", 1);
        if (rc == 0)
            rc = text_quoted(b, e->kvs[i].key, true, false);
        if (rc == 0 && e->kvs[i].value != NULL) {
            rc = ff_buf_append(b, "=", 1);
            if (rc == 0)
                rc = text_quoted(b, e->kvs[i].value, false, false);
        }
    }
    return rc;
}

static int text_flag(struct ff_buf *b, const char *name, const char *v)
{
    if (v == NULL)
        return 0;
    int rc = ff_buf_printf(b, " --%s=", name);
    return rc == 0 ? text_quoted(b, v, false, false) : rc;
}

static int text_build(struct ff_buf *b, const struct recipe_instr *e)
{
    int rc = ff_buf_append_str(b, recipe_kind_name(e->kind));
    switch (e->kind) {
    case RECIPE_ARG:
    case RECIPE_ENV:
    case RECIPE_LABEL:
        return rc == 0 ? text_kvs(b, e) : rc;
    case RECIPE_RUN:
    case RECIPE_CMD:
    case RECIPE_ENTRYPOINT:
        if (rc == 0)
            rc = ff_buf_append(b, " ", 1);
        if (rc == 0 && e->exec_form)
            return text_array(b, e->args, e->n_args);
        return rc == 0 ? ff_buf_append_str(b, e->args[0]) : rc;
    case RECIPE_COPY:
    case RECIPE_ADD:
        if (rc == 0)
            rc = text_flag(b, "from", e->from);
        if (rc == 0)
            rc = text_flag(b, "chown", e->chown);
        if (rc == 0 && e->chmod != NULL)
            rc = ff_buf_printf(b, " --chmod=%04o", (unsigned)e->chmod_mode);
        if (rc == 0)
            rc = text_flag(b, "checksum", e->checksum);
        if (rc == 0)
            rc = ff_buf_append(b, " ", 1);
        return rc == 0 ? text_array(b, e->args, e->n_args) : rc;
    case RECIPE_EXPOSE:
        for (size_t i = 0; rc == 0 && i < e->n_args; i++) {
            rc = ff_buf_append(b, " ", 1);
            if (rc == 0)
                rc = ff_buf_append_str(b, e->args[i]);
        }
        return rc;
    default:
        if (rc == 0)
            rc = ff_buf_append(b, " ", 1);
        return rc == 0 ? text_quoted(b, e->args[0], false, false) : rc;
    }
}

/* Applies ARG (run table) or ENV (run and image tables) to the scope; a
 * failure leaves both tables as they were. */
static int step_apply(struct step *st)
{
    const struct recipe_instr *e = st->e;
    if (e->kind != RECIPE_ARG && e->kind != RECIPE_ENV)
        return 0;
    bool env = e->kind == RECIPE_ENV;
    struct batch run = {0}, image = {0};
    int rc = batch_prepare(&st->sc->state, e->kvs, e->n_kvs, &run);
    if (rc == 0 && env)
        rc = batch_prepare(&st->sc->image, e->kvs, e->n_kvs, &image);
    if (rc == 0)
        rc = batch_apply(&st->sc->state, &run);
    if (rc == 0 && env) {
        rc = batch_apply(&st->sc->image, &image);
        if (rc != 0)
            batch_undo(&st->sc->state, &run);
    }
    batch_release(&run);
    batch_release(&image);
    if (rc != 0)
        return step_err(st, rc, rc == FF_ETOOBIG ? "variables larger than 1 MiB, expected less"
                                                 : "out of memory");
    return 0;
}

static int step_dispatch(struct step *st)
{
    switch (st->in->kind) {
    case RECIPE_ARG:
        return step_arg(st);
    case RECIPE_ENV:
    case RECIPE_LABEL:
        return step_env(st);
    case RECIPE_RUN:
    case RECIPE_CMD:
    case RECIPE_ENTRYPOINT:
        return step_copy_args(st);
    case RECIPE_COPY:
    case RECIPE_ADD:
        return step_copy(st);
    case RECIPE_EXPOSE:
        return step_expose(st);
    default:
        return step_words(st);
    }
}

int recipe_scope_step(struct recipe_scope *scope, const struct recipe_instr *in,
                      struct recipe_instr **out, struct ff_err *err)
{
    if (scope == NULL || scope->global == NULL || in == NULL)
        return RECIPE_ERR(err, FF_EINVAL, "scope: not a stage scope");
    struct recipe_instr *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, "scope: out of memory");
    e->kind = in->kind;
    e->line = in->line;
    e->exec_form = in->exec_form;
    e->from_stage = -1;
    e->chmod_mode = -1;
    struct step st = {scope, in, e, recipe_kind_name(in->kind), 0, err};
    int rc = step_dispatch(&st);
    if (rc == 0)
        rc = recipe_instr_check(scope->r, scope->stage, e, true, err);
    if (rc == 0) {
        struct ff_buf b;
        ff_buf_init(&b, STEP_TEXT_MAX);
        rc = text_build(&b, e);
        e->text = rc == 0 ? ff_buf_steal(&b) : NULL;
        ff_buf_release(&b);
        if (e->text == NULL)
            rc = step_err(&st, rc == FF_ETOOBIG ? rc : FF_ENOMEM,
                          "expanded text too long or out of memory");
    }
    if (rc == 0)
        rc = step_apply(&st);
    if (rc != 0) {
        recipe_instr_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int recipe_scope_run_env(const struct recipe_scope *scope, char ***out, size_t *n_out,
                         struct ff_err *err)
{
    return vars_env(&scope->state, out, n_out, err);
}

int recipe_scope_image_env(const struct recipe_scope *scope, char ***out, size_t *n_out,
                           struct ff_err *err)
{
    return vars_env(&scope->image, out, n_out, err);
}

static bool is_proxy_arg(const char *name)
{
    for (size_t i = 0; i < sizeof(proxy_args) / sizeof(proxy_args[0]); i++) {
        if (strcmp(proxy_args[i], name) == 0)
            return true;
    }
    return false;
}

int recipe_scope_unused_build_args(const struct recipe_scope *global, char **out,
                                   struct ff_err *err)
{
    *out = NULL;
    if (global == NULL || global->global != NULL)
        return RECIPE_ERR(err, FF_EINVAL, "scope: not a global scope");
    struct ff_buf b;
    ff_buf_init(&b, RECIPE_SCOPE_MAX);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < global->build_args.n; i++) {
        const char *name = global->build_args.v[i].name;
        if (global->used[i] || is_proxy_arg(name))
            continue;
        if (b.len > 0)
            rc = ff_buf_append(&b, " ", 1);
        if (rc == 0)
            rc = ff_buf_append_str(&b, name);
    }
    if (rc == 0 && b.len > 0 && (*out = ff_buf_steal(&b)) == NULL)
        rc = FF_ENOMEM;
    ff_buf_release(&b);
    return rc != 0 ? RECIPE_ERR(err, FF_ENOMEM, "build args: out of memory") : 0;
}
