#include "ff_jwt.h"

#include "ff_base64.h"
#include "ff_pki.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Half of a raw ES256 signature: one P-256 scalar. */
#define SCALAR_SIZE (FF_JWT_SIG_SIZE / 2)
/* Longest piece of a hostile value (an "alg", a "kid") quoted in an error
 * message: enough to recognise it, short enough to keep messages small. */
#define QUOTE_MAX 40

struct ff_jwt_key {
    EVP_PKEY *pkey;
    bool has_private;
    char kid[FF_JWT_KID_MAX + 1];
};

struct ff_jwt_keyset {
    struct ff_jwt_key *keys[FF_JWT_KEYSET_MAX];
    size_t n;
};

/* The order n of P-256 (FIPS 186-4 D.1.2.3): r and s must lie in 1..n-1. */
static const unsigned char p256_order[SCALAR_SIZE] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

/* Copies at most QUOTE_MAX bytes of a hostile string into out (QUOTE_MAX
 * + 4 bytes) for an error message, replacing anything but printable ASCII
 * and marking a cut with "...". */
static const char *quote(const char *s, size_t n, char *out)
{
    size_t i = 0;
    for (; i < n && i < QUOTE_MAX; i++) {
        char c = s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            c = '?';
        out[i] = c;
    }
    if (i < n) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

static bool kid_valid(const char *kid)
{
    size_t n = 0;
    for (const char *c = kid; *c != '\0'; c++, n++) {
        if (n == FF_JWT_KID_MAX)
            return false;
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == ':' || *c == '-'))
            return false;
    }
    return n > 0;
}

int ff_jwt_key_from_pkey(EVP_PKEY *pkey, const char *kid, struct ff_jwt_key **out,
                         struct ff_err *err)
{
    int rc = ff_pki_key_check(pkey, err);
    if (rc != 0)
        return rc;
    struct ff_jwt_key *key = calloc(1, sizeof(*key));
    if (key == NULL)
        return ff_err_set(err, FF_ENOMEM, "jwt: out of memory for a key");
    if (kid == NULL) {
        rc = ff_pki_key_id(pkey, key->kid, err);
        if (rc != 0) {
            free(key);
            return rc;
        }
    } else {
        char q[QUOTE_MAX + 4];
        if (!kid_valid(kid)) {
            free(key);
            return ff_err_set(err, FF_EINVAL,
                              "jwt: kid \"%s\" is invalid (expected 1 to %d of [A-Za-z0-9._:-])",
                              quote(kid, strlen(kid), q), FF_JWT_KID_MAX);
        }
        memcpy(key->kid, kid, strlen(kid) + 1);
    }
    BIGNUM *priv = NULL;
    key->has_private = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &priv) == 1;
    BN_clear_free(priv);
    ERR_clear_error();
    if (EVP_PKEY_up_ref(pkey) != 1) {
        free(key);
        return ff_err_set(err, FF_ECRYPTO, "jwt: cannot take a reference to the key");
    }
    key->pkey = pkey;
    *out = key;
    return 0;
}

int ff_jwt_key_load(const char *pem_path, const char *kid, bool private_key,
                    struct ff_jwt_key **out, struct ff_err *err)
{
    EVP_PKEY *pkey = NULL;
    int rc = ff_pki_key_read(pem_path, private_key, &pkey, err);
    if (rc != 0)
        return rc;
    rc = ff_jwt_key_from_pkey(pkey, kid, out, err);
    EVP_PKEY_free(pkey);
    return rc;
}

void ff_jwt_key_free(struct ff_jwt_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    free(key);
}

const char *ff_jwt_key_kid(const struct ff_jwt_key *key)
{
    return key->kid;
}

struct ff_jwt_keyset *ff_jwt_keyset_new(void)
{
    return calloc(1, sizeof(struct ff_jwt_keyset));
}

void ff_jwt_keyset_free(struct ff_jwt_keyset *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        ff_jwt_key_free(set->keys[i]);
    free(set);
}

static const struct ff_jwt_key *keyset_find(const struct ff_jwt_keyset *set, const char *kid)
{
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->keys[i]->kid, kid) == 0)
            return set->keys[i];
    }
    return NULL;
}

int ff_jwt_keyset_add(struct ff_jwt_keyset *set, struct ff_jwt_key *key, struct ff_err *err)
{
    if (keyset_find(set, key->kid) != NULL)
        return ff_err_set(err, FF_EEXIST, "jwt: keyset has a key with kid \"%s\" already",
                          key->kid);
    if (set->n == FF_JWT_KEYSET_MAX)
        return ff_err_set(err, FF_ETOOBIG, "jwt: keyset holds %d keys, the most allowed",
                          FF_JWT_KEYSET_MAX);
    set->keys[set->n++] = key;
    return 0;
}

