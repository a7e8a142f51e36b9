#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include "ff_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rendering a parse result as text, so tables can state it ---------- */

static void put(struct ff_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct ff_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    assert_int_equal(ff_buf_vprintf(b, fmt, ap), 0);
    va_end(ap);
}

/* "<line> KIND [exec] [arg]... k=v... flags" */
static void describe_instr(struct ff_buf *b, const struct recipe_instr *in)
{
    put(b, "%u %s", in->line, recipe_kind_name(in->kind));
    if (in->exec_form)
        put(b, " exec");
    for (size_t i = 0; i < in->n_args; i++)
        put(b, " [%s]", in->args[i]);
    for (size_t i = 0; i < in->n_kvs; i++)
        put(b, " %s=%s", in->kvs[i].key, in->kvs[i].value != NULL ? in->kvs[i].value : "(none)");
    if (in->from != NULL)
        put(b, " from=%s", in->from);
    if (in->from_stage >= 0)
        put(b, "(stage %d)", in->from_stage);
    if (in->from_image)
        put(b, "(image)");
    if (in->chown != NULL)
        put(b, " chown=%s", in->chown);
    if (in->chmod != NULL)
        put(b, " chmod=%s(%o)", in->chmod, (unsigned)in->chmod_mode);
    if (in->checksum != NULL)
        put(b, " checksum=%.13s", in->checksum);
    if (in->link)
        put(b, " link");
    put(b, "\n");
}

static char *describe(const struct recipe *r)
{
    struct ff_buf b;
    ff_buf_init(&b, 1 << 20);
    for (size_t i = 0; i < r->n_args; i++) {
        put(&b, "global ");
        describe_instr(&b, &r->args[i]);
    }
    for (size_t s = 0; s < r->n_stages; s++) {
        const struct recipe_from *f = &r->stages[s].from;
        put(&b, "%u FROM %s", f->line, f->image);
        if (f->name != NULL)
            put(&b, " as=%s", f->name);
        if (f->platform != NULL)
            put(&b, " platform=%s", f->platform);
        if (f->base_stage >= 0)
            put(&b, " base=%d", f->base_stage);
        if (f->scratch)
            put(&b, " scratch");
        put(&b, "\n");
        for (size_t i = 0; i < r->stages[s].n_instrs; i++)
            describe_instr(&b, &r->stages[s].instrs[i]);
    }
    char *s = ff_buf_steal(&b);
    assert_non_null(s);
    return s;
}

static struct recipe *parse_ok(const char *src)
{
    struct recipe *r = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = recipe_parse(src, strlen(src), "Dockerfile", &r, &err);
    if (rc != 0)
        fail_msg("parse of <<%s>> failed: %s", src, err.msg);
    return r;
}

/* ---- Dockerfile.template ---------------------------------------------- */

