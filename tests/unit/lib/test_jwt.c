#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ff_jwt.h"

#include "ff_base64.h"
#include "ff_pki.h"
#include "ff_str.h"

#include <openssl/ec.h>
#include <openssl/pem.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fixed "now" keeps the tests independent of the clock. */
#define NOW 1700000000LL

struct fx {
    EVP_PKEY *a;               /* key pair A (signs) */
    EVP_PKEY *b;               /* key pair B (signs) */
    struct ff_jwt_key *sign_a; /* private A */
    struct ff_jwt_key *sign_b; /* private B */
    struct ff_jwt_keyset *set; /* public A and B, as a registry holds them */
    char kid_a[FF_PKI_KEY_ID_SIZE];
    char kid_b[FF_PKI_KEY_ID_SIZE];
};

/* The public half of key, as a separate EVP_PKEY. */
static EVP_PKEY *public_only(EVP_PKEY *key)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(key, &der);
    assert_true(len > 0);
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, len);
    assert_non_null(pub);
    OPENSSL_free(der);
    return pub;
}

static void add_public(struct ff_jwt_keyset *set, EVP_PKEY *key, const char *kid)
{
    EVP_PKEY *pub = public_only(key);
    struct ff_jwt_key *k = NULL;
    assert_int_equal(ff_jwt_key_from_pkey(pub, kid, &k, NULL), 0);
    EVP_PKEY_free(pub);
    assert_int_equal(ff_jwt_keyset_add(set, k, NULL), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL || ff_pki_key_new(&f->a, NULL) != 0 || ff_pki_key_new(&f->b, NULL) != 0 ||
        ff_jwt_key_from_pkey(f->a, NULL, &f->sign_a, NULL) != 0 ||
        ff_jwt_key_from_pkey(f->b, NULL, &f->sign_b, NULL) != 0 ||
        ff_pki_key_id(f->a, f->kid_a, NULL) != 0 || ff_pki_key_id(f->b, f->kid_b, NULL) != 0)
        return -1;
    f->set = ff_jwt_keyset_new();
    if (f->set == NULL)
        return -1;
    add_public(f->set, f->a, NULL);
    add_public(f->set, f->b, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ff_jwt_keyset_free(f->set);
    ff_jwt_key_free(f->sign_a);
    ff_jwt_key_free(f->sign_b);
    EVP_PKEY_free(f->a);
    EVP_PKEY_free(f->b);
    free(f);
    return 0;
}

static const struct ff_jwt_expect expect_default = {
    .iss = "ff-builder", .aud = "ff-registry", .now = (time_t)NOW, .leeway = 0};

/* Standard claims valid at NOW for five minutes. */
static json_t *claims_new(void)
{
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:[{s:s, s:s, s:[s]}]}", "iss", "ff-builder",
                  "aud", "ff-registry", "sub", "alice", "iat", NOW, "nbf", NOW, "exp", NOW + 300,
                  "access", "type", "repository", "name", "app/x", "actions", "pull");
    assert_non_null(c);
    return c;
}

static char *sign_claims(const struct ff_jwt_key *key, json_t *claims)
{
    char *token = NULL;
    struct ff_err err;
    int rc = ff_jwt_sign(key, claims, &token, &err);
    if (rc != 0)
        fail_msg("sign: %s", err.msg);
    json_decref(claims);
    return token;
}

static int verify(const struct fx *f, const char *token, const struct ff_jwt_expect *expect,
                  struct ff_err *err)
{
    json_t *claims = NULL;
    ff_err_clear(err);
    int rc = ff_jwt_verify(f->set, token, expect, &claims, err);
    if (rc == 0)
        assert_non_null(claims);
    else
        assert_null(claims);
    json_decref(claims);
    return rc;
}

/* ES256 over msg, computed here independently of ff_jwt (DER to r || s). */
static void es256_raw(EVP_PKEY *key, const char *msg, size_t len, unsigned char out[64])
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    assert_non_null(mctx);
    assert_int_equal(EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, key), 1);
    unsigned char der[128];
    size_t derlen = sizeof(der);
    assert_int_equal(EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)msg, len), 1);
    EVP_MD_CTX_free(mctx);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    assert_non_null(sig);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32), 32);
    ECDSA_SIG_free(sig);
}

