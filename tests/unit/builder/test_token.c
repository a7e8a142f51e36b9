#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "builder.h"

#include "ff_jwt.h"
#include "ff_pki.h"

#include <stdlib.h>
#include <string.h>

static void test_token_claims(void **state)
{
    (void)state;
    struct ff_access a;
    ff_access_init(&a);
    struct ff_err err;
    assert_int_equal(ff_access_add(&a, "repository", "library/base", FF_ACTION_PULL, &err), 0);
    json_t *c = NULL;
    assert_int_equal(token_claims("ff-builder", "ff-registry", "bob", 1000, 3600, &a, &c,
                                  &err), 0);
    assert_string_equal(json_string_value(json_object_get(c, "iss")), "ff-builder");
    assert_string_equal(json_string_value(json_object_get(c, "aud")), "ff-registry");
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "bob");
    assert_int_equal(strlen(json_string_value(json_object_get(c, "jti"))), 32);
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1000);
    assert_int_equal(json_integer_value(json_object_get(c, "nbf")), 1000);
    /* The lifetime is clamped to five minutes. */
    assert_int_equal(json_integer_value(json_object_get(c, "exp")),
                     1000 + REGISTRY_TOKEN_TTL_MAX);
    json_t *acc = json_object_get(c, "access");
    assert_int_equal(json_array_size(acc), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(acc, 0), "name")),
                        "library/base");

    /* Two tokens never share a jti. */
    json_t *c2 = NULL;
    assert_int_equal(token_claims("i", "a", "s", 1000, 0, &a, &c2, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(c2, "exp")), 1001);
    assert_string_not_equal(json_string_value(json_object_get(c, "jti")),
                            json_string_value(json_object_get(c2, "jti")));

    /* Signed and verified with a fresh key, the claims come back intact. */
    EVP_PKEY *pk = NULL;
    struct ff_jwt_key *key = NULL, *verify_key = NULL;
    assert_int_equal(ff_pki_key_new(&pk, &err), 0);
    assert_int_equal(ff_jwt_key_from_pkey(pk, NULL, &key, &err), 0);
    assert_int_equal(ff_jwt_key_from_pkey(pk, NULL, &verify_key, &err), 0);
    char kid[FF_PKI_KEY_ID_SIZE];
    assert_int_equal(ff_pki_key_id(pk, kid, &err), 0);
    assert_string_equal(ff_jwt_key_kid(key), kid);
    json_object_set_new(c, "iat", json_integer((json_int_t)time(NULL)));
    json_object_set_new(c, "nbf", json_integer((json_int_t)time(NULL)));
    json_object_set_new(c, "exp", json_integer((json_int_t)time(NULL) + 60));
    char *tok = NULL;
    assert_int_equal(ff_jwt_sign(key, c, &tok, &err), 0);
    struct ff_jwt_keyset *set = ff_jwt_keyset_new();
    assert_non_null(set);
    assert_int_equal(ff_jwt_keyset_add(set, verify_key, &err), 0);
    struct ff_jwt_expect ex = {.iss = "ff-builder", .aud = "ff-registry"};
    json_t *back = NULL;
    assert_int_equal(ff_jwt_verify(set, tok, &ex, &back, &err), 0);
    assert_true(json_equal(back, c));
    json_decref(back);
    free(tok);
    ff_jwt_keyset_free(set);
    ff_jwt_key_free(key);
    EVP_PKEY_free(pk);
    json_decref(c);
    json_decref(c2);
    ff_access_release(&a);

    char ts[32];
    token_rfc3339(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_claims),
    };
    return cmocka_run_group_tests_name("builder/token", tests, NULL, NULL);
}