static void test_template(void **state)
{
    (void)state;
    static const struct {
        const char *in, *arch, *app, *out;
    } ok[] = {
        {"FROM library/base:%%FF_ARCH%%\n", "arm64", "me/app", "FROM library/base:arm64\n"},
        {"LABEL app=%%FF_APP%% arch=%%FF_ARCH%%%%FF_ARCH%%", "armv7", "x", "LABEL app=x arch=armv7armv7"},
        {"RUN printf '%%d %%s' 1 a", "amd64", "a", "RUN printf '%%d %%s' 1 a"},
        {"%%%FF_ARCH%%%", "amd64", "a", "%amd64%"},
        {"%%ff_arch%% 100%% %% %", "amd64", "a", NULL}, /* lower case is a name too */
        {"", "amd64", "a", ""},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *out = NULL;
        size_t n = 0;
        struct ff_err err;
        int rc = recipe_template(ok[i].in, strlen(ok[i].in), ok[i].arch, ok[i].app, &out, &n,
                                 &err);
        if (ok[i].out == NULL) {
            assert_int_equal(rc, FF_EINVAL);
            assert_string_equal(err.msg, "Dockerfile.template:1: unknown placeholder "
                                         "%%ff_arch%%, expected %%FF_ARCH%% or %%FF_APP%%");
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(out, ok[i].out);
        assert_int_equal(n, strlen(ok[i].out));
        free(out);
    }
}

/* Writes n bytes of unit at dst (a part of a bigger text, so no NUL). */
static void put_bytes(char *dst, const char *unit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = unit[i];
}

static void test_template_errors(void **state)
{
    (void)state;
    char *out = NULL;
    size_t n = 0;
    struct ff_err err;
    const char *t = "FROM a\n\nRUN x %%FF_OS%%\n";
    assert_int_equal(recipe_template(t, strlen(t), "amd64", "app", &out, &n, &err), FF_EINVAL);
    assert_string_equal(err.msg, "Dockerfile.template:3: unknown placeholder %%FF_OS%%, "
                                 "expected %%FF_ARCH%% or %%FF_APP%%");
    assert_int_equal(recipe_template("x", 1, "i386", "app", &out, &n, &err), FF_EINVAL);
    assert_string_equal(err.msg, "template: arch \"i386\" is not supported, expected amd64, "
                                 "arm64 or armv7");
    assert_int_equal(recipe_template("x", 1, NULL, "app", &out, &n, &err), FF_EINVAL);
    /* An app name that could break a recipe line or a quoted word. */
    static const char *const bad_apps[] = {"a b", "a\nRUN x", "a\"", "a$b", "a'", "a%"};
    for (size_t i = 0; i < sizeof(bad_apps) / sizeof(bad_apps[0]); i++) {
        assert_int_equal(recipe_template("x", 1, "amd64", bad_apps[i], &out, &n, &err),
                         FF_EINVAL);
        assert_non_null(strstr(err.msg, "template: app"));
    }
    /* No app name: fine until the template asks for it. */
    static const char *const no_app[] = {"", NULL};
    for (size_t i = 0; i < 2; i++) {
        t = "FROM a:%%FF_ARCH%%\n";
        assert_int_equal(recipe_template(t, strlen(t), "arm64", no_app[i], &out, &n, &err), 0);
        assert_string_equal(out, "FROM a:arm64\n");
        free(out);
        t = "FROM a\nLABEL app=%%FF_APP%%\n";
        assert_int_equal(recipe_template(t, strlen(t), "arm64", no_app[i], &out, &n, &err),
                         FF_EINVAL);
        assert_string_equal(err.msg, "Dockerfile.template:2: %%FF_APP%% used but no app name "
                                     "given, expected the build's app name");
    }
    char *big = malloc(RECIPE_SIZE_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', RECIPE_SIZE_MAX + 1);
    assert_int_equal(recipe_template(big, RECIPE_SIZE_MAX + 1, "amd64", "a", &out, &n, &err),
                     FF_ETOOBIG);
    /* Within the input limit, but the result grows past it. */
    size_t reps = RECIPE_SIZE_MAX / 11;
    for (size_t i = 0; i < reps; i++)
        put_bytes(big + i * 11, "%%FF_ARCH%%", 11);
    assert_int_equal(recipe_template(big, reps * 11, "amd64", "a", &out, &n, &err), 0);
    assert_int_equal(n, reps * 5);
    free(out);
    for (size_t i = 0; i < reps; i++)
        put_bytes(big + i * 11, "%%FF_APP%% ", 11);
    char app[RECIPE_APP_MAX + 1];
    memset(app, 'a', RECIPE_APP_MAX);
    app[RECIPE_APP_MAX] = '\0';
    assert_int_equal(recipe_template(big, reps * 11, "amd64", app, &out, &n, &err), FF_ETOOBIG);
    free(big);
}

/* ---- parsing: what each form gives ------------------------------------- */

static const struct {
    const char *src;
    const char *want;
} parse_cases[] = {
    {"FROM alpine\n", "1 FROM alpine\n"},
    /* Comments, blank lines, leading blanks, no final newline. */
    {"  # comment\n\n\t FROM alpine:3.19 AS Build\n   # more\n\n  RUN  true",
     "3 FROM alpine:3.19 as=build\n6 RUN [true]\n"},
    /* Instruction keywords in any case; AS in any case. */
    {"from alpine as b\nrun echo\nCoPy a b\n",
     "1 FROM alpine as=b\n2 RUN [echo]\n3 COPY [a] [b]\n"},
    /* Continuations join raw lines (their leading blanks kept), skip
     * comments and blank lines, and report the first line. */
    {"FROM a\nRUN echo a \\\n    && echo b \\  \n# comment inside\n\n  && echo c\nRUN d\n",
     "1 FROM a\n2 RUN [echo a     && echo b   && echo c]\n7 RUN [d]\n"},
    /* An escaped escape at the end does not continue the line. */
    {"FROM a\nRUN echo \\\\\nRUN b\n", "1 FROM a\n2 RUN [echo \\\\]\n3 RUN [b]\n"},
    /* A line that is only the escape starts a continued instruction. */
    {"FROM a\n\\\nRUN x\n", "1 FROM a\n2 RUN [x]\n"},
    /* A continuation at the end of the file ends the instruction. */
    {"FROM a\nRUN x \\", "1 FROM a\n2 RUN [x]\n"},
    /* # escape=` : backtick continues lines and escapes; \ is plain. */
    {"# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\nCOPY c:\\x d\\\n",
     "2 FROM a\n3 RUN [dir c:\\   /w]\n5 COPY [c:\\x] [d\\]\n"},
    /* Directives: syntax ignored, any case and spacing, leading blanks. */
    {"#  SYNTAX = docker/dockerfile:1\n  #Escape=`\nFROM a\nRUN x `\n y\n",
     "3 FROM a\n4 RUN [x  y]\n"},
    /* An unknown directive, a blank line or an instruction ends them. */
    {"# foo=bar\n# escape=`\nFROM a\nRUN x \\\n y\n", "3 FROM a\n4 RUN [x  y]\n"},
    {"\n# escape=`\nFROM a\nRUN x \\\n y\n", "3 FROM a\n4 RUN [x  y]\n"},
    {"FROM a\n# escape=`\nRUN x \\\n y\n", "1 FROM a\n3 RUN [x  y]\n"},
    /* UTF-8 BOM and CRLF line ends. */
    {"\xef\xbb\xbf" "FROM a\r\nRUN b \\\r\n c\r\n", "1 FROM a\n2 RUN [b  c]\n"},
    /* RUN, CMD, ENTRYPOINT: exec form is a JSON array of strings; anything
     * else that is not JSON is the shell form, as in Docker. */
    {"FROM a\nRUN [\"sh\", \"-c\", \"echo $HOME\"]\nCMD [ \"a b\" ,\"\\u00e9\\n\" ]\n"
     "ENTRYPOINT [\"x\"]   \nCMD []\n",
     "1 FROM a\n2 RUN exec [sh] [-c] [echo $HOME]\n3 CMD exec [a b] [\xc3\xa9\n]\n"
     "4 ENTRYPOINT exec [x]\n5 CMD exec\n"},
    {"FROM a\nCMD [\"a\", \nRUN [not json]\nENTRYPOINT exec \"$0\" 'x'\nCMD {\"a\": 1}\n",
     "1 FROM a\n2 CMD [[\"a\",]\n3 RUN [[not json]]\n4 ENTRYPOINT [exec \"$0\" 'x']\n"
     "5 CMD [{\"a\": 1}]\n"},
    /* COPY/ADD: words or a JSON array (for names with blanks), flags. */
    {"FROM a\nCOPY a b /dst/\nCOPY [\"my file\", \"/dst dir/\"]\n"
     "COPY --chown=1000:1000 --chmod=0644 --link x y\nADD --link=false --chmod=755 t.tgz /\n"
     "COPY -- --odd /d\nCOPY --chown=\"app\"'s' x /\nCOPY \"--chown=a\" /\n",
     "1 FROM a\n2 COPY [a] [b] [/dst/]\n3 COPY exec [my file] [/dst dir/]\n"
     "4 COPY [x] [y] chown=1000:1000 chmod=0644(644) link\n"
     "5 ADD [t.tgz] [/] chmod=755(755)\n6 COPY [--odd] [/d]\n7 COPY [x] [/] chown=apps\n"
     "8 COPY [\"--chown=a\"] [/]\n"},
    {"FROM a\nADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789a"
     "bcdef https://example.com/x.tgz /x.tgz\n",
     "1 FROM a\n2 ADD [https://example.com/x.tgz] [/x.tgz] checksum=sha256:012345\n"},
    /* ENV and LABEL: pairs as written (quotes stay until substitution),
     * several per line, and the legacy NAME value form. */
    {"FROM a\nENV A=1 B=\"two words\" C='$x' D=e\\ f E=\nENV PATH /usr/bin:$PATH  more  \n"
     "LABEL \"com.example.v\"=\"1.0\" desc=\"a \\\"b\\\"\"\nLABEL maintainer me\n",
     "1 FROM a\n2 ENV A=1 B=\"two words\" C='$x' D=e\\ f E=\n"
     "3 ENV PATH=/usr/bin:$PATH  more\n4 LABEL \"com.example.v\"=\"1.0\" desc=\"a \\\"b\\\"\"\n"
     "5 LABEL maintainer=me\n"},
    /* ARG before and after FROM, with and without defaults. */
    {"ARG BASE=alpine\nARG TAG\nFROM $BASE:${TAG:-3}\nARG TAG\nARG A=1 B=\"x y\" C=\n",
     "global 1 ARG BASE=alpine\nglobal 2 ARG TAG=(none)\n3 FROM $BASE:${TAG:-3}\n"
     "4 ARG TAG=(none)\n5 ARG A=1 B=\"x y\" C=\n"},
    /* WORKDIR and USER take the rest of the line; EXPOSE words. */
    {"FROM a\nWORKDIR /my app\nUSER app:staff\nUSER 1000\nEXPOSE 80 443/tcp 53/UDP 8000-8010 "
     "$P\n",
     "1 FROM a\n2 WORKDIR [/my app]\n3 USER [app:staff]\n4 USER [1000]\n"
     "5 EXPOSE [80] [443/tcp] [53/UDP] [8000-8010] [$P]\n"},
    /* FROM: digests, scratch, --platform recorded, earlier stages by name
     * in any case; a stage named like its own base is an image. */
    {"FROM --platform=linux/arm64 alpine@sha256:abc AS one\nFROM scratch\nFROM ONE AS two\n"
     "FROM two\nFROM node AS node\nFROM ${X} AS x\n",
     "1 FROM alpine@sha256:abc as=one platform=linux/arm64\n2 FROM scratch scratch\n"
     "3 FROM ONE as=two base=0\n4 FROM two base=2\n5 FROM node as=node\n6 FROM ${X} as=x\n"},
    /* COPY --from: an earlier stage by name (any case) or index, else an
     * image; a value with $ is decided when it is expanded. */
    {"FROM a AS build\nFROM b\nCOPY --from=BUILD /x /x\nCOPY --from=0 /y /y\n"
     "COPY --from=nginx:1.25 /etc/nginx /etc/nginx\nCOPY --from=$S /z /z\n",
     "1 FROM a as=build\n2 FROM b\n3 COPY [/x] [/x] from=BUILD(stage 0)\n"
     "4 COPY [/y] [/y] from=0(stage 0)\n5 COPY [/etc/nginx] [/etc/nginx] from=nginx:1.25(image)\n"
     "6 COPY [/z] [/z] from=$S\n"},
    /* Not heredocs: quoted, or not at the start of a word. */
    {"FROM a\nRUN echo \"<<EOF\" a<<b '<<x'\n",
     "1 FROM a\n2 RUN [echo \"<<EOF\" a<<b '<<x']\n"},
};

static void test_parse_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        struct recipe *r = parse_ok(parse_cases[i].src);
        char *got = describe(r);
        if (strcmp(got, parse_cases[i].want) != 0)
            fail_msg("case %zu <<%s>>:\n got <<%s>>\nwant <<%s>>", i, parse_cases[i].src, got,
                     parse_cases[i].want);
        free(got);
        recipe_free(r);
    }
}

