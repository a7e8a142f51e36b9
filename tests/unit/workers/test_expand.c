#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends s to the string in dst (size bytes), failing the test when it
 * would not fit. */
static void cat(char *dst, size_t size, const char *s)
{
    size_t have = strlen(dst), add = strlen(s);
    assert_true(have + add < size);
    memcpy(dst + have, s, add + 1);
}

/* ---- the lexer over a fixed table of variables -------------------------- */

static const char *const test_vars[][2] = {
    {"A", "a"},          {"B", "b"},        {"EMPTY", ""},          {"SP", "x  y"},
    {"PORTS", "443 8080"}, {"Q", "'q\"$A"}, {"HOME", "/home/app"}, {"_u1", "u"},
};

static bool table_lookup(void *ctx, const char *name, size_t len, const char **value)
{
    (void)ctx;
    for (size_t i = 0; i < sizeof(test_vars) / sizeof(test_vars[0]); i++) {
        if (strlen(test_vars[i][0]) == len && memcmp(test_vars[i][0], name, len) == 0) {
            *value = test_vars[i][1];
            return true;
        }
    }
    return false;
}

static const struct {
    const char *in;
    const char *out;
} word_cases[] = {
    {"plain", "plain"},
    {"$A", "a"},
    {"${A}", "a"},
    {"$A$B", "ab"},
    {"${A}b", "ab"},
    {"$Ab", ""}, /* the name is "Ab" */
    {"x$_u1.y", "xu.y"},
    {"$UNSET", ""},
    {"pre${UNSET}post", "prepost"},
    {"$", "$"},
    {"a$", "a$"},
    {"$/x", "$/x"},
    {"$1x", "x"},
    {"$@", ""},
    {"${UNSET:-def}", "def"},
    {"${EMPTY:-def}", "def"},
    {"${EMPTY-def}", ""},
    {"${UNSET-def}", "def"},
    {"${A:-def}", "a"},
    {"${A:+alt}", "alt"},
    {"${UNSET:+alt}", ""},
    {"${EMPTY+alt}", "alt"},
    {"${EMPTY:+alt}", ""},
    {"${A:?}", "a"},
    {"${EMPTY?}", ""},
    /* Nested defaults. */
    {"${UNSET:-${B:-x}}", "b"},
    {"${UNSET:-${UNSET2:-${A}}}", "a"},
    {"${UNSET:-$HOME/bin}", "/home/app/bin"},
    {"${A:+${B}${B}}", "bb"},
    {"${UNSET:-a\\}b}", "a}b"},
    /* The escape character. */
    {"\\$A", "$A"},
    {"\\\\$A", "\\a"},
    {"a\\ b", "a b"},
    {"a\\", "a"},
    {"\\${A}", "${A}"},
    /* Quotes: single keep everything; double allow $ and a few escapes. */
    {"'$A'", "$A"},
    {"\"$A\"", "a"},
    {"\"\\$A\"", "$A"},
    {"\"a\\b\"", "a\\b"},
    {"\"a\\\"b\"", "a\"b"},
    {"'a\\b'", "a\\b"},
    {"'it'\"'\"'s'", "it's"},
    {"\"${UNSET:-x y}\"", "x y"},
    {"${UNSET:-'x y'}", "x y"},
    {"${UNSET:-\"$A $B\"}", "a b"},
    {"\"$Q\"", "'q\"$A"}, /* values are not rescanned */
    {"$Q", "'q\"$A"},
    {"\"\"", ""},
    {"a\"\"b", "ab"},
};

static void test_expand_word(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(word_cases) / sizeof(word_cases[0]); i++) {
        char *out = NULL;
        struct ff_err err;
        ff_err_clear(&err);
        int rc = recipe_expand_word(word_cases[i].in, '\\', table_lookup, NULL, &out, &err);
        if (rc != 0)
            fail_msg("case %zu <<%s>>: %s", i, word_cases[i].in, err.msg);
        if (strcmp(out, word_cases[i].out) != 0)
            fail_msg("case %zu <<%s>>: got <<%s>> want <<%s>>", i, word_cases[i].in, out,
                     word_cases[i].out);
        free(out);
    }
}

static void test_expand_backtick_escape(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"`$A", "$A"},
        {"\\$A", "\\a"},
        {"c:\\dir\\$A", "c:\\dir\\a"},
        {"\"`\"$A`\"\"", "\"a\""},
        {"a` b", "a b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        struct ff_err err;
        assert_int_equal(recipe_expand_word(cases[i][0], '`', table_lookup, NULL, &out, &err),
                         0);
        assert_string_equal(out, cases[i][1]);
        free(out);
    }
    /* Without a lookup nothing is set. */
    char *out = NULL;
    struct ff_err err;
    assert_int_equal(recipe_expand_word("[$A${B:-b}]", '\\', NULL, NULL, &out, &err), 0);
    assert_string_equal(out, "[b]");
    free(out);
}