static char *b64url(const void *p, size_t n)
{
    char *s = ff_base64_encode_new(p, n, true);
    assert_non_null(s);
    return s;
}

/* "<b64 header>.<b64 claims>" plus "." and the signature: by signer when
 * given, else the raw bytes sig (possibly none). */
static char *raw_token(const char *header, const char *claims, EVP_PKEY *signer,
                       const unsigned char *sig, size_t siglen)
{
    char *h = b64url(header, strlen(header));
    char *c = b64url(claims, strlen(claims));
    char *input = ff_asprintf("%s.%s", h, c);
    assert_non_null(input);
    unsigned char es[64];
    if (signer != NULL) {
        es256_raw(signer, input, strlen(input), es);
        sig = es;
        siglen = sizeof(es);
    }
    char *s = b64url(sig, siglen);
    char *token = ff_asprintf("%s.%s", input, s);
    assert_non_null(token);
    free(h);
    free(c);
    free(input);
    free(s);
    return token;
}

static char *header_for(const char *alg, const char *kid)
{
    char *h = ff_asprintf("{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
    assert_non_null(h);
    return h;
}

static const char valid_claims[] =
    "{\"iss\":\"ff-builder\",\"aud\":\"ff-registry\",\"exp\":1700000300}";

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    char *token = sign_claims(f->sign_a, claims_new());
    struct ff_err err;
    json_t *claims = NULL;
    assert_int_equal(ff_jwt_verify(f->set, token, &expect_default, &claims, &err), 0);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "alice");
    json_t *access = json_object_get(claims, "access");
    assert_int_equal(json_array_size(access), 1);
    json_decref(claims);
    assert_int_equal(ff_jwt_verify(f->set, token, &expect_default, NULL, &err), 0);

    /* The header is exactly what registries and clients expect. */
    const char *dot = strchr(token, '.');
    unsigned char *hdr = NULL;
    size_t hlen = 0;
    assert_int_equal(ff_base64_decode(token, (size_t)(dot - token), true, &hdr, &hlen), 0);
    char *want = ff_asprintf("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", f->kid_a);
    assert_string_equal((char *)hdr, want);
    free(want);
    free(hdr);
    /* 64 signature bytes are 86 base64url characters. */
    const char *last = strrchr(token, '.');
    assert_int_equal(strlen(last + 1), 86);
    assert_string_equal(ff_jwt_key_kid(f->sign_a), f->kid_a);

    /* And OpenSSL itself accepts the signature once it is DER again. */
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    assert_int_equal(ff_base64_decode(last + 1, 86, true, &raw, &rawlen), 0);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)),
                     1);
    unsigned char *der = NULL;
    int derlen = i2d_ECDSA_SIG(sig, &der);
    assert_true(derlen > 0);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(mctx, NULL, EVP_sha256(), NULL, f->a), 1);
    assert_int_equal(EVP_DigestVerify(mctx, der, (size_t)derlen, (const unsigned char *)token,
                                      (size_t)(last - token)),
                     1);
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    free(raw);
    free(token);

    /* A token made outside ff_jwt verifies too. */
    char *h = header_for("ES256", f->kid_b);
    token = raw_token(h, valid_claims, f->b, NULL, 0);
    assert_int_equal(verify(f, token, &expect_default, &err), 0);
    free(h);
    free(token);
}

static char *token_with_times(const struct fx *f, long long exp, long long nbf)
{
    json_t *c = claims_new();
    assert_int_equal(json_object_set_new(c, "exp", json_integer(exp)), 0);
    assert_int_equal(json_object_set_new(c, "nbf", json_integer(nbf)), 0);
    return sign_claims(f->sign_a, c);
}