static void test_parse_fields(void **state)
{
    (void)state;
    struct recipe *r = parse_ok("# escape=`\nARG A\nFROM a\nRUN   echo   hi  `\n   there   \n"
                                "copy --from=x  a  b\n");
    assert_int_equal(r->escape, '`');
    assert_string_equal(r->file, "Dockerfile");
    assert_int_equal(r->n_args, 1);
    assert_int_equal(r->n_stages, 1);
    assert_string_equal(r->stages[0].from.text, "FROM a");
    /* Text: keyword upper-cased, outer blanks trimmed, lines joined. */
    const struct recipe_instr *run = &r->stages[0].instrs[0];
    assert_string_equal(run->text, "RUN echo   hi     there");
    assert_string_equal(run->args[0], "echo   hi     there");
    assert_int_equal(run->line, 4);
    assert_string_equal(r->stages[0].instrs[1].text, "COPY --from=x  a  b");
    assert_int_equal(r->stages[0].instrs[1].chmod_mode, -1);
    recipe_free(r);
}

static void test_stage_find(void **state)
{
    (void)state;
    struct recipe *r = parse_ok("FROM a AS X\nFROM b AS y\nFROM c\n");
    assert_int_equal(recipe_stage_find(r, "x", 3), 0);
    assert_int_equal(recipe_stage_find(r, "Y", 3), 1);
    assert_int_equal(recipe_stage_find(r, "y", 1), -1);
    assert_int_equal(recipe_stage_find(r, "c", 3), -1);
    recipe_free(r);
}

