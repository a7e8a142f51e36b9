/* .dockerignore as Docker reads it (moby/buildkit's dockerignore.ReadAll
 * and moby/patternmatcher).
 *
 * patternmatcher turns each pattern into a Go regular expression ('*' is
 * any run of characters but '/', '?' one character but '/', "**" any text
 * ending in '/' or none, or any text at the end) but matches the
 * patterns without wildcards by plain comparison: exact ("a/b"), prefix
 * (literal text then "**": the path starts with the text) and suffix
 * ("**" then literal text: the path ends with it, or is it without its
 * leading '/'). We keep those
 * four kinds, and run the regular-expression kind as a small NFA over code
 * points (one state per pattern element), which gives the same answers in
 * time linear in the path, whatever the pattern.
 *
 * A path is excluded when the last pattern that matches it or one of its
 * parent directories is not an exception. Feeding a path through a
 * pattern's NFA once answers for the path and all its parents: a parent
 * matches when the NFA accepts just before a '/'.
 *
 * Character classes are read as filepath.Match reads them (Docker checks
 * patterns with it): [abc], [a-z], [^a-z], '\' escaping inside; a class
 * that filepath.Match would refuse ([], [a-], [z-a], unterminated) is an
 * error, as is a trailing '\'. */
#include "worker.h"

#include "ff_str.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum match_kind { MATCH_EXACT, MATCH_PREFIX, MATCH_SUFFIX, MATCH_GLOB };

enum tok_kind {
    TOK_LIT,         /* one code point */
    TOK_ANY,         /* ?: one code point but '/' */
    TOK_STAR,        /* *: any run without '/' */
    TOK_DSTAR_SLASH, /* ** followed by more: nothing, or TOK_DSTAR_LOOP after it */
    TOK_DSTAR_LOOP,  /* any text, left only through a '/' */
    TOK_DSTAR_END,   /* ** at the end: any text */
    TOK_CLASS        /* [...] */
};

struct tok {
    enum tok_kind kind;
    uint32_t cp;      /* TOK_LIT */
    size_t range;     /* TOK_CLASS: first range in the pattern's ranges */
    size_t n_ranges;  /* TOK_CLASS */
    bool negated;     /* TOK_CLASS */
};

struct range {
    uint32_t lo, hi;
};

struct pattern {
    bool exception;
    enum match_kind kind;
    char *text; /* cleaned, without the '!' */
    size_t len;
    struct tok *toks;
    size_t n_toks;
    struct range *ranges;
    size_t n_ranges;
};

struct ignore {
    struct pattern *p;
    size_t n;
    bool exceptions;
    size_t max_toks; /* sizes the NFA state sets */
};

/* Code points above Unicode stand for bytes that are not valid UTF-8, so
 * that they still compare equal only to themselves. */
#define BAD_BYTE_BASE 0x110000u

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Decodes one code point of s[*i..n). */
static uint32_t next_cp(const char *s, size_t n, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s + *i;
    size_t left = n - *i;
    uint32_t c = u[0];
    size_t len = 0;
    uint32_t min = 0;
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        c &= 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        c &= 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    }
    bool ok = len > 0 && len <= left;
    for (size_t k = 1; ok && k < len; k++) {
        ok = (u[k] & 0xc0) == 0x80;
        c = (c << 6) | (u[k] & 0x3f);
    }
    if (!ok || c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        (*i)++;
        return BAD_BYTE_BASE + u[0];
    }
    *i += len;
    return c;
}

/* ---- cleaning ------------------------------------------------------------ */

/* Go's filepath.Clean on n bytes of s (ported step by step): duplicate
 * '/', "." components and a trailing '/' go, ".." removes the component
 * before it (or goes at the root); "" becomes ".". Returns a malloc'd
 * string or NULL. */
