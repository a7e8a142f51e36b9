#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FIPS 180-2 test vectors. */
#define ABC_DIGEST "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define EMPTY_DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MILLION_A "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static void test_vectors(void **state)
{
    (void)state;
    struct ff_digest d;
    char s[FF_DIGEST_STR_SIZE];
    assert_int_equal(ff_digest_buffer("abc", 3, &d, NULL), 0);
    ff_digest_format(&d, s);
    assert_string_equal(s, ABC_DIGEST);
    assert_int_equal(ff_digest_buffer("", 0, &d, NULL), 0);
    ff_digest_format(&d, s);
    assert_string_equal(s, EMPTY_DIGEST);
}

static void test_streaming_and_dup(void **state)
{
    (void)state;
    struct ff_digest_ctx *ctx = NULL;
    assert_int_equal(ff_digest_ctx_new(&ctx, NULL), 0);
    char chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 500; i++)
        assert_int_equal(ff_digest_ctx_update(ctx, chunk, sizeof(chunk), NULL), 0);
    struct ff_digest_ctx *half = NULL;
    assert_int_equal(ff_digest_ctx_dup(ctx, &half, NULL), 0);
    for (int i = 0; i < 500; i++)
        assert_int_equal(ff_digest_ctx_update(ctx, chunk, sizeof(chunk), NULL), 0);
    struct ff_digest d;
    char s[FF_DIGEST_STR_SIZE];
    assert_int_equal(ff_digest_ctx_final(ctx, &d, NULL), 0);
    ff_digest_format(&d, s);
    assert_string_equal(s, MILLION_A);
    /* The copy goes on independently of the original. */
    for (int i = 0; i < 500; i++)
        assert_int_equal(ff_digest_ctx_update(half, chunk, sizeof(chunk), NULL), 0);
    struct ff_digest d2;
    assert_int_equal(ff_digest_ctx_final(half, &d2, NULL), 0);
    assert_true(ff_digest_equal(&d, &d2));
    /* final restarts the context. */
    assert_int_equal(ff_digest_ctx_update(ctx, "abc", 3, NULL), 0);
    assert_int_equal(ff_digest_ctx_final(ctx, &d, NULL), 0);
    ff_digest_format(&d, s);
    assert_string_equal(s, ABC_DIGEST);
    ff_digest_ctx_free(ctx);
    ff_digest_ctx_free(half);
    ff_digest_ctx_free(NULL);
}

static void test_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ff-digest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    struct ff_digest d, want;
    struct ff_err err;
    assert_int_equal(ff_digest_file(path, &d, &err), 0);
    assert_int_equal(ff_digest_parse_str(ABC_DIGEST, &want, &err), 0);
    assert_true(ff_digest_equal(&d, &want));
    unlink(path);
    assert_int_equal(ff_digest_file(path, &d, &err), FF_ENOTFOUND);
    assert_non_null(strstr(err.msg, path));
}

static void parse_fails(const char *s, const char *fragment)
{
    struct ff_err err;
    ff_err_clear(&err);
    struct ff_digest d;
    int rc = ff_digest_parse_str(s, &d, &err);
    if (rc != FF_EINVAL || strstr(err.msg, fragment) == NULL)
        fail_msg("\"%s\": rc=%d msg=\"%s\", expected \"%s\"", s, rc, err.msg, fragment);
}

static void test_parse(void **state)
{
    (void)state;
    struct ff_digest d;
    char s[FF_DIGEST_STR_SIZE];
    assert_int_equal(ff_digest_parse_str(ABC_DIGEST, &d, NULL), 0);
    ff_digest_format(&d, s);
    assert_string_equal(s, ABC_DIGEST);
    char hex[FF_DIGEST_HEX_SIZE];
    ff_digest_hex(&d, hex);
    assert_string_equal(hex, ABC_DIGEST + 7);
    assert_int_equal(ff_digest_parse_str(ABC_DIGEST, NULL, NULL), 0);
    /* Length-delimited: the prefix of a longer buffer parses. */
    assert_int_equal(ff_digest_parse(ABC_DIGEST "/extra", strlen(ABC_DIGEST), &d, NULL), 0);

    parse_fails("", "no \":\"");
    parse_fails("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "no \":\"");
    parse_fails("sha256:", "0 hex digits, expected 64");
    parse_fails("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                "not a lower-case hex digit");
    parse_fails("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
                "63 hex digits");
    parse_fails("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adz",
                "65 hex digits");
    parse_fails("sha256:../../../../etc/passwd000000000000000000000000000000000000000000",
                "not a lower-case hex digit");
    parse_fails("sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
                "unsupported algorithm \"sha512\"");
    parse_fails("SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "malformed algorithm");
    parse_fails("sha256+:ba78", "malformed algorithm");
    char huge[400];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    parse_fails(huge, "characters long");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_streaming_and_dup),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests_name("lib/digest", tests, NULL, NULL);
}
