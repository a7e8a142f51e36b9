/* Dockerfile.template substitution and the Dockerfile parser.
 *
 * The parser follows BuildKit's frontend (frontend/dockerfile/parser and
 * instructions) step by step, because users write recipes against it:
 *
 * - lines end at '\n'; trailing '\r' is dropped; a UTF-8 BOM on the first
 *   line is skipped; NUL bytes are refused (C strings cannot hold them);
 * - parser directives (# name=value) are read from the top until the first
 *   line that is not one, a blank line included: escape (\ or `) is
 *   honoured, syntax and check are ignored, an unknown name ends them;
 * - a line whose first non-blank byte is '#' is a comment; an instruction
 *   continues on the next line when it ends with the escape character
 *   (blanks after it allowed) not itself escaped; comment and blank lines
 *   inside a continued instruction are skipped; continuation lines keep
 *   their leading blanks, as in BuildKit's "original" text;
 * - the first word is the instruction (any case), then --flags (quotes and
 *   backslashes processed), then the arguments, parsed per instruction:
 *   a JSON array of strings or a shell string (RUN, CMD, ENTRYPOINT); a
 *   JSON array or whitespace-separated words (COPY, ADD); quote-aware words
 *   of NAME=value or the legacy "NAME value" (ENV, LABEL); NAME[=default]
 *   words (ARG); the rest of the line (WORKDIR, USER); whitespace-separated
 *   words (FROM, EXPOSE). Words keep their quotes and escapes: expand.c
 *   removes them when it substitutes variables, as BuildKit does.
 *
 * Stricter than BuildKit, each with a message: text after a JSON array
 * (BuildKit silently drops it), an empty --flag= value, heredocs and the
 * instructions we do not run. */
#include "worker.h"

#include "ff_buf.h"
#include "ff_json.h"
#include "ff_str.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest instruction keyword we look up; longer words are unknown. */
#define KEYWORD_MAX 16
/* Longest stage name: names appear in messages and --from values. */
#define STAGE_NAME_MAX 128
/* Longest USER or --chown value (Linux names are at most 32 bytes). */
#define USER_SPEC_MAX 256

static const char supported_list[] =
    "FROM, ARG, ENV, LABEL, RUN, CMD, ENTRYPOINT, COPY, ADD, WORKDIR, USER or EXPOSE";

static const struct {
    const char *name;
    enum recipe_kind kind;
} keywords[] = {
    {"ARG", RECIPE_ARG},         {"ENV", RECIPE_ENV},
    {"LABEL", RECIPE_LABEL},     {"RUN", RECIPE_RUN},
    {"CMD", RECIPE_CMD},         {"ENTRYPOINT", RECIPE_ENTRYPOINT},
    {"COPY", RECIPE_COPY},       {"ADD", RECIPE_ADD},
    {"WORKDIR", RECIPE_WORKDIR}, {"USER", RECIPE_USER},
    {"EXPOSE", RECIPE_EXPOSE},
};

/* Instructions Docker has and we do not run, with what to write instead. */
static const struct {
    const char *name;
    const char *instead;
} unsupported[] = {
    {"MAINTAINER", "LABEL maintainer=\"<name>\""},
    {"ONBUILD", NULL},
    {"HEALTHCHECK", NULL},
    {"SHELL", "RUN [\"<shell>\", \"-c\", \"<command>\"]"},
    {"STOPSIGNAL", NULL},
    {"VOLUME", NULL},
};

/* ---- small helpers ------------------------------------------------------ */

const char *recipe_kind_name(enum recipe_kind kind)
{
    if (kind == RECIPE_ARG)
        return "ARG";
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
        if (keywords[i].kind == kind)
            return keywords[i].name;
    }
    return "?";
}

int recipe_err_at(struct ff_err *err, int code, const char *file, unsigned line,
                  const char *instr, const char *fmt, ...)
{
    char tail[FF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tail, sizeof(tail), fmt, ap);
    va_end(ap);
    if (n < 0)
        tail[0] = '\0';
    char qfile[FF_STR_QUOTE_SIZE];
    ff_str_quote(file, strlen(file), qfile);
    if (instr == NULL)
        return RECIPE_ERR(err, code, "%s:%u: %s", qfile, line, tail);
    return RECIPE_ERR(err, code, "%s:%u: %s: %s", qfile, line, instr, tail);
}

/* Blanks as Go's unicode.IsSpace sees ASCII. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
    if (c >= 'A' && c <= 'Z')
        c = (char)(c + ('a' - 'A'));
    return c;
}

static void quote(const char *s, char out[FF_STR_QUOTE_SIZE])
{
    ff_str_quote(s, strlen(s), out);
}

void recipe_strv_release(struct recipe_strv *sv)
{
    recipe_strv_free(sv->v, sv->n);
    memset(sv, 0, sizeof(*sv));
}

void recipe_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void *recipe_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t ncap = *cap ? *cap : 4;
    while (ncap < need) {
        if (__builtin_mul_overflow(ncap, (size_t)2, &ncap))
            return NULL;
    }
    size_t bytes;
    if (__builtin_mul_overflow(ncap, elem, &bytes))
        return NULL;
    char *np = realloc(p, bytes);
    if (np == NULL)
        return NULL;
    /* Zeroed, so that no slot is ever read uninitialized. */
    memset(np + *cap * elem, 0, (ncap - *cap) * elem);
    *cap = ncap;
    return np;
}

int recipe_strv_take(struct recipe_strv *sv, char *s)
{
    char **v = s != NULL ? recipe_grow(sv->v, &sv->cap, sv->n + 1, sizeof(char *)) : NULL;
    if (v == NULL) {
        free(s);
        return FF_ENOMEM;
    }
    sv->v = v;
    sv->v[sv->n++] = s;
    return 0;
}

static int strv_add(struct recipe_strv *sv, const char *s, size_t n)
{
    return recipe_strv_take(sv, ff_strndup(s, n));
}

/* ---- Dockerfile.template ------------------------------------------------ */

static bool is_ident_start(char c)
{
    return is_alpha(c) || c == '_';
}

static bool is_ident(char c)
{
    return is_ident_start(c) || is_digit(c);
}

static int check_arch(const char *arch, const char *what, struct ff_err *err)
{
    if (arch != NULL &&
        (strcmp(arch, "amd64") == 0 || strcmp(arch, "arm64") == 0 || strcmp(arch, "armv7") == 0))
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    quote(arch != NULL ? arch : "", q);
    return RECIPE_ERR(err, FF_EINVAL, "%s \"%s\" is not supported, expected amd64, arm64 or armv7",
                      what, q);
}

/* An empty app is allowed here: it is an error only where %%FF_APP%% is
 * used. */
static int check_app(const char *app, struct ff_err *err)
{
    size_t n = app != NULL ? strlen(app) : 0;
    bool ok = n <= RECIPE_APP_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = app[i];
        ok = is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '/' || c == '-';
    }
    if (ok)
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    quote(app != NULL ? app : "", q);
    return RECIPE_ERR(err, FF_EINVAL,
                      "template: app \"%s\" is not usable, expected at most %d characters of "
                      "[A-Za-z0-9._/-]",
                      q, RECIPE_APP_MAX);
}

/* Length of the %%NAME%% placeholder at text[i], or 0 when there is none. */
static size_t placeholder_len(const char *text, size_t len, size_t i)
{
    if (len - i < 5 || text[i] != '%' || text[i + 1] != '%' || !is_ident_start(text[i + 2]))
        return 0;
    size_t j = i + 3;
    while (j < len && is_ident(text[j]))
        j++;
    if (len - j < 2 || text[j] != '%' || text[j + 1] != '%')
        return 0;
    return j + 2 - i;
}