static void test_expired(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *t = token_with_times(f, NOW - 1, NOW - 100);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EEXPIRED);
    assert_non_null(strstr(err.msg, "expired"));
    free(t);
    /* "now" must be before exp (RFC 7519 §4.1.4). */
    t = token_with_times(f, NOW, NOW - 100);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EEXPIRED);
    free(t);
    t = token_with_times(f, NOW + 1, NOW - 100);
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
}

static void test_not_yet_valid(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *t = token_with_times(f, NOW + 300, NOW + 10);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EEXPIRED);
    assert_non_null(strstr(err.msg, "not yet valid"));
    free(t);
    t = token_with_times(f, NOW + 300, NOW);
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
}

static void test_within_leeway(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    struct ff_jwt_expect e = expect_default;
    e.leeway = 60;
    char *t = token_with_times(f, NOW - 30, NOW - 100);
    assert_int_equal(verify(f, t, &e, &err), 0);
    free(t);
    t = token_with_times(f, NOW + 300, NOW + 30);
    assert_int_equal(verify(f, t, &e, &err), 0);
    free(t);
    /* Negative leeway counts as none. */
    e.leeway = -1000;
    t = token_with_times(f, NOW + 1, NOW);
    assert_int_equal(verify(f, t, &e, &err), 0);
    free(t);
}

static void test_leeway_clamped(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    struct ff_jwt_expect e = expect_default;
    e.leeway = 3600;
    char *t = token_with_times(f, NOW - 120, NOW - 200);
    assert_int_equal(verify(f, t, &e, &err), FF_EEXPIRED);
    assert_non_null(strstr(err.msg, "leeway 60 s"));
    free(t);
    t = token_with_times(f, NOW - FF_JWT_LEEWAY_MAX + 1, NOW - 200);
    assert_int_equal(verify(f, t, &e, &err), 0);
    free(t);
    t = token_with_times(f, NOW + 300, NOW + FF_JWT_LEEWAY_MAX + 1);
    assert_int_equal(verify(f, t, &e, &err), FF_EEXPIRED);
    free(t);
}

static void test_wrong_key_same_kid(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *other = NULL;
    assert_int_equal(ff_pki_key_new(&other, NULL), 0);
    struct ff_jwt_key *impostor = NULL;
    assert_int_equal(ff_jwt_key_from_pkey(other, f->kid_a, &impostor, NULL), 0);
    assert_string_equal(ff_jwt_key_kid(impostor), f->kid_a);
    char *t = sign_claims(impostor, claims_new());
    struct ff_err err;
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "signature does not verify"));
    free(t);
    ff_jwt_key_free(impostor);
    EVP_PKEY_free(other);
}

static void test_unknown_kid(void **state)
{
    struct fx *f = *state;
    struct ff_jwt_key *k = NULL;
    assert_int_equal(ff_jwt_key_from_pkey(f->a, "rotated-out", &k, NULL), 0);
    char *t = sign_claims(k, claims_new());
    struct ff_err err;
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "no key with kid \"rotated-out\""));
    free(t);
    ff_jwt_key_free(k);

    t = raw_token("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "no \"kid\""));
    free(t);
    t = raw_token("{\"alg\":\"ES256\",\"kid\":7}", valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
}

static void test_alg_none(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *h = header_for("none", f->kid_a);
    char *t = raw_token(h, valid_claims, NULL, NULL, 0);
    assert_int_equal(t[strlen(t) - 1], '.');
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "\"alg\" is \"none\", expected \"ES256\""));
    free(t);
    free(h);
    h = header_for("None", f->kid_a);
    t = raw_token(h, valid_claims, NULL, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
    free(h);
}

/* The classic confusion: a verifier that lets "alg" pick HMAC would use
 * the public key PEM, which anyone has, as the HMAC secret. */