static char *clean_go(const char *s, size_t n)
{
    char *out = malloc(n + 2);
    if (out == NULL)
        return NULL;
    bool rooted = n > 0 && s[0] == '/';
    size_t r = 0, w = 0, dotdot = 0;
    if (rooted) {
        out[w++] = '/';
        r = dotdot = 1;
    }
    while (r < n) {
        if (s[r] == '/' || (s[r] == '.' && (r + 1 == n || s[r + 1] == '/'))) {
            r++;
        } else if (s[r] == '.' && s[r + 1] == '.' && (r + 2 == n || s[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                w--;
                while (w > dotdot && out[w] != '/')
                    w--;
            } else if (!rooted) {
                if (w > 0)
                    out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0))
                out[w++] = '/';
            while (r < n && s[r] != '/')
                out[w++] = s[r++];
        }
    }
    if (w == 0)
        out[w++] = '.';
    out[w] = '\0';
    return out;
}

/* A context path made canonical: '/'-separated components without "",
 * "." or "..", *out_len bytes. Returns 0, FF_EINVAL (".."), FF_ETOOBIG or
 * FF_ENOMEM. */
static int clean_rel(const char *in, char **out, size_t *out_len, struct ff_err *err)
{
    size_t n = strlen(in);
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(in, n, q);
    if (n > IGNORE_PATH_MAX)
        return RECIPE_ERR(err, FF_ETOOBIG, "path \"%s\" is longer than %d bytes, expected less",
                          q, IGNORE_PATH_MAX);
    char *s = malloc(n + 1);
    if (s == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, "ignore: out of memory");
    size_t w = 0, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && in[j] != '/')
            j++;
        size_t len = j - i;
        if (len == 2 && in[i] == '.' && in[i + 1] == '.') {
            free(s);
            return RECIPE_ERR(err, FF_EINVAL, "path \"%s\" has a \"..\" component, expected a "
                                              "path inside the context",
                              q);
        }
        if (len > 0 && !(len == 1 && in[i] == '.')) {
            if (w > 0)
                s[w++] = '/';
            memcpy(s + w, in + i, len);
            w += len;
        }
        i = j + 1;
    }
    s[w] = '\0';
    *out = s;
    *out_len = w;
    return 0;
}

/* ---- compiling a pattern -------------------------------------------------- */

struct compiler {
    struct pattern *p;
    const char *s;
    size_t n;
    size_t i;
    size_t toks_cap, ranges_cap;
    const char *why; /* set when the pattern is malformed */
};

static int add_tok(struct compiler *c, struct tok t)
{
    if (c->p->n_toks == c->toks_cap) {
        size_t cap = c->toks_cap ? c->toks_cap * 2 : 8;
        struct tok *v = realloc(c->p->toks, cap * sizeof(*v));
        if (v == NULL)
            return FF_ENOMEM;
        c->p->toks = v;
        c->toks_cap = cap;
    }
    c->p->toks[c->p->n_toks++] = t;
    return 0;
}

static int add_range(struct compiler *c, uint32_t lo, uint32_t hi)
{
    if (c->p->n_ranges == c->ranges_cap) {
        size_t cap = c->ranges_cap ? c->ranges_cap * 2 : 4;
        struct range *v = realloc(c->p->ranges, cap * sizeof(*v));
        if (v == NULL)
            return FF_ENOMEM;
        c->p->ranges = v;
        c->ranges_cap = cap;
    }
    c->p->ranges[c->p->n_ranges++] = (struct range){lo, hi};
    return 0;
}

static bool at_end(const struct compiler *c)
{
    return c->i >= c->n;
}

/* filepath.Match's getEsc: one class character, '\' escaping. */
static bool class_char(struct compiler *c, uint32_t *cp)
{
    if (at_end(c) || c->s[c->i] == '-' || c->s[c->i] == ']')
        return false;
    if (c->s[c->i] == '\\') {
        c->i++;
        if (at_end(c))
            return false;
    }
    *cp = next_cp(c->s, c->n, &c->i);
    return true;
}