int recipe_template(const char *text, size_t len, const char *arch, const char *app,
                    char **out, size_t *out_len, struct ff_err *err)
{
    int rc = check_arch(arch, "template: arch", err);
    if (rc != 0)
        return rc;
    rc = check_app(app, err);
    if (rc != 0)
        return rc;
    if (len > RECIPE_SIZE_MAX)
        return RECIPE_ERR(err, FF_ETOOBIG, "Dockerfile.template: %zu bytes, expected at most %zu",
                          len, RECIPE_SIZE_MAX);
    struct ff_buf b;
    ff_buf_init(&b, RECIPE_SIZE_MAX);
    unsigned line = 1;
    size_t i = 0;
    while (i < len && rc == 0) {
        size_t n = placeholder_len(text, len, i);
        if (n == 0) {
            size_t run = 1;
            while (i + run < len && text[i + run] != '%' && text[i + run] != '\n')
                run++;
            if (text[i] == '\n')
                line++;
            rc = ff_buf_append(&b, text + i, run);
            i += run;
            continue;
        }
        const char *name = text + i + 2;
        size_t name_len = n - 4;
        if (name_len == 7 && memcmp(name, "FF_ARCH", 7) == 0) {
            rc = ff_buf_append_str(&b, arch);
        } else if (name_len == 6 && memcmp(name, "FF_APP", 6) == 0 && app != NULL &&
                   app[0] != '\0') {
            rc = ff_buf_append_str(&b, app);
        } else if (name_len == 6 && memcmp(name, "FF_APP", 6) == 0) {
            ff_buf_release(&b);
            return RECIPE_ERR(err, FF_EINVAL,
                              "Dockerfile.template:%u: %%%%FF_APP%%%% used but no app name "
                              "given, expected the build's app name",
                              line);
        } else {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(name, name_len, q);
            ff_buf_release(&b);
            return RECIPE_ERR(err, FF_EINVAL,
                              "Dockerfile.template:%u: unknown placeholder %%%%%s%%%%, expected "
                              "%%%%FF_ARCH%%%% or %%%%FF_APP%%%%",
                              line, q);
        }
        i += n;
    }
    if (rc != 0) {
        ff_buf_release(&b);
        if (rc == FF_ETOOBIG)
            return RECIPE_ERR(err, rc, "Dockerfile.template: result larger than %zu bytes",
                              RECIPE_SIZE_MAX);
        return RECIPE_ERR(err, rc, "Dockerfile.template: out of memory");
    }
    size_t n = b.len;
    char *s = ff_buf_steal(&b);
    if (s == NULL)
        return RECIPE_ERR(err, FF_ENOMEM, "Dockerfile.template: out of memory");
    *out = s;
    *out_len = n;
    return 0;
}

/* ---- freeing ------------------------------------------------------------- */

static void instr_release(struct recipe_instr *in)
{
    free(in->text);
    recipe_strv_free(in->args, in->n_args);
    for (size_t i = 0; i < in->n_kvs; i++) {
        free(in->kvs[i].key);
        free(in->kvs[i].value);
    }
    free(in->kvs);
    free(in->from);
    free(in->chown);
    free(in->chmod);
    free(in->checksum);
    memset(in, 0, sizeof(*in));
}

static void from_release(struct recipe_from *f)
{
    free(f->text);
    free(f->image);
    free(f->platform);
    free(f->name);
    memset(f, 0, sizeof(*f));
}

void recipe_instr_free(struct recipe_instr *in)
{
    if (in == NULL)
        return;
    instr_release(in);
    free(in);
}

void recipe_from_free(struct recipe_from *from)
{
    if (from == NULL)
        return;
    from_release(from);
    free(from);
}

void recipe_free(struct recipe *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_args; i++)
        instr_release(&r->args[i]);
    free(r->args);
    for (size_t s = 0; s < r->n_stages; s++) {
        struct recipe_stage *st = &r->stages[s];
        from_release(&st->from);
        for (size_t i = 0; i < st->n_instrs; i++)
            instr_release(&st->instrs[i]);
        free(st->instrs);
    }
    free(r->stages);
    free(r->file);
    free(r);
}

int recipe_stage_find(const struct recipe *r, const char *name, size_t before)
{
    for (size_t i = 0; i < before && i < r->n_stages; i++) {
        const char *sn = r->stages[i].from.name;
        if (sn != NULL && strcasecmp(sn, name) == 0)
            return (int)i;
    }
    return -1;
}

/* ---- checks shared with expand.c ----------------------------------------- */

/* A word the parser can check as it is: nothing for expand.c to change. */
static bool is_literal(const char *s, char escape)
{
    for (; *s != '\0'; s++) {
        if (*s == '$' || *s == '\'' || *s == '"' || *s == escape)
            return false;
    }
    return true;
}

static bool user_spec_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > USER_SPEC_MAX)
        return false;
    const char *colon = strchr(s, ':');
    if (colon == s || (colon != NULL && (colon[1] == '\0' || strchr(colon + 1, ':') != NULL)))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return false;
    }
    return true;
}

/* Octal 0..07777 (Docker's --chmod); -1 when malformed. */
static int parse_mode(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 8)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            return -1;
        v = v * 8 + (s[i] - '0');
    }
    return v <= 07777 ? v : -1;
}

static bool sha256_digest_ok(const char *s)
{
    if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
        return false;
    for (size_t i = 7; i < 7 + 64; i++) {
        if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    }
    return true;
}

static bool is_url(const char *s)
{
    return ff_str_has_prefix(s, "http://") || ff_str_has_prefix(s, "https://");
}

/* Parses "N", "N/proto", "N-M" or "N-M/proto" (N, M in 1..65535, proto tcp,
 * udp or sctp in any case). Returns false when malformed. */
static bool parse_port(const char *s, unsigned *lo, unsigned *hi, const char **proto)
{
    const char *slash = strchr(s, '/');
    size_t num_len = slash != NULL ? (size_t)(slash - s) : strlen(s);
    *proto = "tcp";
    if (slash != NULL) {
        static const char *const protos[] = {"tcp", "udp", "sctp"};
        *proto = NULL;
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(slash + 1, protos[i]) == 0)
                *proto = protos[i];
        }
        if (*proto == NULL)
            return false;
    }
    unsigned v[2] = {0, 0};
    size_t k = 0, digits = 0;
    for (size_t i = 0; i < num_len; i++) {
        if (s[i] == '-' && k == 0 && digits > 0) {
            k = 1;
            digits = 0;
            continue;
        }
        if (!is_digit(s[i]) || ++digits > 5)
            return false;
        v[k] = v[k] * 10 + (unsigned)(s[i] - '0');
    }
    if (digits == 0)
        return false;
    *lo = v[0];
    *hi = k == 1 ? v[1] : v[0];
    return *lo >= 1 && *hi <= 65535 && *lo <= *hi;
}