static void test_hs256_key_confusion(void **state)
{
    struct fx *f = *state;
    BIO *bio = BIO_new(BIO_s_mem());
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, f->a), 1);
    char *pem = NULL;
    long pemlen = BIO_get_mem_data(bio, &pem);
    assert_true(pemlen > 0);

    char *h = header_for("HS256", f->kid_a);
    char *hb = b64url(h, strlen(h));
    char *cb = b64url(valid_claims, strlen(valid_claims));
    char *input = ff_asprintf("%s.%s", hb, cb);
    unsigned char mac[32];
    size_t maclen = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, (size_t)pemlen,
                              (const unsigned char *)input, strlen(input), mac, sizeof(mac),
                              &maclen));
    assert_int_equal(maclen, 32);
    char *t = raw_token(h, valid_claims, NULL, mac, maclen);
    struct ff_err err;
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "\"HS256\""));
    free(t);
    free(h);

    /* The same MAC under an "ES256" header is just a bad signature. */
    h = header_for("ES256", f->kid_a);
    t = raw_token(h, valid_claims, NULL, mac, maclen);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
    free(h);
    free(hb);
    free(cb);
    free(input);
    BIO_free(bio);
}

static void test_other_algs(void **state)
{
    struct fx *f = *state;
    static const char *const algs[] = {"RS256",  "ES384",  "PS256",  "HS512", "es256",
                                       "ES256 ", " ES256", "ES2560", "ES25",  ""};
    unsigned char sig[256];
    memset(sig, 0x5a, sizeof(sig));
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char *h = header_for(algs[i], f->kid_a);
        char *t = raw_token(h, valid_claims, NULL, sig, strcmp(algs[i], "RS256") == 0 ? 256 : 64);
        struct ff_err err;
        int rc = verify(f, t, &expect_default, &err);
        if (rc != FF_EAUTH)
            fail_msg("alg \"%s\": got %d", algs[i], rc);
        assert_non_null(strstr(err.msg, "expected \"ES256\""));
        free(t);
        free(h);
    }
    /* Even a correct ES256 signature does not help a wrong or missing alg. */
    static const char *const starts[] = {"{\"typ\":\"JWT\",", "{\"alg\":null,",
                                         "{\"alg\":[\"ES256\"],", "{\"alg\":\"RS256\","};
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        char *h = ff_asprintf("%s\"kid\":\"%s\"}", starts[i], f->kid_a);
        char *t = raw_token(h, valid_claims, f->a, NULL, 0);
        struct ff_err err;
        assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
        free(t);
        free(h);
    }
    /* A hostile alg is quoted safely and briefly. */
    char *h = header_for("\\u0001\\\"evil\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         f->kid_a);
    char *t = raw_token(h, valid_claims, NULL, sig, 64);
    struct ff_err err;
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_null(strchr(err.msg, '\n'));
    assert_null(strchr(err.msg, '\x01'));
    assert_non_null(strstr(err.msg, "...\""));
    free(t);
    free(h);
}

static void test_wrong_iss(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    json_t *c = claims_new();
    json_object_set_new(c, "iss", json_string("evil"));
    char *t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "\"iss\" is \"evil\", expected \"ff-builder\""));
    struct ff_jwt_expect e = expect_default;
    e.iss = NULL;
    assert_int_equal(verify(f, t, &e, &err), 0);
    free(t);
    c = claims_new();
    json_object_del(c, "iss");
    t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
}

static char *token_with_aud(const struct fx *f, json_t *aud)
{
    json_t *c = claims_new();
    if (aud == NULL)
        json_object_del(c, "aud");
    else
        json_object_set_new(c, "aud", aud);
    return sign_claims(f->sign_a, c);
}

static void test_wrong_aud(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *t = token_with_aud(f, json_string("other-registry"));
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "\"aud\" does not include \"ff-registry\""));
    free(t);
    t = token_with_aud(f, NULL);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
    t = token_with_aud(f, json_pack("[s, s]", "a", "b"));
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
    t = token_with_aud(f, json_pack("{s:s}", "aud", "ff-registry"));
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
    t = token_with_aud(f, json_string("ff-registry "));
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
}

static void test_aud_array(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *t = token_with_aud(f, json_pack("[s, s]", "other", "ff-registry"));
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
    t = token_with_aud(f, json_pack("[i, n, s]", 3, "ff-registry"));
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
    t = token_with_aud(f, json_array());
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
}