static const struct {
    const char *in;
    int code;
    const char *msg;
} word_errors[] = {
    {"${", FF_EINVAL,
     "missing '}' in \"${\", expected ${NAME}, ${NAME:-default} or ${NAME:+alternative}"},
    {"${A", FF_EINVAL, "missing '}' in \"${A\""},
    {"${A:-x", FF_EINVAL, "missing '}' in \"${A:-x\""},
    {"${A:", FF_EINVAL, "missing '}'"},
    {"${}", FF_EINVAL, "bad substitution in \"${}\""},
    {"${:}", FF_EINVAL, "bad substitution"},
    {"${{A}}", FF_EINVAL, "bad substitution"},
    {"${A%b}", FF_EINVAL, "unsupported modifier '%' in \"${A%b}\""},
    {"${A#b}", FF_EINVAL, "unsupported modifier '#'"},
    {"${A/b/c}", FF_EINVAL, "unsupported modifier '/'"},
    {"${A:=b}", FF_EINVAL, "unsupported modifier ':='"},
    {"${A B}", FF_EINVAL, "unsupported modifier ' '"},
    {"'abc", FF_EINVAL, "unterminated single quote in \"'abc\", expected a closing '"},
    {"\"abc", FF_EINVAL, "unterminated double quote in \"?abc\", expected a closing \""},
    {"\"abc\\", FF_EINVAL, "unterminated double quote"},
    {"${UNSET?}", FF_EINVAL, "UNSET: is not allowed to be unset"},
    {"${EMPTY:?}", FF_EINVAL, "EMPTY: is not allowed to be empty"},
    {"${UNSET:?set it please}", FF_EINVAL, "UNSET: set it please"},
};

static void test_expand_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(word_errors) / sizeof(word_errors[0]); i++) {
        char *out = (char *)"untouched";
        struct ff_err err;
        ff_err_clear(&err);
        int rc = recipe_expand_word(word_errors[i].in, '\\', table_lookup, NULL, &out, &err);
        if (rc != word_errors[i].code ||
            strncmp(err.msg, word_errors[i].msg, strlen(word_errors[i].msg)) != 0)
            fail_msg("case %zu <<%s>>: rc %d <<%s>> want <<%s>>", i, word_errors[i].in, rc,
                     err.msg, word_errors[i].msg);
        assert_string_equal(out, "untouched");
    }
}

static void test_expand_limits(void **state)
{
    (void)state;
    /* Nesting: 32 levels pass, 33 do not. */
    char deep[1024] = "";
    for (int i = 0; i < 32; i++)
        cat(deep, sizeof(deep), "${U:-");
    cat(deep, sizeof(deep), "x");
    for (int i = 0; i < 32; i++)
        cat(deep, sizeof(deep), "}");
    char *out = NULL;
    struct ff_err err;
    assert_int_equal(recipe_expand_word(deep, '\\', table_lookup, NULL, &out, &err), 0);
    assert_string_equal(out, "x");
    free(out);
    char deeper[1024] = "${U:-";
    cat(deeper, sizeof(deeper), deep);
    cat(deeper, sizeof(deeper), "}");
    assert_int_equal(recipe_expand_word(deeper, '\\', table_lookup, NULL, &out, &err),
                     FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "nested too deep"));
    /* Results: a value used twice past the cap. */
    size_t half = RECIPE_EXPAND_MAX / 2 + 1;
    char *big = malloc(half + 3);
    assert_non_null(big);
    memcpy(big, "V=", 2);
    memset(big + 2, 'v', half);
    big[half + 2] = '\0';
    assert_int_equal(recipe_expand_word(big, '\\', NULL, NULL, &out, &err), 0);
    free(out);
    struct recipe *r = NULL;
    const char *src = "ARG V\nFROM x\nARG V\nENV W=$V$V\n";
    assert_int_equal(recipe_parse(src, strlen(src), "Dockerfile", &r, &err), 0);
    struct recipe_scope *g = NULL, *s = NULL;
    const char *const args[] = {big};
    assert_int_equal(recipe_scope_global_new(r, args, 1, "amd64", "amd64", &g, &err), 0);
    assert_int_equal(recipe_scope_stage_new(g, 0, NULL, NULL, 0, &s, &err), 0);
    struct recipe_instr *e = NULL;
    assert_int_equal(recipe_scope_step(s, &r->stages[0].instrs[0], &e, &err), 0);
    recipe_instr_free(e);
    assert_int_equal(recipe_scope_step(s, &r->stages[0].instrs[1], &e, &err), FF_ETOOBIG);
    assert_string_equal(err.msg, "Dockerfile:4: ENV: substituting \"$V$V\" gives more than "
                                 "1048576 bytes, expected less");
    recipe_scope_free(s);
    recipe_scope_free(g);
    recipe_free(r);
    free(big);
}

