/* ES256 JSON Web Tokens (RFC 7519, RFC 7515, RFC 7518 §3.4) for the
 * Docker registry token scheme: ff-builder signs, ff-registry verifies.
 *
 * Only ES256 exists here. The verifier never lets the token choose the
 * algorithm or the key: "alg" must be exactly "ES256" (so "none", HMAC
 * with a public key as the secret, and RSA are all refused), and the key is
 * picked by "kid" from a fixed keyset of P-256 keys. Several keys may be in
 * the keyset at once so the signing key can rotate. */
#ifndef FF_JWT_H
#define FF_JWT_H

#include "ff_err.h"

#include <jansson.h>
#include <openssl/evp.h>

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Longest token accepted or made: registry tokens with a few scopes are
 * well under 2 KiB, and the cap bounds all work done before the signature
 * is checked. */
#define FF_JWT_TOKEN_MAX 8192
/* Longest key id: ff_pki_key_id makes 32; Docker's libtrust ids are 59. */
#define FF_JWT_KID_MAX 64
/* Most keys in a keyset: rotation needs two or three at once. */
#define FF_JWT_KEYSET_MAX 16
/* Largest clock-skew allowance: tokens live at most 5 minutes, so more
 * than a minute of leeway would stretch them noticeably. */
#define FF_JWT_LEEWAY_MAX 60
/* Raw ES256 signature: r and s, 32 bytes each (RFC 7518 §3.4). */
#define FF_JWT_SIG_SIZE 64

struct ff_jwt_key;
struct ff_jwt_keyset;

/* Loads an EC P-256 key from a PEM file (a private key when private_key,
 * which can sign and verify; else a public key, which can only verify).
 * kid names the key in tokens; NULL derives it with ff_pki_key_id. A kid is
 * 1 to FF_JWT_KID_MAX characters of [A-Za-z0-9._:-]. On success *out
 * belongs to the caller (ff_jwt_key_free). Returns 0, or the errors of
 * ff_pki_key_read, or FF_EINVAL for a bad kid. */
int ff_jwt_key_load(const char *pem_path, const char *kid, bool private_key,
                    struct ff_jwt_key **out, struct ff_err *err);

/* Makes a key from pkey, taking a reference of its own (EVP_PKEY_up_ref),
 * so the caller still frees pkey. kid as in ff_jwt_key_load. Returns 0,
 * FF_EINVAL (not EC P-256, or a bad kid), FF_ENOMEM or FF_ECRYPTO. */
int ff_jwt_key_from_pkey(EVP_PKEY *pkey, const char *kid, struct ff_jwt_key **out,
                         struct ff_err *err);

/* NULL-safe. */
void ff_jwt_key_free(struct ff_jwt_key *key);

/* The key's id, borrowed from key. */
const char *ff_jwt_key_kid(const struct ff_jwt_key *key);

/* An empty keyset, or NULL when out of memory. Free with ff_jwt_keyset_free. */
struct ff_jwt_keyset *ff_jwt_keyset_new(void);

/* Frees the keyset and every key in it. NULL-safe. */
void ff_jwt_keyset_free(struct ff_jwt_keyset *set);

/* Adds key. On success the keyset owns key; on failure the caller still
 * does. Returns 0, FF_EEXIST (a key with that kid is there) or FF_ETOOBIG
 * (FF_JWT_KEYSET_MAX keys already). */
int ff_jwt_keyset_add(struct ff_jwt_keyset *set, struct ff_jwt_key *key, struct ff_err *err);

/* Number of keys in the keyset. */
size_t ff_jwt_keyset_count(const struct ff_jwt_keyset *set);

/* Signs claims (a JSON object) into a compact token whose header is exactly
 * {"alg":"ES256","typ":"JWT","kid":"<kid>"}; both parts are compact JSON in
 * unpadded base64url. The claims are signed as given: the caller sets
 * "exp" and friends. On success *out_token belongs to the caller (free()).
 * Returns 0, FF_EINVAL (claims not an object, or key has no private half),
 * FF_ETOOBIG (token would be longer than FF_JWT_TOKEN_MAX), FF_ENOMEM or
 * FF_ECRYPTO. */
int ff_jwt_sign(const struct ff_jwt_key *key, const json_t *claims, char **out_token,
                struct ff_err *err);

/* What a verified token must also satisfy. iss and aud NULL skip that
 * check; now 0 means the current time; leeway (seconds of clock skew
 * allowed on exp and nbf) is clamped to 0..FF_JWT_LEEWAY_MAX. */
struct ff_jwt_expect {
    const char *iss;
    const char *aud;
    time_t now;
    long leeway;
};

/* Verifies token against keys and expect. The header must be a JSON
 * object with "alg" exactly "ES256", a string "kid" naming a key in keys,
 * "typ" absent or "JWT", and no "crit". The signature must be 64 bytes
 * (r || s, each in 1..n-1) and valid. Only then are the claims parsed: a
 * JSON object with a numeric "exp"; "nbf" and "iat" are optional numbers.
 * The token is expired when exp <= now - leeway (RFC 7519 §4.1.4: "now"
 * must be before exp) and not yet valid when nbf > now + leeway. "iss" must
 * equal expect->iss and "aud" (a string or an array of strings) must hold
 * expect->aud when those are set. JSON with duplicate member names is
 * refused everywhere.
 *
 * On success *out_claims (if out_claims is not NULL) is the claims object,
 * owned by the caller (json_decref). Returns 0; FF_ETOOBIG (longer than
 * FF_JWT_TOKEN_MAX); FF_EINVAL (malformed: not three base64url parts, bad
 * JSON, bad header or claim types, missing "exp", a "crit" header);
 * FF_EAUTH (wrong "alg", missing "kid" or one not in keys, bad signature,
 * wrong "iss" or "aud"); FF_EEXPIRED (expired or not yet valid); FF_ENOMEM
 * or FF_ECRYPTO. */
int ff_jwt_verify(const struct ff_jwt_keyset *keys, const char *token,
                  const struct ff_jwt_expect *expect, json_t **out_claims, struct ff_err *err);

#endif
