#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "gitd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A stream over memory: input handed out at most chunk bytes per read,
 * output and messages collected; writes fail once fail_writes is set. */
struct mem {
    const char *in;
    size_t in_len;
    size_t in_pos;
    size_t chunk;
    struct ff_buf out;
    struct ff_buf msg;
    bool fail_writes;
};

static ssize_t mem_read(void *ctx, void *buf, size_t n)
{
    struct mem *m = ctx;
    size_t left = m->in_len - m->in_pos;
    if (n > left)
        n = left;
    if (m->chunk > 0 && n > m->chunk)
        n = m->chunk;
    memcpy(buf, m->in + m->in_pos, n);
    m->in_pos += n;
    return (ssize_t)n;
}

static int mem_write(void *ctx, const void *buf, size_t n)
{
    struct mem *m = ctx;
    if (m->fail_writes) {
        errno = EPIPE;
        return -1;
    }
    return ff_buf_append(&m->out, buf, n) == 0 ? 0 : -1;
}

static int mem_write_err(void *ctx, const void *buf, size_t n)
{
    struct mem *m = ctx;
    return ff_buf_append(&m->msg, buf, n) == 0 ? 0 : -1;
}

struct fixture {
    struct mem m;
    struct gitd_stream s;
    struct pktline p;
};

static void open_mem(struct fixture *f, const char *in, size_t len, size_t chunk)
{
    memset(f, 0, sizeof(*f));
    f->m.in = in;
    f->m.in_len = len;
    f->m.chunk = chunk;
    ff_buf_init(&f->m.out, 1u << 20);
    ff_buf_init(&f->m.msg, 1u << 20);
    f->s.read = mem_read;
    f->s.write = mem_write;
    f->s.write_err = mem_write_err;
    f->s.ctx = &f->m;
    assert_int_equal(pktline_init(&f->p, &f->s, NULL), 0);
}

static void close_mem(struct fixture *f)
{
    pktline_release(&f->p);
    ff_buf_release(&f->m.out);
    ff_buf_release(&f->m.msg);
}

static void expect_read(struct fixture *f, enum pktline_kind kind, const char *payload)
{
    enum pktline_kind k;
    size_t len;
    struct ff_err err;
    ff_err_clear(&err);
    if (pktline_read(&f->p, &k, &len, &err) != 0)
        fail_msg("read failed: %s", err.msg);
    assert_int_equal(k, kind);
    if (payload != NULL) {
        assert_int_equal(len, strlen(payload));
        assert_memory_equal(f->p.line, payload, len);
    } else {
        assert_int_equal(len, 0);
    }
}

static void expect_read_error(const char *in, size_t len, const char *fragment)
{
    struct fixture f;
    open_mem(&f, in, len, 0);
    enum pktline_kind k;
    size_t n;
    struct ff_err err;
    ff_err_clear(&err);
    int rc = pktline_read(&f.p, &k, &n, &err);
    if (rc != FF_EINVAL || strstr(err.msg, fragment) == NULL)
        fail_msg("input \"%.*s\": rc=%d msg=\"%s\", expected \"%s\"", (int)len, in, rc, err.msg,
                 fragment);
    close_mem(&f);
}

static void test_read_kinds(void **state)
{
    (void)state;
    static const char in[] = "000ahello\n00000001000200040009upper";
    /* the same bytes whole and one byte per read */
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        struct fixture f;
        open_mem(&f, in, sizeof(in) - 1, chunk);
        expect_read(&f, PKTLINE_DATA, "hello\n");
        expect_read(&f, PKTLINE_FLUSH, NULL);
        expect_read(&f, PKTLINE_DELIM, NULL);
        expect_read(&f, PKTLINE_RESPONSE_END, NULL);
        expect_read(&f, PKTLINE_DATA, "");
        expect_read(&f, PKTLINE_DATA, "upper");
        expect_read(&f, PKTLINE_EOF, NULL);
        expect_read(&f, PKTLINE_EOF, NULL);
        close_mem(&f);
    }
}

