#include "ff_digest.h"

#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read size for hashing files: large enough that syscalls cost little next
 * to hashing, small enough to stay in L2. */
#define DIGEST_READ_CHUNK ((size_t)256 * 1024)

static const char sha256_prefix[] = "sha256:";
#define SHA256_PREFIX_LEN (sizeof(sha256_prefix) - 1)

struct ff_digest_ctx {
    EVP_MD_CTX *md;
};

int ff_digest_ctx_new(struct ff_digest_ctx **out, struct ff_err *err)
{
    /* Errors return the constant, not ff_err_set's result, so analyzers
     * see that success always sets *out. */
    struct ff_digest_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        (void)ff_err_set(err, FF_ENOMEM, "digest: out of memory");
        return FF_ENOMEM;
    }
    ctx->md = EVP_MD_CTX_new();
    if (ctx->md == NULL || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        ff_digest_ctx_free(ctx);
        (void)ff_err_set(err, FF_ECRYPTO, "digest: cannot start sha256");
        return FF_ECRYPTO;
    }
    *out = ctx;
    return 0;
}

int ff_digest_ctx_update(struct ff_digest_ctx *ctx, const void *data, size_t len,
                         struct ff_err *err)
{
    if (len > 0 && EVP_DigestUpdate(ctx->md, data, len) != 1)
        return ff_err_set(err, FF_ECRYPTO, "digest: sha256 update failed");
    return 0;
}

int ff_digest_ctx_final(struct ff_digest_ctx *ctx, struct ff_digest *out, struct ff_err *err)
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx->md, out->bytes, &n) != 1 || n != FF_DIGEST_SIZE ||
        EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
        return ff_err_set(err, FF_ECRYPTO, "digest: sha256 final failed");
    return 0;
}

int ff_digest_ctx_dup(const struct ff_digest_ctx *ctx, struct ff_digest_ctx **out,
                      struct ff_err *err)
{
    struct ff_digest_ctx *copy = calloc(1, sizeof(*copy));
    if (copy == NULL)
        return ff_err_set(err, FF_ENOMEM, "digest: out of memory");
    copy->md = EVP_MD_CTX_new();
    if (copy->md == NULL || EVP_MD_CTX_copy_ex(copy->md, ctx->md) != 1) {
        ff_digest_ctx_free(copy);
        return ff_err_set(err, FF_ECRYPTO, "digest: cannot copy sha256 state");
    }
    *out = copy;
    return 0;
}

void ff_digest_ctx_free(struct ff_digest_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int ff_digest_buffer(const void *data, size_t len, struct ff_digest *out, struct ff_err *err)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out->bytes, &n, EVP_sha256(), NULL) != 1 || n != FF_DIGEST_SIZE)
        return ff_err_set(err, FF_ECRYPTO, "digest: sha256 failed");
    return 0;
}

int ff_digest_fd(int fd, struct ff_digest *out, struct ff_err *err)
{
    struct ff_digest_ctx *ctx = NULL;
    int rc = ff_digest_ctx_new(&ctx, err);
    if (rc != 0)
        return rc;
    unsigned char *buf = malloc(DIGEST_READ_CHUNK);
    if (buf == NULL) {
        rc = ff_err_set(err, FF_ENOMEM, "digest: out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, DIGEST_READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ff_err_set(err, FF_EIO, "digest: read failed: %s", strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        rc = ff_digest_ctx_update(ctx, buf, (size_t)n, err);
        if (rc != 0)
            goto out;
    }
    rc = ff_digest_ctx_final(ctx, out, err);
out:
    free(buf);
    ff_digest_ctx_free(ctx);
    return rc;
}

int ff_digest_file(const char *path, struct ff_digest *out, struct ff_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ff_err_set(err, errno == ENOENT ? FF_ENOTFOUND : FF_EIO,
                          "digest: open \"%s\": %s", path, strerror(errno));
    int rc = ff_digest_fd(fd, out, err);
    close(fd);
    if (rc != 0)
        return ff_err_wrap(err, "\"%s\"", path);
    return 0;
}

/* OCI algorithm grammar: [a-z0-9]+ ([+._-][a-z0-9]+)* */
static bool algorithm_valid(const char *s, size_t len)
{
    bool need_alnum = true;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (alnum) {
            need_alnum = false;
        } else if (!need_alnum && (c == '+' || c == '.' || c == '_' || c == '-')) {
            need_alnum = true;
        } else {
            return false;
        }
    }
    return len > 0 && !need_alnum;
}

int ff_digest_parse(const char *s, size_t len, struct ff_digest *out, struct ff_err *err)
{
    /* Messages quote the input safely: it may be anything a client sent. */
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(s, len, q);
    if (len > FF_DIGEST_STR_MAX)
        return ff_err_set(err, FF_EINVAL, "digest: %zu characters long, expected "
                          "\"sha256:\" and 64 hex digits", len);
    const char *colon = memchr(s, ':', len);
    if (colon == NULL)
        return ff_err_set(err, FF_EINVAL, "digest \"%s\": no \":\", expected "
                          "\"sha256:<64 hex digits>\"", q);
    size_t alg_len = (size_t)(colon - s);
    if (!algorithm_valid(s, alg_len))
        return ff_err_set(err, FF_EINVAL, "digest \"%s\": malformed algorithm",
                          q);
    char aq[FF_STR_QUOTE_SIZE];
    ff_str_quote(s, alg_len, aq);
    if (alg_len != SHA256_PREFIX_LEN - 1 || memcmp(s, sha256_prefix, alg_len) != 0)
        return ff_err_set(err, FF_EINVAL, "digest \"%s\": unsupported algorithm "
                          "\"%s\", expected sha256", q, aq);
    const char *hex = colon + 1;
    size_t hex_len = len - alg_len - 1;
    if (hex_len != (size_t)2 * FF_DIGEST_SIZE)
        return ff_err_set(err, FF_EINVAL, "digest \"%s\": %zu hex digits, expected 64",
                          q, hex_len);
    for (size_t i = 0; i < hex_len; i++) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return ff_err_set(err, FF_EINVAL, "digest \"%s\": character %zu is not a "
                              "lower-case hex digit", q, alg_len + 1 + i);
    }
    struct ff_digest tmp = {{0}};
    if (ff_hex_decode(hex, FF_DIGEST_SIZE, tmp.bytes) != 0)
        return ff_err_set(err, FF_EINVAL, "digest \"%s\": bad hex", q);
    if (out != NULL)
        *out = tmp;
    return 0;
}

int ff_digest_parse_str(const char *s, struct ff_digest *out, struct ff_err *err)
{
    return ff_digest_parse(s, strnlen(s, FF_DIGEST_STR_MAX + 1), out, err);
}

void ff_digest_format(const struct ff_digest *d, char out[FF_DIGEST_STR_SIZE])
{
    memcpy(out, sha256_prefix, SHA256_PREFIX_LEN);
    ff_hex_encode(d->bytes, FF_DIGEST_SIZE, out + SHA256_PREFIX_LEN);
}

void ff_digest_hex(const struct ff_digest *d, char out[FF_DIGEST_HEX_SIZE])
{
    ff_hex_encode(d->bytes, FF_DIGEST_SIZE, out);
}

bool ff_digest_equal(const struct ff_digest *a, const struct ff_digest *b)
{
    return memcmp(a->bytes, b->bytes, FF_DIGEST_SIZE) == 0;
}