/* After '[': [^]lo[-hi]...] */
static int compile_class(struct compiler *c)
{
    struct tok t = {.kind = TOK_CLASS, .range = c->p->n_ranges};
    if (!at_end(c) && c->s[c->i] == '^') {
        t.negated = true;
        c->i++;
    }
    for (;;) {
        if (at_end(c)) {
            c->why = "unterminated character class";
            return FF_EINVAL;
        }
        if (c->s[c->i] == ']' && t.n_ranges > 0) {
            c->i++;
            return add_tok(c, t);
        }
        uint32_t lo, hi;
        if (!class_char(c, &lo)) {
            c->why = "bad character class";
            return FF_EINVAL;
        }
        hi = lo;
        if (!at_end(c) && c->s[c->i] == '-') {
            c->i++;
            if (!class_char(c, &hi)) {
                c->why = "bad range in character class";
                return FF_EINVAL;
            }
        }
        if (lo > hi) {
            c->why = "range out of order in character class";
            return FF_EINVAL;
        }
        int rc = add_range(c, lo, hi);
        if (rc != 0)
            return rc;
        t.n_ranges++;
    }
}

/* "**": the kind changes as patternmatcher's compile changes it. */
static int compile_dstar(struct compiler *c, bool first)
{
    c->i++;
    if (!at_end(c) && c->s[c->i] == '/')
        c->i++;
    int rc = 0;
    if (at_end(c)) {
        if (c->p->kind == MATCH_EXACT)
            c->p->kind = MATCH_PREFIX;
        else
            c->p->kind = MATCH_GLOB;
        rc = add_tok(c, (struct tok){.kind = TOK_DSTAR_END});
    } else {
        c->p->kind = MATCH_GLOB;
        rc = add_tok(c, (struct tok){.kind = TOK_DSTAR_SLASH});
        if (rc == 0)
            rc = add_tok(c, (struct tok){.kind = TOK_DSTAR_LOOP});
    }
    if (first)
        c->p->kind = MATCH_SUFFIX;
    return rc;
}

static int compile_one(struct compiler *c, bool first)
{
    char ch = c->s[c->i];
    if (ch == '*' && c->i + 1 < c->n && c->s[c->i + 1] == '*') {
        c->i++;
        return compile_dstar(c, first);
    }
    if (ch == '*' || ch == '?') {
        c->i++;
        c->p->kind = MATCH_GLOB;
        return add_tok(c, (struct tok){.kind = ch == '*' ? TOK_STAR : TOK_ANY});
    }
    if (ch == '[') {
        c->i++;
        c->p->kind = MATCH_GLOB;
        return compile_class(c);
    }
    if (ch == '\\') {
        c->i++;
        if (at_end(c)) {
            c->why = "trailing backslash";
            return FF_EINVAL;
        }
        c->p->kind = MATCH_GLOB;
    } else if (ch == ']') {
        c->p->kind = MATCH_GLOB;
    }
    return add_tok(c, (struct tok){.kind = TOK_LIT, .cp = next_cp(c->s, c->n, &c->i)});
}

static int compile(struct pattern *p, const char **why)
{
    struct compiler c = {.p = p, .s = p->text, .n = p->len};
    p->kind = MATCH_EXACT;
    for (bool first = true; !at_end(&c); first = false) {
        int rc = compile_one(&c, first);
        if (rc != 0) {
            *why = c.why;
            return rc;
        }
    }
    return 0;
}

/* ---- parsing .dockerignore ----------------------------------------------------- */

static void pattern_release(struct pattern *p)
{
    free(p->text);
    free(p->toks);
    free(p->ranges);
}

void ignore_free(struct ignore *ig)
{
    if (ig == NULL)
        return;
    for (size_t i = 0; i < ig->n; i++)
        pattern_release(&ig->p[i]);
    free(ig->p);
    free(ig);
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1]))
        (*n)--;
}

/* dockerignore.ReadAll's cleaning of one line (s, n bytes, trimmed), then
 * patternmatcher.New's: the result, "!" kept, goes into *out (malloc'd). */
static int line_pattern(const char *s, size_t n, char **out)
{
    bool invert = n > 0 && s[0] == '!';
    if (invert) {
        s++;
        n--;
        trim(&s, &n);
    }
    char *joined = malloc(n + 3);
    if (joined == NULL)
        return FF_ENOMEM;
    size_t len = 0;
    if (invert)
        joined[len++] = '!';
    if (n > 0) {
        char *p = clean_go(s, n);
        if (p == NULL) {
            free(joined);
            return FF_ENOMEM;
        }
        size_t plen = strlen(p);
        size_t skip = plen > 1 && p[0] == '/' ? 1 : 0;
        memcpy(joined + len, p + skip, plen - skip);
        len += plen - skip;
        free(p);
    }
    char *again = clean_go(joined, len);
    free(joined);
    if (again == NULL)
        return FF_ENOMEM;
    *out = again;
    return 0;
}