static void test_missing_exp(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    json_t *c = claims_new();
    json_object_del(c, "exp");
    char *t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"exp\""));
    free(t);

    c = claims_new();
    json_object_set_new(c, "exp", json_string("1700000300"));
    t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    c = claims_new();
    json_object_set_new(c, "nbf", json_true());
    t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    c = claims_new();
    json_object_set_new(c, "iat", json_null());
    t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    /* A fractional exp is a number all the same. */
    c = claims_new();
    json_object_set_new(c, "exp", json_real((double)NOW + 0.5));
    t = sign_claims(f->sign_a, c);
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
}

static void test_malformed_base64(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *good = sign_claims(f->sign_a, claims_new());
    char *dot1 = strchr(good, '.');
    char *dot2 = strchr(dot1 + 1, '.');

    /* '+' and '/' are the other alphabet; '=' padding is not allowed. */
    char *t = strdup(good);
    t[1] = '+';
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "base64url"));
    t[1] = good[1];
    t[(dot1 - good) + 2] = '/';
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    t = ff_asprintf("%.*s=%s", (int)(dot2 - good), good, dot2);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    t = ff_asprintf("%s=", good);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    t = ff_asprintf("%.*s %s", (int)(dot1 - good), good, dot1);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    /* A length no base64 string can have (4k + 1). */
    t = ff_asprintf("eyJhbGciOiJFUzI1NiJ9A%s", dot1);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    free(good);

    /* Header or claims that decode but are not JSON objects. */
    static const char *const headers[] = {"not json", "[\"ES256\"]", "\"ES256\"",
                                          "{\"alg\":\"ES256\",\"kid\":\"a\\u0000b\"}",
                                          "{\"alg\":\"ES256\"} trailing"};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        t = raw_token(headers[i], valid_claims, f->a, NULL, 0);
        assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
        free(t);
    }
    char *h = header_for("ES256", f->kid_a);
    static const char *const claims[] = {"[1]", "{\"exp\":1e999}", "{", "1700000300"};
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        t = raw_token(h, claims[i], f->a, NULL, 0);
        assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
        free(t);
    }
    free(h);
}

static void test_part_count(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *good = sign_claims(f->sign_a, claims_new());
    char *t = ff_asprintf("%s.%s", good, strrchr(good, '.') + 1);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "4 parts, expected 3"));
    free(t);
    t = ff_asprintf("%.*s", (int)(strrchr(good, '.') - good), good);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "2 parts"));
    free(t);
    free(good);
    static const char *const bad[] = {"", ".", "..", "...", "abc", "a..", ".a.", "a.b.c.d.e"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(f, bad[i], &expect_default, &err), FF_EINVAL);
    assert_int_equal(ff_jwt_verify(f->set, NULL, &expect_default, NULL, &err), FF_EINVAL);
    assert_int_equal(ff_jwt_verify(f->set, "a.b.c", NULL, NULL, &err), FF_EINVAL);
}

static void test_oversized(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *big = malloc(FF_JWT_TOKEN_MAX + 2);
    assert_non_null(big);
    memset(big, 'A', FF_JWT_TOKEN_MAX + 1);
    big[10] = '.';
    big[20] = '.';
    big[FF_JWT_TOKEN_MAX + 1] = '\0';
    assert_int_equal(verify(f, big, &expect_default, &err), FF_ETOOBIG);
    assert_non_null(strstr(err.msg, "longer than 8192"));
    free(big);

    /* Nothing is signed that the verifier would refuse. */
    json_t *c = claims_new();
    char *pad = malloc(FF_JWT_TOKEN_MAX);
    assert_non_null(pad);
    memset(pad, 'x', FF_JWT_TOKEN_MAX - 1);
    pad[FF_JWT_TOKEN_MAX - 1] = '\0';
    json_object_set_new(c, "pad", json_string(pad));
    char *t = NULL;
    assert_int_equal(ff_jwt_sign(f->sign_a, c, &t, &err), FF_ETOOBIG);
    assert_null(t);
    /* Just under the limit is fine and verifies. */
    json_object_set_new(c, "pad", json_string(pad + 2600));
    assert_int_equal(ff_jwt_sign(f->sign_a, c, &t, &err), 0);
    assert_true(strlen(t) <= FF_JWT_TOKEN_MAX);
    assert_true(strlen(t) > FF_JWT_TOKEN_MAX - 400);
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
    free(pad);
    json_decref(c);
}