static int check_expose(const struct recipe *r, struct recipe_instr *in, bool expanded,
                        struct ff_err *err)
{
    struct recipe_strv ports = {0};
    for (size_t i = 0; i < in->n_args; i++) {
        const char *w = in->args[i];
        if (!expanded && !is_literal(w, r->escape))
            continue;
        unsigned lo, hi;
        const char *proto;
        if (!parse_port(w, &lo, &hi, &proto)) {
            char q[FF_STR_QUOTE_SIZE];
            quote(w, q);
            recipe_strv_release(&ports);
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, "EXPOSE",
                                 "bad port \"%s\", expected a port like 80, 80/tcp, 53/udp "
                                 "or 8000-8010 (1 to 65535; tcp, udp or sctp)",
                                 q);
        }
        if (!expanded)
            continue;
        if (ports.n + (hi - lo) >= RECIPE_EXPOSE_MAX) {
            recipe_strv_release(&ports);
            return RECIPE_ERR_AT(err, FF_ETOOBIG, r->file, in->line, "EXPOSE",
                                 "more than %d ports, expected at most %d", RECIPE_EXPOSE_MAX,
                                 RECIPE_EXPOSE_MAX);
        }
        for (unsigned p = lo; p <= hi; p++) {
            if (recipe_strv_take(&ports, ff_asprintf("%u/%s", p, proto)) != 0) {
                recipe_strv_release(&ports);
                return RECIPE_ERR(err, FF_ENOMEM, "EXPOSE: out of memory");
            }
        }
    }
    if (expanded) {
        recipe_strv_free(in->args, in->n_args);
        in->args = ports.v;
        in->n_args = ports.n;
    }
    return 0;
}

/* --from=value: an earlier stage by index or name, else an image. */
static int check_copy_from(const struct recipe *r, size_t stage, struct recipe_instr *in,
                           struct ff_err *err)
{
    const char *v = in->from;
    char q[FF_STR_QUOTE_SIZE];
    quote(v, q);
    in->from_stage = -1;
    in->from_image = false;
    bool numeric = *v != '\0';
    for (const char *p = v; *p != '\0'; p++)
        numeric = numeric && is_digit(*p);
    if (numeric) {
        int64_t idx = 0;
        if (ff_parse_i64(v, 0, INT32_MAX, &idx) != 0 || (uint64_t)idx >= stage)
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, "COPY",
                                 "--from=%s is not the index of an earlier stage (this is stage "
                                 "%zu), expected an earlier stage's name or index, or an image",
                                 q, stage);
        in->from_stage = (int)idx;
        return 0;
    }
    int idx = recipe_stage_find(r, v, r->n_stages);
    if (idx >= 0 && (size_t)idx >= stage)
        return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, "COPY",
                             "--from=%s names %s stage (line %u), expected an earlier stage's "
                             "name or index, or an image",
                             q, (size_t)idx == stage ? "this" : "a later",
                             r->stages[idx].from.line);
    if (idx >= 0)
        in->from_stage = idx;
    else
        in->from_image = true;
    return 0;
}

static int check_sources(const struct recipe *r, struct recipe_instr *in, bool expanded,
                         struct ff_err *err)
{
    const char *name = recipe_kind_name(in->kind);
    size_t n_src = in->n_args - 1;
    char q[FF_STR_QUOTE_SIZE];
    if (expanded && in->args[n_src][0] == '\0')
        return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                             "destination is empty, expected a path");
    for (size_t i = 0; i < n_src; i++) {
        const char *src = in->args[i];
        if (expanded && src[0] == '\0')
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "source %zu is empty, expected a path", i + 1);
        if (!expanded && !is_literal(src, r->escape))
            continue;
        quote(src, q);
        if (is_url(src) && in->kind == RECIPE_COPY)
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "source \"%s\" is a URL, expected a path in the build context "
                                 "(ADD --checksum=sha256:<digest> fetches URLs)",
                                 q);
        if (is_url(src) && in->checksum == NULL)
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "remote source \"%s\" has no checksum, expected "
                                 "ADD --checksum=sha256:<64 hex digits> <url> <dest>",
                                 q);
        if (!is_url(src) && in->checksum != NULL)
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "--checksum given for local source \"%s\", expected an http:// "
                                 "or https:// URL",
                                 q);
    }
    if (in->checksum != NULL && n_src != 1)
        return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                             "--checksum with %zu sources, expected one URL", n_src);
    return 0;
}

static int check_copy(const struct recipe *r, size_t stage, struct recipe_instr *in,
                      bool expanded, struct ff_err *err)
{
    const char *name = recipe_kind_name(in->kind);
    char q[FF_STR_QUOTE_SIZE];
    if (in->chown != NULL && (expanded || is_literal(in->chown, r->escape)) &&
        !user_spec_ok(in->chown)) {
        quote(in->chown, q);
        return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                             "bad --chown value \"%s\", expected --chown=<user>[:<group>]", q);
    }
    if (in->chmod != NULL && (expanded || is_literal(in->chmod, r->escape))) {
        in->chmod_mode = parse_mode(in->chmod);
        if (in->chmod_mode < 0) {
            quote(in->chmod, q);
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "bad --chmod value \"%s\", expected an octal mode like 0755 "
                                 "(at most 7777)",
                                 q);
        }
    }
    if (in->checksum != NULL && (expanded || is_literal(in->checksum, r->escape)) &&
        !sha256_digest_ok(in->checksum)) {
        quote(in->checksum, q);
        return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                             "bad --checksum value \"%s\", expected sha256:<64 lowercase hex "
                             "digits>",
                             q);
    }
    if (in->from != NULL && (expanded || is_literal(in->from, r->escape))) {
        int rc = check_copy_from(r, stage, in, err);
        if (rc != 0)
            return rc;
    }
    return check_sources(r, in, expanded, err);
}

int recipe_instr_check(const struct recipe *r, size_t stage, struct recipe_instr *in,
                       bool expanded, struct ff_err *err)
{
    const char *name = recipe_kind_name(in->kind);
    char q[FF_STR_QUOTE_SIZE];
    switch (in->kind) {
    case RECIPE_USER:
        if ((expanded || is_literal(in->args[0], r->escape)) && !user_spec_ok(in->args[0])) {
            quote(in->args[0], q);
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "bad user \"%s\", expected USER <user>[:<group>]", q);
        }
        return 0;
    case RECIPE_WORKDIR:
        if (expanded && in->args[0][0] == '\0')
            return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                 "path is empty after substitution, expected a path");
        return 0;
    case RECIPE_ENV:
    case RECIPE_LABEL:
        for (size_t i = 0; expanded && i < in->n_kvs; i++) {
            if (in->kvs[i].key[0] == '\0')
                return RECIPE_ERR_AT(err, FF_EINVAL, r->file, in->line, name,
                                     "name %zu is empty after substitution, expected a name",
                                     i + 1);
        }
        return 0;
    case RECIPE_EXPOSE:
        return check_expose(r, in, expanded, err);
    case RECIPE_COPY:
    case RECIPE_ADD:
        return check_copy(r, stage, in, expanded, err);
    default:
        return 0;
    }
}

/* ---- the parser ----------------------------------------------------------- */

struct reader {
    const char *p;
    const char *end;
    unsigned line; /* number of the line last returned */
};

struct parser {
    struct recipe *r;
    struct reader rd;
    struct ff_err *err;
    bool directives_done;
    bool seen_escape, seen_syntax, seen_check;
    size_t n_instrs; /* all instructions so far, FROM included */
    size_t args_cap, stages_cap, instrs_cap;
    struct ff_buf line; /* the instruction being joined */
};

/* One flag of an instruction: --name or --name=value. */
struct flag {
    char *name;
    char *value; /* NULL for --name */
};

struct flags {
    struct flag *v;
    size_t n;
    size_t cap;
};