size_t ff_jwt_keyset_count(const struct ff_jwt_keyset *set)
{
    return set->n;
}

static int crypto_fail(struct ff_err *err, const char *what)
{
    ERR_clear_error();
    return ff_err_set(err, FF_ECRYPTO, "jwt: %s failed", what);
}

/* Signs msg with ES256 and writes the raw r || s form JWS uses. */
static int es256_sign(EVP_PKEY *pkey, const char *msg, size_t len,
                      unsigned char out[FF_JWT_SIG_SIZE], struct ff_err *err)
{
    int rc = 0;
    unsigned char *der = NULL;
    ECDSA_SIG *sig = NULL;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    size_t derlen = 0;
    if (mctx == NULL || EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(mctx, NULL, &derlen, (const unsigned char *)msg, len) != 1) {
        rc = crypto_fail(err, "starting an es256 signature");
        goto out;
    }
    der = OPENSSL_malloc(derlen);
    if (der == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "jwt: out of memory for a signature");
        goto out;
    }
    if (EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)msg, len) != 1) {
        rc = crypto_fail(err, "es256 signing");
        goto out;
    }
    const unsigned char *p = der;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    const BIGNUM *r = NULL, *s = NULL;
    if (sig != NULL)
        ECDSA_SIG_get0(sig, &r, &s);
    if (sig == NULL || BN_bn2binpad(r, out, SCALAR_SIZE) != SCALAR_SIZE ||
        BN_bn2binpad(s, out + SCALAR_SIZE, SCALAR_SIZE) != SCALAR_SIZE) {
        rc = crypto_fail(err, "converting the es256 signature");
        goto out;
    }
out:
    ECDSA_SIG_free(sig);
    OPENSSL_free(der);
    EVP_MD_CTX_free(mctx);
    return rc;
}

int ff_jwt_sign(const struct ff_jwt_key *key, const json_t *claims, char **out_token,
                struct ff_err *err)
{
    if (!key->has_private)
        return ff_err_set(err, FF_EINVAL, "jwt: key \"%s\" has no private half to sign with",
                          key->kid);
    if (!json_is_object(claims))
        return ff_err_set(err, FF_EINVAL, "jwt: claims must be a json object");
    int rc = 0;
    char *hjson = NULL, *cjson = NULL, *token = NULL;
    json_t *header = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "JWT", "kid", key->kid);
    if (header == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "jwt: out of memory for a header");
        goto out;
    }
    hjson = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cjson = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (hjson == NULL || cjson == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "jwt: cannot serialise the token");
        goto out;
    }
    size_t hlen = strlen(hjson), clen = strlen(cjson);
    /* Each length alone is below the cap, so the sum cannot overflow. */
    size_t total = FF_JWT_TOKEN_MAX + 1;
    if (hlen <= FF_JWT_TOKEN_MAX && clen <= FF_JWT_TOKEN_MAX)
        total = ff_base64_encoded_size(hlen) + ff_base64_encoded_size(clen) +
                ff_base64_encoded_size(FF_JWT_SIG_SIZE) - 1;
    if (total > FF_JWT_TOKEN_MAX) {
        rc = ff_err_set(err, FF_ETOOBIG, "jwt: token would be longer than %d bytes",
                        FF_JWT_TOKEN_MAX);
        goto out;
    }
    token = malloc(total);
    if (token == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "jwt: out of memory for a token");
        goto out;
    }
    size_t o = ff_base64_encode((const unsigned char *)hjson, hlen, token, true);
    token[o++] = '.';
    o += ff_base64_encode((const unsigned char *)cjson, clen, token + o, true);
    unsigned char sig[FF_JWT_SIG_SIZE];
    rc = es256_sign(key->pkey, token, o, sig, err);
    if (rc != 0)
        goto out;
    token[o++] = '.';
    ff_base64_encode(sig, sizeof(sig), token + o, true);
    *out_token = token;
    token = NULL;
out:
    free(token);
    free(hjson);
    free(cjson);
    json_decref(header);
    return rc;
}

/* True when the 32-byte big-endian scalar x lies in 1..n-1. */
static bool scalar_in_range(const unsigned char *x)
{
    bool zero = true;
    for (size_t i = 0; i < SCALAR_SIZE; i++)
        zero = zero && x[i] == 0;
    return !zero && memcmp(x, p256_order, SCALAR_SIZE) < 0;
}

