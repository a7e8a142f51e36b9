/* Base64 in its two alphabets: standard (RFC 4648 §4, padded; HTTP Basic
 * auth, cosign signatures) and URL-safe without padding (§5; JWT). Decoding
 * is strict: wrong alphabet, bad padding or non-zero trailing bits are
 * refused, so one value has exactly one encoding. */
#ifndef FF_BASE64_H
#define FF_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes needed to encode n bytes, including the NUL terminator. */
size_t ff_base64_encoded_size(size_t n);

/* Encodes n bytes into out (ff_base64_encoded_size(n) bytes) and returns the
 * string length. url selects the URL-safe unpadded alphabet. */
size_t ff_base64_encode(const unsigned char *in, size_t n, char *out, bool url);

/* Returns a malloc'd encoding that the caller frees, or NULL when out of
 * memory. */
char *ff_base64_encode_new(const unsigned char *in, size_t n, bool url);

/* Decodes len characters of in. On success *out is a malloc'd buffer the
 * caller frees (NUL-terminated for convenience, not counted in *outlen).
 * Returns 0, FF_EINVAL (malformed) or FF_ENOMEM. */
int ff_base64_decode(const char *in, size_t len, bool url, unsigned char **out,
                     size_t *outlen);

#endif