static void test_duplicate_members(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *h = ff_asprintf("{\"alg\":\"ES256\",\"alg\":\"none\",\"kid\":\"%s\"}", f->kid_a);
    char *t = raw_token(h, valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "header is not valid json"));
    free(t);
    free(h);
    h = ff_asprintf("{\"alg\":\"ES256\",\"kid\":\"%s\",\"kid\":\"%s\"}", f->kid_a, f->kid_a);
    t = raw_token(h, valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    free(h);

    /* Properly signed claims with two "exp" members are still refused. */
    h = header_for("ES256", f->kid_a);
    t = raw_token(h,
                  "{\"iss\":\"ff-builder\",\"aud\":\"ff-registry\",\"exp\":1,\"exp\":1800000000}",
                  f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "claims is not valid json"));
    free(t);
    t = raw_token(
        h, "{\"iss\":\"ff-builder\",\"aud\":\"ff-registry\",\"aud\":\"x\",\"exp\":1800000000}",
        f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    free(h);
}

static void test_signature_length(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *good = sign_claims(f->sign_a, claims_new());
    char *last = strrchr(good, '.');
    unsigned char *sig = NULL;
    size_t siglen = 0;
    assert_int_equal(ff_base64_decode(last + 1, strlen(last + 1), true, &sig, &siglen), 0);
    assert_int_equal(siglen, 64);
    static const size_t lens[] = {0, 1, 32, 63, 65, 72, 128};
    unsigned char buf[128];
    memset(buf, 0, sizeof(buf));
    memcpy(buf, sig, 64);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char *s = b64url(buf, lens[i]);
        char *t = ff_asprintf("%.*s.%s", (int)(last - good), good, s);
        assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
        assert_non_null(strstr(err.msg, "expected 64"));
        free(t);
        free(s);
    }

    /* r or s of zero, or not below the group order. */
    static const unsigned char order[32] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
                                            0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
    for (int which = 0; which < 6; which++) {
        unsigned char bad[64];
        memcpy(bad, sig, 64);
        unsigned char *x = which % 2 == 0 ? bad : bad + 32;
        if (which < 2)
            memset(x, 0, 32);
        else if (which < 4)
            memcpy(x, order, 32);
        else
            memset(x, 0xff, 32);
        char *s = b64url(bad, 64);
        char *t = ff_asprintf("%.*s.%s", (int)(last - good), good, s);
        assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
        assert_non_null(strstr(err.msg, "out of range"));
        free(t);
        free(s);
    }
    free(sig);
    free(good);
}

static void test_tampered(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *good = sign_claims(f->sign_a, claims_new());
    char *dot1 = strchr(good, '.');
    char *dot2 = strchr(dot1 + 1, '.');

    /* Someone extends their token's lifetime and widens its access. */
    json_t *c = claims_new();
    json_object_set_new(c, "exp", json_integer(NOW + 86400));
    char *cj = json_dumps(c, JSON_COMPACT);
    char *cb = b64url(cj, strlen(cj));
    char *t = ff_asprintf("%.*s.%s%s", (int)(dot1 - good), good, cb, dot2);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    assert_non_null(strstr(err.msg, "signature does not verify"));
    free(t);
    free(cb);
    free(cj);
    json_decref(c);

    /* One flipped character anywhere breaks the signature. */
    size_t len = strlen(good);
    size_t spots[] = {5, (size_t)(dot1 - good) + 5, len - 10};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        t = strdup(good);
        t[spots[i]] = t[spots[i]] == 'A' ? 'B' : 'A';
        int rc = verify(f, t, &expect_default, &err);
        /* A flip in the header may also break its JSON: still refused. */
        assert_true(rc == FF_EAUTH || rc == FF_EINVAL);
        free(t);
    }
    /* The signature of another token (same key, other subject). */
    c = claims_new();
    json_object_set_new(c, "sub", json_string("bob"));
    char *other = sign_claims(f->sign_a, c);
    t = ff_asprintf("%.*s%s", (int)(dot2 - good), good, strrchr(other, '.'));
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EAUTH);
    free(t);
    free(other);
    free(good);
}

