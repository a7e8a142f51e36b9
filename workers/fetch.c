/* ADD <url>: downloading a source whose sha256 the recipe pins.
 *
 * The body streams into an unlinked temporary file and a running sha256
 * at once, under a size cap; only when the whole body matches the
 * checksum does the caller get the file, so a wrong or truncated download
 * never reaches the image. The file name for a directory destination is
 * the URL path's last segment, as Docker and BuildKit name it. */
#include "worker.h"

#include "ff_str.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

bool fetch_is_url(const char *s)
{
    return strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of s into out (at least n+1 bytes); false on a
 * '%' not followed by two hex digits. */
static bool percent_decode(const char *s, size_t n, char *out, size_t *len)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        if (n - i < 3)
            return false;
        int hi = hex_val(s[i + 1]);
        int lo = hex_val(s[i + 2]);
        if (hi < 0 || lo < 0)
            return false;
        out[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[j] = '\0';
    *len = j;
    return true;
}

int fetch_url_file_name(const char *url, char **out, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(url, strlen(url), q);
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    size_t end = strcspn(p, "?#");
    const char *path = memchr(p, '/', end);
    if (path == NULL)
        return CONTEXT_FAIL(err, FF_EINVAL, "ADD: \"%s\": the URL has no path to name the file", q);
    size_t plen = end - (size_t)(path - p);
    const char *seg = path;
    for (size_t i = 0; i < plen; i++) {
        if (path[i] == '/')
            seg = path + i + 1;
    }
    size_t slen = plen - (size_t)(seg - path);
    char *name = malloc(slen + 1);
    if (name == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "ADD: out of memory");
    size_t nlen = 0;
    if (!percent_decode(seg, slen, name, &nlen)) {
        free(name);
        return CONTEXT_FAIL(err, FF_EINVAL, "ADD: \"%s\": malformed %%-escape in the URL path", q);
    }
    if (nlen == 0 || nlen > NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strlen(name) != nlen || strchr(name, '/') != NULL) {
        free(name);
        return CONTEXT_FAIL(err, FF_EINVAL,
                            "ADD: \"%s\": the URL path does not end in a usable "
                            "file name",
                            q);
    }
    *out = name;
    return 0;
}

int fetch_sink_init(struct fetch_sink *s, int fd, uint64_t max, struct ff_err *err)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->max = max;
    return ff_digest_ctx_new(&s->hash, err);
}

int fetch_sink_write(void *ctx, const void *data, size_t n, struct ff_err *err)
{
    struct fetch_sink *s = ctx;
    if (n > s->max - s->got)
        return CONTEXT_FAIL(err, FF_ETOOBIG, "download larger than %llu bytes",
                            (unsigned long long)s->max);
    int rc = ff_digest_ctx_update(s->hash, data, n, err);
    if (rc != 0)
        return rc;
    const unsigned char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(s->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CONTEXT_FAIL(err, FF_EIO, "cannot write the download: %s",
                                w < 0 ? strerror(errno) : "no space");
        p += w;
        left -= (size_t)w;
    }
    s->got += n;
    return 0;
}

int fetch_sink_finish(struct fetch_sink *s, const char *url, const struct ff_digest *want,
                      struct ff_err *err)
{
    struct ff_digest got;
    int rc = ff_digest_ctx_final(s->hash, &got, err);
    if (rc != 0)
        return rc;
    if (ff_digest_equal(&got, want))
        return 0;
    char q[FF_STR_QUOTE_SIZE];
    char w[FF_DIGEST_STR_SIZE];
    char g[FF_DIGEST_STR_SIZE];
    ff_str_quote(url, strlen(url), q);
    ff_digest_format(want, w);
    ff_digest_format(&got, g);
    return CONTEXT_FAIL(err, FF_EINVAL, "ADD: \"%s\": checksum mismatch (expected %s, got %s)", q,
                        w, g);
}

void fetch_sink_release(struct fetch_sink *s)
{
    ff_digest_ctx_free(s->hash);
    s->hash = NULL;
}

/* An unlinked temporary file in dir: O_TMPFILE where the file system has
 * it, else a named one removed at once. */
static int tmp_file(const char *dir, struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(dir, strlen(dir), q);
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char *path = ff_asprintf("%s/ff-add-XXXXXX", dir);
    if (path == NULL)
        return CONTEXT_FAIL(err, FF_ENOMEM, "ADD: out of memory");
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        (void)unlink(path);
    free(path);
    if (fd < 0)
        return CONTEXT_FAIL(err, FF_EIO, "ADD: cannot create a temporary file in \"%s\": %s", q,
                            strerror(errno));
    return fd;
}

int fetch_url(struct ff_http_client *http, const char *url, const struct ff_digest *want,
              const char *tmp_dir, uint64_t max_bytes, long timeout_ms, int *out_fd,
              struct ff_err *err)
{
    char q[FF_STR_QUOTE_SIZE];
    ff_str_quote(url, strlen(url), q);
    if (strncasecmp(url, "https://", 8) != 0)
        return CONTEXT_FAIL(err, FF_EINVAL, "ADD: \"%s\": only https URLs are fetched", q);
    if (http == NULL || tmp_dir == NULL)
        return CONTEXT_FAIL(err, FF_EINVAL,
                            "ADD: \"%s\": no HTTP client or temporary directory "
                            "to fetch it with",
                            q);
    int fd = tmp_file(tmp_dir, err);
    if (fd < 0)
        return fd;
    struct fetch_sink sink;
    int rc = fetch_sink_init(&sink, fd, max_bytes, err);
    struct ff_http_client_request req;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    req.resp_write = fetch_sink_write;
    req.resp_ctx = &sink;
    req.timeout_ms = timeout_ms;
    struct ff_http_client_response resp;
    memset(&resp, 0, sizeof(resp));
    if (rc == 0)
        rc = ff_http_client_do(http, &req, &resp, err);
    if (rc != 0)
        (void)ff_err_wrap(err, "ADD: \"%s\"", q);
    else if (resp.status < 200 || resp.status > 299)
        rc = CONTEXT_FAIL(err, FF_ENET, "ADD: \"%s\": the server answered %ld, expected 200", q,
                          resp.status);
    else
        rc = fetch_sink_finish(&sink, url, want, err);
    if (rc == 0 && lseek(fd, 0, SEEK_SET) != 0)
        rc = CONTEXT_FAIL(err, FF_EIO, "ADD: \"%s\": cannot rewind the download: %s", q,
                          strerror(errno));
    ff_http_client_response_release(&resp);
    fetch_sink_release(&sink);
    if (rc != 0) {
        (void)close(fd);
        return rc;
    }
    *out_fd = fd;
    return 0;
}