static void flags_release(struct flags *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].name);
        free(f->v[i].value);
    }
    free(f->v);
    memset(f, 0, sizeof(*f));
}

/* Returns the next line without its end ("\n" and trailing "\r"). */
static bool reader_next(struct reader *rd, const char **s, size_t *n)
{
    if (rd->p >= rd->end)
        return false;
    const char *nl = memchr(rd->p, '\n', (size_t)(rd->end - rd->p));
    const char *e = nl != NULL ? nl : rd->end;
    *s = rd->p;
    *n = (size_t)(e - rd->p);
    while (*n > 0 && ((*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n'))
        (*n)--;
    rd->p = nl != NULL ? nl + 1 : rd->end;
    rd->line++;
    return true;
}

static int check_physical_line(struct parser *ps, const char *s, size_t n)
{
    if (n > RECIPE_LINE_MAX)
        return RECIPE_ERR_AT(ps->err, FF_ETOOBIG, ps->r->file, ps->rd.line, NULL,
                             "line of %zu bytes, expected at most %zu", n, RECIPE_LINE_MAX);
    if (memchr(s, '\0', n) != NULL)
        return RECIPE_ERR_AT(ps->err, FF_EINVAL, ps->r->file, ps->rd.line, NULL,
                             "NUL byte in line, expected text");
    return 0;
}

static void ltrim(const char **s, size_t *n)
{
    while (*n > 0 && is_blank(**s)) {
        (*s)++;
        (*n)--;
    }
}

static void rtrim(const char *s, size_t *n)
{
    while (*n > 0 && is_blank(s[*n - 1]))
        (*n)--;
}

static bool is_comment(const char *s, size_t n)
{
    ltrim(&s, &n);
    return n > 0 && s[0] == '#';
}

/* Strips a line-continuation escape (with blanks after it) from the end of
 * s. Returns true when the instruction ends on this line. */
static bool trim_continuation(const char *s, size_t *n, char escape)
{
    size_t m = *n;
    while (m > 0 && (s[m - 1] == ' ' || s[m - 1] == '\t'))
        m--;
    if (m == 0 || s[m - 1] != escape || (m >= 2 && s[m - 2] == escape))
        return true;
    *n = m - 1;
    return false;
}

/* One parser directive line (s left-trimmed): # name = value. */
static int directive(struct parser *ps, const char *s, size_t n)
{
    if (ps->directives_done)
        return 0;
    size_t i = 1;
    if (n == 0 || s[0] != '#') {
        ps->directives_done = true;
        return 0;
    }
    while (i < n && is_blank(s[i]))
        i++;
    size_t name = i;
    if (i < n && is_alpha(s[i])) {
        while (i < n && (is_alpha(s[i]) || is_digit(s[i])))
            i++;
    }
    size_t name_len = i - name;
    while (i < n && is_blank(s[i]))
        i++;
    if (name_len == 0 || i >= n || s[i] != '=') {
        ps->directives_done = true;
        return 0;
    }
    i++;
    while (i < n && is_blank(s[i]))
        i++;
    size_t vlen = n - i;
    rtrim(s + i, &vlen);
    bool *seen = NULL;
    if (name_len == 6 && strncasecmp(s + name, "escape", 6) == 0)
        seen = &ps->seen_escape;
    else if (name_len == 6 && strncasecmp(s + name, "syntax", 6) == 0)
        seen = &ps->seen_syntax;
    else if (name_len == 5 && strncasecmp(s + name, "check", 5) == 0)
        seen = &ps->seen_check;
    if (vlen == 0 || seen == NULL) {
        ps->directives_done = true;
        return 0;
    }
    char qname[FF_STR_QUOTE_SIZE];
    ff_str_quote(s + name, name_len, qname);
    if (*seen)
        return RECIPE_ERR_AT(ps->err, FF_EINVAL, ps->r->file, ps->rd.line, NULL,
                             "parser directive \"%s\" given twice, expected it at most once",
                             qname);
    *seen = true;
    if (seen != &ps->seen_escape)
        return 0;
    if (vlen != 1 || (s[i] != '\\' && s[i] != '`')) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(s + i, vlen, q);
        return RECIPE_ERR_AT(ps->err, FF_EINVAL, ps->r->file, ps->rd.line, NULL,
                             "parser directive \"escape\" has value \"%s\", expected \\ or `",
                             q);
    }
    ps->r->escape = s[i];
    return 0;
}

/* BuildKit's parseWords: splits at blanks outside quotes, keeping quotes
 * and escapes in the words (expand.c removes them later). */
static int split_quoted(const char *s, size_t n, char escape, struct recipe_strv *out)
{
    enum { SPACES, WORD, QUOTE } phase = SPACES;
    char q = 0;
    bool blank_ok = false;
    struct ff_buf w;
    ff_buf_init(&w, RECIPE_LINE_MAX);
    int rc = 0;
    for (size_t pos = 0; pos <= n && rc == 0; pos++) {
        char ch = '\0';
        if (pos < n)
            ch = s[pos];
        if (phase == SPACES) {
            if (pos == n)
                break;
            if (is_blank(ch))
                continue;
            phase = WORD;
        }
        if (pos == n) {
            if (blank_ok || w.len > 0)
                rc = strv_add(out, w.len > 0 ? w.data : "", w.len);
            break;
        }
        if (phase == WORD && is_blank(ch)) {
            phase = SPACES;
            if (blank_ok || w.len > 0)
                rc = strv_add(out, w.len > 0 ? w.data : "", w.len);
            ff_buf_reset(&w);
            blank_ok = false;
            continue;
        }
        if (phase == WORD && (ch == '\'' || ch == '"')) {
            q = ch;
            blank_ok = true;
            phase = QUOTE;
        } else if (phase == QUOTE && ch == q) {
            phase = WORD;
        }
        bool escapes = ch == escape && (phase == WORD || q != '\'');
        if (escapes && pos + 1 == n) {
            phase = WORD;
            continue;
        }
        if (escapes) {
            rc = ff_buf_append(&w, &ch, 1);
            ch = s[++pos];
        }
        if (rc == 0)
            rc = ff_buf_append(&w, &ch, 1);
    }
    ff_buf_release(&w);
    return rc;
}

/* Words separated by runs of [ \t\v\f\r] (s is trimmed). */
static int split_blank(const char *s, size_t n, struct recipe_strv *out)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && !is_blank(s[j]))
            j++;
        int rc = strv_add(out, s + i, j - i);
        if (rc != 0)
            return rc;
        while (j < n && is_blank(s[j]))
            j++;
        i = j;
    }
    return 0;
}

static int flag_add(struct flags *f, const char *w, size_t n)
{
    struct flag *v = recipe_grow(f->v, &f->cap, f->n + 1, sizeof(struct flag));
    if (v == NULL)
        return FF_ENOMEM;
    f->v = v;
    const char *eq = memchr(w, '=', n);
    size_t name_len = eq != NULL ? (size_t)(eq - w) : n;
    struct flag fl = {ff_strndup(w + 2, name_len - 2), NULL};
    if (eq != NULL)
        fl.value = ff_strndup(eq + 1, n - name_len - 1);
    if (fl.name == NULL || (eq != NULL && fl.value == NULL)) {
        free(fl.name);
        free(fl.value);
        return FF_ENOMEM;
    }
    f->v[f->n++] = fl;
    return 0;
}

/* BuildKit's extractBuilderFlags: leading words that start with "--"
 * (quotes removed, backslash escapes the next byte whatever the escape
 * directive says), up to a word that does not or a lone "--". *rest is
 * left at the first argument. */
