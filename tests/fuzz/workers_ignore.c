/* .dockerignore matching on hostile bytes. The input is the .dockerignore
 * text, a NUL byte, then paths one per line. Checked:
 * - skipping is sound: when a directory is excluded and
 *   ignore_dir_may_contain_exceptions says it may be skipped, every path
 *   below it is excluded too;
 * - path spelling does not matter ("./a", "a/", "a//b");
 * - against a reference: for inputs whose lines are plain ASCII patterns
 *   (no classes, escapes or cleaning needed), the answer equals
 *   moby/patternmatcher's, computed here the way it does it, by turning
 *   each pattern into a regular expression (POSIX ERE standing in for Go's
 *   regexp) or a plain comparison. */
#include "worker.h"

#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATHS_MAX 32
#define REF_PATTERNS_MAX 16
#define REF_LEN_MAX 64

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool excluded(const struct ignore *ig, const char *path, int *rc)
{
    bool ex = false;
    struct ff_err err;
    *rc = ignore_match(ig, path, &ex, &err);
    return ex;
}

/* ---- the reference -------------------------------------------------------- */

enum ref_kind { REF_EXACT, REF_PREFIX, REF_SUFFIX, REF_REGEX };

struct ref_pattern {
    regex_t re;
    enum ref_kind kind;
    bool exception;
    char text[REF_LEN_MAX + 1];
};

/* A line the reference can take as it is: printable ASCII without the
 * characters whose handling differs between Go's regexp and ERE or that
 * cleaning would change. */
static bool plain_line(const char *s, size_t n)
{
    if (n == 0 || n > REF_LEN_MAX || s[0] == '#' || s[0] == '/' || s[n - 1] == '/' ||
        s[0] == ' ' || s[n - 1] == ' ')
        return false;
    const char *start = s[0] == '!' ? s + 1 : s;
    size_t len = n - (size_t)(start - s);
    if (len == 0 || start[0] == '/' || start[0] == ' ')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = start[i];
        if (c < 0x21 || c > 0x7e || strchr("[]\\^!", c) != NULL)
            return false;
        bool comp_start = i == 0 || start[i - 1] == '/';
        size_t end = i;
        while (end < len && start[end] != '/')
            end++;
        if (comp_start && (end == i || (end - i == 1 && c == '.') ||
                           (end - i == 2 && c == '.' && start[i + 1] == '.')))
            return false;
    }
    return true;
}

/* patternmatcher's compile, character by character. */
static bool ref_compile(struct ref_pattern *p)
{
    char re[8 * REF_LEN_MAX + 8] = "^";
    size_t w = 1, n = strlen(p->text);
    p->kind = REF_EXACT;
    for (size_t i = 0, iter = 0; i < n; iter++) {
        char c = p->text[i++];
        if (c == '*' && i < n && p->text[i] == '*') {
            i++;
            if (i < n && p->text[i] == '/')
                i++;
            if (i == n) {
                if (p->kind == REF_EXACT) {
                    p->kind = REF_PREFIX;
                } else {
                    w += (size_t)snprintf(re + w, sizeof(re) - w, ".*");
                    p->kind = REF_REGEX;
                }
            } else {
                w += (size_t)snprintf(re + w, sizeof(re) - w, "(.*/)?");
                p->kind = REF_REGEX;
            }
            if (iter == 0)
                p->kind = REF_SUFFIX;
        } else if (c == '*' || c == '?') {
            w += (size_t)snprintf(re + w, sizeof(re) - w, c == '*' ? "[^/]*" : "[^/]");
            p->kind = REF_REGEX;
        } else if (strchr(".+()|{}$", c) != NULL) {
            w += (size_t)snprintf(re + w, sizeof(re) - w, "\\%c", c);
        } else {
            re[w++] = c;
            re[w] = '\0';
        }
    }
    (void)snprintf(re + w, sizeof(re) - w, "$");
    if (p->kind != REF_REGEX)
        return true;
    return regcomp(&p->re, re, REG_EXTENDED | REG_NOSUB) == 0;
}

static bool ref_match_one(const struct ref_pattern *p, const char *path, size_t n)
{
    size_t tl = strlen(p->text);
    switch (p->kind) {
    case REF_EXACT:
        return n == tl && memcmp(path, p->text, n) == 0;
    case REF_PREFIX:
        return n >= tl - 2 && memcmp(path, p->text, tl - 2) == 0;
    case REF_SUFFIX: {
        const char *suf = p->text + 2;
        size_t sl = tl - 2;
        if (n >= sl && memcmp(path + n - sl, suf, sl) == 0)
            return true;
        return sl > 0 && suf[0] == '/' && n == sl - 1 && memcmp(path, suf + 1, n) == 0;
    }
    default: {
        char buf[512];
        if (n >= sizeof(buf))
            abort();
        memcpy(buf, path, n);
        buf[n] = '\0';
        return regexec(&p->re, buf, 0, NULL, 0) == 0;
    }
    }
}

