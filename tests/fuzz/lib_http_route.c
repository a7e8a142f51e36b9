/* Route patterns and request paths. The input is "<pattern>\n<path>".
 * Whenever both are accepted and the path matches, putting the captures
 * back into the pattern must give the path again, every capture must be a
 * non-empty slice of the path, and {x} captures never span a '/'. Header
 * checking runs on the same bytes and must never accept CR or LF. */
#include "ff_http_server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rebuilds the path from the pattern and the captures; false when the
 * result would not fit or does not equal path. */
static bool rebuild_equals(const char *pattern, const struct ff_http_capture *caps, size_t ncaps,
                           const char *path)
{
    size_t plen = strlen(path);
    char *out = malloc(plen + 1);
    if (out == NULL)
        return true; /* out of memory is not a finding */
    size_t o = 0, c = 0;
    bool ok = true;
    for (const char *p = pattern; *p != '\0' && ok;) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (close == NULL || c == ncaps || o + caps[c].value_len > plen) {
                ok = false;
                break;
            }
            memcpy(out + o, caps[c].value, caps[c].value_len);
            o += caps[c].value_len;
            c++;
            p = close + 1;
        } else {
            if (o == plen) {
                ok = false;
                break;
            }
            out[o++] = *p++;
        }
    }
    ok = ok && c == ncaps && o == plen && memcmp(out, path, plen) == 0;
    free(out);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (nl == NULL)
        return 0;
    size_t plen = (size_t)(nl - data);
    size_t qlen = size - plen - 1;
    char *pattern = malloc(plen + 1);
    char *path = malloc(qlen + 1);
    if (pattern == NULL || path == NULL)
        goto out;
    memcpy(pattern, data, plen);
    pattern[plen] = '\0';
    memcpy(path, nl + 1, qlen);
    path[qlen] = '\0';

    if (ff_http_header_check(pattern, path, NULL) == 0 &&
        (strpbrk(pattern, "\r\n:") != NULL || strpbrk(path, "\r\n") != NULL))
        abort();

    if (strlen(pattern) != plen || ff_http_pattern_check(pattern, NULL) != 0)
        goto out;
    if (ff_http_path_check(path, qlen, NULL) != 0)
        goto out;
    struct ff_http_capture caps[FF_HTTP_CAPTURES_MAX];
    size_t ncaps = 0;
    if (!ff_http_pattern_match(pattern, path, caps, &ncaps))
        goto out;
    if (ncaps > FF_HTTP_CAPTURES_MAX)
        abort();
    for (size_t i = 0; i < ncaps; i++) {
        if (caps[i].value_len == 0 || caps[i].value < path ||
            caps[i].value + caps[i].value_len > path + qlen || caps[i].value[0] == '/' ||
            caps[i].value[caps[i].value_len - 1] == '/')
            abort();
        if (caps[i].name < pattern || caps[i].name + caps[i].name_len > pattern + plen)
            abort();
        /* A {x} capture is the name followed directly by '}'. */
        if (caps[i].name[caps[i].name_len] == '}' &&
            memchr(caps[i].value, '/', caps[i].value_len) != NULL)
            abort();
    }
    if (!rebuild_equals(pattern, caps, ncaps, path))
        abort();
out:
    free(pattern);
    free(path);
    return 0;
}
