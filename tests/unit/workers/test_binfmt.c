#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "worker.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AARCH64_MAGIC                                                                        \
    "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02" \
    "\\x00\\xb7\\x00"
#define AARCH64_MASK                                                                         \
    "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe" \
    "\\xff\\xff\\xff"
#define AARCH64_INTERP "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
#define AARCH64_LINE                                                                         \
    ":qemu-aarch64:M::" AARCH64_MAGIC ":" AARCH64_MASK ":" AARCH64_INTERP ":OPF"

/* As Debian's qemu-user-static ships them. */
static const char conf_aarch64[] = "# comment\n\n" AARCH64_LINE "\n";
static const char binfmts_arm[] = "package qemu-user-static\n"
                                  "interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\n"
                                  "magic \\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\n"
                                  "offset 0\n"
                                  "mask \\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\n"
                                  "credentials no\n"
                                  "fix_binary yes\n"
                                  "preserve yes\n";
/* As the kernel shows a registered entry. */
static const char entry_enabled[] = "enabled\n"
                                    "interpreter " AARCH64_INTERP "\n"
                                    "flags: POF\n"
                                    "offset 0\n"
                                    "magic 7f454c460201010000000000000000000200b700\n"
                                    "mask ffffffffffffff00fffffffffffffffffeffffff\n";

static void test_parse_conf(void **state)
{
    (void)state;
    struct binfmt_def d = {0};
    struct ff_err err;
    assert_int_equal(binfmt_def_parse_conf(conf_aarch64, strlen(conf_aarch64), &d, &err), 0);
    assert_string_equal(d.name, "qemu-aarch64");
    assert_int_equal(d.type, 'M');
    assert_int_equal(d.offset, 0);
    assert_string_equal(d.magic, AARCH64_MAGIC);
    assert_string_equal(d.mask, AARCH64_MASK);
    assert_string_equal(d.interpreter, AARCH64_INTERP);
    assert_string_equal(d.flags, "OPF");
    char *line = NULL;
    assert_int_equal(binfmt_def_line(&d, &line, &err), 0);
    /* Already with F: the register line is the definition as shipped (the
     * empty offset written as 0). */
    assert_string_equal(line, ":qemu-aarch64:M:0:" AARCH64_MAGIC ":" AARCH64_MASK
                              ":" AARCH64_INTERP ":OPF");
    free(line);
    binfmt_def_release(&d);
    assert_null(d.name);
    binfmt_def_release(NULL);
}

static void test_parse_conf_variants(void **state)
{
    (void)state;
    struct binfmt_def d = {0};
    struct ff_err err;
    /* No flags field, another delimiter, an offset, a trailing delimiter. */
    static const struct {
        const char *text;
        const char *name, *flags;
        unsigned offset;
        char type;
    } ok[] = {
        {":a:M::\\x7fELF::/bin/q\n", "a", "", 0, 'M'},
        {"|b|E|3|ext||/bin/q|P|\r\n", "b", "P", 3, 'E'},
        {";c:x\n:c:M:12:mm:kk:/q:F:\n", "c", "F", 12, 'M'},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (binfmt_def_parse_conf(ok[i].text, strlen(ok[i].text), &d, &err) != 0)
            fail_msg("\"%s\": %s", ok[i].text, err.msg);
        assert_string_equal(d.name, ok[i].name);
        assert_string_equal(d.flags, ok[i].flags);
        assert_int_equal(d.offset, ok[i].offset);
        assert_int_equal(d.type, ok[i].type);
        binfmt_def_release(&d);
    }
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"", "no entry"},
        {"# only a comment\n\n", "no entry"},
        {":a:M::m:k\n", "fields"},
        {":a:X::m:k:/q:F\n", "type must be M or E"},
        {"::M::m:k:/q:F\n", "empty name"},
        {":a:M::::/q:F\n", "empty magic"},
        {":a:M::m:k::F\n", "empty interpreter"},
        {":a:M:x:m:k:/q:F\n", "bad offset"},
        {":a:M:-1:m:k:/q:F\n", "bad offset"},
        {":a:M::m:k:/q:F:extra\n", "more than 7 fields"},
        {":\n", "too short"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = binfmt_def_parse_conf(bad[i].text, strlen(bad[i].text), &d, &err);
        if (rc != FF_EINVAL || strstr(err.msg, bad[i].msg) == NULL)
            fail_msg("\"%s\": got %d \"%s\", expected \"%s\"", bad[i].text, rc, err.msg,
                     bad[i].msg);
        assert_null(d.name);
    }
    char *huge = malloc(BINFMT_TEXT_MAX + 2);
    assert_non_null(huge);
    memset(huge, '#', BINFMT_TEXT_MAX + 1);
    assert_int_equal(binfmt_def_parse_conf(huge, BINFMT_TEXT_MAX + 1, &d, &err), FF_ETOOBIG);
    free(huge);
}

