/* Registry tokens: the claims of the ES256 JWT the builder mints for
 * ff-registry (Docker token authentication). */
#include "builder.h"

#include "ff_str.h"

/* Random bytes in a jti: 128 bits, unique across every token ever made. */
#define JTI_BYTES 16

int token_claims(const char *iss, const char *aud, const char *sub, int64_t now, int64_t ttl,
                 const struct ff_access *access, json_t **out, struct ff_err *err)
{
    if (ttl < 1)
        ttl = 1;
    if (ttl > REGISTRY_TOKEN_TTL_MAX)
        ttl = REGISTRY_TOKEN_TTL_MAX;
    unsigned char raw[JTI_BYTES];
    char jti[2 * JTI_BYTES + 1];
    int rc = ff_secret_random(raw, sizeof(raw), err);
    if (rc != 0)
        return rc;
    ff_hex_encode(raw, sizeof(raw), jti);
    json_t *list = NULL;
    rc = ff_access_to_json(access, &list, err);
    if (rc != 0)
        return rc;
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o}", "iss", iss, "aud", aud,
                               "sub", sub, "jti", jti, "iat", (json_int_t)now, "nbf",
                               (json_int_t)now, "exp", (json_int_t)now + (json_int_t)ttl, "access",
                               list);
    if (claims == NULL)
        return ff_err_set(err, FF_ENOMEM, "token: out of memory");
    *out = claims;
    return 0;
}

void token_rfc3339(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        out[0] = '\0';
}