static void test_expand_words(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want; /* words joined by '|' */
    } cases[] = {
        {"80 $PORTS", "80|443|8080"},
        {"\"$PORTS\"", "443 8080"},
        {"  a   b  ", "a|b"},
        {"", ""},
        {"$EMPTY", ""},
        {"'a b' c", "a b|c"},
        {"a\\ b", "a b"},
        {"${UNSET:-1 2}", "1|2"},
        {"x$SP", "xx|y"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char **w = NULL;
        size_t n = 0;
        struct ff_err err;
        assert_int_equal(recipe_expand_words(cases[i].in, '\\', table_lookup, NULL, &w, &n, &err),
                         0);
        char joined[256] = "";
        for (size_t k = 0; k < n; k++) {
            if (k > 0)
                cat(joined, sizeof(joined), "|");
            cat(joined, sizeof(joined), w[k]);
        }
        if (strcmp(joined, cases[i].want) != 0)
            fail_msg("case %zu <<%s>>: got <<%s>> want <<%s>>", i, cases[i].in, joined,
                     cases[i].want);
        recipe_strv_free(w, n);
    }
    char **w = NULL;
    size_t n = 0;
    struct ff_err err;
    assert_int_equal(recipe_expand_words("'x", '\\', NULL, NULL, &w, &n, &err), FF_EINVAL);
    assert_null(w);
}

/* ---- scopes ---------------------------------------------------------------- */

/* A recipe stepped through by stage, the way the build engine does it. */
struct run {
    struct recipe *r;
    struct recipe_scope *global;
    struct recipe_scope *stages[8];
    char *texts[8][16]; /* expanded text of each step */
    struct ff_err err;
    int rc; /* first failure, with err */
};

static void run_free(struct run *w)
{
    for (size_t s = 0; s < 8; s++) {
        recipe_scope_free(w->stages[s]);
        for (size_t i = 0; i < 16; i++)
            free(w->texts[s][i]);
    }
    recipe_scope_free(w->global);
    recipe_free(w->r);
    free(w);
}

static struct run *run_recipe(const char *src, const char *const *build_args, size_t n_args,
                              const char *const *image_env, size_t n_env)
{
    struct run *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    if (recipe_parse(src, strlen(src), "Dockerfile", &w->r, &w->err) != 0)
        fail_msg("parse: %s", w->err.msg);
    w->rc = recipe_scope_global_new(w->r, build_args, n_args, "armv7", "amd64", &w->global,
                                    &w->err);
    for (size_t s = 0; w->rc == 0 && s < w->r->n_stages; s++) {
        struct recipe_from *f = NULL;
        w->rc = recipe_scope_from(w->global, s, &f, &w->err);
        if (w->rc != 0)
            break;
        const struct recipe_scope *base = f->base_stage >= 0 ? w->stages[f->base_stage] : NULL;
        w->rc = recipe_scope_stage_new(w->global, s, base, base != NULL ? NULL : image_env,
                                       base != NULL ? 0 : n_env, &w->stages[s], &w->err);
        recipe_from_free(f);
        for (size_t i = 0; w->rc == 0 && i < w->r->stages[s].n_instrs; i++) {
            struct recipe_instr *e = NULL;
            w->rc = recipe_scope_step(w->stages[s], &w->r->stages[s].instrs[i], &e, &w->err);
            if (w->rc == 0) {
                assert_int_equal(e->line, w->r->stages[s].instrs[i].line);
                assert_int_equal(e->kind, w->r->stages[s].instrs[i].kind);
                w->texts[s][i] = strdup(e->text);
            }
            recipe_instr_free(e);
        }
    }
    return w;
}

/* "A=1 B=2" for the run (image false) or image (true) environment. */
static char *env_of(const struct recipe_scope *s, bool image)
{
    char **v = NULL;
    size_t n = 0;
    struct ff_err err;
    assert_int_equal(image ? recipe_scope_image_env(s, &v, &n, &err)
                           : recipe_scope_run_env(s, &v, &n, &err),
                     0);
    size_t size = 16;
    for (size_t i = 0; i < n; i++)
        size += strlen(v[i]) + 1;
    char *out = calloc(1, size);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            cat(out, size, " ");
        cat(out, size, v[i]);
    }
    recipe_strv_free(v, n);
    return out;
}

static void assert_env(const struct recipe_scope *s, bool image, const char *want)
{
    char *got = env_of(s, image);
    if (strcmp(got, want) != 0)
        fail_msg("%s env: got <<%s>> want <<%s>>", image ? "image" : "run", got, want);
    free(got);
}

static const char *lookup(const struct recipe_scope *s, const char *name)
{
    const char *v = NULL;
    return recipe_scope_lookup((void *)s, name, strlen(name), &v) ? v : NULL;
}