static void test_parse_binfmts(void **state)
{
    (void)state;
    struct binfmt_def d = {0};
    struct ff_err err;
    assert_int_equal(binfmt_def_parse_binfmts("qemu-arm", binfmts_arm, strlen(binfmts_arm), &d,
                                              &err), 0);
    assert_string_equal(d.name, "qemu-arm");
    assert_int_equal(d.type, 'M');
    assert_string_equal(d.interpreter, "/usr/libexec/qemu-binfmt/arm-binfmt-P");
    assert_string_equal(d.magic, "\\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00");
    assert_string_equal(d.mask, "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00");
    assert_string_equal(d.flags, "PF"); /* preserve, no credentials, fix_binary */
    char *line = NULL;
    assert_int_equal(binfmt_def_line(&d, &line, &err), 0);
    assert_string_equal(line, ":qemu-arm:M:0:\\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00:"
                              "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00:"
                              "/usr/libexec/qemu-binfmt/arm-binfmt-P:PF");
    free(line);
    binfmt_def_release(&d);

    /* Without fix_binary the line still gets F; an extension entry is E. */
    static const char ext[] = "interpreter /usr/bin/x\nextension jar\ncredentials yes\n";
    assert_int_equal(binfmt_def_parse_binfmts("jar", ext, strlen(ext), &d, &err), 0);
    assert_int_equal(d.type, 'E');
    assert_string_equal(d.flags, "C");
    assert_int_equal(binfmt_def_line(&d, &line, &err), 0);
    assert_string_equal(line, ":jar:E:0:jar::/usr/bin/x:CF");
    free(line);
    binfmt_def_release(&d);

    static const char none[] = "interpreter /usr/bin/x\n";
    assert_int_equal(binfmt_def_parse_binfmts("n", none, strlen(none), &d, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "neither magic nor extension"));
    static const char nointerp[] = "magic \\x7f\n";
    assert_int_equal(binfmt_def_parse_binfmts("n", nointerp, strlen(nointerp), &d, &err),
                     FF_EINVAL);
    assert_non_null(strstr(err.msg, "empty interpreter"));
}

static void test_parse_entry(void **state)
{
    (void)state;
    struct binfmt_entry e = {0};
    struct ff_err err;
    assert_int_equal(binfmt_entry_parse(entry_enabled, strlen(entry_enabled), &e, &err), 0);
    assert_true(e.enabled);
    assert_string_equal(e.interpreter, AARCH64_INTERP);
    assert_string_equal(e.flags, "POF");
    binfmt_entry_release(&e);
    static const char disabled[] = "disabled\ninterpreter /q\nflags: \noffset 0\n";
    assert_int_equal(binfmt_entry_parse(disabled, strlen(disabled), &e, &err), 0);
    assert_false(e.enabled);
    assert_string_equal(e.flags, "");
    binfmt_entry_release(&e);
    static const char noflags[] = "enabled\ninterpreter /q\n";
    assert_int_equal(binfmt_entry_parse(noflags, strlen(noflags), &e, &err), 0);
    assert_string_equal(e.flags, "");
    binfmt_entry_release(&e);
    static const char nostate[] = "interpreter /q\nflags: F\n";
    assert_int_equal(binfmt_entry_parse(nostate, strlen(nostate), &e, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "enabled/disabled"));
    assert_null(e.interpreter);
    static const char nointerp[] = "enabled\nflags: F\n";
    assert_int_equal(binfmt_entry_parse(nointerp, strlen(nointerp), &e, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "interpreter"));
    binfmt_entry_release(NULL);
}

static void test_def_line_refuses_bad_fields(void **state)
{
    (void)state;
    struct binfmt_def d = {.name = "x", .type = 'M', .magic = "m", .mask = "",
                           .interpreter = "/a:b", .flags = ""};
    char *line = NULL;
    struct ff_err err;
    assert_int_equal(binfmt_def_line(&d, &line, &err), FF_EINVAL);
    assert_null(line);
    d.interpreter = "/q\n:evil:M::x::/bin/sh:";
    assert_int_equal(binfmt_def_line(&d, &line, &err), FF_EINVAL);
    d.interpreter = "/q";
    d.type = 'Z';
    assert_int_equal(binfmt_def_line(&d, &line, &err), FF_EINVAL);
    d.type = 'M';
    d.flags = NULL;
    assert_int_equal(binfmt_def_line(&d, &line, &err), FF_EINVAL);
}

