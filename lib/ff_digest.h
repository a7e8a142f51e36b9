/* SHA-256 content digests in the OCI form "sha256:<64 lower-case hex>".
 *
 * Hashing streams (OpenSSL EVP, which uses the CPU's SHA extensions), so a
 * blob is hashed while it passes through and never held whole in memory.
 * Parsing is strict: one spelling per digest, so a digest string can be used
 * as a key and as a file name. */
#ifndef FF_DIGEST_H
#define FF_DIGEST_H

#include "ff_err.h"

#include <stdbool.h>
#include <stddef.h>

#define FF_DIGEST_SIZE 32
#define FF_DIGEST_HEX_SIZE (2 * FF_DIGEST_SIZE + 1)
/* "sha256:" + 64 hex digits + NUL */
#define FF_DIGEST_STR_SIZE (7 + 2 * FF_DIGEST_SIZE + 1)
/* Longest digest string we will even look at: the OCI grammar allows
 * other algorithms (sha512 is 135 characters); anything longer is junk. */
#define FF_DIGEST_STR_MAX 256

struct ff_digest {
    unsigned char bytes[FF_DIGEST_SIZE];
};

struct ff_digest_ctx;

/* Starts a streaming SHA-256. *out belongs to the caller
 * (ff_digest_ctx_free). Errors: FF_ENOMEM, FF_ECRYPTO. */
int ff_digest_ctx_new(struct ff_digest_ctx **out, struct ff_err *err);

/* Feeds len bytes. Errors: FF_ECRYPTO. */
int ff_digest_ctx_update(struct ff_digest_ctx *ctx, const void *data, size_t len,
                         struct ff_err *err);

/* Writes the digest of everything fed so far and restarts ctx for a new
 * stream. Errors: FF_ECRYPTO. */
int ff_digest_ctx_final(struct ff_digest_ctx *ctx, struct ff_digest *out, struct ff_err *err);

/* Copies the running state, so a prefix of a stream can be finalised while
 * the stream goes on (resumable uploads). *out belongs to the caller. */
int ff_digest_ctx_dup(const struct ff_digest_ctx *ctx, struct ff_digest_ctx **out,
                      struct ff_err *err);

/* NULL-safe. */
void ff_digest_ctx_free(struct ff_digest_ctx *ctx);

/* One-shot digest of a buffer. Errors: FF_ECRYPTO, FF_ENOMEM. */
int ff_digest_buffer(const void *data, size_t len, struct ff_digest *out, struct ff_err *err);

/* Digest of everything readable from fd (read to EOF, from its current
 * offset). Errors: FF_EIO (with errno text), FF_ECRYPTO, FF_ENOMEM. */
int ff_digest_fd(int fd, struct ff_digest *out, struct ff_err *err);

/* Digest of a file's content. Errors as ff_digest_fd, FF_ENOTFOUND. */
int ff_digest_file(const char *path, struct ff_digest *out, struct ff_err *err);

/* Parses exactly "sha256:" followed by 64 lower-case hex digits (len bytes
 * of s; s need not be NUL-terminated). out may be NULL to only validate.
 * Errors: FF_EINVAL, with a message saying what was wrong; a well-formed
 * digest of another algorithm ("sha512:…") is FF_EINVAL with a message
 * naming the algorithm as unsupported. */
int ff_digest_parse(const char *s, size_t len, struct ff_digest *out, struct ff_err *err);

/* Same, for a NUL-terminated string. */
int ff_digest_parse_str(const char *s, struct ff_digest *out, struct ff_err *err);

/* Writes "sha256:<hex>" into out. */
void ff_digest_format(const struct ff_digest *d, char out[FF_DIGEST_STR_SIZE]);

/* Writes the 64 hex digits alone into out. */
void ff_digest_hex(const struct ff_digest *d, char out[FF_DIGEST_HEX_SIZE]);

/* Digests are public values: plain comparison is fine. */
bool ff_digest_equal(const struct ff_digest *a, const struct ff_digest *b);

#endif