static int extract_flags(const char *s, size_t n, struct flags *out, size_t *rest)
{
    enum { SPACES, WORD, QUOTE } phase = SPACES;
    char q = 0;
    struct ff_buf w;
    ff_buf_init(&w, RECIPE_LINE_MAX);
    int rc = 0;
    *rest = n;
    for (size_t pos = 0; pos <= n && rc == 0; pos++) {
        char ch = '\0';
        if (pos < n)
            ch = s[pos];
        if (phase == SPACES) {
            if (pos == n)
                break;
            if (is_blank(ch))
                continue;
            if (ch != '-' || pos + 1 == n || s[pos + 1] != '-') {
                *rest = pos;
                break;
            }
            phase = WORD;
        }
        bool is_dashes = w.len == 2 && memcmp(w.data, "--", 2) == 0;
        if (pos == n) {
            if (!is_dashes && w.len > 0)
                rc = flag_add(out, w.data, w.len);
            break;
        }
        if (phase == WORD && is_blank(ch)) {
            if (is_dashes) {
                *rest = pos;
                break;
            }
            rc = flag_add(out, w.data, w.len);
            ff_buf_reset(&w);
            phase = SPACES;
            continue;
        }
        if (phase == WORD && (ch == '\'' || ch == '"')) {
            q = ch;
            phase = QUOTE;
            continue;
        }
        if (phase == QUOTE && ch == q) {
            phase = WORD;
            continue;
        }
        if (ch == '\\' && pos + 1 == n) {
            phase = WORD;
            continue;
        }
        if (ch == '\\')
            ch = s[++pos];
        rc = ff_buf_append(&w, &ch, 1);
    }
    ff_buf_release(&w);
    return rc;
}

/* What one instruction is being parsed into, and where. */
struct line_ctx {
    struct parser *ps;
    unsigned line;
    const char *name; /* upper-case keyword, for messages */
    const char *rest; /* arguments after the flags, trimmed */
    size_t rest_len;
    struct flags flags;
};

static int line_err(const struct line_ctx *lc, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int line_err(const struct line_ctx *lc, int code, const char *fmt, ...)
{
    char tail[FF_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tail, sizeof(tail), fmt, ap);
    va_end(ap);
    if (n < 0)
        tail[0] = '\0';
    return RECIPE_ERR_AT(lc->ps->err, code, lc->ps->r->file, lc->line, lc->name, "%s", tail);
}

static int oom(const struct line_ctx *lc)
{
    return line_err(lc, FF_ENOMEM, "out of memory");
}

/* Flags an instruction accepts. */
struct flag_spec {
    const char *name;
    bool is_bool;
};

static const struct flag_spec from_flags[] = {{"platform", false}, {NULL, false}};
static const struct flag_spec copy_flags[] = {
    {"from", false}, {"chown", false}, {"chmod", false}, {"link", true}, {NULL, false}};
static const struct flag_spec add_flags[] = {
    {"chown", false}, {"chmod", false}, {"checksum", false}, {"link", true}, {NULL, false}};
static const struct flag_spec no_flags[] = {{NULL, false}};

static const char *flags_expected(const struct flag_spec *spec)
{
    if (spec == copy_flags)
        return "--from, --chown, --chmod or --link";
    if (spec == add_flags)
        return "--chown, --chmod, --checksum or --link";
    if (spec == from_flags)
        return "--platform";
    return "no flags";
}

static int flags_check(const struct line_ctx *lc, const struct flag_spec *spec)
{
    for (size_t i = 0; i < lc->flags.n; i++) {
        const struct flag *f = &lc->flags.v[i];
        char qn[FF_STR_QUOTE_SIZE];
        quote(f->name, qn);
        const struct flag_spec *s = spec;
        while (s->name != NULL && strcmp(s->name, f->name) != 0)
            s++;
        if (s->name == NULL && spec == no_flags && strcmp(lc->name, "RUN") == 0 &&
            (strcmp(f->name, "mount") == 0 || strcmp(f->name, "network") == 0 ||
             strcmp(f->name, "security") == 0))
            return line_err(lc, FF_EINVAL, "flag --%s is not supported, expected RUN <command> "
                                           "without flags",
                            qn);
        if (s->name == NULL)
            return line_err(lc, FF_EINVAL, "unknown flag --%s, expected %s", qn,
                            flags_expected(spec));
        for (size_t j = 0; j < i; j++) {
            if (strcmp(lc->flags.v[j].name, f->name) == 0)
                return line_err(lc, FF_EINVAL, "flag --%s given twice, expected it once", qn);
        }
        if (s->is_bool && f->value != NULL && strcmp(f->value, "true") != 0 &&
            strcmp(f->value, "false") != 0)
            return line_err(lc, FF_EINVAL, "flag --%s has a bad value, expected --%s, "
                                           "--%s=true or --%s=false",
                            qn, qn, qn, qn);
        if (!s->is_bool && f->value == NULL)
            return line_err(lc, FF_EINVAL, "flag --%s needs a value, expected --%s=<value>", qn,
                            qn);
        if (!s->is_bool && f->value[0] == '\0')
            return line_err(lc, FF_EINVAL, "flag --%s has an empty value, expected --%s=<value>",
                            qn, qn);
    }
    return 0;
}

/* Moves the value of flag name (NULL when absent) out of the list. */
static char *flag_take(struct line_ctx *lc, const char *name)
{
    for (size_t i = 0; i < lc->flags.n; i++) {
        if (strcmp(lc->flags.v[i].name, name) == 0) {
            char *v = lc->flags.v[i].value;
            lc->flags.v[i].value = NULL;
            return v;
        }
    }
    return NULL;
}

static bool flag_bool(const struct line_ctx *lc, const char *name)
{
    for (size_t i = 0; i < lc->flags.n; i++) {
        const struct flag *f = &lc->flags.v[i];
        if (strcmp(f->name, name) == 0)
            return f->value == NULL || strcmp(f->value, "true") == 0;
    }
    return false;
}

/* Result of trying the rest of a line as a JSON array of strings. */
enum json_form { JSON_NOT, JSON_STRINGS };

/* BuildKit's parseJSON: the rest is an exec-form array when it parses as
 * JSON starting with '['; an array holding anything but strings, or text
 * after it, is an error; anything else is not JSON (shell form). */
static int parse_json(const struct line_ctx *lc, struct recipe_strv *out, enum json_form *form)
{
    *form = JSON_NOT;
    if (lc->rest_len == 0 || lc->rest[0] != '[')
        return 0;
    json_error_t jerr;
    json_t *a = json_loadb(lc->rest, lc->rest_len, JSON_DISABLE_EOF_CHECK, &jerr);
    if (a == NULL || !json_is_array(a)) {
        json_decref(a);
        return 0;
    }
    int rc = 0;
    size_t used = (size_t)jerr.position;
    size_t tail = used <= lc->rest_len ? lc->rest_len - used : 0;
    const char *after = lc->rest + lc->rest_len - tail;
    ltrim(&after, &tail);
    if (tail > 0) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(after, tail, q);
        rc = line_err(lc, FF_EINVAL, "text \"%s\" after the JSON array, expected nothing after "
                                     "the closing ]",
                      q);
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v)) {
            rc = line_err(lc, FF_EINVAL, "JSON array item %zu is %s, expected an array of "
                                         "strings like [\"executable\", \"arg\"]",
                          i + 1, ff_json_type_name(v));
            break;
        }
        if (strv_add(out, json_string_value(v), json_string_length(v)) != 0)
            rc = oom(lc);
    }
    json_decref(a);
    if (rc == 0)
        *form = JSON_STRINGS;
    return rc;
}

