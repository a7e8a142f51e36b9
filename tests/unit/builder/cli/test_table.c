#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What fn printed into a memory stream. */
struct capture {
    FILE *f;
    char *text;
    size_t len;
};

static void cap_open(struct capture *c)
{
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
    assert_non_null(c->f);
}

static const char *cap_close(struct capture *c)
{
    assert_int_equal(fclose(c->f), 0);
    return c->text;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return v;
}

static void test_time(void **state)
{
    (void)state;
    char out[TABLE_TIME_SIZE];
    assert_int_equal(table_time(0, out), 0);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    assert_int_equal(table_time(1700000000, out), 0);
    assert_string_equal(out, "2023-11-14T22:13:20Z");
    assert_int_equal(table_time(951782400, out), 0); /* a leap day */
    assert_string_equal(out, "2000-02-29T00:00:00Z");
    assert_int_equal(table_time(253402300799LL, out), 0);
    assert_string_equal(out, "9999-12-31T23:59:59Z");
    assert_int_equal(table_time(253402300800LL, out), FF_ERANGE);
    assert_int_equal(table_time(INT64_MIN, out), FF_ERANGE);
    assert_int_equal(table_time(INT64_MAX, out), FF_ERANGE);
}

static void test_clean(void **state)
{
    (void)state;
    const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"", ""},
        {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80"},
        {"\x1b[2Jgone", "?[2Jgone"},        /* ESC */
        {"a\nb\tc\rd\x7f", "a?b?c?d?"},      /* C0 and DEL */
        {"x\xc2\x9b" "31m", "x?31m"},       /* C1 CSI, two bytes, one '?' */
        {"\xff\xfe", "??"},                 /* never valid */
        {"\xc0\xaf", "??"},                 /* overlong '/' */
        {"\xed\xa0\x80", "???"},            /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "????"},       /* past U+10FFFF */
        {"\xe6\x97", "??"},                 /* cut short */
        {"\xc2\xa0nbsp", "\xc2\xa0nbsp"},   /* U+00A0 is not a control */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = table_clean(cases[i].in);
        assert_non_null(got);
        if (strcmp(got, cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, cases[i].out);
        free(got);
    }
}

static void test_width(void **state)
{
    (void)state;
    assert_int_equal(table_width(""), 0);
    assert_int_equal(table_width("abc"), 3);
    assert_int_equal(table_width("caf\xc3\xa9"), 4);
    assert_int_equal(table_width("\xf0\x9f\x9a\x80"), 1);
}

static void expect_cell(const json_t *obj, const char *key, const char *key2,
                        enum table_kind kind, const char *want)
{
    struct table_col col = {"T", key, key2, kind};
    struct ff_err err;
    char *got = NULL;
    assert_int_equal(table_cell(obj, &col, &got, &err), 0);
    if (strcmp(got, want) != 0)
        fail_msg("cell \"%s\": got \"%s\", want \"%s\"", key, got, want);
    free(got);
}

static void test_cells(void **state)
{
    (void)state;
    json_t *o = parse("{\"s\":\"text\",\"n\":42,\"t\":0,\"nul\":null,\"yes\":true,\"no\":false,"
                      "\"archs\":[\"amd64\",\"arm64\"],\"obj\":{\"a\":1,\"b\":[2]},"
                      "\"nested\":[[1],2],\"r\":1.5,\"ts\":\"2024-01-01T00:00:00Z\","
                      "\"owner\":\"bob\",\"name\":\"demo\",\"esc\":\"\\u001b]0;pwned\\u0007\"}");
    expect_cell(o, "s", NULL, TABLE_TEXT, "text");
    expect_cell(o, "n", NULL, TABLE_TEXT, "42");
    expect_cell(o, "n", NULL, TABLE_TIME, "1970-01-01T00:00:42Z");
    expect_cell(o, "t", NULL, TABLE_TIME, "1970-01-01T00:00:00Z");
    expect_cell(o, "nul", NULL, TABLE_TIME, "-");
    expect_cell(o, "missing", NULL, TABLE_TEXT, "-");
    expect_cell(o, "yes", NULL, TABLE_TEXT, "yes");
    expect_cell(o, "no", NULL, TABLE_TEXT, "no");
    expect_cell(o, "archs", NULL, TABLE_TEXT, "amd64,arm64");
    expect_cell(o, "obj", NULL, TABLE_TEXT, "{\"a\":1,\"b\":[2]}");
    expect_cell(o, "nested", NULL, TABLE_TEXT, "[[1],2]");
    expect_cell(o, "r", NULL, TABLE_TEXT, "1.5");
    /* A time the server already formatted is shown as it is. */
    expect_cell(o, "ts", NULL, TABLE_TIME, "2024-01-01T00:00:00Z");
    expect_cell(o, "owner", "name", TABLE_TEXT, "bob/demo");
    expect_cell(o, "owner", "missing", TABLE_TEXT, "bob/-");
    /* A terminal title escape from the server is defused. */
    expect_cell(o, "esc", NULL, TABLE_TEXT, "?]0;pwned?");
    json_decref(o);
}