static void test_header_rules(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char *h =
        ff_asprintf("{\"alg\":\"ES256\",\"kid\":\"%s\",\"crit\":[\"exp\"],\"exp\":1}", f->kid_a);
    char *t = raw_token(h, valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "\"crit\""));
    free(t);
    free(h);
    h = ff_asprintf("{\"alg\":\"ES256\",\"typ\":\"JOSE+JSON\",\"kid\":\"%s\"}", f->kid_a);
    t = raw_token(h, valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), FF_EINVAL);
    free(t);
    free(h);
    /* No "typ" at all is fine, and so are members we do not use. */
    h = ff_asprintf("{\"kid\":\"%s\",\"alg\":\"ES256\",\"x5u\":\"https://evil/\"}", f->kid_a);
    t = raw_token(h, valid_claims, f->a, NULL, 0);
    assert_int_equal(verify(f, t, &expect_default, &err), 0);
    free(t);
    free(h);
}

static void test_key_rotation(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    assert_int_equal(ff_jwt_keyset_count(f->set), 2);
    char *ta = sign_claims(f->sign_a, claims_new());
    char *tb = sign_claims(f->sign_b, claims_new());
    assert_int_equal(verify(f, ta, &expect_default, &err), 0);
    assert_int_equal(verify(f, tb, &expect_default, &err), 0);

    /* After A is retired only B's tokens pass. */
    struct ff_jwt_keyset *only_b = ff_jwt_keyset_new();
    assert_non_null(only_b);
    add_public(only_b, f->b, NULL);
    assert_int_equal(ff_jwt_verify(only_b, tb, &expect_default, NULL, &err), 0);
    assert_int_equal(ff_jwt_verify(only_b, ta, &expect_default, NULL, &err), FF_EAUTH);
    ff_jwt_keyset_free(only_b);
    free(ta);
    free(tb);
}