/* ---- parsing: every error says file:line: INSTRUCTION: what, expected -- */

static const struct {
    const char *src;
    int code;
    const char *msg;
} error_cases[] = {
    {"FROM a\nFOO bar\n", FF_EINVAL,
     "Dockerfile:2: FOO: unknown instruction, expected one of FROM, ARG, ENV, LABEL, RUN, CMD, "
     "ENTRYPOINT, COPY, ADD, WORKDIR, USER or EXPOSE"},
    {"FROM a\nmaintainer me\n", FF_EINVAL,
     "Dockerfile:2: MAINTAINER: not supported, expected LABEL maintainer=\"<name>\""},
    {"FROM a\nONBUILD RUN x\n", FF_EINVAL,
     "Dockerfile:2: ONBUILD: not supported, expected one of FROM, ARG, ENV, LABEL, RUN, CMD, "
     "ENTRYPOINT, COPY, ADD, WORKDIR, USER or EXPOSE"},
    {"FROM a\nHEALTHCHECK CMD x\n", FF_EINVAL, "Dockerfile:2: HEALTHCHECK: not supported"},
    {"FROM a\nSHELL [\"bash\"]\n", FF_EINVAL,
     "Dockerfile:2: SHELL: not supported, expected RUN [\"<shell>\", \"-c\", \"<command>\"]"},
    {"FROM a\nSTOPSIGNAL 9\n", FF_EINVAL, "Dockerfile:2: STOPSIGNAL: not supported"},
    {"FROM a\n\nVOLUME /data\n", FF_EINVAL, "Dockerfile:3: VOLUME: not supported"},
    {"RUN x\nFROM a\n", FF_EINVAL,
     "Dockerfile:1: RUN: instruction before the first FROM, expected FROM (only ARG may come "
     "before it)"},
    {"ARG A\nENV B=1\nFROM a\n", FF_EINVAL, "Dockerfile:2: ENV: instruction before the first FROM"},
    {"ARG A\n", FF_EINVAL,
     "Dockerfile: no FROM instruction, expected at least one FROM <image>"},
    {"", FF_EINVAL, "Dockerfile: no FROM instruction"},
    {"# only a comment\n\n", FF_EINVAL, "Dockerfile: no FROM instruction"},
    /* Flags. */
    {"FROM a\nCOPY --foo=1 a b\n", FF_EINVAL,
     "Dockerfile:2: COPY: unknown flag --foo, expected --from, --chown, --chmod or --link"},
    {"FROM a\nADD --from=x a b\n", FF_EINVAL,
     "Dockerfile:2: ADD: unknown flag --from, expected --chown, --chmod, --checksum or --link"},
    {"FROM a\nCOPY --checksum=sha256:00 a b\n", FF_EINVAL,
     "Dockerfile:2: COPY: unknown flag --checksum"},
    {"FROM a\nWORKDIR --x /a\n", FF_EINVAL,
     "Dockerfile:2: WORKDIR: unknown flag --x, expected no flags"},
    {"FROM --pull a\n", FF_EINVAL, "Dockerfile:1: FROM: unknown flag --pull, expected --platform"},
    {"FROM a\n\nRUN \\\n  --mount=type=cache,target=/x make\n", FF_EINVAL,
     "Dockerfile:3: RUN: flag --mount is not supported, expected RUN <command> without flags"},
    {"FROM a\nRUN --network=none x\n", FF_EINVAL, "Dockerfile:2: RUN: flag --network is not supported"},
    {"FROM a\nCOPY --chown=a --chown=b x y\n", FF_EINVAL,
     "Dockerfile:2: COPY: flag --chown given twice, expected it once"},
    {"FROM a\nCOPY --from x y\n", FF_EINVAL,
     "Dockerfile:2: COPY: flag --from needs a value, expected --from=<value>"},
    {"FROM a\nCOPY --chmod= x y\n", FF_EINVAL,
     "Dockerfile:2: COPY: flag --chmod has an empty value, expected --chmod=<value>"},
    {"FROM a\nCOPY --link=yes x y\n", FF_EINVAL,
     "Dockerfile:2: COPY: flag --link has a bad value, expected --link, --link=true or "
     "--link=false"},
    /* JSON arrays. */
    {"FROM a\nCMD [\"a\", 1]\n", FF_EINVAL,
     "Dockerfile:2: CMD: JSON array item 2 is integer, expected an array of strings like "
     "[\"executable\", \"arg\"]"},
    {"FROM a\nCOPY [\"a\", [\"b\"]]\n", FF_EINVAL,
     "Dockerfile:2: COPY: JSON array item 2 is array, expected an array of strings"},
    {"FROM a\nENTRYPOINT [\"a\"] --verbose\n", FF_EINVAL,
     "Dockerfile:2: ENTRYPOINT: text \"--verbose\" after the JSON array, expected nothing after "
     "the closing ]"},
    {"FROM a\nRUN []\n", FF_EINVAL,
     "Dockerfile:2: RUN: empty JSON array, expected at least the program to run"},
    /* Missing arguments. */
    {"FROM\n", FF_EINVAL,
     "Dockerfile:1: FROM: missing image, expected FROM [--platform=<platform>] <image> [AS "
     "<name>]"},
    {"FROM a b\n", FF_EINVAL,
     "Dockerfile:1: FROM: 2 arguments, expected FROM [--platform=<platform>] <image> [AS "
     "<name>]"},
    {"FROM a FOR b\n", FF_EINVAL, "Dockerfile:1: FROM: 3 arguments"},
    {"FROM a\nRUN\n", FF_EINVAL,
     "Dockerfile:2: RUN: missing command, expected RUN <command> or RUN [\"executable\", "
     "\"arg\"...]"},
    {"FROM a\nCMD   \n", FF_EINVAL, "Dockerfile:2: CMD: missing command"},
    {"FROM a\nENTRYPOINT\n", FF_EINVAL, "Dockerfile:2: ENTRYPOINT: missing command"},
    {"FROM a\nCOPY onlyone\n", FF_EINVAL,
     "Dockerfile:2: COPY: missing destination, expected COPY [flags] <source>... "
     "<destination>"},
    {"FROM a\nADD\n", FF_EINVAL,
     "Dockerfile:2: ADD: missing source and destination, expected ADD [flags] <source>... "
     "<destination>"},
    {"FROM a\nCOPY [\"a\"]\n", FF_EINVAL, "Dockerfile:2: COPY: missing destination"},
    {"FROM a\nWORKDIR\n", FF_EINVAL, "Dockerfile:2: WORKDIR: missing path, expected WORKDIR <path>"},
    {"FROM a\nUSER\n", FF_EINVAL,
     "Dockerfile:2: USER: missing user, expected USER <user>[:<group>]"},
    {"FROM a\nEXPOSE\n", FF_EINVAL,
     "Dockerfile:2: EXPOSE: missing port, expected EXPOSE <port>[/<protocol>]..."},
    {"FROM a\nENV\n", FF_EINVAL,
     "Dockerfile:2: ENV: missing arguments, expected ENV <name>=<value>..."},
    {"FROM a\nLABEL\n", FF_EINVAL, "Dockerfile:2: LABEL: missing arguments"},
    {"ARG\nFROM a\n", FF_EINVAL, "Dockerfile:1: ARG: missing name, expected ARG <name>[=<default>]"},
    /* ENV, LABEL, ARG forms. */
    {"FROM a\nENV ALONE\n", FF_EINVAL,
     "Dockerfile:2: ENV: no value for \"ALONE\", expected ENV <name>=<value> or ENV <name> "
     "<value>"},
    {"FROM a\nENV A=1 B\n", FF_EINVAL,
     "Dockerfile:2: ENV: \"B\" is not <name>=<value>, expected ENV <name>=<value>..."},
    {"FROM a\nLABEL a=1 =2\n", FF_EINVAL,
     "Dockerfile:2: LABEL: empty name in \"=2\", expected LABEL <name>=<value>..."},
    {"FROM a\nARG =1\n", FF_EINVAL,
     "Dockerfile:2: ARG: bad name \"\", expected ARG <name>[=<default>] with a name of letters, "
     "digits, '_', '-' or '.'"},
    {"FROM a\nARG $X=1\n", FF_EINVAL, "Dockerfile:2: ARG: bad name \"$X\""},
    /* Stages. */
    {"FROM a AS 1st\n", FF_EINVAL,
     "Dockerfile:1: FROM: bad stage name \"1st\", expected a letter followed by letters, "
     "digits, '-', '_' or '.'"},
    {"FROM a AS b/c\n", FF_EINVAL, "Dockerfile:1: FROM: bad stage name \"b/c\""},
    {"FROM a AS b\nFROM c AS B\n", FF_EINVAL,
     "Dockerfile:2: FROM: stage name \"b\" already used on line 1, expected a new name"},
    {"FROM later\nFROM a AS later\n", FF_EINVAL,
     "Dockerfile:1: FROM: \"later\" names a later stage (line 2), expected an image or an "
     "earlier stage"},
    {"FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\n", FF_EINVAL,
     "Dockerfile:2: COPY: --from=two names a later stage (line 3), expected an earlier "
     "stage's name or index, or an image"},
    {"FROM a AS one\nCOPY --from=ONE /x /x\n", FF_EINVAL,
     "Dockerfile:2: COPY: --from=ONE names this stage (line 1)"},
    {"FROM a\nFROM b\nCOPY --from=1 /x /x\n", FF_EINVAL,
     "Dockerfile:3: COPY: --from=1 is not the index of an earlier stage (this is stage 1), "
     "expected an earlier stage's name or index, or an image"},
    {"FROM a\nCOPY --from=99999999999 /x /x\n", FF_EINVAL,
     "Dockerfile:2: COPY: --from=99999999999 is not the index of an earlier stage"},
    /* Values the parser can check as written. */
    {"FROM a\nEXPOSE 80 0\n", FF_EINVAL,
     "Dockerfile:2: EXPOSE: bad port \"0\", expected a port like 80, 80/tcp, 53/udp or "
     "8000-8010 (1 to 65535; tcp, udp or sctp)"},
    {"FROM a\nEXPOSE 65536\n", FF_EINVAL, "Dockerfile:2: EXPOSE: bad port \"65536\""},
    {"FROM a\nEXPOSE 80/icmp\n", FF_EINVAL, "Dockerfile:2: EXPOSE: bad port \"80/icmp\""},
    {"FROM a\nEXPOSE 90-80\n", FF_EINVAL, "Dockerfile:2: EXPOSE: bad port \"90-80\""},
    {"FROM a\nEXPOSE http\n", FF_EINVAL, "Dockerfile:2: EXPOSE: bad port \"http\""},
    {"FROM a\nEXPOSE 127.0.0.1:80:80\n", FF_EINVAL, "Dockerfile:2: EXPOSE: bad port"},
    {"FROM a\nCOPY --chmod=999 a b\n", FF_EINVAL,
     "Dockerfile:2: COPY: bad --chmod value \"999\", expected an octal mode like 0755 (at most "
     "7777)"},
    {"FROM a\nADD --chmod=17777 a b\n", FF_EINVAL, "Dockerfile:2: ADD: bad --chmod value \"17777\""},
    {"FROM a\nCOPY --chmod=u+x a b\n", FF_EINVAL, "Dockerfile:2: COPY: bad --chmod value \"u+x\""},
    {"FROM a\nCOPY --chown=app: a b\n", FF_EINVAL,
     "Dockerfile:2: COPY: bad --chown value \"app:\", expected --chown=<user>[:<group>]"},
    {"FROM a\nCOPY --chown=:g a b\n", FF_EINVAL, "Dockerfile:2: COPY: bad --chown value \":g\""},
    {"FROM a\nUSER a b\n", FF_EINVAL,
     "Dockerfile:2: USER: bad user \"a b\", expected USER <user>[:<group>]"},
    {"FROM a\nUSER a:b:c\n", FF_EINVAL, "Dockerfile:2: USER: bad user \"a:b:c\""},
    /* ADD --checksum and URLs. */
    {"FROM a\nADD --checksum=md5:d41d8cd98f00b204e9800998ecf8427e https://x/y /y\n", FF_EINVAL,
     "Dockerfile:2: ADD: bad --checksum value \"md5:d41d8cd98f00b204e9800998ecf8427e\", "
     "expected sha256:<64 lowercase hex digits>"},
    {"FROM a\nADD --checksum=sha256:0123 https://x/y /y\n", FF_EINVAL,
     "Dockerfile:2: ADD: bad --checksum value \"sha256:0123\""},
    {"FROM a\nADD --checksum=sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789a"
     "bcdef https://x/y /y\n",
     FF_EINVAL, "Dockerfile:2: ADD: bad --checksum value"},
    {"FROM a\nADD https://example.com/x.tgz /x\n", FF_EINVAL,
     "Dockerfile:2: ADD: remote source \"https://example.com/x.tgz\" has no checksum, expected "
     "ADD --checksum=sha256:<64 hex digits> <url> <dest>"},
    {"FROM a\nADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789a"
     "bcdef local.tgz /x\n",
     FF_EINVAL,
     "Dockerfile:2: ADD: --checksum given for local source \"local.tgz\", expected an http:// "
     "or https:// URL"},
    {"FROM a\nADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789a"
     "bcdef https://a/1 https://a/2 /x/\n",
     FF_EINVAL, "Dockerfile:2: ADD: --checksum with 2 sources, expected one URL"},
    {"FROM a\nCOPY http://example.com/x /x\n", FF_EINVAL,
     "Dockerfile:2: COPY: source \"http://example.com/x\" is a URL, expected a path in the "
     "build context (ADD --checksum=sha256:<digest> fetches URLs)"},
    /* Heredocs. */
    {"FROM a\nRUN <<EOF\necho hi\nEOF\n", FF_EINVAL,
     "Dockerfile:2: RUN: heredocs (<<EOF) are not supported, expected the script on the line "
     "or in a file COPY'd into the image"},
    {"FROM a\nRUN cat 2<<-'END' > /x\n", FF_EINVAL, "Dockerfile:2: RUN: heredocs (<<EOF)"},
    {"FROM a\nCOPY <<EOF /etc/x\n", FF_EINVAL, "Dockerfile:2: COPY: heredocs (<<EOF)"},
    /* Directives. */
    {"# escape=x\nFROM a\n", FF_EINVAL,
     "Dockerfile:1: parser directive \"escape\" has value \"x\", expected \\ or `"},
    {"# escape=`\n# ESCAPE=\\\nFROM a\n", FF_EINVAL,
     "Dockerfile:2: parser directive \"ESCAPE\" given twice, expected it at most once"},
};