/* Heredocs (RUN <<EOF) need the lines that follow; BuildKit's test is a
 * word matching ^[0-9]*<<-?[^<]+$ in the shell form. */
static int refuse_heredoc(const struct line_ctx *lc)
{
    if (memmem(lc->rest, lc->rest_len, "<<", 2) == NULL)
        return 0;
    struct recipe_strv words = {0};
    if (split_quoted(lc->rest, lc->rest_len, lc->ps->r->escape, &words) != 0)
        return oom(lc);
    bool found = false;
    for (size_t i = 0; i < words.n && !found; i++) {
        const char *w = words.v[i];
        while (is_digit(*w))
            w++;
        if (strncmp(w, "<<", 2) != 0)
            continue;
        w += 2;
        if (*w == '-')
            w++;
        found = *w != '\0' && strchr(w, '<') == NULL;
    }
    recipe_strv_release(&words);
    if (found)
        return line_err(lc, FF_EINVAL, "heredocs (<<EOF) are not supported, expected the "
                                       "script on the line or in a file COPY'd into the image");
    return 0;
}

static int parse_command(const struct line_ctx *lc, struct recipe_instr *in)
{
    struct recipe_strv sv = {0};
    enum json_form form;
    int rc = parse_json(lc, &sv, &form);
    if (rc != 0) {
        recipe_strv_release(&sv);
        return rc;
    }
    if (form == JSON_STRINGS) {
        in->exec_form = true;
        in->args = sv.v;
        in->n_args = sv.n;
        if (in->kind == RECIPE_RUN && sv.n == 0)
            return line_err(lc, FF_EINVAL, "empty JSON array, expected at least the program "
                                           "to run");
        return 0;
    }
    if (lc->rest_len == 0)
        return line_err(lc, FF_EINVAL, "missing command, expected %s <command> or %s "
                                       "[\"executable\", \"arg\"...]",
                        lc->name, lc->name);
    if (in->kind == RECIPE_RUN) {
        rc = refuse_heredoc(lc);
        if (rc != 0)
            return rc;
    }
    if (strv_add(&sv, lc->rest, lc->rest_len) != 0)
        return oom(lc);
    in->args = sv.v;
    in->n_args = sv.n;
    return 0;
}

static int parse_copy(struct line_ctx *lc, struct recipe_instr *in)
{
    bool add = in->kind == RECIPE_ADD;
    int rc = flags_check(lc, add ? add_flags : copy_flags);
    if (rc != 0)
        return rc;
    in->from = flag_take(lc, "from");
    in->chown = flag_take(lc, "chown");
    in->chmod = flag_take(lc, "chmod");
    in->checksum = flag_take(lc, "checksum");
    in->link = flag_bool(lc, "link");
    struct recipe_strv sv = {0};
    enum json_form form;
    rc = parse_json(lc, &sv, &form);
    if (rc == 0 && form == JSON_NOT) {
        rc = refuse_heredoc(lc);
        if (rc == 0 && split_blank(lc->rest, lc->rest_len, &sv) != 0)
            rc = oom(lc);
    }
    in->exec_form = form == JSON_STRINGS;
    in->args = sv.v;
    in->n_args = sv.n;
    if (rc == 0 && sv.n < 2)
        rc = line_err(lc, FF_EINVAL, "%s, expected %s [flags] <source>... <destination>",
                      sv.n == 0 ? "missing source and destination" : "missing destination",
                      lc->name);
    return rc;
}

/* ARG names: what a $NAME reference can spell, plus the '-' and '.' some
 * recipes use. */
static bool arg_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_ident(s[i]) && s[i] != '-' && s[i] != '.')
            return false;
    }
    return true;
}

static int kv_take(struct recipe_instr *in, size_t *cap, const char *k, size_t kn,
                   const char *v, size_t vn, bool has_value)
{
    struct recipe_kv *kvs = recipe_grow(in->kvs, cap, in->n_kvs + 1, sizeof(struct recipe_kv));
    if (kvs == NULL)
        return FF_ENOMEM;
    in->kvs = kvs;
    struct recipe_kv kv = {ff_strndup(k, kn), has_value ? ff_strndup(v, vn) : NULL};
    if (kv.key == NULL || (has_value && kv.value == NULL)) {
        free(kv.key);
        free(kv.value);
        return FF_ENOMEM;
    }
    in->kvs[in->n_kvs++] = kv;
    return 0;
}

static int parse_arg(const struct line_ctx *lc, struct recipe_instr *in)
{
    struct recipe_strv words = {0};
    if (split_quoted(lc->rest, lc->rest_len, lc->ps->r->escape, &words) != 0)
        return oom(lc);
    int rc = 0;
    size_t cap = 0;
    if (words.n == 0)
        rc = line_err(lc, FF_EINVAL, "missing name, expected ARG <name>[=<default>]");
    for (size_t i = 0; rc == 0 && i < words.n; i++) {
        const char *w = words.v[i];
        const char *eq = strchr(w, '=');
        size_t kn = eq != NULL ? (size_t)(eq - w) : strlen(w);
        if (!arg_name_ok(w, kn)) {
            char q[FF_STR_QUOTE_SIZE];
            ff_str_quote(w, kn, q);
            rc = line_err(lc, FF_EINVAL, "bad name \"%s\", expected ARG <name>[=<default>] with "
                                         "a name of letters, digits, '_', '-' or '.'",
                          q);
        } else if (kv_take(in, &cap, w, kn, eq != NULL ? eq + 1 : NULL,
                           eq != NULL ? strlen(eq + 1) : 0, eq != NULL) != 0) {
            rc = oom(lc);
        }
    }
    recipe_strv_release(&words);
    return rc;
}

/* ENV and LABEL in the legacy form: NAME value (the rest of the line). */
static int parse_legacy_pair(const struct line_ctx *lc, struct recipe_instr *in)
{
    size_t k = 0;
    while (k < lc->rest_len && !is_blank(lc->rest[k]))
        k++;
    size_t v = k;
    while (v < lc->rest_len && is_blank(lc->rest[v]))
        v++;
    if (v == lc->rest_len) {
        char q[FF_STR_QUOTE_SIZE];
        ff_str_quote(lc->rest, k, q);
        return line_err(lc, FF_EINVAL, "no value for \"%s\", expected %s <name>=<value> or "
                                       "%s <name> <value>",
                        q, lc->name, lc->name);
    }
    size_t cap = 0;
    if (kv_take(in, &cap, lc->rest, k, lc->rest + v, lc->rest_len - v, true) != 0)
        return oom(lc);
    return 0;
}