static void test_keyset_rules(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    struct ff_jwt_key *dup = NULL;
    assert_int_equal(ff_jwt_key_from_pkey(f->b, f->kid_a, &dup, NULL), 0);
    assert_int_equal(ff_jwt_keyset_add(f->set, dup, &err), FF_EEXIST);
    assert_int_equal(ff_jwt_keyset_count(f->set), 2);
    ff_jwt_key_free(dup);

    struct ff_jwt_keyset *set = ff_jwt_keyset_new();
    assert_non_null(set);
    for (int i = 0; i <= FF_JWT_KEYSET_MAX; i++) {
        char kid[16];
        assert_true(snprintf(kid, sizeof(kid), "k%d", i) > 0);
        struct ff_jwt_key *k = NULL;
        assert_int_equal(ff_jwt_key_from_pkey(f->a, kid, &k, NULL), 0);
        int rc = ff_jwt_keyset_add(set, k, &err);
        if (i < FF_JWT_KEYSET_MAX) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, FF_ETOOBIG);
            ff_jwt_key_free(k);
        }
    }
    assert_int_equal(ff_jwt_keyset_count(set), FF_JWT_KEYSET_MAX);
    ff_jwt_keyset_free(set);
    ff_jwt_keyset_free(NULL);
    ff_jwt_key_free(NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_key_load(void **state)
{
    struct fx *f = *state;
    struct ff_err err;
    char dir[] = "/tmp/ff-test-jwt-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char priv[PATH_MAX], pub[PATH_MAX], missing[PATH_MAX];
    assert_true(snprintf(priv, sizeof(priv), "%s/token.key", dir) > 0);
    assert_true(snprintf(pub, sizeof(pub), "%s/token.pub", dir) > 0);
    assert_true(snprintf(missing, sizeof(missing), "%s/none.key", dir) > 0);
    assert_int_equal(ff_pki_key_write(f->a, priv, true, NULL), 0);
    assert_int_equal(ff_pki_key_write(f->a, pub, false, NULL), 0);

    struct ff_jwt_key *signer = NULL, *verifier = NULL, *named = NULL, *k = NULL;
    assert_int_equal(ff_jwt_key_load(priv, NULL, true, &signer, &err), 0);
    assert_string_equal(ff_jwt_key_kid(signer), f->kid_a);
    assert_int_equal(ff_jwt_key_load(pub, NULL, false, &verifier, &err), 0);
    assert_int_equal(ff_jwt_key_load(pub, "libtrust:ABCD:EFGH.1_x-y", false, &named, &err), 0);
    assert_string_equal(ff_jwt_key_kid(named), "libtrust:ABCD:EFGH.1_x-y");

    struct ff_jwt_keyset *set = ff_jwt_keyset_new();
    assert_non_null(set);
    assert_int_equal(ff_jwt_keyset_add(set, verifier, &err), 0);
    char *t = sign_claims(signer, claims_new());
    assert_int_equal(ff_jwt_verify(set, t, &expect_default, NULL, &err), 0);
    free(t);

    /* A public key cannot sign; claims must be an object. */
    json_t *empty = json_object();
    assert_int_equal(ff_jwt_sign(named, empty, &t, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "no private half"));
    json_decref(empty);
    json_t *arr = json_array();
    assert_int_equal(ff_jwt_sign(signer, arr, &t, &err), FF_EINVAL);
    json_decref(arr);

    assert_int_equal(ff_jwt_key_load(missing, NULL, true, &k, &err), FF_ENOTFOUND);
    assert_int_equal(ff_jwt_key_load(pub, NULL, true, &k, &err), FF_EINVAL);
    static const char *const bad_kids[] = {
        "", "has space", "quote\"", "slash/",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    for (size_t i = 0; i < sizeof(bad_kids) / sizeof(bad_kids[0]); i++)
        assert_int_equal(ff_jwt_key_from_pkey(f->a, bad_kids[i], &k, &err), FF_EINVAL);

    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(p384);
    assert_non_null(ed);
    assert_int_equal(ff_jwt_key_from_pkey(p384, "x", &k, &err), FF_EINVAL);
    assert_non_null(strstr(err.msg, "expected p-256"));
    assert_int_equal(ff_jwt_key_from_pkey(ed, NULL, &k, &err), FF_EINVAL);
    assert_null(k);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);

    ff_jwt_keyset_free(set);
    ff_jwt_key_free(signer);
    ff_jwt_key_free(named);
    assert_int_equal(nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),          cmocka_unit_test(test_expired),
        cmocka_unit_test(test_not_yet_valid),       cmocka_unit_test(test_within_leeway),
        cmocka_unit_test(test_leeway_clamped),      cmocka_unit_test(test_wrong_key_same_kid),
        cmocka_unit_test(test_unknown_kid),         cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_hs256_key_confusion), cmocka_unit_test(test_other_algs),
        cmocka_unit_test(test_wrong_iss),           cmocka_unit_test(test_wrong_aud),
        cmocka_unit_test(test_aud_array),           cmocka_unit_test(test_missing_exp),
        cmocka_unit_test(test_malformed_base64),    cmocka_unit_test(test_part_count),
        cmocka_unit_test(test_oversized),           cmocka_unit_test(test_duplicate_members),
        cmocka_unit_test(test_signature_length),    cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_header_rules),        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_keyset_rules),        cmocka_unit_test(test_key_load),
    };
    return cmocka_run_group_tests_name("lib/jwt", tests, setup, teardown);
}