/* One pattern line into *p, which then owns its memory (released on
 * failure). */
static int make_pattern(const char *s, size_t n, unsigned line, struct pattern *p,
                        struct ff_err *err)
{
    *p = (struct pattern){0};
    if (line_pattern(s, n, &p->text) != 0)
        return RECIPE_ERR(err, FF_ENOMEM, ".dockerignore: out of memory");
    p->len = strlen(p->text);
    if (p->text[0] == '!') {
        p->exception = true;
        memmove(p->text, p->text + 1, p->len--);
    }
    int rc = 0;
    const char *why = NULL;
    if (p->exception && p->len == 0)
        rc = RECIPE_ERR(err, FF_EINVAL, ".dockerignore:%u: illegal exclusion pattern \"!\", "
                                        "expected !<pattern>",
                        line);
    else
        rc = compile(p, &why);
    if (rc == FF_EINVAL && why != NULL) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(p->text, p->len, q);
        rc = RECIPE_ERR(err, rc, ".dockerignore:%u: bad pattern \"%s\": %s, expected a pattern "
                                 "of text, *, ?, ** and [...] classes",
                        line, q, why);
    } else if (rc == FF_ENOMEM) {
        rc = RECIPE_ERR(err, rc, ".dockerignore: out of memory");
    }
    if (rc != 0)
        pattern_release(p);
    return rc;
}

static int parse_line(struct ignore *ig, size_t *cap, const char *s, size_t n, unsigned line,
                      struct ff_err *err)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (memchr(s, '\0', n) != NULL)
        return RECIPE_ERR(err, FF_EINVAL, ".dockerignore:%u: NUL byte, expected text", line);
    if (n > 0 && s[0] == '#')
        return 0;
    trim(&s, &n);
    if (n == 0)
        return 0;
    if (n > IGNORE_PATH_MAX)
        return RECIPE_ERR(err, FF_ETOOBIG, ".dockerignore:%u: pattern of %zu bytes, expected "
                                           "at most %d",
                          line, n, IGNORE_PATH_MAX);
    if (ig->n >= IGNORE_PATTERNS_MAX)
        return RECIPE_ERR(err, FF_ETOOBIG, ".dockerignore:%u: more than %d patterns, expected "
                                           "at most %d",
                          line, IGNORE_PATTERNS_MAX, IGNORE_PATTERNS_MAX);
    if (ig->p == NULL || ig->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct pattern *v = realloc(ig->p, ncap * sizeof(*v));
        if (v == NULL)
            return RECIPE_ERR(err, FF_ENOMEM, ".dockerignore: out of memory");
        ig->p = v;
        *cap = ncap;
    }
    struct pattern *p = &ig->p[ig->n];
    int rc = make_pattern(s, n, line, p, err);
    if (rc != 0)
        return rc;
    ig->n++;
    ig->exceptions = ig->exceptions || p->exception;
    if (p->n_toks > ig->max_toks)
        ig->max_toks = p->n_toks;
    return 0;
}

int ignore_parse(const char *text, size_t len, struct ignore **out, struct ff_err *err)
{
    if (len > IGNORE_SIZE_MAX)
        return RECIPE_ERR(err, FF_ETOOBIG, ".dockerignore: %zu bytes, expected at most %zu",
                          len, IGNORE_SIZE_MAX);
    struct ignore *ig = calloc(1, sizeof(*ig));
    if (ig == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, ".dockerignore: out of memory");
    size_t cap = 0, i = 0;
    unsigned line = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl != NULL ? (size_t)(nl - (text + i)) : len - i;
        int rc = parse_line(ig, &cap, text + i, n, ++line, err);
        if (rc != 0) {
            ignore_free(ig);
            return rc;
        }
        i += n + 1;
    }
    *out = ig;
    return 0;
}

