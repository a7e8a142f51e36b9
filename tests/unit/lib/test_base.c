/* Tests of the small modules everything stands on: err, buf, str, base64. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_base64.h"
#include "ff_buf.h"
#include "ff_err.h"
#include "ff_str.h"

#include <stdlib.h>
#include <string.h>

static void test_err(void **state)
{
    (void)state;
    struct ff_err err;
    assert_int_equal(ff_err_set(&err, FF_EINVAL, "name \"%s\": bad", "x"), FF_EINVAL);
    assert_string_equal(err.msg, "name \"x\": bad");
    assert_int_equal(ff_err_wrap(&err, "upload %d", 7), FF_EINVAL);
    assert_string_equal(err.msg, "upload 7: name \"x\": bad");
    assert_int_equal(ff_err_set(NULL, FF_EIO, "ignored"), FF_EIO);
    char big[FF_ERR_MSG_MAX * 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ff_err_set(&err, FF_ETOOBIG, "%s", big);
    assert_int_equal(strlen(err.msg), FF_ERR_MSG_MAX - 1);
    ff_err_clear(&err);
    assert_int_equal(err.code, FF_OK);
    assert_string_equal(ff_err_name(FF_ECONFLICT), "ECONFLICT");
    assert_string_equal(ff_err_name(-999), "EUNKNOWN");
}

static void test_buf(void **state)
{
    (void)state;
    struct ff_buf b;
    ff_buf_init(&b, 10);
    assert_int_equal(ff_buf_append_str(&b, "hello"), 0);
    assert_int_equal(ff_buf_printf(&b, "%d", 1234), 0);
    assert_string_equal(b.data, "hello1234");
    assert_int_equal(ff_buf_append_str(&b, "xy"), FF_ETOOBIG);
    assert_string_equal(b.data, "hello1234");
    assert_int_equal(ff_buf_printf(&b, "%s", "ab"), FF_ETOOBIG);
    assert_int_equal(b.len, 9);
    assert_int_equal(ff_buf_append(&b, "z", 1), 0);
    assert_int_equal(ff_buf_append(&b, "", 0), 0);
    assert_int_equal(ff_buf_append(&b, "z", SIZE_MAX), FF_ETOOBIG);
    char *s = ff_buf_steal(&b);
    assert_string_equal(s, "hello1234z");
    free(s);
    assert_null(b.data);
    s = ff_buf_steal(&b);
    assert_string_equal(s, "");
    free(s);
    ff_buf_release(&b);
}

static void test_strlcpy(void **state)
{
    (void)state;
    char small[4];
    assert_int_equal(ff_strlcpy(small, "abcdef", sizeof(small)), 6);
    assert_string_equal(small, "abc");
    assert_int_equal(ff_strlcpy(small, "ab", sizeof(small)), 2);
    assert_string_equal(small, "ab");
}

static void test_parse_numbers(void **state)
{
    (void)state;
    int64_t i = 0;
    uint64_t u = 0;
    assert_int_equal(ff_parse_i64("-42", -100, 100, &i), 0);
    assert_int_equal(i, -42);
    assert_int_equal(ff_parse_i64("101", -100, 100, &i), FF_ERANGE);
    assert_int_equal(ff_parse_i64("99999999999999999999", INT64_MIN, INT64_MAX, &i), FF_ERANGE);
    assert_int_equal(ff_parse_i64("", 0, 1, &i), FF_EINVAL);
    assert_int_equal(ff_parse_i64(" 1", 0, 1, &i), FF_EINVAL);
    assert_int_equal(ff_parse_i64("1 ", 0, 1, &i), FF_EINVAL);
    assert_int_equal(ff_parse_i64("0x1", 0, 1, &i), FF_EINVAL);
    assert_int_equal(ff_parse_i64(NULL, 0, 1, &i), FF_EINVAL);
    assert_int_equal(ff_parse_u64("18446744073709551615", UINT64_MAX, &u), 0);
    assert_int_equal(u, UINT64_MAX);
    assert_int_equal(ff_parse_u64("18446744073709551616", UINT64_MAX, &u), FF_ERANGE);
    assert_int_equal(ff_parse_u64("-1", UINT64_MAX, &u), FF_EINVAL);
    assert_int_equal(ff_parse_u64("+1", UINT64_MAX, &u), FF_EINVAL);
    assert_int_equal(ff_parse_u64("11", 10, &u), FF_ERANGE);
}

static void test_hex(void **state)
{
    (void)state;
    unsigned char raw[3] = {0x00, 0xab, 0xff};
    char hex[7];
    ff_hex_encode(raw, 3, hex);
    assert_string_equal(hex, "00abff");
    unsigned char back[3];
    assert_int_equal(ff_hex_decode("00ABff", 3, back), 0);
    assert_memory_equal(raw, back, 3);
    assert_int_equal(ff_hex_decode("00abf", 3, back), FF_EINVAL);
    assert_int_equal(ff_hex_decode("00abfg", 3, back), FF_EINVAL);
    assert_true(ff_str_has_prefix("sha256:x", "sha256:"));
    assert_false(ff_str_has_prefix("sha25", "sha256:"));
    char *d = ff_strndup("abcdef", 3);
    assert_string_equal(d, "abc");
    free(d);
    d = ff_asprintf("%s-%d", "a", 1);
    assert_string_equal(d, "a-1");
    free(d);
}

static void test_quote(void **state)
{
    (void)state;
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote("app/x", 5, q);
    assert_string_equal(q, "app/x");
    ff_str_quote("a\"b\\c\n\xff\xc3\xa9", 9, q);
    assert_string_equal(q, "a?b?c????");
    char long_in[200];
    memset(long_in, 'x', sizeof(long_in));
    ff_str_quote(long_in, sizeof(long_in), q);
    assert_int_equal(strlen(q), FF_STR_QUOTE_SIZE - 1);
    assert_string_equal(q + FF_STR_QUOTE_SIZE - 4, "...");
    ff_str_quote(long_in, FF_STR_QUOTE_SIZE - 1, q);
    assert_int_equal(strlen(q), FF_STR_QUOTE_SIZE - 1);
    assert_null(strstr(q, "..."));
}

static void round_trip(const char *in, const char *std, const char *url)
{
    size_t n = strlen(in);
    char *enc = ff_base64_encode_new((const unsigned char *)in, n, false);
    assert_string_equal(enc, std);
    unsigned char *dec = NULL;
    size_t dlen = 0;
    assert_int_equal(ff_base64_decode(enc, strlen(enc), false, &dec, &dlen), 0);
    assert_int_equal(dlen, n);
    assert_memory_equal(dec, in, n);
    free(enc);
    free(dec);
    enc = ff_base64_encode_new((const unsigned char *)in, n, true);
    assert_string_equal(enc, url);
    assert_int_equal(ff_base64_decode(enc, strlen(enc), true, &dec, &dlen), 0);
    assert_int_equal(dlen, n);
    assert_memory_equal(dec, in, n);
    free(enc);
    free(dec);
}

static void decode_fails(const char *in, bool url)
{
    unsigned char *dec = NULL;
    size_t dlen = 0;
    if (ff_base64_decode(in, strlen(in), url, &dec, &dlen) != FF_EINVAL)
        fail_msg("\"%s\" (url=%d) decoded", in, url);
    assert_null(dec);
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 §10 vectors. */
    round_trip("", "", "");
    round_trip("f", "Zg==", "Zg");
    round_trip("fo", "Zm8=", "Zm8");
    round_trip("foo", "Zm9v", "Zm9v");
    round_trip("foob", "Zm9vYg==", "Zm9vYg");
    round_trip("fooba", "Zm9vYmE=", "Zm9vYmE");
    round_trip("foobar", "Zm9vYmFy", "Zm9vYmFy");
    round_trip("\xfb\xff", "+/8=", "-_8");
    decode_fails("Zg=", false);     /* bad length */
    decode_fails("Zg", false);      /* padding required */
    decode_fails("Zh==", false);    /* non-zero trailing bits */
    decode_fails("Z===", false);
    decode_fails("Zm9v\n", false);
    decode_fails("-_8=", false);    /* URL alphabet in standard */
    decode_fails("+/8", true);      /* standard alphabet in URL */
    decode_fails("Zg==", true);     /* padding in URL form */
    decode_fails("Z", true);        /* impossible length */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_strlcpy),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests_name("lib/base", tests, NULL, NULL);
}