/* Checks a raw r || s signature over msg; 0 or FF_EAUTH. */
static int es256_verify(EVP_PKEY *pkey, const char *msg, size_t len, const unsigned char *raw,
                        struct ff_err *err)
{
    if (!scalar_in_range(raw) || !scalar_in_range(raw + SCALAR_SIZE))
        return ff_err_set(err, FF_EAUTH, "jwt: signature r or s is out of range");
    int rc = 0;
    unsigned char *der = NULL;
    EVP_MD_CTX *mctx = NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, SCALAR_SIZE, NULL);
    BIGNUM *s = BN_bin2bn(raw + SCALAR_SIZE, SCALAR_SIZE, NULL);
    if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        rc = crypto_fail(err, "building an ecdsa signature");
        goto out;
    }
    int derlen = i2d_ECDSA_SIG(sig, &der);
    if (derlen <= 0) {
        rc = crypto_fail(err, "encoding an ecdsa signature");
        goto out;
    }
    mctx = EVP_MD_CTX_new();
    if (mctx == NULL || EVP_DigestVerifyInit(mctx, NULL, EVP_sha256(), NULL, pkey) != 1) {
        rc = crypto_fail(err, "starting es256 verification");
        goto out;
    }
    if (EVP_DigestVerify(mctx, der, (size_t)derlen, (const unsigned char *)msg, len) != 1) {
        ERR_clear_error();
        rc = ff_err_set(err, FF_EAUTH, "jwt: signature does not verify");
    }
out:
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    return rc;
}

/* Parses one JSON object; duplicate member names are refused because two
 * parsers could otherwise read two different tokens from the same bytes. */
static int parse_object(const unsigned char *text, size_t len, const char *what, json_t **out,
                        struct ff_err *err)
{
    json_error_t jerr;
    json_t *v = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL)
        return ff_err_set(err, FF_EINVAL, "jwt: %s is not valid json (%s)", what, jerr.text);
    if (!json_is_object(v)) {
        json_decref(v);
        return ff_err_set(err, FF_EINVAL, "jwt: %s is not a json object", what);
    }
    *out = v;
    return 0;
}

static int check_header(const struct ff_jwt_keyset *keys, const json_t *header,
                        const struct ff_jwt_key **out_key, struct ff_err *err)
{
    char q[QUOTE_MAX + 4];
    const json_t *alg = json_object_get(header, "alg");
    if (!json_is_string(alg))
        return ff_err_set(err, FF_EAUTH, "jwt: header has no string \"alg\", expected \"ES256\"");
    if (strcmp(json_string_value(alg), "ES256") != 0)
        return ff_err_set(err, FF_EAUTH, "jwt: header \"alg\" is \"%s\", expected \"ES256\"",
                          quote(json_string_value(alg), json_string_length(alg), q));
    const json_t *typ = json_object_get(header, "typ");
    if (typ != NULL && !(json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0))
        return ff_err_set(err, FF_EINVAL, "jwt: header \"typ\" is not \"JWT\"");
    if (json_object_get(header, "crit") != NULL)
        return ff_err_set(err, FF_EINVAL,
                          "jwt: header \"crit\" names extensions, and none are supported");
    const json_t *kid = json_object_get(header, "kid");
    if (kid == NULL)
        return ff_err_set(err, FF_EAUTH, "jwt: header has no \"kid\"");
    if (!json_is_string(kid))
        return ff_err_set(err, FF_EINVAL, "jwt: header \"kid\" is not a string");
    const struct ff_jwt_key *key = keyset_find(keys, json_string_value(kid));
    if (key == NULL)
        return ff_err_set(err, FF_EAUTH, "jwt: no key with kid \"%s\"",
                          quote(json_string_value(kid), json_string_length(kid), q));
    *out_key = key;
    return 0;
}

