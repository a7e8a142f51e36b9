/* The COPY/ADD glob matcher (Go's filepath.Match per segment) on hostile
 * patterns and names. The input is "pattern\0name" (without a NUL, the
 * first half is the pattern). Invariants: no crash; at most
 * (name + 2) x (pattern + 1) steps, so no input takes exponential time; a
 * pattern without metacharacters matches exactly the name it spells (with
 * '\' escapes removed); every name matches itself fully escaped; '*'
 * matches every name without '/'; the same call gives the same answer. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool match(const char *p, size_t plen, const char *n, size_t nlen, int *rc)
{
    bool m = false;
    size_t steps = 0;
    *rc = context_glob_match(p, plen, n, nlen, &m, &steps, NULL);
    if (*rc == 0 && steps > (nlen + 2) * (plen + 1))
        abort();
    if (*rc != 0 && *rc != FF_EINVAL && *rc != FF_ETOOBIG)
        abort();
    if (*rc != 0 && m)
        abort();
    return m;
}

/* The name a pattern without metacharacters spells: escapes removed.
 * False when it ends in a lone '\' (a bad pattern). */
static bool unescape(const char *p, size_t plen, char *out, size_t *len)
{
    size_t j = 0;
    for (size_t i = 0; i < plen; i++) {
        if (p[i] == '\\') {
            if (++i == plen)
                return false;
        }
        out[j++] = p[i];
    }
    *len = j;
    return true;
}

static void check_literal(const char *p, size_t plen, const char *n, size_t nlen)
{
    if (plen > CONTEXT_GLOB_SEGMENT_MAX || context_glob_has_meta(p, plen))
        return;
    char *lit = malloc(plen + 1);
    if (lit == NULL)
        abort();
    size_t llen = 0;
    int rc = 0;
    if (unescape(p, plen, lit, &llen)) {
        if (!match(p, plen, lit, llen, &rc) || rc != 0)
            abort();
        bool same = llen == nlen && memcmp(lit, n, nlen) == 0;
        if (match(p, plen, n, nlen, &rc) != same)
            abort();
    }
    free(lit);
}

static void check_escaped(const char *n, size_t nlen)
{
    if (2 * nlen > CONTEXT_GLOB_SEGMENT_MAX)
        return;
    char *esc = malloc(2 * nlen + 1);
    if (esc == NULL)
        abort();
    for (size_t i = 0; i < nlen; i++) {
        esc[2 * i] = '\\';
        esc[2 * i + 1] = n[i];
    }
    int rc = 0;
    if (!match(esc, 2 * nlen, n, nlen, &rc) || rc != 0)
        abort();
    free(esc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = memchr(in, '\0', size);
    size_t plen = nul != NULL ? (size_t)(nul - in) : size / 2;
    const char *name = nul != NULL ? nul + 1 : in + plen;
    size_t nlen = size - (size_t)(name - in);
    int rc1 = 0;
    int rc2 = 0;
    bool m1 = match(in, plen, name, nlen, &rc1);
    bool m2 = match(in, plen, name, nlen, &rc2);
    if (m1 != m2 || rc1 != rc2)
        abort();
    if ((plen > CONTEXT_GLOB_SEGMENT_MAX) != (rc1 == FF_ETOOBIG))
        abort();
    check_literal(in, plen, name, nlen);
    check_escaped(name, nlen);
    int rc = 0;
    bool star = match("*", 1, name, nlen, &rc);
    if (star != (memchr(name, '/', nlen) == NULL))
        abort();
    return 0;
}