/* ENV and LABEL: NAME=value words, or the legacy NAME value. */
static int parse_name_val(const struct line_ctx *lc, struct recipe_instr *in)
{
    struct recipe_strv words = {0};
    if (split_quoted(lc->rest, lc->rest_len, lc->ps->r->escape, &words) != 0)
        return oom(lc);
    int rc = 0;
    bool legacy = words.n > 0 && strchr(words.v[0], '=') == NULL;
    if (words.n == 0)
        rc = line_err(lc, FF_EINVAL, "missing arguments, expected %s <name>=<value>...",
                      lc->name);
    else if (legacy)
        rc = parse_legacy_pair(lc, in);
    for (size_t i = 0; rc == 0 && !legacy && i < words.n; i++) {
        const char *w = words.v[i];
        char q[FF_STR_QUOTE_SIZE];
        quote(w, q);
        if (strchr(w, '=') == NULL)
            rc = line_err(lc, FF_EINVAL, "\"%s\" is not <name>=<value>, expected %s "
                                         "<name>=<value>...",
                          q, lc->name);
        else if (w[0] == '=')
            rc = line_err(lc, FF_EINVAL, "empty name in \"%s\", expected %s <name>=<value>...", q,
                          lc->name);
    }
    size_t cap = 0;
    for (size_t i = 0; rc == 0 && !legacy && i < words.n; i++) {
        const char *w = words.v[i];
        const char *eq = strchr(w, '=');
        if (kv_take(in, &cap, w, (size_t)(eq - w), eq + 1, strlen(eq + 1), true) != 0)
            rc = oom(lc);
    }
    recipe_strv_release(&words);
    return rc;
}

static int parse_rest_string(const struct line_ctx *lc, struct recipe_instr *in,
                             const char *missing)
{
    if (lc->rest_len == 0)
        return line_err(lc, FF_EINVAL, "%s", missing);
    struct recipe_strv sv = {0};
    if (strv_add(&sv, lc->rest, lc->rest_len) != 0)
        return oom(lc);
    in->args = sv.v;
    in->n_args = sv.n;
    return 0;
}

static int parse_expose(const struct line_ctx *lc, struct recipe_instr *in)
{
    if (lc->rest_len == 0)
        return line_err(lc, FF_EINVAL, "missing port, expected EXPOSE <port>[/<protocol>]...");
    struct recipe_strv sv = {0};
    int rc = split_blank(lc->rest, lc->rest_len, &sv);
    in->args = sv.v;
    in->n_args = sv.n;
    return rc != 0 ? oom(lc) : 0;
}

static int parse_args(struct line_ctx *lc, struct recipe_instr *in)
{
    if (in->kind == RECIPE_COPY || in->kind == RECIPE_ADD)
        return parse_copy(lc, in);
    int rc = flags_check(lc, no_flags);
    if (rc != 0)
        return rc;
    switch (in->kind) {
    case RECIPE_ARG:
        return parse_arg(lc, in);
    case RECIPE_ENV:
    case RECIPE_LABEL:
        return parse_name_val(lc, in);
    case RECIPE_RUN:
    case RECIPE_CMD:
    case RECIPE_ENTRYPOINT:
        return parse_command(lc, in);
    case RECIPE_WORKDIR:
        return parse_rest_string(lc, in, "missing path, expected WORKDIR <path>");
    case RECIPE_USER:
        return parse_rest_string(lc, in, "missing user, expected USER <user>[:<group>]");
    default:
        return parse_expose(lc, in);
    }
}

/* FROM [--platform=<p>] <image> [AS <name>] */
static int parse_from(struct line_ctx *lc, struct recipe_from *f)
{
    static const char usage[] = "expected FROM [--platform=<platform>] <image> [AS <name>]";
    struct parser *ps = lc->ps;
    int rc = flags_check(lc, from_flags);
    if (rc != 0)
        return rc;
    f->platform = flag_take(lc, "platform");
    f->base_stage = -1;
    struct recipe_strv w = {0};
    if (split_blank(lc->rest, lc->rest_len, &w) != 0)
        return oom(lc);
    if (w.n == 0)
        rc = line_err(lc, FF_EINVAL, "missing image, %s", usage);
    else if (w.n == 2 || w.n > 3 || (w.n == 3 && strcasecmp(w.v[1], "as") != 0))
        rc = line_err(lc, FF_EINVAL, "%zu arguments, %s", w.n, usage);
    if (rc == 0 && w.n == 3) {
        char *name = w.v[2];
        bool ok = is_alpha(name[0]) && strlen(name) <= STAGE_NAME_MAX;
        for (char *p = name; *p != '\0'; p++) {
            *p = lower(*p);
            ok = ok && (is_alpha(*p) || is_digit(*p) || *p == '-' || *p == '_' || *p == '.');
        }
        char q[FF_STR_QUOTE_SIZE];
        quote(name, q);
        int dup = recipe_stage_find(ps->r, name, ps->r->n_stages);
        if (!ok)
            rc = line_err(lc, FF_EINVAL, "bad stage name \"%s\", expected a letter followed by "
                                         "letters, digits, '-', '_' or '.'",
                          q);
        else if (dup >= 0)
            rc = line_err(lc, FF_EINVAL, "stage name \"%s\" already used on line %u, expected "
                                         "a new name",
                          q, ps->r->stages[dup].from.line);
        f->name = name;
        w.v[2] = NULL;
    }
    if (rc == 0 && w.n > 0) {
        f->image = w.v[0];
        w.v[0] = NULL;
        f->scratch = strcmp(f->image, "scratch") == 0;
        if (strchr(f->image, '$') == NULL)
            f->base_stage = recipe_stage_find(ps->r, f->image, ps->r->n_stages);
    }
    recipe_strv_release(&w);
    return rc;
}

static int new_stage(struct line_ctx *lc, char *text)
{
    struct parser *ps = lc->ps;
    struct recipe *r = ps->r;
    if (r->n_stages >= RECIPE_STAGES_MAX) {
        free(text);
        return line_err(lc, FF_ETOOBIG, "more than %d stages, expected at most %d",
                        RECIPE_STAGES_MAX, RECIPE_STAGES_MAX);
    }
    struct recipe_from f = {.line = lc->line, .text = text};
    int rc = parse_from(lc, &f);
    struct recipe_stage *stages = NULL;
    if (rc == 0) {
        stages = recipe_grow(r->stages, &ps->stages_cap, r->n_stages + 1, sizeof(struct recipe_stage));
        if (stages == NULL)
            rc = oom(lc);
    }
    if (rc != 0 || stages == NULL) {
        from_release(&f);
        return rc;
    }
    r->stages = stages;
    struct recipe_stage *st = &stages[r->n_stages++];
    memset(st, 0, sizeof(*st));
    st->from = f;
    ps->instrs_cap = 0;
    return 0;
}

static int new_instr(struct line_ctx *lc, enum recipe_kind kind, char *text)
{
    struct parser *ps = lc->ps;
    struct recipe *r = ps->r;
    struct recipe_instr in = {
        .kind = kind, .line = lc->line, .text = text, .from_stage = -1, .chmod_mode = -1};
    bool global = r->n_stages == 0;
    size_t stage = global ? 0 : r->n_stages - 1;
    int rc = parse_args(lc, &in);
    if (rc == 0)
        rc = recipe_instr_check(r, stage, &in, false, ps->err);
    if (rc == 0) {
        struct recipe_instr **arr = global ? &r->args : &r->stages[stage].instrs;
        size_t *n = global ? &r->n_args : &r->stages[stage].n_instrs;
        struct recipe_instr *v =
            recipe_grow(*arr, global ? &ps->args_cap : &ps->instrs_cap, *n + 1, sizeof(*v));
        if (v == NULL) {
            rc = oom(lc);
        } else {
            *arr = v;
            v[(*n)++] = in;
        }
    }
    if (rc != 0)
        instr_release(&in);
    return rc;
}