static bool aud_matches(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

static int check_claims(const json_t *claims, const struct ff_jwt_expect *expect,
                        struct ff_err *err)
{
    const json_t *exp = json_object_get(claims, "exp");
    const json_t *nbf = json_object_get(claims, "nbf");
    const json_t *iat = json_object_get(claims, "iat");
    if (!json_is_number(exp))
        return ff_err_set(err, FF_EINVAL, "jwt: claims have no numeric \"exp\"");
    if (nbf != NULL && !json_is_number(nbf))
        return ff_err_set(err, FF_EINVAL, "jwt: claim \"nbf\" is not a number");
    if (iat != NULL && !json_is_number(iat))
        return ff_err_set(err, FF_EINVAL, "jwt: claim \"iat\" is not a number");
    time_t now = expect->now != 0 ? expect->now : time(NULL);
    long leeway = expect->leeway < 0 ? 0 : expect->leeway;
    if (leeway > FF_JWT_LEEWAY_MAX)
        leeway = FF_JWT_LEEWAY_MAX;
    double exp_v = json_number_value(exp);
    if (exp_v <= (double)now - (double)leeway)
        return ff_err_set(err, FF_EEXPIRED, "jwt: token expired (exp %.0f, now %lld, leeway %ld s)",
                          exp_v, (long long)now, leeway);
    if (nbf != NULL && json_number_value(nbf) > (double)now + (double)leeway)
        return ff_err_set(err, FF_EEXPIRED,
                          "jwt: token not yet valid (nbf %.0f, now %lld, leeway %ld s)",
                          json_number_value(nbf), (long long)now, leeway);
    char q[QUOTE_MAX + 4];
    if (expect->iss != NULL) {
        const json_t *iss = json_object_get(claims, "iss");
        if (!json_is_string(iss))
            return ff_err_set(err, FF_EAUTH, "jwt: claims have no string \"iss\", expected \"%s\"",
                              expect->iss);
        if (strcmp(json_string_value(iss), expect->iss) != 0)
            return ff_err_set(err, FF_EAUTH, "jwt: claim \"iss\" is \"%s\", expected \"%s\"",
                              quote(json_string_value(iss), json_string_length(iss), q),
                              expect->iss);
    }
    if (expect->aud != NULL && !aud_matches(json_object_get(claims, "aud"), expect->aud))
        return ff_err_set(err, FF_EAUTH, "jwt: claim \"aud\" does not include \"%s\"", expect->aud);
    return 0;
}

int ff_jwt_verify(const struct ff_jwt_keyset *keys, const char *token,
                  const struct ff_jwt_expect *expect, json_t **out_claims, struct ff_err *err)
{
    if (keys == NULL || token == NULL || expect == NULL)
        return ff_err_set(err, FF_EINVAL, "jwt: no keyset, token or expectations given");
    size_t len = strnlen(token, FF_JWT_TOKEN_MAX + 1);
    if (len > FF_JWT_TOKEN_MAX)
        return ff_err_set(err, FF_ETOOBIG, "jwt: token is longer than %d bytes", FF_JWT_TOKEN_MAX);
    size_t dots[2] = {0, 0};
    size_t n_dots = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] != '.')
            continue;
        if (n_dots < 2)
            dots[n_dots] = i;
        n_dots++;
    }
    if (n_dots != 2)
        return ff_err_set(err, FF_EINVAL, "jwt: token has %zu parts, expected 3", n_dots + 1);
    if (dots[0] == 0 || dots[1] == dots[0] + 1)
        return ff_err_set(err, FF_EINVAL, "jwt: token has an empty header or payload");

    unsigned char *htext = NULL, *ptext = NULL, *sig = NULL;
    size_t hlen = 0, plen = 0, siglen = 0;
    json_t *header = NULL, *claims = NULL;
    const struct ff_jwt_key *key = NULL;
    int rc = ff_base64_decode(token, dots[0], true, &htext, &hlen);
    if (rc == 0)
        rc = ff_base64_decode(token + dots[0] + 1, dots[1] - dots[0] - 1, true, &ptext, &plen);
    if (rc == 0)
        rc = ff_base64_decode(token + dots[1] + 1, len - dots[1] - 1, true, &sig, &siglen);
    if (rc == FF_ENOMEM) {
        rc = ff_err_set(err, FF_ENOMEM, "jwt: out of memory decoding a token");
        goto out;
    }
    if (rc != 0) {
        rc = ff_err_set(err, FF_EINVAL, "jwt: token part is not valid unpadded base64url");
        goto out;
    }
    rc = parse_object(htext, hlen, "header", &header, err);
    if (rc != 0)
        goto out;
    rc = check_header(keys, header, &key, err);
    if (rc != 0)
        goto out;
    if (siglen != FF_JWT_SIG_SIZE) {
        rc = ff_err_set(err, FF_EAUTH, "jwt: signature is %zu bytes, expected %d", siglen,
                        FF_JWT_SIG_SIZE);
        goto out;
    }
    rc = es256_verify(key->pkey, token, dots[1], sig, err);
    if (rc != 0)
        goto out;
    /* Only signed claims get parsed. */
    rc = parse_object(ptext, plen, "claims", &claims, err);
    if (rc != 0)
        goto out;
    rc = check_claims(claims, expect, err);
    if (rc != 0)
        goto out;
    if (out_claims != NULL) {
        *out_claims = claims;
        claims = NULL;
    }
out:
    json_decref(header);
    json_decref(claims);
    free(htext);
    free(ptext);
    free(sig);
    return rc;
}
