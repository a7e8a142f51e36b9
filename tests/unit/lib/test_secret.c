#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_secret.h"

#include "ff_base64.h"

#include <stdlib.h>
#include <string.h>

/* Cheap scrypt cost so the tests stay fast; the default cost runs once. */
#define TEST_LN 4
#define TEST_R 8
#define TEST_P 1

static const char good_password[] = "correct horse battery staple";

/* Computed independently with Python's hashlib.scrypt (salt bytes 0..15,
 * N = 1024, r = 8, p = 2, 32-byte key), so it checks that ln, r and p
 * reach scrypt in the right places. */
static const char known_hash[] =
    "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=";

static void test_random(void **state)
{
    (void)state;
    unsigned char a[32], b[32];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(ff_secret_random(a, sizeof(a), NULL), 0);
    assert_int_equal(ff_secret_random(b, sizeof(b), NULL), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(ff_secret_random(a, 0, NULL), 0);
}

static void test_token_new(void **state)
{
    (void)state;
    struct ff_err err;
    char *t1 = NULL, *t2 = NULL;
    char h1[FF_SECRET_HASH_HEX_SIZE], h2[FF_SECRET_HASH_HEX_SIZE], check[FF_SECRET_HASH_HEX_SIZE];
    assert_int_equal(ff_secret_token_new("ffu", &t1, h1, &err), 0);
    assert_int_equal(ff_secret_token_new("ffu", &t2, h2, &err), 0);
    assert_true(strncmp(t1, "ffu_", 4) == 0);
    /* 32 bytes in unpadded base64url are 43 characters. */
    assert_int_equal(strlen(t1), 4 + 43);
    assert_int_equal(
        strspn(t1 + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    assert_int_equal(ff_base64_decode(t1 + 4, 43, true, &raw, &rawlen), 0);
    assert_int_equal(rawlen, FF_SECRET_TOKEN_BYTES);
    free(raw);
    assert_string_not_equal(t1, t2);
    assert_string_not_equal(h1, h2);
    assert_int_equal(strlen(h1), FF_SECRET_HASH_HEX_SIZE - 1);
    assert_int_equal(strspn(h1, "0123456789abcdef"), FF_SECRET_HASH_HEX_SIZE - 1);
    ff_secret_token_hash(t1, check);
    assert_string_equal(check, h1);
    ff_secret_free(t1);
    ff_secret_free(t2);

    char *t3 = NULL;
    assert_int_equal(ff_secret_token_new("a1b2c3d4", &t3, h1, NULL), 0);
    ff_secret_free(t3);
}

static void test_token_bad_prefix(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "FFU", "ff_u", "ffu-", "abcdefghi", "ff u", "é"};
    char h[FF_SECRET_HASH_HEX_SIZE];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        char *t = NULL;
        assert_int_equal(ff_secret_token_new(bad[i], &t, h, &err), FF_EINVAL);
        assert_int_equal(err.code, FF_EINVAL);
        assert_non_null(strstr(err.msg, "prefix"));
        assert_null(t);
    }
    char *t = NULL;
    assert_int_equal(ff_secret_token_new(NULL, &t, h, NULL), FF_EINVAL);
    assert_null(t);
}

static void test_token_hash_known(void **state)
{
    (void)state;
    char h[FF_SECRET_HASH_HEX_SIZE];
    ff_secret_token_hash("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_password_round_trip(void **state)
{
    (void)state;
    struct ff_err err;
    char *enc = NULL;
    assert_int_equal(
        ff_secret_password_hash_cost(good_password, TEST_LN, TEST_R, TEST_P, &enc, &err), 0);
    assert_true(strncmp(enc, "$scrypt$ln=4,r=8,p=1$", 21) == 0);
    assert_int_equal(ff_secret_password_verify(good_password, enc, &err), 0);
    assert_int_equal(ff_secret_password_verify("correct horse battery stapl", enc, &err), FF_EAUTH);
    assert_int_equal(err.code, FF_EAUTH);
    assert_int_equal(ff_secret_password_verify("", enc, &err), FF_EAUTH);

    /* A fresh salt each time: the same password hashes differently. */
    char *enc2 = NULL;
    assert_int_equal(
        ff_secret_password_hash_cost(good_password, TEST_LN, TEST_R, TEST_P, &enc2, NULL), 0);
    assert_string_not_equal(enc, enc2);
    free(enc);
    ff_secret_free(enc2);
}

static void test_password_default_cost(void **state)
{
    (void)state;
    char *enc = NULL;
    assert_int_equal(ff_secret_password_hash(good_password, &enc, NULL), 0);
    assert_true(strncmp(enc, "$scrypt$ln=15,r=8,p=1$", 22) == 0);
    assert_int_equal(ff_secret_password_verify(good_password, enc, NULL), 0);
    free(enc);
}

static void test_password_known_answer(void **state)
{
    (void)state;
    assert_int_equal(ff_secret_password_verify(good_password, known_hash, NULL), 0);
    assert_int_equal(ff_secret_password_verify("correct horse battery staplE", known_hash, NULL),
                     FF_EAUTH);
}

static void test_password_length_limits(void **state)
{
    (void)state;
    struct ff_err err;
    char *enc = NULL;
    assert_int_equal(
        ff_secret_password_hash_cost("elevenchars", TEST_LN, TEST_R, TEST_P, &enc, &err),
        FF_EINVAL);
    assert_non_null(strstr(err.msg, "at least 12"));
    assert_null(enc);
    assert_int_equal(
        ff_secret_password_hash_cost("twelve chars", TEST_LN, TEST_R, TEST_P, &enc, &err), 0);
    free(enc);
    enc = NULL;

    char *long_pw = malloc(FF_SECRET_PASSWORD_MAX + 2);
    assert_non_null(long_pw);
    memset(long_pw, 'x', FF_SECRET_PASSWORD_MAX + 1);
    long_pw[FF_SECRET_PASSWORD_MAX + 1] = '\0';
    assert_int_equal(ff_secret_password_hash_cost(long_pw, TEST_LN, TEST_R, TEST_P, &enc, &err),
                     FF_EINVAL);
    assert_non_null(strstr(err.msg, "longer than 1024"));
    assert_null(enc);
    assert_int_equal(ff_secret_password_verify(long_pw, known_hash, &err), FF_EINVAL);
    long_pw[FF_SECRET_PASSWORD_MAX] = '\0';
    assert_int_equal(ff_secret_password_hash_cost(long_pw, TEST_LN, TEST_R, TEST_P, &enc, &err), 0);
    assert_int_equal(ff_secret_password_verify(long_pw, enc, &err), 0);
    free(enc);
    free(long_pw);

    assert_int_equal(ff_secret_password_hash_cost(NULL, TEST_LN, TEST_R, TEST_P, &enc, &err),
                     FF_EINVAL);
    assert_int_equal(ff_secret_password_verify(NULL, known_hash, &err), FF_EINVAL);
    assert_int_equal(ff_secret_password_verify(good_password, NULL, &err), FF_EINVAL);
}

static void test_password_cost_bounds(void **state)
{
    (void)state;
    static const unsigned bad[][3] = {
        {0, 8, 1}, {21, 8, 1}, {4, 0, 1},   {4, 33, 1},
        {4, 8, 0}, {4, 8, 17}, {20, 32, 1}, /* each within its bound, but 4 GiB together */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        char *enc = NULL;
        assert_int_equal(ff_secret_password_hash_cost(good_password, bad[i][0], bad[i][1],
                                                      bad[i][2], &enc, &err),
                         FF_ERANGE);
        assert_null(enc);
    }
}

static void test_password_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "$scrypt$",
        "$bcrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=010,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=+10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$r=8,ln=10,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=10,r=8$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=",
        "$scrypt$ln=10,r=8,p=2,x=1$AAECAwQFBgcICQoLDA0ODw==$"
        "wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=",
        "$scrypt$ln=0,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        /* hostile costs: each would take gigabytes or minutes */
        "$scrypt$ln=21,r=8,p=1$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=20,r=32,p=16$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=10,r=33,p=1$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=10,r=8,p=17$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=99999999999999999999,r=8,p=1$AAECAwQFBgcICQoLDA0ODw==$"
        "wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=",
        /* no hash, bad base64, unpadded, short salt, short hash, extra field */
        "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==",
        "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw=!$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=",
        "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=",
        "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoL$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=",
        "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617o",
        "$scrypt$ln=10,r=8,p=2$AAECAwQFBgcICQoLDA0ODw==$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/"
        "44=$",
        "$scrypt$ln=10,r=8,p=2$$wk79EttC618m617oirShLZuxJkXcX6rXHrrS9rQQ/44=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ff_err err;
        ff_err_clear(&err);
        int rc = ff_secret_password_verify(good_password, bad[i], &err);
        if (rc != FF_EINVAL)
            fail_msg("case %zu (\"%s\"): got %d (%s)", i, bad[i], rc, err.msg);
        assert_int_equal(err.code, FF_EINVAL);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(ff_secret_equal("abcdef", "abcdef", 6));
    assert_false(ff_secret_equal("abcdef", "abcdeg", 6));
    assert_true(ff_secret_equal("x", "y", 0));
    assert_true(ff_secret_str_equal("ffu_abc", "ffu_abc"));
    assert_true(ff_secret_str_equal("", ""));
    assert_false(ff_secret_str_equal("ffu_abc", "ffu_abd"));
    assert_false(ff_secret_str_equal("ffu_abc", "ffu_ab"));
    assert_false(ff_secret_str_equal("ffu_ab", "ffu_abc"));
    assert_false(ff_secret_str_equal(NULL, "a"));
    assert_false(ff_secret_str_equal("a", NULL));
    assert_false(ff_secret_str_equal(NULL, NULL));
}

static void test_wipe_and_free(void **state)
{
    (void)state;
    unsigned char buf[16];
    memset(buf, 0xa5, sizeof(buf));
    ff_secret_wipe(buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0);
    ff_secret_wipe(NULL, 0);
    ff_secret_free(NULL);
    char *s = malloc(8);
    assert_non_null(s);
    memcpy(s, "secret", 7);
    ff_secret_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_token_new),
        cmocka_unit_test(test_token_bad_prefix),
        cmocka_unit_test(test_token_hash_known),
        cmocka_unit_test(test_password_round_trip),
        cmocka_unit_test(test_password_default_cost),
        cmocka_unit_test(test_password_known_answer),
        cmocka_unit_test(test_password_length_limits),
        cmocka_unit_test(test_password_cost_bounds),
        cmocka_unit_test(test_password_malformed),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_wipe_and_free),
    };
    return cmocka_run_group_tests_name("lib/secret", tests, NULL, NULL);
}