static void test_scope_global_args(void **state)
{
    (void)state;
    const char *src = "ARG REG=registry:5000\nARG TAG=3.19\nARG IMG=${REG}/alpine:$TAG\n"
                      "ARG NODEF\nFROM $IMG AS one\nFROM ${NODEF:-busybox}:${TARGETARCH}\n";
    struct run *w = run_recipe(src, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, 0);
    struct recipe_from *f = NULL;
    assert_int_equal(recipe_scope_from(w->global, 0, &f, &w->err), 0);
    assert_string_equal(f->image, "registry:5000/alpine:3.19");
    assert_string_equal(f->text, "FROM registry:5000/alpine:3.19 AS one");
    recipe_from_free(f);
    assert_int_equal(recipe_scope_from(w->global, 1, &f, &w->err), 0);
    assert_string_equal(f->image, "busybox:arm");
    recipe_from_free(f);
    assert_string_equal(lookup(w->global, "TARGETPLATFORM"), "linux/arm/v7");
    assert_string_equal(lookup(w->global, "TARGETVARIANT"), "v7");
    assert_string_equal(lookup(w->global, "BUILDARCH"), "amd64");
    assert_string_equal(lookup(w->global, "BUILDVARIANT"), "");
    assert_null(lookup(w->global, "NODEF"));
    run_free(w);

    /* --build-arg values replace defaults, also for later defaults. */
    const char *const args[] = {"TAG=edge", "NODEF=debian", "TAG=3.20"};
    w = run_recipe(src, args, 3, NULL, 0);
    assert_int_equal(w->rc, 0);
    assert_int_equal(recipe_scope_from(w->global, 0, &f, &w->err), 0);
    assert_string_equal(f->image, "registry:5000/alpine:3.20");
    recipe_from_free(f);
    assert_int_equal(recipe_scope_from(w->global, 1, &f, &w->err), 0);
    assert_string_equal(f->image, "debian:arm");
    recipe_from_free(f);
    run_free(w);
}

static void test_scope_stage_args(void **state)
{
    (void)state;
    const char *src = "ARG V=global\nARG W=w\nFROM a\n"
                      "ENV BEFORE=[$V]\nARG V\nENV AFTER=[$V]\nARG W=stage\nENV W2=[$W]\n"
                      "ARG TARGETARCH\nARG NEW\nENV N=[$NEW]\nRUN echo\n";
    struct run *w = run_recipe(src, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, 0);
    /* Global ARGs are not visible until declared again; a stage default
     * wins over the global value; ARGs reach RUN but not the image. */
    assert_env(w->stages[0], true, "BEFORE=[] AFTER=[global] W2=[stage] N=[]");
    assert_env(w->stages[0], false,
               "BEFORE=[] V=global AFTER=[global] W=stage W2=[stage] TARGETARCH=arm N=[]");
    assert_string_equal(w->texts[0][1], "ARG V=global");
    assert_string_equal(w->texts[0][6], "ARG NEW");
    run_free(w);

    /* A --build-arg wins over both defaults. */
    const char *const args[] = {"V=cli", "W=cli2", "NEW=n"};
    w = run_recipe(src, args, 3, NULL, 0);
    assert_int_equal(w->rc, 0);
    assert_env(w->stages[0], true, "BEFORE=[] AFTER=[cli] W2=[cli2] N=[n]");
    assert_string_equal(w->texts[0][3], "ARG W=cli2");
    run_free(w);
}

static void test_scope_env_rules(void **state)
{
    (void)state;
    const char *src = "FROM a\n"
                      "ENV A=1\nENV A=2 B=$A\n"          /* one ENV expands against before */
                      "ARG C=1 D=$C\n"                   /* ARG pairs one after another */
                      "ENV PATH=/opt/bin:$PATH X=\"a b\" Y='$A' Z=a\\ b\n"
                      "ARG A=arg\nENV E=$A\n"            /* the latest definition wins */
                      "ENV LEGACY value with  spaces $B\n";
    const char *const env[] = {"PATH=/usr/bin:/bin", "HOME=/root"};
    struct run *w = run_recipe(src, NULL, 0, env, 2);
    assert_int_equal(w->rc, 0);
    assert_env(w->stages[0], true,
               "PATH=/opt/bin:/usr/bin:/bin HOME=/root A=2 B=1 X=a b Y=$A Z=a b E=arg "
               "LEGACY=value with  spaces 1");
    assert_env(w->stages[0], false,
               "PATH=/opt/bin:/usr/bin:/bin HOME=/root A=arg B=1 C=1 D=1 X=a b Y=$A Z=a b E=arg "
               "LEGACY=value with  spaces 1");
    /* Canonical texts: values quoted only where needed. */
    assert_string_equal(w->texts[0][1], "ENV A=2 B=1");
    assert_string_equal(w->texts[0][2], "ARG C=1 D=1");
    assert_string_equal(w->texts[0][3],
                        "ENV PATH=/opt/bin:/usr/bin:/bin X=\"a b\" Y=\"$A\" Z=\"a b\"");
    assert_string_equal(w->texts[0][6], "ENV LEGACY=\"value with  spaces 1\"");
    run_free(w);
}

static void test_scope_texts_are_unambiguous(void **state)
{
    (void)state;
    const char *src = "FROM a\nENV A=\"x B=y\"\nENV A=x B=y\nLABEL \"a b\"=c\nLABEL a=\"b=c\"\n"
                      "ENV Q=\"say \\\"hi\\\"\\\\\"\nENV E=\n";
    struct run *w = run_recipe(src, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, 0);
    assert_string_equal(w->texts[0][0], "ENV A=\"x B=y\"");
    assert_string_equal(w->texts[0][1], "ENV A=x B=y");
    assert_string_equal(w->texts[0][2], "LABEL \"a b\"=c");
    assert_string_equal(w->texts[0][3], "LABEL a=b=c");
    assert_string_equal(w->texts[0][4], "ENV Q=\"say \\\"hi\\\"\\\\\"");
    assert_string_equal(w->texts[0][5], "ENV E=\"\"");
    run_free(w);
}