static const struct table_col cols[] = {
    {"ID", "id", NULL, TABLE_TEXT},
    {"APP", "owner", "name", TABLE_TEXT},
    {"CREATED", "created_at", NULL, TABLE_TIME},
    {"NOTE", "note", NULL, TABLE_TEXT},
};

static void test_print_table(void **state)
{
    (void)state;
    json_t *items = parse("[{\"id\":1,\"owner\":\"bob\",\"name\":\"demo\",\"created_at\":0,"
                          "\"note\":\"caf\xc3\xa9\"},"
                          "{\"id\":1234,\"owner\":\"alice\",\"name\":\"a-much-longer-name\","
                          "\"created_at\":1700000000,\"note\":null},"
                          "{\"id\":7,\"owner\":\"x\",\"name\":\"y\",\"created_at\":null}]");
    struct capture c;
    struct ff_err err;
    cap_open(&c);
    assert_int_equal(table_print(c.f, cols, 4, items, &err), 0);
    /* Aligned on code points, two spaces apart, no trailing spaces. */
    assert_string_equal(cap_close(&c),
                        "ID    APP                       CREATED               NOTE\n"
                        "1     bob/demo                  1970-01-01T00:00:00Z  caf\xc3\xa9\n"
                        "1234  alice/a-much-longer-name  2023-11-14T22:13:20Z  -\n"
                        "7     x/y                       -                     -\n");
    free(c.text);
    json_decref(items);

    /* An empty list is the header alone. */
    items = parse("[]");
    cap_open(&c);
    assert_int_equal(table_print(c.f, cols, 2, items, &err), 0);
    assert_string_equal(cap_close(&c), "ID  APP\n");
    free(c.text);
    json_decref(items);

    /* Empty last cells leave no trailing spaces. */
    items = parse("[{\"id\":1,\"owner\":\"o\",\"name\":\"n\",\"note\":\"\"}]");
    const struct table_col two[] = {{"ID", "id", NULL, TABLE_TEXT},
                                    {"NOTE", "note", NULL, TABLE_TEXT}};
    cap_open(&c);
    assert_int_equal(table_print(c.f, two, 2, items, &err), 0);
    assert_string_equal(cap_close(&c), "ID  NOTE\n1\n");
    free(c.text);
    json_decref(items);

    /* What is not a list of objects is refused, naming the item. */
    items = parse("[{\"id\":1},\"oops\"]");
    cap_open(&c);
    assert_int_equal(table_print(c.f, cols, 4, items, &err), FF_EINVAL);
    if (strstr(err.msg, "item 2") == NULL || strstr(err.msg, "string") == NULL)
        fail_msg("message: %s", err.msg);
    (void)cap_close(&c);
    free(c.text);
    json_decref(items);
    items = parse("{\"items\":[]}");
    cap_open(&c);
    assert_int_equal(table_print(c.f, cols, 4, items, &err), FF_EINVAL);
    (void)cap_close(&c);
    free(c.text);
    json_decref(items);
}

static void test_print_record(void **state)
{
    (void)state;
    const struct table_col fields[] = {
        {"app", "owner", "name", TABLE_TEXT},
        {"archs", "archs", NULL, TABLE_TEXT},
        {"target release", "target_release", NULL, TABLE_TEXT},
        {"created", "created_at", NULL, TABLE_TIME},
        {"note", "note", NULL, TABLE_TEXT},
    };
    json_t *app = parse("{\"owner\":\"bob\",\"name\":\"demo\",\"archs\":[\"amd64\"],"
                        "\"target_release\":null,\"created_at\":1700000000,\"note\":\"\"}");
    struct capture c;
    struct ff_err err;
    cap_open(&c);
    assert_int_equal(table_print_record(c.f, fields, 5, app, &err), 0);
    assert_string_equal(cap_close(&c), "app:             bob/demo\n"
                                       "archs:           amd64\n"
                                       "target release:  -\n"
                                       "created:         2023-11-14T22:13:20Z\n"
                                       "note:\n");
    free(c.text);
    json_decref(app);

    json_t *arr = parse("[1]");
    cap_open(&c);
    assert_int_equal(table_print_record(c.f, fields, 5, arr, &err), FF_EINVAL);
    (void)cap_close(&c);
    free(c.text);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),         cmocka_unit_test(test_clean),
        cmocka_unit_test(test_width),        cmocka_unit_test(test_cells),
        cmocka_unit_test(test_print_table),  cmocka_unit_test(test_print_record),
    };
    return cmocka_run_group_tests_name("builder/cli/table", tests, NULL, NULL);
}