static void test_parse_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        struct recipe *r = NULL;
        struct ff_err err;
        ff_err_clear(&err);
        int rc = recipe_parse(error_cases[i].src, strlen(error_cases[i].src), "Dockerfile", &r,
                              &err);
        if (rc != error_cases[i].code || strncmp(err.msg, error_cases[i].msg,
                                                 strlen(error_cases[i].msg)) != 0)
            fail_msg("case %zu <<%s>>: rc %d, message\n <<%s>>\nwant <<%s>>", i,
                     error_cases[i].src, rc, err.msg, error_cases[i].msg);
        assert_null(r);
    }
}

static void expect_error(const char *src, size_t len, int code, const char *prefix)
{
    struct recipe *r = NULL;
    struct ff_err err;
    ff_err_clear(&err);
    assert_int_equal(recipe_parse(src, len, "app/Dockerfile", &r, &err), code);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
        fail_msg("message <<%s>>, want prefix <<%s>>", err.msg, prefix);
    assert_null(r);
}

static void test_parse_nul_and_file_name(void **state)
{
    (void)state;
    static const char src[] = "FROM a\nRUN x\0y\n";
    expect_error(src, sizeof(src) - 1, FF_EINVAL,
                 "app/Dockerfile:2: NUL byte in line, expected text");
    expect_error("FROM a\nFOO\n", 11, FF_EINVAL, "app/Dockerfile:2: FOO: unknown instruction");
    /* A hostile unknown keyword is quoted safely in the message. */
    expect_error("FROM a\nX\"\x1b[31m y\n", 15, FF_EINVAL,
                 "app/Dockerfile:2: X??[31M: unknown instruction");
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * times + tl + 1);
    assert_non_null(s);
    put_bytes(s, head, hl);
    for (size_t i = 0; i < times; i++)
        put_bytes(s + hl + i * ul, unit, ul);
    put_bytes(s + hl + ul * times, tail, tl + 1);
    return s;
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* Size. */
    char *s = repeat("FROM a\n", "#", RECIPE_SIZE_MAX, "");
    expect_error(s, strlen(s), FF_ETOOBIG, "app/Dockerfile: 1048583 bytes, expected at most "
                                           "1048576");
    free(s);
    /* One long physical line. */
    s = repeat("FROM a\nRUN ", "x", RECIPE_LINE_MAX, "\n");
    expect_error(s, strlen(s), FF_ETOOBIG,
                 "app/Dockerfile:2: line of 65540 bytes, expected at most 65536");
    free(s);
    /* Continuation lines joined past the limit. */
    s = repeat("FROM a\nRUN x\\\n", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\\n",
               1100, "\n");
    expect_error(s, strlen(s), FF_ETOOBIG, "app/Dockerfile:");
    assert_non_null(strstr(s, "x"));
    free(s);
    /* Stages. */
    s = repeat("", "FROM a\n", RECIPE_STAGES_MAX, "FROM last\n");
    expect_error(s, strlen(s), FF_ETOOBIG,
                 "app/Dockerfile:129: FROM: more than 128 stages, expected at most 128");
    free(s);
    s = repeat("", "FROM a\n", RECIPE_STAGES_MAX, "");
    struct recipe *r = NULL;
    struct ff_err err;
    assert_int_equal(recipe_parse(s, strlen(s), "Dockerfile", &r, &err), 0);
    assert_int_equal(r->n_stages, RECIPE_STAGES_MAX);
    recipe_free(r);
    free(s);
    /* Instructions. */
    s = repeat("FROM a\n", "RUN x\n", RECIPE_INSTRS_MAX, "");
    expect_error(s, strlen(s), FF_ETOOBIG,
                 "app/Dockerfile:4097: RUN: more than 4096 instructions, expected at most 4096");
    free(s);
    s = repeat("FROM a\n", "RUN x\n", RECIPE_INSTRS_MAX - 1, "");
    assert_int_equal(recipe_parse(s, strlen(s), "Dockerfile", &r, &err), 0);
    assert_int_equal(r->stages[0].n_instrs, RECIPE_INSTRS_MAX - 1);
    for (size_t i = 0; i < r->stages[0].n_instrs; i++)
        assert_int_equal(r->stages[0].instrs[i].line, i + 2);
    recipe_free(r);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_parse_forms),
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_stage_find),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_nul_and_file_name),
        cmocka_unit_test(test_parse_limits),
    };
    return cmocka_run_group_tests_name("workers/dockerfile", tests, NULL, NULL);
}
