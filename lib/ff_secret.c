#include "ff_secret.h"

#include "ff_base64.h"
#include "ff_str.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCRYPT_TAG "$scrypt$"
/* ff_base64_encoded_size as a constant expression, for array sizes. */
#define B64_SIZE(n) (((n) + 2) / 3 * 4 + 1)

int ff_secret_random(unsigned char *out, size_t n, struct ff_err *err)
{
    /* RAND_bytes takes an int; ask in chunks rather than truncate. */
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(out, chunk) != 1)
            return ff_err_set(err, FF_ECRYPTO, "secret: random generator failed");
        out += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

static bool prefix_valid(const char *prefix)
{
    size_t n = 0;
    for (const char *c = prefix; *c != '\0'; c++, n++) {
        if (n == FF_SECRET_PREFIX_MAX)
            return false;
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
            return false;
    }
    return n > 0;
}

int ff_secret_token_new(const char *prefix, char **out_token,
                        char out_hash_hex[FF_SECRET_HASH_HEX_SIZE], struct ff_err *err)
{
    if (prefix == NULL || !prefix_valid(prefix))
        return ff_err_set(err, FF_EINVAL,
                          "secret: token prefix \"%.*s\" is invalid (expected 1 to %d of [a-z0-9])",
                          FF_SECRET_PREFIX_MAX + 1, prefix == NULL ? "" : prefix,
                          FF_SECRET_PREFIX_MAX);
    unsigned char raw[FF_SECRET_TOKEN_BYTES];
    int rc = ff_secret_random(raw, sizeof(raw), err);
    if (rc != 0)
        return rc;
    size_t plen = strlen(prefix);
    size_t size = plen + 1 + ff_base64_encoded_size(sizeof(raw));
    char *token = malloc(size);
    if (token == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "secret: out of memory for a token");
        goto out;
    }
    memcpy(token, prefix, plen + 1);
    token[plen] = '_';
    ff_base64_encode(raw, sizeof(raw), token + plen + 1, true);
    ff_secret_token_hash(token, out_hash_hex);
    if (out_hash_hex[0] == '\0') {
        ff_secret_free(token);
        rc = ff_err_set(err, FF_ECRYPTO, "secret: hashing the new token failed");
        goto out;
    }
    *out_token = token;
out:
    ff_secret_wipe(raw, sizeof(raw));
    return rc;
}

void ff_secret_token_hash(const char *token, char out_hash_hex[FF_SECRET_HASH_HEX_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen * 2 + 1 != FF_SECRET_HASH_HEX_SIZE) {
        out_hash_hex[0] = '\0';
        return;
    }
    ff_hex_encode(md, mdlen, out_hash_hex);
}

/* Bytes OpenSSL's scrypt allocates for these parameters (its B and V
 * arrays), checked against FF_SECRET_SCRYPT_MEM_MAX. */
static bool cost_valid(unsigned ln, unsigned r, unsigned p)
{
    if (ln < 1 || ln > FF_SECRET_SCRYPT_LN_MAX || r < 1 || r > FF_SECRET_SCRYPT_R_MAX || p < 1 ||
        p > FF_SECRET_SCRYPT_P_MAX)
        return false;
    uint64_t n = (uint64_t)1 << ln;
    uint64_t mem = 128u * (uint64_t)r * (n + 2) + 128u * (uint64_t)r * p;
    return mem <= FF_SECRET_SCRYPT_MEM_MAX;
}

static int scrypt_derive(const char *password, size_t pwlen, const unsigned char *salt,
                         size_t saltlen, unsigned ln, unsigned r, unsigned p, unsigned char *out,
                         size_t outlen, struct ff_err *err)
{
    int rc = 0;
    EVP_KDF_CTX *kctx = NULL;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    if (kdf == NULL) {
        rc = ff_err_set(err, FF_ECRYPTO, "secret: openssl has no \"SCRYPT\" kdf");
        goto out;
    }
    kctx = EVP_KDF_CTX_new(kdf);
    if (kctx == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "secret: out of memory for scrypt");
        goto out;
    }
    uint64_t n = (uint64_t)1 << ln;
    uint32_t r32 = r;
    uint32_t p32 = p;
    uint64_t maxmem = FF_SECRET_SCRYPT_MEM_MAX;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)password, pwlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(kctx, out, outlen, params) != 1)
        rc = ff_err_set(err, FF_ECRYPTO, "secret: scrypt (ln=%u, r=%u, p=%u) failed", ln, r, p);
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