static void test_scope_instructions(void **state)
{
    (void)state;
    const char *src =
        "ARG SRC=build\nFROM a AS build\nFROM b\nARG MODE=0640 OWNER=app PORTS=\"80 443/udp\"\n"
        "ENV D=/srv\nCOPY --from=$SRC --chown=$OWNER:$OWNER --chmod=$MODE [\"$D/x y\", \"${D}/\"]\n"
        "ADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef "
        "https://example.com/$MODE.tgz /\n"
        "WORKDIR $D/app\nUSER ${OWNER}:staff\nEXPOSE $PORTS 8000-8001\n"
        "RUN echo $D\nCMD [\"$D\"]\nENTRYPOINT exec $D\nCOPY --from=0 a b\n";
    struct run *w = run_recipe(src, NULL, 0, NULL, 0);
    if (w->rc != 0)
        fail_msg("%s", w->err.msg);
    char **t = w->texts[1];
    assert_string_equal(t[0], "ARG MODE=0640 OWNER=app PORTS=\"80 443/udp\"");
    assert_string_equal(t[2], "COPY --from=build --chown=app:app --chmod=0640 "
                              "[\"/srv/x y\",\"/srv/\"]");
    assert_string_equal(t[3], "ADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789"
                              "abcdef0123456789abcdef [\"https://example.com/0640.tgz\",\"/\"]");
    assert_string_equal(t[4], "WORKDIR /srv/app");
    assert_string_equal(t[5], "USER app:staff");
    assert_string_equal(t[6], "EXPOSE 80/tcp 443/udp 8000/tcp 8001/tcp");
    /* The shell expands these: unchanged. */
    assert_string_equal(t[7], "RUN echo $D");
    assert_string_equal(t[8], "CMD [\"$D\"]");
    assert_string_equal(t[9], "ENTRYPOINT exec $D");
    assert_string_equal(t[10], "COPY --from=0 [\"a\",\"b\"]");
    run_free(w);

    /* The expanded copy carries the parsed fields. */
    struct recipe *r = NULL;
    struct ff_err err;
    const char *s2 = "ARG S=Build\nFROM x AS build\nFROM y\nARG M=750\n"
                     "COPY --link --from=$S --chmod=$M a b\nCOPY --from=img:$M a b\n";
    assert_int_equal(recipe_parse(s2, strlen(s2), "Dockerfile", &r, &err), 0);
    struct recipe_scope *g = NULL, *sc = NULL;
    assert_int_equal(recipe_scope_global_new(r, NULL, 0, "amd64", "arm64", &g, &err), 0);
    assert_int_equal(recipe_scope_stage_new(g, 1, NULL, NULL, 0, &sc, &err), 0);
    struct recipe_instr *e = NULL;
    assert_int_equal(recipe_scope_step(sc, &r->stages[1].instrs[0], &e, &err), 0);
    recipe_instr_free(e);
    assert_int_equal(recipe_scope_step(sc, &r->stages[1].instrs[1], &e, &err), 0);
    assert_int_equal(e->from_stage, 0);
    assert_false(e->from_image);
    assert_int_equal(e->chmod_mode, 0750);
    assert_true(e->link);
    assert_int_equal(e->n_args, 2);
    recipe_instr_free(e);
    /* --from expands with the global ARGs only (BuildKit resolves stages
     * before it runs them): M is a stage ARG, so it is empty here. */
    assert_int_equal(recipe_scope_step(sc, &r->stages[1].instrs[2], &e, &err), 0);
    assert_string_equal(e->from, "img:");
    assert_true(e->from_image);
    assert_int_equal(e->from_stage, -1);
    recipe_instr_free(e);
    recipe_scope_free(sc);
    recipe_scope_free(g);
    recipe_free(r);
}

static void test_scope_base_stage(void **state)
{
    (void)state;
    const char *src = "FROM a AS base\nARG V=1\nENV E=$V\nFROM base\nENV F=$E$V\n"
                      "FROM scratch\nENV G=[$E]\n";
    const char *const env[] = {"PATH=/bin"};
    struct run *w = run_recipe(src, NULL, 0, env, 1);
    assert_int_equal(w->rc, 0);
    /* From a stage: its ARGs and ENVs carry over. */
    assert_env(w->stages[1], false, "PATH=/bin V=1 E=1 F=11");
    assert_env(w->stages[1], true, "PATH=/bin E=1 F=11");
    assert_env(w->stages[2], true, "PATH=/bin G=[]");
    run_free(w);

    struct run *x = run_recipe("FROM a\n", NULL, 0, NULL, 0);
    struct recipe_scope *s = NULL;
    const char *const bad[] = {"NOEQUALS"};
    assert_int_equal(recipe_scope_stage_new(x->global, 0, NULL, bad, 1, &s, &x->err), FF_EINVAL);
    assert_string_equal(x->err.msg, "base image env entry 1 \"NOEQUALS\" is not NAME=value, "
                                    "expected NAME=value");
    assert_int_equal(recipe_scope_stage_new(x->global, 1, NULL, NULL, 0, &s, &x->err), FF_EINVAL);
    assert_int_equal(recipe_scope_stage_new(x->global, 0, x->stages[0], env, 1, &s, &x->err),
                     FF_EINVAL);
    /* A stage scope is not a global one. */
    assert_int_equal(recipe_scope_stage_new(x->stages[0], 0, NULL, NULL, 0, &s, &x->err),
                     FF_EINVAL);
    char *unused = NULL;
    assert_int_equal(recipe_scope_unused_build_args(x->stages[0], &unused, &x->err), FF_EINVAL);
    run_free(x);
}