size_t ignore_count(const struct ignore *ig)
{
    return ig->n;
}

bool ignore_has_exceptions(const struct ignore *ig)
{
    return ig->exceptions;
}

/* ---- matching ---------------------------------------------------------------- */

/* NFA state sets: bit i set means "before element i"; bit n_toks accepts. */
struct nfa {
    const struct pattern *p;
    uint64_t *base; /* owns both sets */
    uint64_t *cur, *next;
    size_t words;
};

static bool bit(const uint64_t *s, size_t i)
{
    return (s[i / 64] >> (i % 64)) & 1u;
}

static void set_bit(uint64_t *s, size_t i)
{
    s[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Elements that may match nothing let the state through to the next;
 * the entry of "(any text ending in '/')?" goes into its loop or past it.
 * Every such edge points forward, so one pass in order is complete. */
static void closure(const struct nfa *m, uint64_t *s)
{
    for (size_t i = 0; i < m->p->n_toks; i++) {
        enum tok_kind k = m->p->toks[i].kind;
        if (!bit(s, i))
            continue;
        if (k == TOK_STAR || k == TOK_DSTAR_END || k == TOK_DSTAR_SLASH)
            set_bit(s, i + 1);
        if (k == TOK_DSTAR_SLASH)
            set_bit(s, i + 2);
    }
}

static void nfa_start(struct nfa *m)
{
    memset(m->cur, 0, m->words * sizeof(uint64_t));
    set_bit(m->cur, 0);
    closure(m, m->cur);
}

static bool class_match(const struct pattern *p, const struct tok *t, uint32_t cp)
{
    bool in = false;
    for (size_t r = t->range; r < t->range + t->n_ranges && !in; r++)
        in = cp >= p->ranges[r].lo && cp <= p->ranges[r].hi;
    return in != t->negated;
}

/* Consumes cp. Returns false when no state is left. */
static bool nfa_step(struct nfa *m, uint32_t cp)
{
    const struct pattern *p = m->p;
    memset(m->next, 0, m->words * sizeof(uint64_t));
    bool alive = false;
    for (size_t i = 0; i < p->n_toks; i++) {
        if (!bit(m->cur, i))
            continue;
        const struct tok *t = &p->toks[i];
        bool adv = false, stay = false;
        switch (t->kind) {
        case TOK_LIT:
            adv = cp == t->cp;
            break;
        case TOK_ANY:
            adv = cp != '/';
            break;
        case TOK_CLASS:
            adv = class_match(p, t, cp);
            break;
        case TOK_STAR:
            stay = cp != '/';
            break;
        case TOK_DSTAR_SLASH:
            break;
        case TOK_DSTAR_LOOP:
            stay = true;
            adv = cp == '/';
            break;
        case TOK_DSTAR_END:
            stay = true;
            break;
        }
        if (stay)
            set_bit(m->next, i);
        if (adv)
            set_bit(m->next, i + 1);
        alive = alive || stay || adv;
    }
    uint64_t *t = m->cur;
    m->cur = m->next;
    m->next = t;
    closure(m, m->cur);
    return alive;
}

static bool nfa_accepts(const struct nfa *m)
{
    return bit(m->cur, m->p->n_toks);
}

/* Whether the pattern matches path or one of its parents. */
static bool glob_match(struct nfa *m, const char *path, size_t n)
{
    nfa_start(m);
    size_t i = 0;
    while (i < n) {
        if (path[i] == '/' && i > 0 && nfa_accepts(m))
            return true;
        if (!nfa_step(m, next_cp(path, n, &i)))
            return false;
    }
    return nfa_accepts(m);
}

static bool suffix_match(const struct pattern *p, const char *path, size_t n)
{
    const char *suf = p->text + 2;
    size_t sl = p->len - 2;
    for (size_t k = 1; k <= n; k++) {
        if (k < n && path[k] != '/')
            continue;
        if (k >= sl && memcmp(path + k - sl, suf, sl) == 0)
            return true;
        if (sl > 0 && suf[0] == '/' && k == sl - 1 && memcmp(path, suf + 1, sl - 1) == 0)
            return true;
    }
    return false;
}

static bool pattern_match(struct nfa *m, const struct pattern *p, const char *path, size_t n)
{
    switch (p->kind) {
    case MATCH_EXACT:
        return n >= p->len && memcmp(path, p->text, p->len) == 0 &&
               (n == p->len || path[p->len] == '/');
    case MATCH_PREFIX:
        return n >= p->len - 2 && memcmp(path, p->text, p->len - 2) == 0;
    case MATCH_SUFFIX:
        return suffix_match(p, path, n);
    default:
        m->p = p;
        return glob_match(m, path, n);
    }
}

static int nfa_init(struct nfa *m, const struct ignore *ig, struct ff_err *err)
{
    m->words = ig->max_toks / 64 + 1;
    m->base = calloc(2 * m->words, sizeof(uint64_t));
    if (m->base == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, "ignore: out of memory");
    m->cur = m->base;
    m->next = m->base + m->words;
    return 0;
}

/* ignore_match on a clean path of n bytes. */
static int match_clean(const struct ignore *ig, const char *path, size_t n, bool *excluded,
                       struct ff_err *err)
{
    struct nfa m = {0};
    int rc = nfa_init(&m, ig, err);
    bool matched = false;
    for (size_t i = 0; rc == 0 && n > 0 && i < ig->n; i++) {
        const struct pattern *p = &ig->p[i];
        /* An exception only matters once something matched, and another
         * match of a non-exception changes nothing. */
        if (p->exception != matched)
            continue;
        if (pattern_match(&m, p, path, n))
            matched = !p->exception;
    }
    free(m.base);
    if (rc == 0)
        *excluded = matched;
    return rc;
}

int ignore_match(const struct ignore *ig, const char *rel_path, bool *excluded,
                 struct ff_err *err)
{
    char *path = NULL;
    size_t n = 0;
    int rc = clean_rel(rel_path, &path, &n, err);
    if (rc == 0)
        rc = match_clean(ig, path, n, excluded, err);
    free(path);
    return rc;
}

/* Whether p can match some path strictly below dir (dir/ given). */
static bool may_match_below(struct nfa *m, const struct pattern *p, const char *dir, size_t n)
{
    switch (p->kind) {
    case MATCH_EXACT:
        return p->len > n && memcmp(p->text, dir, n) == 0;
    case MATCH_PREFIX: {
        size_t pl = p->len - 2;
        size_t k = pl < n ? pl : n;
        return memcmp(p->text, dir, k) == 0;
    }
    case MATCH_SUFFIX:
        return true;
    default:
        m->p = p;
        nfa_start(m);
        for (size_t i = 0; i < n;) {
            if (!nfa_step(m, next_cp(dir, n, &i)))
                return false;
        }
        return true;
    }
}

/* Whether any exception can match a path strictly below dir (n bytes). */
static int exception_below(const struct ignore *ig, const char *dir, size_t n, bool *found,
                           struct ff_err *err)
{
    *found = false;
    if (!ig->exceptions)
        return 0;
    char *slash = malloc(n + 2);
    if (slash == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, "ignore: out of memory");
    memcpy(slash, dir, n);
    slash[n] = '/';
    slash[n + 1] = '\0';
    struct nfa m = {0};
    int rc = nfa_init(&m, ig, err);
    for (size_t i = 0; rc == 0 && i < ig->n && !*found; i++) {
        const struct pattern *p = &ig->p[i];
        if (p->exception)
            *found = may_match_below(&m, p, slash, n + 1);
    }
    free(m.base);
    free(slash);
    return rc;
}

int ignore_dir_may_contain_exceptions(const struct ignore *ig, const char *rel_dir,
                                      bool *may, struct ff_err *err)
{
    char *dir = NULL;
    size_t n = 0;
    int rc = clean_rel(rel_dir, &dir, &n, err);
    if (rc != 0)
        return rc;
    bool ex = false, found = false;
    rc = match_clean(ig, dir, n, &ex, err);
    if (rc == 0 && ex)
        rc = exception_below(ig, dir, n, &found, err);
    free(dir);
    if (rc == 0)
        *may = !ex || found;
    return rc;
}