int ff_secret_password_hash(const char *password, char **out_encoded, struct ff_err *err)
{
    return ff_secret_password_hash_cost(password, FF_SECRET_SCRYPT_LN, FF_SECRET_SCRYPT_R,
                                        FF_SECRET_SCRYPT_P, out_encoded, err);
}

int ff_secret_password_hash_cost(const char *password, unsigned ln, unsigned r, unsigned p,
                                 char **out_encoded, struct ff_err *err)
{
    if (password == NULL)
        return ff_err_set(err, FF_EINVAL, "secret: no password given");
    size_t pwlen = strnlen(password, FF_SECRET_PASSWORD_MAX + 1);
    if (pwlen < FF_SECRET_PASSWORD_MIN)
        return ff_err_set(err, FF_EINVAL, "secret: password is %zu bytes, expected at least %d",
                          pwlen, FF_SECRET_PASSWORD_MIN);
    if (pwlen > FF_SECRET_PASSWORD_MAX)
        return ff_err_set(err, FF_EINVAL, "secret: password is longer than %d bytes",
                          FF_SECRET_PASSWORD_MAX);
    if (!cost_valid(ln, r, p))
        return ff_err_set(err, FF_ERANGE,
                          "secret: scrypt cost ln=%u, r=%u, p=%u is outside the allowed bounds", ln,
                          r, p);
    unsigned char salt[FF_SECRET_SALT_SIZE];
    unsigned char key[FF_SECRET_SCRYPT_KEY_SIZE];
    char salt64[B64_SIZE(FF_SECRET_SALT_SIZE)];
    char key64[B64_SIZE(FF_SECRET_SCRYPT_KEY_SIZE)];
    int rc = ff_secret_random(salt, sizeof(salt), err);
    if (rc != 0)
        goto out;
    rc = scrypt_derive(password, pwlen, salt, sizeof(salt), ln, r, p, key, sizeof(key), err);
    if (rc != 0)
        goto out;
    ff_base64_encode(salt, sizeof(salt), salt64, false);
    ff_base64_encode(key, sizeof(key), key64, false);
    char *encoded = ff_asprintf(SCRYPT_TAG "ln=%u,r=%u,p=%u$%s$%s", ln, r, p, salt64, key64);
    if (encoded == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "secret: out of memory for a password hash");
        goto out;
    }
    *out_encoded = encoded;
out:
    ff_secret_wipe(key, sizeof(key));
    ff_secret_wipe(key64, sizeof(key64));
    return rc;
}

/* Parses "<name>=<decimal>" at *pp, where the number has no sign and no
 * leading zero (one encoding per value) and lies in 1..max. */
static bool parse_param(const char **pp, const char *name, unsigned max, unsigned *out)
{
    const char *s = *pp;
    size_t nlen = strlen(name);
    if (strncmp(s, name, nlen) != 0 || s[nlen] != '=')
        return false;
    s += nlen + 1;
    if (*s < '1' || *s > '9')
        return false;
    unsigned v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (unsigned)(*s - '0');
        if (v > max)
            return false;
        s++;
    }
    *out = v;
    *pp = s;
    return true;
}

