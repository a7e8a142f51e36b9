/* Fuzzes ff_jwt_verify, the first code to see a registry client's token.
 *
 * Every input is tried as a token against a fixed keyset. An input with a
 * newline is also split into header and claims JSON, signed with the
 * keyset's key, and verified, so that the code behind the signature check
 * (claims parsing, exp/nbf/iss/aud) gets fuzzed too; when such a token
 * verifies, its claims re-signed with ff_jwt_sign must verify again. */
#include "ff_jwt.h"

#include "ff_base64.h"
#include "ff_pki.h"

#include <openssl/ec.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The kid the seed corpus uses in its headers. */
#define FUZZ_KID "fuzz-key"
/* A fixed clock so the corpus means the same thing on every run. */
#define FUZZ_NOW 1700000000

static EVP_PKEY *pkey;
static struct ff_jwt_key *signer;
static struct ff_jwt_keyset *keyset;

/* Made once per process; the fuzzer never frees them, which is fine. */
static void init_once(void)
{
    if (keyset != NULL)
        return;
    struct ff_jwt_key *verifier = NULL;
    keyset = ff_jwt_keyset_new();
    if (keyset == NULL || ff_pki_key_new(&pkey, NULL) != 0 ||
        ff_jwt_key_from_pkey(pkey, FUZZ_KID, &signer, NULL) != 0 ||
        ff_jwt_key_from_pkey(pkey, FUZZ_KID, &verifier, NULL) != 0 ||
        ff_jwt_keyset_add(keyset, verifier, NULL) != 0)
        abort();
}

static const struct ff_jwt_expect expect = {
    .iss = "ff-builder", .aud = "ff-registry", .now = FUZZ_NOW, .leeway = 30};

static void verify_token(const char *token)
{
    json_t *claims = NULL;
    struct ff_err err;
    if (ff_jwt_verify(keyset, token, &expect, &claims, &err) == 0) {
        if (!json_is_object(claims))
            abort();
        json_decref(claims);
    }
}

/* Signs "<b64 header>.<b64 claims>" the way a real issuer would. */
static char *sign_raw(const uint8_t *header, size_t hlen, const uint8_t *claims, size_t clen)
{
    size_t hsize = ff_base64_encoded_size(hlen), csize = ff_base64_encoded_size(clen);
    size_t ssize = ff_base64_encoded_size(FF_JWT_SIG_SIZE);
    char *token = malloc(hsize + csize + ssize);
    if (token == NULL)
        return NULL;
    size_t o = ff_base64_encode(header, hlen, token, true);
    token[o++] = '.';
    o += ff_base64_encode(claims, clen, token + o, true);

    unsigned char der[128];
    size_t derlen = sizeof(der);
    unsigned char raw[FF_JWT_SIG_SIZE];
    ECDSA_SIG *sig = NULL;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    if (mctx == NULL || EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(mctx, der, &derlen, (const unsigned char *)token, o) != 1)
        abort();
    const unsigned char *p = der;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (sig == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32)
        abort();
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(mctx);
    token[o++] = '.';
    ff_base64_encode(raw, sizeof(raw), token + o, true);
    return token;
}

static void verify_signed(const uint8_t *data, size_t size, const uint8_t *nl)
{
    char *token = sign_raw(data, (size_t)(nl - data), nl + 1, size - (size_t)(nl - data) - 1);
    if (token == NULL)
        return;
    json_t *claims = NULL;
    struct ff_err err;
    if (ff_jwt_verify(keyset, token, &expect, &claims, &err) == 0) {
        char *again = NULL;
        if (ff_jwt_sign(signer, claims, &again, &err) == 0) {
            if (ff_jwt_verify(keyset, again, &expect, NULL, &err) != 0)
                abort();
            free(again);
        }
        json_decref(claims);
    }
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    char *token = malloc(size + 1);
    if (token == NULL)
        return 0;
    memcpy(token, data, size);
    token[size] = '\0';
    verify_token(token);
    free(token);
    const uint8_t *nl = memchr(data, '\n', size);
    if (nl != NULL && size <= FF_JWT_TOKEN_MAX)
        verify_signed(data, size, nl);
    return 0;
}