static void test_scope_unused_build_args(void **state)
{
    (void)state;
    const char *src = "ARG G\nFROM a\nARG S\nFROM b AS unused\nARG ONLY_IN_SKIPPED\n";
    const char *const args[] = {"G=1", "S=2", "EXTRA=3", "HTTP_PROXY=http://p", "ONLY_IN_SKIPPED=4",
                                "no_proxy=x"};
    struct recipe *r = NULL;
    struct ff_err err;
    assert_int_equal(recipe_parse(src, strlen(src), "Dockerfile", &r, &err), 0);
    struct recipe_scope *g = NULL, *s = NULL;
    assert_int_equal(recipe_scope_global_new(r, args, 6, "amd64", "amd64", &g, &err), 0);
    /* Only stage 0 is built. */
    assert_int_equal(recipe_scope_stage_new(g, 0, NULL, NULL, 0, &s, &err), 0);
    struct recipe_instr *e = NULL;
    assert_int_equal(recipe_scope_step(s, &r->stages[0].instrs[0], &e, &err), 0);
    recipe_instr_free(e);
    char *unused = NULL;
    assert_int_equal(recipe_scope_unused_build_args(g, &unused, &err), 0);
    assert_string_equal(unused, "EXTRA ONLY_IN_SKIPPED");
    free(unused);
    recipe_scope_free(s);
    recipe_scope_free(g);
    /* All consumed: NULL. */
    const char *const used[] = {"G=1"};
    assert_int_equal(recipe_scope_global_new(r, used, 1, "amd64", "amd64", &g, &err), 0);
    assert_int_equal(recipe_scope_unused_build_args(g, &unused, &err), 0);
    assert_null(unused);
    recipe_scope_free(g);
    /* Malformed build args and archs. */
    const char *const bad[] = {"NOVALUE"};
    assert_int_equal(recipe_scope_global_new(r, bad, 1, "amd64", "amd64", &g, &err), FF_EINVAL);
    assert_string_equal(err.msg, "build arg \"NOVALUE\" is not NAME=value, expected --build-arg "
                                 "NAME=value");
    const char *const empty_name[] = {"=x"};
    assert_int_equal(recipe_scope_global_new(r, empty_name, 1, "amd64", "amd64", &g, &err),
                     FF_EINVAL);
    assert_int_equal(recipe_scope_global_new(r, NULL, 0, "x86", "amd64", &g, &err), FF_EINVAL);
    assert_string_equal(err.msg, "arch \"x86\" is not supported, expected amd64, arm64 or armv7");
    assert_int_equal(recipe_scope_global_new(r, NULL, 0, "amd64", NULL, &g, &err), FF_EINVAL);
    recipe_free(r);
}

static const struct {
    const char *src;
    const char *msg;
} step_errors[] = {
    {"FROM a\nENV A=\"${X:?must be set}\"\n", "Dockerfile:2: ENV: X: must be set"},
    {"FROM a\nENV \"$EMPTY\"=1\n",
     "Dockerfile:2: ENV: name 1 is empty after substitution, expected a name"},
    {"FROM a\nWORKDIR $NOTHING\n",
     "Dockerfile:2: WORKDIR: path is empty after substitution, expected a path"},
    {"FROM a\nARG M=99\nCOPY --chmod=$M a b\n",
     "Dockerfile:3: COPY: bad --chmod value \"99\", expected an octal mode like 0755"},
    {"FROM a\nARG U=\"a b\"\nUSER $U\n",
     "Dockerfile:3: USER: bad user \"a b\", expected USER <user>[:<group>]"},
    {"FROM a\nARG P=\"80 http\"\nEXPOSE $P\n", "Dockerfile:3: EXPOSE: bad port \"http\""},
    {"FROM a\nEXPOSE $NONE\n",
     "Dockerfile:2: EXPOSE: no port after substitution, expected EXPOSE <port>[/<protocol>]..."},
    {"FROM a\nARG U=https://x.example/f\nADD $U /f\n",
     "Dockerfile:3: ADD: remote source \"https://x.example/f\" has no checksum"},
    {"FROM a\nARG U=http://x\nCOPY $U /f\n", "Dockerfile:3: COPY: source \"http://x\" is a URL"},
    {"FROM a\nCOPY $NONE /f\n", "Dockerfile:2: COPY: source 1 is empty, expected a path"},
    {"FROM a\nCOPY a $NONE\n", "Dockerfile:2: COPY: destination is empty, expected a path"},
    {"ARG S=later\nFROM a\nCOPY --from=$S a b\nFROM c AS later\n",
     "Dockerfile:3: COPY: --from=later names a later stage (line 4)"},
    {"FROM a\nCOPY --chown=${X:-a}: a b\n", "Dockerfile:2: COPY: bad --chown value \"a:\""},
    {"FROM a\nLABEL a=\"unterminated\n",
     "Dockerfile:2: LABEL: unterminated double quote in \"?unterminated\""},
};