int ff_secret_password_verify(const char *password, const char *encoded, struct ff_err *err)
{
    if (password == NULL || encoded == NULL)
        return ff_err_set(err, FF_EINVAL, "secret: no password or password hash given");
    size_t pwlen = strnlen(password, FF_SECRET_PASSWORD_MAX + 1);
    if (pwlen > FF_SECRET_PASSWORD_MAX)
        return ff_err_set(err, FF_EINVAL, "secret: password is longer than %d bytes",
                          FF_SECRET_PASSWORD_MAX);
    const char *s = encoded;
    unsigned ln = 0, r = 0, p = 0;
    if (!ff_str_has_prefix(s, SCRYPT_TAG))
        return ff_err_set(err, FF_EINVAL, "secret: password hash does not start with \"%s\"",
                          SCRYPT_TAG);
    s += strlen(SCRYPT_TAG);
    if (!parse_param(&s, "ln", FF_SECRET_SCRYPT_LN_MAX, &ln) || *s++ != ',' ||
        !parse_param(&s, "r", FF_SECRET_SCRYPT_R_MAX, &r) || *s++ != ',' ||
        !parse_param(&s, "p", FF_SECRET_SCRYPT_P_MAX, &p) || *s++ != '$')
        return ff_err_set(err, FF_EINVAL,
                          "secret: password hash parameters are malformed or too costly "
                          "(expected \"ln=1..%d,r=1..%d,p=1..%d\")",
                          FF_SECRET_SCRYPT_LN_MAX, FF_SECRET_SCRYPT_R_MAX, FF_SECRET_SCRYPT_P_MAX);
    if (!cost_valid(ln, r, p))
        return ff_err_set(err, FF_EINVAL,
                          "secret: password hash cost ln=%u, r=%u, p=%u needs more than %u bytes",
                          ln, r, p, FF_SECRET_SCRYPT_MEM_MAX);
    const char *dollar = strchr(s, '$');
    if (dollar == NULL)
        return ff_err_set(err, FF_EINVAL, "secret: password hash has no hash after the salt");
    const char *hash64 = dollar + 1;
    unsigned char *salt = NULL;
    unsigned char *stored = NULL;
    size_t saltlen = 0, storedlen = 0;
    unsigned char derived[FF_SECRET_SCRYPT_KEY_MAX];
    int rc = 0;
    if (ff_base64_decode(s, (size_t)(dollar - s), false, &salt, &saltlen) != 0 ||
        ff_base64_decode(hash64, strlen(hash64), false, &stored, &storedlen) != 0) {
        rc = ff_err_set(err, FF_EINVAL, "secret: password hash has malformed base64");
        goto out;
    }
    if (saltlen < FF_SECRET_SALT_SIZE || saltlen > FF_SECRET_SALT_MAX) {
        rc =
            ff_err_set(err, FF_EINVAL, "secret: password hash salt is %zu bytes, expected %d to %d",
                       saltlen, FF_SECRET_SALT_SIZE, FF_SECRET_SALT_MAX);
        goto out;
    }
    if (storedlen < FF_SECRET_SCRYPT_KEY_MIN || storedlen > FF_SECRET_SCRYPT_KEY_MAX) {
        rc = ff_err_set(err, FF_EINVAL, "secret: password hash is %zu bytes, expected %d to %d",
                        storedlen, FF_SECRET_SCRYPT_KEY_MIN, FF_SECRET_SCRYPT_KEY_MAX);
        goto out;
    }
    rc = scrypt_derive(password, pwlen, salt, saltlen, ln, r, p, derived, storedlen, err);
    if (rc != 0)
        goto out;
    if (!ff_secret_equal(derived, stored, storedlen))
        rc = ff_err_set(err, FF_EAUTH, "secret: password does not match");
out:
    ff_secret_wipe(derived, sizeof(derived));
    free(salt);
    if (stored != NULL)
        ff_secret_wipe(stored, storedlen);
    free(stored);
    return rc;
}

bool ff_secret_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

bool ff_secret_str_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return false;
    size_t n = strlen(a);
    if (strlen(b) != n)
        return false;
    return CRYPTO_memcmp(a, b, n) == 0;
}

void ff_secret_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

void ff_secret_free(char *s)
{
    if (s == NULL)
        return;
    ff_secret_wipe(s, strlen(s));
    free(s);
}