static void test_read_limits(void **state)
{
    (void)state;
    /* the largest pkt-line, 65520 bytes in all, is accepted */
    size_t len = PKTLINE_MAX;
    char *big = malloc(len + 4);
    assert_non_null(big);
    static const char fff0[4] = {'f', 'f', 'f', '0'}, fff1[4] = {'f', 'f', 'f', '1'};
    memcpy(big, fff0, sizeof(fff0));
    memset(big + 4, 'x', len - 4);
    struct fixture f;
    open_mem(&f, big, len, 1000);
    enum pktline_kind k;
    size_t n;
    assert_int_equal(pktline_read(&f.p, &k, &n, NULL), 0);
    assert_int_equal(k, PKTLINE_DATA);
    assert_int_equal(n, PKTLINE_DATA_MAX);
    close_mem(&f);
    /* one more is refused before anything is read */
    memcpy(big, fff1, sizeof(fff1));
    expect_read_error(big, len, "pkt-line length 65521 is over the limit");
    free(big);

    expect_read_error("0003", 4, "pkt-line length 0003 is invalid");
    expect_read_error("00zz", 4, "pkt-line length \"00zz\" is not four hex digits");
    expect_read_error("-001", 4, "not four hex digits");
    expect_read_error(" 004", 4, "not four hex digits");
    expect_read_error("0\n04", 4, "\"0?04\"");
    expect_read_error("00", 2, "input ends inside a pkt-line length (2 of 4 digits)");
    expect_read_error("0010abc", 7, "input ends inside a pkt-line (3 of 12 payload bytes)");
}

static void test_parse_length(void **state)
{
    (void)state;
    enum pktline_kind k;
    size_t n;
    assert_int_equal(pktline_parse_length((const unsigned char *)"0004", &k, &n, NULL), 0);
    assert_int_equal(k, PKTLINE_DATA);
    assert_int_equal(n, 0);
    assert_int_equal(pktline_parse_length((const unsigned char *)"FFF0", &k, &n, NULL), 0);
    assert_int_equal(n, PKTLINE_DATA_MAX);
    assert_int_equal(pktline_parse_length((const unsigned char *)"ffff", &k, &n, NULL), FF_EINVAL);
    assert_int_equal(pktline_parse_length((const unsigned char *)"0002", &k, &n, NULL), 0);
    assert_int_equal(k, PKTLINE_RESPONSE_END);
}