static void test_scope_step_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(step_errors) / sizeof(step_errors[0]); i++) {
        struct run *w = run_recipe(step_errors[i].src, NULL, 0, NULL, 0);
        if (w->rc == 0 ||
            strncmp(w->err.msg, step_errors[i].msg, strlen(step_errors[i].msg)) != 0)
            fail_msg("case %zu: rc %d <<%s>> want <<%s>>", i, w->rc, w->err.msg,
                     step_errors[i].msg);
        run_free(w);
    }
    /* FROM errors come from recipe_scope_from. */
    struct run *w = run_recipe("ARG B\nFROM $B\n", NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_EINVAL);
    assert_string_equal(w->err.msg, "Dockerfile:2: FROM: base \"$B\" is empty after "
                                    "substitution, expected an image");
    run_free(w);
    w = run_recipe("ARG B=two\nFROM $B AS one\nFROM a AS two\n", NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_EINVAL);
    assert_string_equal(w->err.msg, "Dockerfile:2: FROM: base \"$B\" names a later stage "
                                    "(line 3), expected an image or an earlier stage");
    run_free(w);
    w = run_recipe("FROM --platform=$P a\n", NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_EINVAL);
    assert_string_equal(w->err.msg, "Dockerfile:1: FROM: --platform is empty after "
                                    "substitution, expected a platform");
    run_free(w);
    w = run_recipe("ARG A=${B:?needed}\nFROM a\n", NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_EINVAL);
    assert_string_equal(w->err.msg, "Dockerfile:1: ARG: B: needed");
    run_free(w);
}

static void test_scope_unchanged_on_error(void **state)
{
    (void)state;
    const char *src = "FROM a\nENV A=1\nENV A=2 B=${X:?no}\nENV C=3\n";
    struct recipe *r = NULL;
    struct ff_err err;
    assert_int_equal(recipe_parse(src, strlen(src), "Dockerfile", &r, &err), 0);
    struct recipe_scope *g = NULL, *s = NULL;
    assert_int_equal(recipe_scope_global_new(r, NULL, 0, "arm64", "arm64", &g, &err), 0);
    assert_int_equal(recipe_scope_stage_new(g, 0, NULL, NULL, 0, &s, &err), 0);
    struct recipe_instr *e = NULL;
    assert_int_equal(recipe_scope_step(s, &r->stages[0].instrs[0], &e, &err), 0);
    recipe_instr_free(e);
    e = NULL;
    assert_int_equal(recipe_scope_step(s, &r->stages[0].instrs[1], &e, &err), FF_EINVAL);
    assert_null(e);
    assert_env(s, false, "A=1");
    assert_env(s, true, "A=1");
    /* The scope cap: values that double each step stop with a message and
     * leave the scope as it was. */
    const char *grow = "FROM a\nENV V=0123456789abcdef\n"
                       "ENV V=$V$V$V$V$V$V$V$V\nENV V=$V$V$V$V$V$V$V$V\nENV V=$V$V$V$V$V$V$V$V\n"
                       "ENV V=$V$V$V$V$V$V$V$V\nENV V=$V$V$V$V$V$V$V$V\nENV W=$V\n";
    struct run *w = run_recipe(grow, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_ETOOBIG);
    assert_string_equal(w->err.msg, "Dockerfile:8: ENV: variables larger than 1 MiB, expected "
                                    "less");
    char *env = env_of(w->stages[0], true);
    assert_int_equal(strlen(env), 2 + 524288);
    free(env);
    run_free(w);
    recipe_scope_free(s);
    recipe_scope_free(g);
    recipe_free(r);
}

static size_t env_count(const struct recipe_scope *s, bool image)
{
    char **v = NULL;
    size_t n = 0;
    struct ff_err err;
    assert_int_equal(image ? recipe_scope_image_env(s, &v, &n, &err)
                           : recipe_scope_run_env(s, &v, &n, &err),
                     0);
    recipe_strv_free(v, n);
    return n;
}