/* A directory standing in for binfmt_misc: entries are plain files. */
struct fake {
    char dir[64];
};

static void fake_write(const struct fake *f, const char *name, const char *text)
{
    char p[128];
    (void)snprintf(p, sizeof(p), "%s/%s", f->dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static char *fake_read(const struct fake *f, const char *name)
{
    char p[128];
    (void)snprintf(p, sizeof(p), "%s/%s", f->dir, name);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 4096);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 4095, fp);
    buf[n] = '\0';
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void fake_free(struct fake *f)
{
    static const char *const names[] = {"register", "qemu-test"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[128];
        (void)snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        (void)unlink(p);
    }
    assert_int_equal(rmdir(f->dir), 0);
}

static void test_ensure_def_decisions(void **state)
{
    (void)state;
    struct fake f;
    (void)snprintf(f.dir, sizeof(f.dir), "/tmp/ff-binfmt-XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    fake_write(&f, "register", "");
    struct binfmt_def d = {.name = "qemu-test", .type = 'M', .magic = "\\x7fQ", .mask = "",
                           .interpreter = "/bin/true", .flags = "P"};
    struct ff_err err;

    /* Registered, enabled, with F and the same interpreter: nothing written. */
    fake_write(&f, "qemu-test", "enabled\ninterpreter /bin/true\nflags: PF\n");
    assert_int_equal(binfmt_ensure_def(f.dir, &d, &err), 0);
    char *reg = fake_read(&f, "register");
    assert_string_equal(reg, "");
    free(reg);

    /* Without F: removed ("-1") and registered again with F. A real kernel
     * would now show the new entry; the fake still shows "-1", which must
     * be reported rather than taken for success. */
    fake_write(&f, "qemu-test", "enabled\ninterpreter /bin/true\nflags: P\n");
    assert_int_equal(binfmt_ensure_def(f.dir, &d, &err), FF_EINVAL);
    char *entry = fake_read(&f, "qemu-test");
    assert_true(strncmp(entry, "-1", 2) == 0);
    free(entry);
    reg = fake_read(&f, "register");
    assert_string_equal(reg, ":qemu-test:M:0:\\x7fQ::/bin/true:PF");
    free(reg);

    /* Disabled, or another interpreter: replaced the same way. */
    static const char *const stale[] = {"disabled\ninterpreter /bin/true\nflags: PF\n",
                                        "enabled\ninterpreter /old/qemu\nflags: PF\n"};
    for (size_t i = 0; i < 2; i++) {
        fake_write(&f, "qemu-test", stale[i]);
        fake_write(&f, "register", "");
        (void)binfmt_ensure_def(f.dir, &d, &err);
        reg = fake_read(&f, "register");
        assert_string_equal(reg, ":qemu-test:M:0:\\x7fQ::/bin/true:PF");
        free(reg);
    }

    /* The interpreter is missing: a clear error, nothing written. */
    fake_write(&f, "register", "");
    d.interpreter = "/nonexistent/qemu-test-static";
    assert_int_equal(binfmt_ensure_def(f.dir, &d, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/qemu-test-static"));
    assert_non_null(strstr(err.msg, "qemu-user-static"));
    reg = fake_read(&f, "register");
    assert_string_equal(reg, "");
    free(reg);
    fake_free(&f);
}

static void test_ensure_arches(void **state)
{
    (void)state;
    struct ff_err err;
    assert_int_equal(binfmt_ensure("sparc", &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"sparc\""));
    assert_int_equal(binfmt_ensure("", &err), FF_EINVAL);
#if defined(__x86_64__)
    /* The host's own architecture needs nothing (and touches nothing). */
    assert_int_equal(binfmt_ensure("amd64", &err), 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_conf),
        cmocka_unit_test(test_parse_conf_variants),
        cmocka_unit_test(test_parse_binfmts),
        cmocka_unit_test(test_parse_entry),
        cmocka_unit_test(test_def_line_refuses_bad_fields),
        cmocka_unit_test(test_ensure_def_decisions),
        cmocka_unit_test(test_ensure_arches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