/* MatchesOrParentMatches. */
static bool ref_excluded(const struct ref_pattern *pats, size_t n, const char *path)
{
    bool matched = false;
    size_t len = strlen(path);
    for (size_t i = 0; i < n; i++) {
        if (pats[i].exception != matched)
            continue;
        bool m = ref_match_one(&pats[i], path, len);
        for (size_t k = 1; !m && k < len; k++) {
            if (path[k] == '/')
                m = ref_match_one(&pats[i], path, k);
        }
        if (m)
            matched = !pats[i].exception;
    }
    return matched;
}

/* Sets up the reference when every pattern line is plain. */
static size_t ref_setup(const char *text, size_t len, struct ref_pattern *pats)
{
    size_t n = 0, i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t l = nl != NULL ? (size_t)(nl - text - i) : len - i;
        if (l > 0) {
            if (n == REF_PATTERNS_MAX || !plain_line(text + i, l))
                goto fail;
            struct ref_pattern *p = &pats[n];
            p->exception = text[i] == '!';
            size_t skip = p->exception ? 1 : 0;
            memcpy(p->text, text + i + skip, l - skip);
            p->text[l - skip] = '\0';
            if (!ref_compile(p))
                goto fail;
            n++;
        }
        i += l + 1;
    }
    return n;
fail:
    for (size_t k = 0; k < n; k++) {
        if (pats[k].kind == REF_REGEX)
            regfree(&pats[k].re);
    }
    return SIZE_MAX;
}

static bool plain_path(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n >= 256 || p[0] == '/' || p[n - 1] == '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e)
            return false;
        bool comp_start = i == 0 || p[i - 1] == '/';
        if (comp_start && (p[i] == '/' || (p[i] == '.' && (p[i + 1] == '/' || p[i + 1] == '\0')) ||
                           (p[i] == '.' && p[i + 1] == '.')))
            return false;
    }
    return true;
}

/* ---- the checks ------------------------------------------------------------- */

static void check_skip_sound(const struct ignore *ig, const char *path)
{
    size_t n = strlen(path);
    char *dir = malloc(n + 1);
    check(dir != NULL);
    int rc;
    bool leaf = excluded(ig, path, &rc);
    for (size_t k = 1; rc == 0 && k < n; k++) {
        if (path[k] != '/')
            continue;
        memcpy(dir, path, k);
        dir[k] = '\0';
        bool may = true;
        struct ff_err err;
        int drc;
        bool dex = excluded(ig, dir, &drc);
        check(drc == 0);
        check(ignore_dir_may_contain_exceptions(ig, dir, &may, &err) == 0);
        if (dex && !may)
            check(leaf);
        if (!dex)
            check(may);
    }
    free(dir);
}

static void check_spellings(const struct ignore *ig, const char *path)
{
    int rc;
    bool ex = excluded(ig, path, &rc);
    if (rc != 0)
        return;
    size_t n = strlen(path);
    char *alt = malloc(n + 8);
    check(alt != NULL);
    (void)snprintf(alt, n + 8, "./%s/", path);
    int rc2;
    check(excluded(ig, alt, &rc2) == ex || rc2 != 0);
    free(alt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, '\0', size);
    size_t text_len = nul != NULL ? (size_t)(nul - data) : size;
    struct ignore *ig = NULL;
    struct ff_err err;
    int rc = ignore_parse(text, text_len, &ig, &err);
    if (rc != 0) {
        check(ig == NULL && (rc == FF_EINVAL || rc == FF_ETOOBIG));
        check(strncmp(err.msg, ".dockerignore", 13) == 0);
        return 0;
    }
    struct ref_pattern pats[REF_PATTERNS_MAX];
    size_t n_ref = ref_setup(text, text_len, pats);
    if (n_ref != SIZE_MAX)
        check(ignore_count(ig) == n_ref);
    size_t i = nul != NULL ? text_len + 1 : size;
    for (size_t count = 0; i < size && count < PATHS_MAX; count++) {
        const char *nl = memchr(text + i, '\n', size - i);
        size_t l = nl != NULL ? (size_t)(nl - text - i) : size - i;
        char *path = malloc(l + 1);
        check(path != NULL);
        memcpy(path, text + i, l);
        path[l] = '\0';
        if (strlen(path) == l) {
            check_skip_sound(ig, path);
            check_spellings(ig, path);
            int mrc;
            bool ex = excluded(ig, path, &mrc);
            if (mrc == 0 && n_ref != SIZE_MAX && plain_path(path))
                check(ex == ref_excluded(pats, n_ref, path));
        }
        free(path);
        i += l + 1;
    }
    if (n_ref != SIZE_MAX) {
        for (size_t k = 0; k < n_ref; k++) {
            if (pats[k].kind == REF_REGEX)
                regfree(&pats[k].re);
        }
    }
    ignore_free(ig);
    return 0;
}