static int lookup_keyword(const struct line_ctx *lc, enum recipe_kind *kind, bool *is_from)
{
    *is_from = strcmp(lc->name, "FROM") == 0;
    if (*is_from)
        return 0;
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++) {
        if (strcmp(keywords[i].name, lc->name) == 0) {
            *kind = keywords[i].kind;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        if (strcmp(unsupported[i].name, lc->name) != 0)
            continue;
        if (unsupported[i].instead != NULL)
            return line_err(lc, FF_EINVAL, "not supported, expected %s", unsupported[i].instead);
        return line_err(lc, FF_EINVAL, "not supported, expected one of %s", supported_list);
    }
    char q[FF_STR_QUOTE_SIZE];
    quote(lc->name, q);
    return RECIPE_ERR_AT(lc->ps->err, FF_EINVAL, lc->ps->r->file, lc->line, q,
                         "unknown instruction, expected one of %s", supported_list);
}

/* One joined instruction line. */
static int parse_line(struct parser *ps, const char *s, size_t n, unsigned line)
{
    ltrim(&s, &n);
    rtrim(s, &n);
    size_t kw = 0;
    while (kw < n && s[kw] != ' ' && s[kw] != '\t' && s[kw] != '\v' && s[kw] != '\f' &&
           s[kw] != '\r')
        kw++;
    size_t args = kw;
    while (args < n && is_blank(s[args]))
        args++;
    char name[KEYWORD_MAX + 1];
    size_t name_len = kw <= KEYWORD_MAX ? kw : KEYWORD_MAX;
    for (size_t i = 0; i < name_len; i++)
        name[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 'A' : s[i]);
    name[name_len] = '\0';
    struct line_ctx lc = {.ps = ps, .line = line, .name = name};
    if (++ps->n_instrs > RECIPE_INSTRS_MAX)
        return line_err(&lc, FF_ETOOBIG, "more than %d instructions, expected at most %d",
                        RECIPE_INSTRS_MAX, RECIPE_INSTRS_MAX);
    enum recipe_kind kind = RECIPE_ARG;
    bool is_from = false;
    int rc = lookup_keyword(&lc, &kind, &is_from);
    if (rc != 0)
        return rc;
    if (!is_from && kind != RECIPE_ARG && ps->r->n_stages == 0)
        return line_err(&lc, FF_EINVAL, "instruction before the first FROM, expected FROM "
                                        "(only ARG may come before it)");
    size_t rest = 0;
    if (extract_flags(s + args, n - args, &lc.flags, &rest) != 0) {
        flags_release(&lc.flags);
        return oom(&lc);
    }
    lc.rest = s + args + rest;
    lc.rest_len = n - args - rest;
    ltrim(&lc.rest, &lc.rest_len);
    char *text = args < n ? ff_asprintf("%s %.*s", name, (int)(n - args), s + args)
                          : ff_asprintf("%s", name);
    if (text == NULL)
        rc = oom(&lc);
    else if (is_from)
        rc = new_stage(&lc, text);
    else
        rc = new_instr(&lc, kind, text);
    flags_release(&lc.flags);
    return rc;
}

/* Joins the continuation lines of the instruction that starts with s. */
static int join_lines(struct parser *ps, const char *s, size_t n)
{
    ff_buf_reset(&ps->line);
    bool end = trim_continuation(s, &n, ps->r->escape);
    int rc = ff_buf_append(&ps->line, s, n);
    const char *c;
    size_t cn;
    while (rc == 0 && !end && reader_next(&ps->rd, &c, &cn)) {
        rc = check_physical_line(ps, c, cn);
        if (rc != 0)
            return rc;
        const char *t = c;
        size_t tn = cn;
        ltrim(&t, &tn);
        if (tn == 0 || t[0] == '#')
            continue;
        end = trim_continuation(c, &cn, ps->r->escape);
        rc = ff_buf_append(&ps->line, c, cn);
    }
    if (rc == FF_ETOOBIG)
        return RECIPE_ERR_AT(ps->err, rc, ps->r->file, ps->rd.line, NULL,
                             "instruction longer than %zu bytes, expected at most %zu",
                             RECIPE_LINE_MAX, RECIPE_LINE_MAX);
    if (rc != 0)
        return RECIPE_ERR(ps->err, rc, "%s: out of memory", ps->r->file);
    return 0;
}

/* COPY --from and FROM may name a stage only the rest of the file shows
 * to be a later one. */
static int check_forward_references(struct parser *ps)
{
    const struct recipe *r = ps->r;
    for (size_t s = 0; s < r->n_stages; s++) {
        const struct recipe_from *f = &r->stages[s].from;
        int idx = f->image != NULL && f->base_stage < 0 && strchr(f->image, '$') == NULL
                      ? recipe_stage_find(r, f->image, r->n_stages)
                      : -1;
        if (idx >= 0 && (size_t)idx > s) {
            char q[FF_STR_QUOTE_SIZE];
            quote(f->image, q);
            return RECIPE_ERR_AT(ps->err, FF_EINVAL, r->file, f->line, "FROM",
                                 "\"%s\" names a later stage (line %u), expected an image or "
                                 "an earlier stage",
                                 q, r->stages[idx].from.line);
        }
        for (size_t i = 0; i < r->stages[s].n_instrs; i++) {
            struct recipe_instr *in = &r->stages[s].instrs[i];
            if (in->from_image) {
                int rc = recipe_instr_check(r, s, in, false, ps->err);
                if (rc != 0)
                    return rc;
            }
        }
    }
    return 0;
}

static int parse_all(struct parser *ps)
{
    const char *s;
    size_t n;
    while (reader_next(&ps->rd, &s, &n)) {
        int rc = check_physical_line(ps, s, n);
        if (rc != 0)
            return rc;
        if (ps->rd.line == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
            s += 3;
            n -= 3;
        }
        ltrim(&s, &n);
        rc = directive(ps, s, n);
        if (rc != 0)
            return rc;
        if (is_comment(s, n))
            n = 0;
        unsigned start = ps->rd.line;
        size_t probe = n;
        if (trim_continuation(s, &probe, ps->r->escape) && probe == 0)
            continue;
        rc = join_lines(ps, s, n);
        if (rc == 0)
            rc = parse_line(ps, ps->line.data, ps->line.len, start);
        if (rc != 0)
            return rc;
    }
    if (ps->r->n_stages == 0) {
        char qfile[FF_STR_QUOTE_SIZE];
        quote(ps->r->file, qfile);
        return RECIPE_ERR(ps->err, FF_EINVAL, "%s: no FROM instruction, expected at least one "
                                              "FROM <image>",
                          qfile);
    }
    return check_forward_references(ps);
}

int recipe_parse(const char *text, size_t len, const char *file_name, struct recipe **out,
                 struct ff_err *err)
{
    const char *fname = file_name != NULL ? file_name : "Dockerfile";
    if (len > RECIPE_SIZE_MAX) {
        char q[FF_STR_QUOTE_SIZE];
        quote(fname, q);
        return RECIPE_ERR(err, FF_ETOOBIG, "%s: %zu bytes, expected at most %zu", q, len,
                          RECIPE_SIZE_MAX);
    }
    struct recipe *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->file = strdup(fname)) == NULL) {
        free(r);
        return RECIPE_ERR(err, FF_ENOMEM, "recipe: out of memory");
    }
    r->escape = '\\';
    struct parser ps = {.r = r, .err = err, .rd = {text, text + len, 0}};
    ff_buf_init(&ps.line, RECIPE_LINE_MAX);
    int rc = parse_all(&ps);
    ff_buf_release(&ps.line);
    if (rc != 0) {
        recipe_free(r);
        return rc;
    }
    *out = r;
    return 0;
}