static void test_read_raw_after_lines(void **state)
{
    (void)state;
    static const char in[] = "0008cmd\n0000PACKrest";
    struct fixture f;
    open_mem(&f, in, sizeof(in) - 1, 0);
    expect_read(&f, PKTLINE_DATA, "cmd\n");
    expect_read(&f, PKTLINE_FLUSH, NULL);
    char buf[5];
    size_t n;
    assert_int_equal(pktline_read_raw(&f.p, buf, 4, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "PACK", 4);
    assert_int_equal(pktline_read_raw(&f.p, buf, sizeof(buf), &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "rest", 4);
    assert_int_equal(pktline_read_raw(&f.p, buf, sizeof(buf), &n, NULL), 0);
    assert_int_equal(n, 0);
    close_mem(&f);
}

static void test_write(void **state)
{
    (void)state;
    struct fixture f;
    open_mem(&f, "", 0, 0);
    assert_int_equal(pktline_printf(&f.p, NULL, "ok %s\n", "refs/heads/main"), 0);
    assert_int_equal(pktline_flush(&f.p, NULL), 0);
    assert_int_equal(pktline_write(&f.p, "", 0, NULL), 0);
    assert_string_equal(f.m.out.data, "0017ok refs/heads/main\n00000004");

    char *big = calloc(1, PKTLINE_DATA_MAX + 2);
    assert_non_null(big);
    assert_int_equal(pktline_write(&f.p, big, PKTLINE_DATA_MAX + 1, NULL), FF_ETOOBIG);
    free(big);
    close_mem(&f);
}

static void test_band_split(void **state)
{
    (void)state;
    size_t len = PKTLINE_BAND_DATA_MAX + 10;
    char *data = malloc(len);
    assert_non_null(data);
    memset(data, 'd', len);
    struct fixture f;
    open_mem(&f, "", 0, 0);
    f.p.sideband = true;
    assert_int_equal(pktline_band(&f.p, PKTLINE_BAND_DATA, data, len, NULL), 0);
    /* a full packet of 65520 bytes, then the 10 left over */
    assert_int_equal(f.m.out.len, PKTLINE_MAX + 4 + 1 + 10);
    assert_memory_equal(f.m.out.data, "fff0\x01", 5);
    assert_memory_equal(f.m.out.data + PKTLINE_MAX, "000f\x01", 5);

    /* without side-band: data raw, messages to the message stream */
    ff_buf_reset(&f.m.out);
    f.p.sideband = false;
    assert_int_equal(pktline_band(&f.p, PKTLINE_BAND_DATA, "raw", 3, NULL), 0);
    assert_int_equal(pktline_band(&f.p, PKTLINE_BAND_PROGRESS, "note\n", 5, NULL), 0);
    assert_string_equal(f.m.out.data, "raw");
    assert_string_equal(f.m.msg.data, "note\n");
    free(data);
    close_mem(&f);
}

static void test_progress(void **state)
{
    (void)state;
    struct fixture f;
    open_mem(&f, "", 0, 0);
    f.p.sideband = true;
    struct progress p = {.pkt = &f.p, .quiet = false};
    pktline_progress(&p, "amd64: %s", "\x1b[31mred\tok\x7f");
    assert_int_equal(f.m.out.len, 4 + 1 + 20);
    assert_memory_equal(f.m.out.data, "0019\x02" "amd64: ?[31mred\tok?\n", 25);

    ff_buf_reset(&f.m.out);
    p.quiet = true;
    pktline_progress(&p, "dropped");
    assert_int_equal(f.m.out.len, 0);

    /* a line longer than a packet is cut to fit one */
    p.quiet = false;
    char *huge = malloc(100000);
    assert_non_null(huge);
    memset(huge, 'h', 99999);
    huge[99999] = '\0';
    pktline_progress(&p, "%s", huge);
    assert_int_equal(f.m.out.len, PKTLINE_MAX);
    assert_int_equal(f.m.out.data[PKTLINE_MAX - 1], '\n');
    free(huge);

    ff_buf_reset(&f.m.out);
    pktline_fatal(&f.p, "bad");
    assert_memory_equal(f.m.out.data, "0012\x03" "ff-gitd: bad\n", 0x12);
    close_mem(&f);
}

static void test_write_failure_sticks(void **state)
{
    (void)state;
    struct fixture f;
    open_mem(&f, "", 0, 0);
    f.m.fail_writes = true;
    struct ff_err err;
    assert_int_equal(pktline_flush(&f.p, &err), FF_EIO);
    assert_true(f.p.out_failed);
    f.m.fail_writes = false;
    assert_int_equal(pktline_flush(&f.p, &err), FF_EIO);
    assert_string_equal(err.msg, "the client is gone");
    assert_int_equal(f.m.out.len, 0);
    close_mem(&f);
}

static void test_buf(void **state)
{
    (void)state;
    struct ff_buf b;
    ff_buf_init(&b, 64);
    assert_int_equal(pktline_buf_printf(&b, "a%cb\n", '\0'), 0);
    assert_int_equal(pktline_buf_flush(&b), 0);
    assert_int_equal(b.len, 8 + 4);
    assert_memory_equal(b.data, "0008a\0b\n0000", 12);
    assert_int_equal(pktline_buf_printf(&b, "%080d", 0), FF_ETOOBIG);
    ff_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_kinds),
        cmocka_unit_test(test_read_limits),
        cmocka_unit_test(test_parse_length),
        cmocka_unit_test(test_read_raw_after_lines),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_band_split),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_write_failure_sticks),
        cmocka_unit_test(test_buf),
    };
    return cmocka_run_group_tests_name("gitd/pktline", tests, NULL, NULL);
}