static void test_scope_rollback(void **state)
{
    (void)state;
    /* The image table can be fuller than the run table (an ARG replaced
     * big ENV values for RUN only). An ENV that fits the run table but not
     * the image's must leave both as they were. */
    char *src = malloc(70000 + 512);
    assert_non_null(src);
    size_t n = (size_t)snprintf(src, 512, "FROM a\nENV C=0123456789abcdef\n"
                                          "ENV C=$C$C$C$C$C$C$C$C\nENV C=$C$C$C$C$C$C$C$C\n"
                                          "ENV C=$C$C$C$C$C$C$C$C\nENV C=$C$C$C$C$C$C$C$C\n"
                                          "ENV A=$C$C$C$C$C$C$C$C\nENV B=$C$C$C$C$C$C\n"
                                          "ARG A=x B=x C=x\nENV W=");
    memset(src + n, 'w', 65500);
    n += 65500;
    (void)snprintf(src + n, 32, "\nENV Z=z\n");
    struct run *w = run_recipe(src, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_ETOOBIG);
    assert_string_equal(w->err.msg, "Dockerfile:10: ENV: variables larger than 1 MiB, expected "
                                    "less");
    assert_null(lookup(w->stages[0], "W"));
    assert_string_equal(lookup(w->stages[0], "A"), "x");
    assert_int_equal(env_count(w->stages[0], false), 3);
    char *img = env_of(w->stages[0], true);
    assert_int_equal(strlen(img), 2 + 65536 + 1 + 2 + 524288 + 1 + 2 + 393216);
    free(img);
    /* The scope still works after the rollback. */
    struct recipe_instr *e = NULL;
    assert_int_equal(recipe_scope_step(w->stages[0], &w->r->stages[0].instrs[9], &e, &w->err), 0);
    recipe_instr_free(e);
    assert_string_equal(lookup(w->stages[0], "Z"), "z");
    run_free(w);
    free(src);

    /* Thousands of new names undone in one step leave the index whole. */
    src = malloc(80000);
    assert_non_null(src);
    n = (size_t)snprintf(src, 512, "FROM a\nARG BIG=0123456789abcdef\n"
                                   "ARG BIG=$BIG$BIG$BIG$BIG$BIG$BIG$BIG$BIG\n"
                                   "ARG BIG=$BIG$BIG$BIG$BIG$BIG$BIG$BIG$BIG\n"
                                   "ARG BIG=$BIG$BIG$BIG$BIG$BIG$BIG$BIG$BIG\n"
                                   "ARG BIG=$BIG$BIG$BIG$BIG$BIG$BIG$BIG$BIG\n"
                                   "ARG BIG=$BIG$BIG$BIG$BIG$BIG$BIG$BIG$BIG\nENV");
    for (int i = 0; i < 2500; i++)
        n += (size_t)snprintf(src + n, 32, " V%d=%d", i, i);
    n += (size_t)snprintf(src + n, 32, "\nENV");
    for (int i = 0; i < 2500; i++)
        n += (size_t)snprintf(src + n, 32, " N%d=%d V%d=x", i, i, i);
    (void)snprintf(src + n, 32, " X=$BIG\n");
    w = run_recipe(src, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, FF_ETOOBIG);
    assert_string_equal(w->err.msg, "Dockerfile:9: ENV: variables larger than 1 MiB, expected "
                                    "less");
    assert_int_equal(env_count(w->stages[0], false), 2501);
    assert_int_equal(env_count(w->stages[0], true), 2500);
    for (int i = 0; i < 2500; i++) {
        char name[16], value[16];
        (void)snprintf(name, sizeof(name), "V%d", i);
        (void)snprintf(value, sizeof(value), "%d", i);
        assert_string_equal(lookup(w->stages[0], name), value);
        (void)snprintf(name, sizeof(name), "N%d", i);
        assert_null(lookup(w->stages[0], name));
    }
    run_free(w);
    free(src);
}

static void test_scope_many_variables(void **state)
{
    (void)state;
    /* Thousands of ENV pairs stay fast (hash index) and in order. */
    char *src = malloc(64 * 4000 + 64);
    assert_non_null(src);
    size_t n = (size_t)snprintf(src, 64, "FROM a\nENV");
    for (int i = 0; i < 4000; i++)
        n += (size_t)snprintf(src + n, 64, " V%d=%d", i, i);
    (void)snprintf(src + n, 64, "\nENV LAST=$V3999$V0\n");
    struct run *w = run_recipe(src, NULL, 0, NULL, 0);
    assert_int_equal(w->rc, 0);
    assert_string_equal(lookup(w->stages[0], "V1234"), "1234");
    assert_string_equal(lookup(w->stages[0], "LAST"), "39990");
    char **v = NULL;
    size_t nv = 0;
    assert_int_equal(recipe_scope_image_env(w->stages[0], &v, &nv, &w->err), 0);
    assert_int_equal(nv, 4001);
    assert_string_equal(v[0], "V0=0");
    assert_string_equal(v[4000], "LAST=39990");
    recipe_strv_free(v, nv);
    run_free(w);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand_word),
        cmocka_unit_test(test_expand_backtick_escape),
        cmocka_unit_test(test_expand_errors),
        cmocka_unit_test(test_expand_limits),
        cmocka_unit_test(test_expand_words),
        cmocka_unit_test(test_scope_global_args),
        cmocka_unit_test(test_scope_stage_args),
        cmocka_unit_test(test_scope_env_rules),
        cmocka_unit_test(test_scope_texts_are_unambiguous),
        cmocka_unit_test(test_scope_instructions),
        cmocka_unit_test(test_scope_base_stage),
        cmocka_unit_test(test_scope_unused_build_args),
        cmocka_unit_test(test_scope_step_errors),
        cmocka_unit_test(test_scope_unchanged_on_error),
        cmocka_unit_test(test_scope_rollback),
        cmocka_unit_test(test_scope_many_variables),
    };
    return cmocka_run_group_tests_name("workers/expand", tests, NULL, NULL);
}
